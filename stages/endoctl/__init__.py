"""endoctl: leak-free GI-endoscopy datasets and EVA-02 classifiers, reproducible with DVC."""

__version__ = "0.1.0"

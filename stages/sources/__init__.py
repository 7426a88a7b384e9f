"""Source adapters, registered by name: ``get_adapter("kvasir-capsule")``; ``detect_format`` for ``--format auto``."""

from __future__ import annotations

from pathlib import Path

from endoctl.sources import (ce24, crohnipi, csv_labels, ers, folder, gastrovision, hyperkvasir, kid,  # noqa: F401
                             kvasir_capsule, limuc, medfmc, see_ai)
from endoctl.sources.base import REGISTRY, Adapter, ImageRecord, Rejection, Skipped

__all__ = ["AUTO", "DETECTION_ORDER", "REGISTRY", "Adapter", "ImageRecord", "Rejection", "Skipped", "detect_format",
           "get_adapter"]

AUTO = "auto"
# Most specific evidence first: named folders/files a dataset alone ships, then folder-name patterns
# (ERS patient folders), then sets of class-folder names. ``folder`` and ``csv`` are never guessed.
DETECTION_ORDER = ("ce24", "kvasir-capsule", "hyperkvasir", "see-ai", "crohnipi", "limuc", "ers", "medfmc-endo",
                   "gastrovision", "kvasir-v2", "kid")


def detect_format(root: Path) -> tuple[str, str]:
    """(format, what showed it) for the dataset in ``root``, trying ``DETECTION_ORDER`` in turn.

    Raises ValueError listing what each format looks for when none matches.
    """
    for name in DETECTION_ORDER:
        found = REGISTRY[name].detect(root)
        if found:
            return name, found
    looked = "; ".join(f"{name}: {REGISTRY[name].signature}" for name in DETECTION_ORDER)
    raise ValueError(f"--format auto: no known layout in {root} (looked for {looked}); pass --format NAME")


def get_adapter(name: str, root: Path, labels: Path | None = None) -> Adapter:
    if name not in REGISTRY:
        raise ValueError(f"unknown --format {name!r}; choose one of {', '.join(sorted(REGISTRY))} or {AUTO}")
    return REGISTRY[name](root, labels)

"""HyperKvasir: ``labeled-images/<tract>/<category>/<finding>/<image>``, plus ``unlabeled-images/``."""

from __future__ import annotations

from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, register


@register
class HyperKvasir(Adapter):
    name = "hyperkvasir"
    layout = "labeled-images/<tract>/<category>/<finding>/<image> (and unlabeled-images/images/<image>)"
    label_rule = (
        "the finding folder (e.g. polyps, barretts, ileum); images under unlabeled-images/ get an "
        "empty label (usable for pre-training)"
    )

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        parts = entry.parts
        if len(parts) == 5 and parts[0] == "labeled-images":
            return ImageRecord(entry.file, entry.rel, parts[3])
        if len(parts) >= 2 and parts[0] == "unlabeled-images":
            return ImageRecord(entry.file, entry.rel, "")
        return self.misplaced(entry)

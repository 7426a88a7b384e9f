"""Generic ``<class>/<image>`` folders, and the class-folder datasets that use exactly that layout."""

from __future__ import annotations

from pathlib import Path

from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, child_dirs, register


@register
class Folder(Adapter):
    name = "folder"
    layout = "<class>/<image>"
    label_rule = "the class folder name"

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        if len(entry.parts) != 2:
            return self.misplaced(entry)
        return ImageRecord(entry.file, entry.rel, entry.parts[0])


@register
class KvasirV2(Folder):
    """Kvasir v2 (8 classes, ``kvasir-dataset-v2/<class>/<uuid>.jpg``): point SRC at the class folders' parent."""

    name = "kvasir-v2"
    layout = "<class>/<uuid>.jpg (e.g. dyed-lifted-polyps/...)"
    label_rule = "the class folder name (dyed-lifted-polyps, esophagitis, normal-cecum, ...)"
    labels = (
        "dyed-lifted-polyps",
        "dyed-resection-margins",
        "esophagitis",
        "normal-cecum",
        "normal-pylorus",
        "normal-z-line",
        "polyps",
        "ulcerative-colitis",
    )
    evidence = {"layout": "?", "label": "?"}
    signature = "two or more of Kvasir v2's 8 class folders (e.g. dyed-lifted-polyps/, normal-z-line/)"

    @classmethod
    def detect(cls, root: Path) -> str | None:
        known = [d for d in child_dirs(root) if d in cls.labels]
        return f"{known[0]}/, {known[1]}/" if len(known) >= 2 else None

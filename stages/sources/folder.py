"""Generic ``<class>/<image>`` folders, and the class-folder datasets that use exactly that layout."""

from __future__ import annotations

from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, register


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

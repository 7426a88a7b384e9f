"""SEE-AI (capsule endoscopy, ``imageNNNNN.jpg``): class folders, or flat images with a label file."""

from __future__ import annotations

from endoctl.sources.base import FileEntry, ImageRecord, Rejection, register
from endoctl.sources.csv_labels import LabelFile


@register
class SeeAI(LabelFile):
    name = "see-ai"
    layout = "<class>/imageNNNNN.jpg, or flat imageNNNNN.jpg with --labels CSV (file,label)"
    label_rule = (
        "the class folder; with --labels, every label the file lists for the image "
        "(several findings are joined with '|')"
    )
    patient_rule = "none (SEE-AI publishes no patient ids; frame numbers are consecutive per video)"
    optional_labels = True

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        if self.table is not None:
            return super().record(entry)
        if len(entry.parts) != 2:
            return self.misplaced(entry)
        return ImageRecord(entry.file, entry.rel, entry.parts[0])

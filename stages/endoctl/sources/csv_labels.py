"""Any dataset described by a label file: one row per (image, label), optional patient column."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from endoctl.io import read_csv, read_table
from endoctl.sources.base import Adapter, Entry, FileEntry, ImageRecord, Rejection, register

PATH_COLUMNS = ("path", "image_path", "filename", "file", "image")
LABEL_COLUMNS = ("label", "class_label", "class", "finding", "finding_class")
PATIENT_COLUMNS = ("patient_id", "patient", "video_id", "video")


def _pick(df: pd.DataFrame, names: tuple[str, ...], file: Path, required: bool) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    for name in names:
        if name in lower:
            return lower[name]
    if required:
        raise ValueError(f"{file}: no column named any of {list(names)} (found {list(df.columns)})")
    return None


def read_label_table(file: Path) -> pd.DataFrame:
    """Label file (CSV, or xlsx) -> columns path, label, patient_id; paths normalised to POSIX."""
    df = (
        read_table(file, "label file", PATH_COLUMNS)  # the shared reader: a repeated column is refused
        if file.suffix.lower() in (".xlsx", ".xls")
        else read_csv(file, sep=None, engine="python")
    )
    path_col = _pick(df, PATH_COLUMNS, file, True)
    label_col = _pick(df, LABEL_COLUMNS, file, True)
    patient_col = _pick(df, PATIENT_COLUMNS, file, False)
    return pd.DataFrame(
        {
            "path": df[path_col]
            .str.replace("\\", "/", regex=False)
            .str.strip()
            .str.replace(r"^(\./)+", "", regex=True),
            "label": df[label_col].str.strip(),
            "patient_id": df[patient_col].str.strip() if patient_col else "",
        }
    )


@register
class LabelFile(Adapter):
    name = "csv"
    layout = "any folders; --labels FILE lists path (relative to SRC), label, optional patient"
    label_rule = (
        "the label column (path/image_path/filename, label/class/class_label, patient_id/video_id); "
        "an image listed under several labels keeps them all, joined with '|'"
    )
    patient_rule = "the patient column when present (patient_id, patient, video_id or video)"
    optional_labels = False

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        if labels is None and not self.optional_labels:
            raise ValueError(f"--format {self.name} needs --labels FILE (path,label[,patient_id])")
        self.table: dict[str, tuple[str, str]] | None = None
        if labels is not None:
            df = read_label_table(labels)
            grouped: dict[str, list[tuple[str, str]]] = defaultdict(list)
            for path, label, patient in df.itertuples(index=False):
                grouped[path].append((label, patient))
            self.table = {
                path: ("|".join(sorted({lab for lab, _ in rows if lab})), next((p for _, p in rows if p), ""))
                for path, rows in grouped.items()
            }
            self._unseen = set(self.table)

    def scan(self) -> Iterator[Entry]:
        yield from super().scan()
        if self.table is not None:
            for path in sorted(self._unseen):
                yield Rejection(str(self.root / path), f"listed in {self.label_file.name} but not found")

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        assert self.table is not None
        row = self.table.get(entry.rel) or self.table.get(entry.parts[-1])
        if row is None:
            return Rejection(str(entry.file), f"not listed in label file {self.label_file.name}")
        self._unseen.discard(entry.rel if entry.rel in self.table else entry.parts[-1])
        return ImageRecord(entry.file, entry.rel, row[0], patient_id=row[1])

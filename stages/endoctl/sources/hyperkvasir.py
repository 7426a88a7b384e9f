"""HyperKvasir: ``labeled-images/<tract>/<category>/<finding>/<image>``, plus ``unlabeled-images/``."""

from __future__ import annotations

from pathlib import Path

from endoctl.io import read_table
from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, child_dirs, register

# The official k-fold files (file-name;class-name;split-index), 2-fold preferred: (file, split prefix).
FOLD_FILES = (("2_fold_split.csv", "split_"), ("5_fold_split.csv", "fold_"))
SPLIT_FILE_COLUMNS = ("file-name", "split-index")


def official_splits(folder: Path) -> dict[str, str]:
    """file name -> ``split_<k>`` from 2_fold_split.csv, else ``fold_<k>`` from 5_fold_split.csv, in ``folder``."""
    for name, prefix in FOLD_FILES:
        file = folder / name
        if file.is_file():
            df = read_table(file, "HyperKvasir split file")
            missing = [c for c in SPLIT_FILE_COLUMNS if c not in df.columns]
            if missing:
                raise ValueError(f"{file}: missing column(s) {missing} (expected file-name;class-name;split-index)")
            return {f: prefix + k for f, k in zip(df["file-name"], df["split-index"])}
    return {}


@register
class HyperKvasir(Adapter):
    name = "hyperkvasir"
    layout = "labeled-images/<tract>/<category>/<finding>/<image> (and unlabeled-images/images/<image>)"
    label_rule = (
        "the finding folder (e.g. polyps, barretts, ileum); images under unlabeled-images/ get an "
        "empty label (usable for pre-training)"
    )
    split_rule = (
        "split_0/split_1 from official_splits/2_fold_split.csv (file-name;class-name;split-index), else "
        "fold_0 ... fold_4 from official_splits/5_fold_split.csv, in --labels DIR, SRC/official_splits or SRC"
    )
    labels = (
        "barretts",
        "barretts-short-segment",
        "bbps-0-1",
        "bbps-2-3",
        "cecum",
        "dyed-lifted-polyps",
        "dyed-resection-margins",
        "esophagitis-a",
        "esophagitis-b-d",
        "hemorrhoids",
        "ileum",
        "impacted-stool",
        "polyps",
        "pylorus",
        "retroflex-rectum",
        "retroflex-stomach",
        "ulcerative-colitis-grade-0-1",
        "ulcerative-colitis-grade-1",
        "ulcerative-colitis-grade-1-2",
        "ulcerative-colitis-grade-2",
        "ulcerative-colitis-grade-2-3",
        "ulcerative-colitis-grade-3",
        "z-line",
    )
    evidence = {"layout": "3", "label": "3", "split": "V"}
    signature = "labeled-images/ or unlabeled-images/"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        if labels is not None:
            folder = labels if labels.is_dir() else labels.parent
            if not folder.is_dir():
                raise FileNotFoundError(f"--labels folder of official split files not found: {labels}")
            self.split = official_splits(folder)
        else:
            self.split = official_splits(root / "official_splits") or official_splits(root)

    @classmethod
    def detect(cls, root: Path) -> str | None:
        found = [d for d in ("labeled-images", "unlabeled-images") if d in child_dirs(root)]
        return f"{found[0]}/" if found else None

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        parts = entry.parts
        if len(parts) == 5 and parts[0] == "labeled-images":
            return ImageRecord(entry.file, entry.rel, parts[3], official_split=self.split.get(parts[4], ""))
        if len(parts) >= 2 and parts[0] == "unlabeled-images":
            return ImageRecord(entry.file, entry.rel, "")
        return self.misplaced(entry)

"""Kvasir-Capsule: ``labelled_images/<Finding>/<videoid>_<frame>.jpg`` (one video = one patient)."""

from __future__ import annotations

import re
from pathlib import Path

from endoctl.io import read_csv
from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, child_dirs, register, require_file

FRAME_NAME = re.compile(r"(?P<video>[0-9a-fA-F]+)_(?P<frame>[0-9]+)")  # fullmatch: no trailing "\n"


def video_id(stem: str) -> str:
    """``131368cc17e44240_28955`` -> ``131368cc17e44240``; empty if the name does not follow the rule."""
    match = FRAME_NAME.fullmatch(stem)
    return match.group("video") if match else ""


@register
class KvasirCapsule(Adapter):
    name = "kvasir-capsule"
    layout = "labelled_images/<Finding>/<videoid>_<frame>.jpg (and unlabelled_images/<image>)"
    label_rule = (
        "the finding folder (e.g. 'Normal clean mucosa', 'Blood - fresh'); unlabelled_images/ get an empty label"
    )
    patient_rule = "the video id: metadata.csv's video_id when present, else the file-name prefix before '_'"
    split_rule = (
        "split_0/split_1 from the official split files (filename,label) when present: official_split_{0,1}.csv "
        "or official_splits/split_{0,1}.csv, beside metadata.csv (or --labels)"
    )
    labels = (
        "Ampulla of vater",
        "Angiectasia",
        "Blood - fresh",
        "Blood - hematin",
        "Erosion",
        "Erythema",
        "Foreign body",
        "Ileocecal valve",
        "Lymphangiectasia",
        "Normal clean mucosa",
        "Polyp",
        "Pylorus",
        "Reduced mucosal view",
        "Ulcer",
    )
    evidence = {"layout": "V", "label": "3", "patient": "V", "split": "V"}
    signature = "labelled_images/ or unlabelled_images/"

    @classmethod
    def detect(cls, root: Path) -> str | None:
        found = [d for d in ("labelled_images", "unlabelled_images") if d in child_dirs(root)]
        return f"{found[0]}/" if found else None

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        meta = require_file(labels, "--labels metadata") if labels is not None else root / "metadata.csv"
        self.videos: dict[str, str] = {}
        if meta.is_file():
            df = read_csv(meta, sep=";")
            missing = {"filename", "video_id"} - set(df.columns)
            if missing:
                raise ValueError(f"{meta}: missing column(s) {sorted(missing)} (expected ';'-separated)")
            self.videos = dict(zip(df["filename"], df["video_id"]))
        self.split: dict[str, str] = {}
        folder = meta.parent if meta.is_file() else root
        for fold in (0, 1):
            for csv in (folder / f"official_split_{fold}.csv", folder / "official_splits" / f"split_{fold}.csv"):
                if csv.is_file():
                    for filename in read_csv(csv)["filename"]:
                        self.split[filename] = f"split_{fold}"

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        parts = entry.parts
        if len(parts) == 3 and parts[0] == "labelled_images":
            label = parts[1]
        elif len(parts) == 2 and parts[0] == "unlabelled_images":
            label = ""
        else:
            return self.misplaced(entry)
        name = parts[-1]
        video = self.videos.get(name) or video_id(entry.stem)
        return ImageRecord(entry.file, entry.rel, label, video, self.split.get(name, ""))

"""Capsule Vision 2024 (CE24): ``training|validation/<Class>/<Source>/<file>`` + ``testing/Images/``."""

from __future__ import annotations

import re
from pathlib import Path

from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, child_dirs, register
from endoctl.sources.csv_labels import read_label_table
from endoctl.sources.kvasir_capsule import video_id

SPLITS = {"training": "training", "validation": "validation"}
AIIMS_VIDEO = r"(?:ulcer|worm)[0-9]+"  # CE24's six AIIMS videos, ulcer1..3 and worm1..3 (as its file lists spell them)
AIIMS_FRAME = re.compile(rf"(?P<video>{AIIMS_VIDEO})_[0-9]+")  # ulcer1_1024, worm3_12
# The challenge's ten classes in its official order (the submission's probability columns)
CLASSES = (
    "Angioectasia",
    "Bleeding",
    "Erosion",
    "Erythema",
    "Foreign Body",
    "Lymphangiectasia",
    "Normal",
    "Polyp",
    "Ulcer",
    "Worms",
)


def aiims_video(stem: str) -> str:
    """``ulcer1_1024`` -> ``ulcer1`` (the digit numbers the AIIMS video); empty for other names."""
    match = AIIMS_FRAME.fullmatch(stem)
    return match.group("video") if match else ""


def ce24_patient(sub_source: str, stem: str) -> str:
    """Patient/video id recovered from the original dataset's file-name rule, prefixed by it.

    KVASIR (Kvasir-Capsule) and AIIMS names carry their video; KID and SEE-AI names carry none.
    """
    key = sub_source.upper()
    patient = video_id(stem) if key == "KVASIR" else aiims_video(stem) if key == "AIIMS" else ""
    return f"{key}/{patient}" if patient else ""


def find_truth(root: Path) -> Path | None:
    """The test truth workbook CE24 ships (``test_data.xlsx``), looked for in SRC and SRC/testing."""
    for folder in (root, root / "testing"):
        named = sorted(folder.glob("*.xlsx"), key=lambda p: (p.name != "test_data.xlsx", p.name))
        for candidate in named:
            if "test" in candidate.stem.lower():
                return candidate
    return None


@register
class CE24(Adapter):
    name = "ce24"
    layout = "training|validation/<Class>/<Source>/<file>.jpg and testing/Images/<file>.jpg"
    label_rule = (
        "the class folder for training/validation; for testing, class_label from the truth xlsx "
        "(--labels, or a *test*.xlsx in SRC or SRC/testing) matched by file name, else empty"
    )
    patient_rule = (
        "the video from the original file name inside each Source folder: KVASIR/<videoid> for "
        "<videoid>_<frame>, AIIMS/ulcer1 ... AIIMS/worm3 for ulcer<n>_<frame> and worm<n>_<frame> (six "
        "AIIMS videos [?: the digit most likely numbers the video]); none for KID and SEE-AI (their names carry "
        "no patient)"
    )
    split_rule = "training, validation or test from the top folder"
    labels = CLASSES
    evidence = {"layout": "V", "label": "V", "patient": "V/?", "split": "V"}
    signature = "training/ and validation/ folders, or testing/Images/"

    @classmethod
    def detect(cls, root: Path) -> str | None:
        children = child_dirs(root)
        if "training" in children and "validation" in children:
            return "training/, validation/"
        return "testing/Images/" if "testing" in children and "Images" in child_dirs(root / "testing") else None

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        truth = labels if labels is not None else find_truth(root)
        self.truth: dict[str, str] = {}
        if truth is not None:
            table = read_label_table(truth)
            self.truth = dict(zip(table["path"].str.rsplit("/", n=1).str[-1], table["label"]))

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        parts = entry.parts
        if len(parts) == 4 and parts[0] in SPLITS:
            _, label, sub_source, _ = parts
            patient = ce24_patient(sub_source, entry.stem)
            return ImageRecord(entry.file, entry.rel, label, patient, SPLITS[parts[0]])
        if len(parts) == 3 and parts[:2] == ("testing", "Images"):
            return ImageRecord(entry.file, entry.rel, self.truth.get(parts[2], ""), official_split="test")
        return self.misplaced(entry)

"""LIMUC (ulcerative colitis, Mayo 0-3): ``patient_based_classified_images/<id>/Mayo N/UC_patient_<id>_<n>.bmp``
and the split archives ``train_and_validation_sets/Mayo N/…`` and ``test_set/Mayo N/…``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from endoctl.sources.base import Adapter, Entry, FileEntry, ImageRecord, Rejection, child_dirs, register

MAYO = ("Mayo 0", "Mayo 1", "Mayo 2", "Mayo 3")
NAME = re.compile(r"UC_patient_(?P<patient>[0-9]+)_[0-9]+")
PATIENT_TREE = "patient_based_classified_images"
DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit also accepts e.g. "٣"
ARCHIVES = {"train_and_validation_sets": "train_val", "test_set": "test"}  # folder -> official split


def limuc_patient(stem: str) -> str:
    """``UC_patient_123_7`` -> ``123``; empty for other names."""
    match = NAME.fullmatch(stem)
    return match.group("patient") if match else ""


@register
class LIMUC(Adapter):
    name = "limuc"
    layout = (
        f"{PATIENT_TREE}/<id>/Mayo N/UC_patient_<id>_<n>.bmp, and/or the archives "
        "train_and_validation_sets/Mayo N/… and test_set/Mayo N/… (SRC may also be "
        f"{PATIENT_TREE} itself)"
    )
    label_rule = "the Mayo folder: 'Mayo 0', 'Mayo 1', 'Mayo 2' or 'Mayo 3'"
    patient_rule = (
        "the <id> folder in the patient tree, else <id> from UC_patient_<id>_<n>; a file whose "
        "name names another patient than its folder is rejected"
    )
    split_rule = (
        "train_val or test from the archive folder (train_and_validation_sets, test_set); an image "
        "of the patient tree gets the split of the archive file with its name, when the archives "
        "are beside it"
    )
    labels = MAYO
    evidence = {"layout": "V", "label": "V", "patient": "V", "split": "V"}
    signature = f"{PATIENT_TREE}/, train_and_validation_sets/ or test_set/ (or <id>/Mayo N/ folders)"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        self.split: dict[str, str] = {}
        for archive, split in ARCHIVES.items():
            for mayo in child_dirs(root / archive):
                for name in os.listdir(root / archive / mayo):
                    self.split[name] = split

    @classmethod
    def detect(cls, root: Path) -> str | None:
        children = child_dirs(root)
        for folder in (PATIENT_TREE, *ARCHIVES):
            if folder in children:
                return f"{folder}/"
        patients = [d for d in children if DIGITS.fullmatch(d)]
        if patients and set(child_dirs(root / patients[0])) & set(MAYO):
            return f"{patients[0]}/Mayo N/"
        return None

    def record(self, entry: FileEntry) -> Entry:
        parts = entry.parts
        if len(parts) == 3 and parts[0] in ARCHIVES:
            _, mayo, name = parts
            patient, split = limuc_patient(entry.stem), ARCHIVES[parts[0]]
            if not patient:
                return Rejection(str(entry.file), "file name is not UC_patient_<id>_<n>: no patient id")
        elif len(parts) in (3, 4) and DIGITS.fullmatch(parts[-3]) and (len(parts) == 3 or parts[0] == PATIENT_TREE):
            patient, mayo, name = parts[-3:]
            named = limuc_patient(entry.stem)
            if named and named != patient:
                return Rejection(str(entry.file), f"file name names patient {named}, its folder patient {patient}")
            split = self.split.get(name, "")
        else:
            return self.misplaced(entry)
        if mayo not in MAYO:
            return Rejection(str(entry.file), f"folder {mayo!r} is not one of {', '.join(MAYO)}")
        return ImageRecord(entry.file, entry.rel, mayo, patient, split)

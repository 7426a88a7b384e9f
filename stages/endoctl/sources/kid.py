"""KID (capsule endoscopy): KID 2 / KID 1 class folders, or flat files named after their class.

KID publishes no patient ids. The ``P0``/``P1``/``P2`` in KID 1 names like ``angioectasia-P0-2`` is
most likely a bleeding-potential grade (Saurin P0-P2), not a patient, so it never becomes one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from endoctl.sources.base import ANNOTATION, Adapter, Entry, FileEntry, ImageRecord, Skipped, child_dirs, register

LEADING_NAME = re.compile(r"^[A-Za-z]+(?:[ _][A-Za-z]+)*")
KID2_FOLDERS = (
    "vascular",
    "inflammatory",
    "polypoid",
    "normal-esophagus",
    "normal-small-bowel",
    "normal-colon",
    "normal-stomach",
    "ampulla-of-vater",
)
KID1_FOLDERS = ("Angioectasias", "active bleeding")
# Flat names: CE24's KID copies (every stem in CE24's training/validation lists) and KID 2's own.
FLAT_NAMES = (
    "angioectasia",
    "bleeding",
    "lymphangiectasia",
    "normalcolon",
    "normaleso",
    "polypoid",
    "vascular",
    "inflammatory",
    "normalsb",
    "ampulla",
)
KID_NAME = re.compile(rf"(?:[a-z]+-P[0-9]+-[0-9]+|(?:{'|'.join(FLAT_NAMES)})[0-9]+(?:~[0-9]+)?)")
GRADED = re.compile(r"-P[0-9]+-", re.IGNORECASE)  # KID 1's angioectasia-P<grade>-<k>


def is_kid_name(stem: str) -> bool:
    """A file name only KID uses: ``angioectasia-P0-2`` (KID 1) or ``normaleso12``, ``polypoid5~0``, …"""
    return bool(GRADED.search(stem) or KID_NAME.fullmatch(stem))


def is_annotation(entry: FileEntry) -> bool:
    """KID 2's masks: in ``<class>-annotations/`` folders, or ``<image stem>m.png`` beside the image."""
    if len(entry.parts) > 1 and entry.parts[-2].lower().endswith("annotations"):
        return True
    stem = entry.stem
    return (
        len(stem) > 2
        and stem.endswith("m")
        and stem[-2].isascii()
        and stem[-2].isdigit()
        and entry.file.with_name(stem[:-1] + entry.file.suffix).is_file()
    )


@register
class KID(Adapter):
    name = "kid"
    layout = (
        "<class>/<image> (KID 2: vascular/vascular001.png, polypoid/polypoid5~0.png, "
        "normal-esophagus/normaleso1.png, ampulla-of-vater/ampulla1.png [?: the ampulla folder's spelling], …; "
        "KID 1 [3/?]: Angioectasias/angioectasia-P0-2.png, active bleeding/bleeding3.png), "
        "<kid-dataset>/<class>/<image>, or flat <class><k>.jpg as CE24 "
        "ships them; mask folders <class>-annotations/ and <image>m.png masks are skipped"
    )
    label_rule = (
        "the class folder exactly as the archive spells it; in a flat folder, the leading letters of the "
        "file name (normaleso12.jpg -> normaleso, angioectasia-P0-1.jpg -> angioectasia)"
    )
    patient_rule = (
        "none: KID publishes no patient ids (the P0/P1/P2 of KID 1 names like angioectasia-P0-2 is "
        "most likely a bleeding-potential grade, not a patient)"
    )
    labels = (*KID2_FOLDERS, *KID1_FOLDERS, *(n for n in FLAT_NAMES if n not in KID2_FOLDERS))
    evidence = {"layout": "3", "label": "3", "patient": "?"}
    signature = (
        f"KID 2 or KID 1 class folders ({', '.join(KID2_FOLDERS + KID1_FOLDERS)}), *-annotations/ "
        "folders, or flat KID file names (normaleso12.jpg, angioectasia-P0-1.jpg)"
    )

    @classmethod
    def detect(cls, root: Path) -> str | None:
        children = child_dirs(root)
        for folder in (root, *(root / c for c in children)):
            names = child_dirs(folder)
            known = [n for n in names if n in KID2_FOLDERS + KID1_FOLDERS or n.endswith("-annotations")]
            if known:
                rel = folder.relative_to(root).as_posix()
                return f"{'' if rel == '.' else rel + '/'}{known[0]}/"
        try:
            files = sorted(os.listdir(root))
        except OSError:
            return None
        flat = [f for f in files if is_kid_name(Path(f).stem)]
        return flat[0] if flat else None

    def record(self, entry: FileEntry) -> Entry:
        if is_annotation(entry):
            return Skipped(entry.rel, ANNOTATION)
        if len(entry.parts) in (2, 3):
            label = entry.parts[-2]
        elif len(entry.parts) == 1 and (match := LEADING_NAME.match(entry.stem)):
            label = match.group(0)
        else:
            return self.misplaced(entry)
        return ImageRecord(entry.file, entry.rel, label)

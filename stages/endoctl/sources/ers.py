"""ERS (Gdansk endoscopy dataset): ``<patient>/<samples|seq_NN>/frames/NNNNNN.png`` labelled by
the code tokens in the names of the masks in the sibling ``labels/`` folder.

A frame's labels are the union of the 3-character codes of every mask named after it
(``labels/000005_c01_c02_h01.png`` -> c01, c02, h01); a 0-byte mask still names its codes ("label
present, no mask"). Masks are the dataset's annotations: they are counted as skipped, never hashed,
unless they name a frame that is not there (then they are rejected, so nothing goes unaccounted).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from endoctl.imaging import IMAGE_SUFFIXES
from endoctl.sources.base import (
    ANNOTATION,
    Adapter,
    Entry,
    FileEntry,
    ImageRecord,
    Rejection,
    Skipped,
    child_dirs,
    register,
)

# MST 3.0 colonoscopy (c) and gastroscopy (g) findings, healthy (h), blood (b), quality (q): 123 codes.
CODE_COUNTS = {"b": 2, "c": 34, "g": 70, "h": 7, "q": 10}
CODES = tuple(f"{letter}{k:02d}" for letter, n in CODE_COUNTS.items() for k in range(1, n + 1))
CODE_SET = frozenset(CODES)
TOKEN = re.compile(r"[A-Za-z][0-9]{2}")
PATIENT = re.compile(r"[0-9]{4}")
SEQUENCE = re.compile(r"seq_[0-9]+")


def ers_patient(parts: tuple[str, ...] | list[str]) -> str:
    """The 4-digit patient folder of ``…/<patient>/<data folder>/frames|labels/<file>``; else empty."""
    if len(parts) >= 4 and parts[-2] in ("frames", "labels") and PATIENT.fullmatch(parts[-4]):
        return parts[-4]
    return ""


def frame_codes(mask_names: list[str]) -> tuple[list[str], str]:
    """(sorted lower-case codes, "") of a frame's masks, or ([], reason) for the first bad mask name."""
    codes: set[str] = set()
    for name in mask_names:
        tokens = Path(name).stem.split("_")[1:]
        if not tokens:
            return [], f"mask {name} names no code (expected <frame>_<code>[_<code>…].png)"
        for token in tokens:
            if not TOKEN.fullmatch(token):
                return [], f"mask {name}: {token!r} is not an ERS code (a letter and 2 digits)"
            if token.lower() not in CODE_SET:
                return [], (
                    f"mask {name}: unknown ERS code {token!r} (known: b01-b02, c01-c34, g01-g70, h01-h07, q01-q10)"
                )
            codes.add(token.lower())
    return sorted(codes), ""


def _patient_folders(folder: Path) -> str | None:
    """Evidence that ``folder`` holds ERS patient folders: the first one's data folders."""
    patients = [d for d in child_dirs(folder) if PATIENT.fullmatch(d)]
    if not patients:
        return None
    data = [d for d in child_dirs(folder / patients[0]) if d == "samples" or SEQUENCE.fullmatch(d)]
    if data and "frames" in child_dirs(folder / patients[0] / data[0]):
        return f"{patients[0]}/{data[0]}/frames/"
    return None


@register
class ERS(Adapter):
    name = "ers"
    layout = (
        "<patient 4 digits>/<samples|seq_NN>/frames/NNNNNN.png with masks "
        "<same folder>/labels/NNNNNN_<code>[_<code>…].png (SRC may also be one level up, e.g. "
        "precise-samples/<patient>/… [3])"
    )
    label_rule = (
        "the codes in the names of the frame's masks in labels/, lower-case, sorted, joined with '|' "
        "(000005_c01_c02_h01.png -> c01|c02|h01; several masks per frame; a 0-byte mask counts). A "
        "frame without a mask, or a mask token that is not a known code, is rejected with the name"
    )
    patient_rule = "the 4-digit patient folder (0001); a patient may have several sequence folders"
    split_rule = "none"
    labels = CODES
    evidence = {"layout": "V", "label": "V", "patient": "V"}
    signature = "4-digit patient folders holding samples/ or seq_NN/ with frames/ (in SRC or one folder below)"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        self._folder: Path | None = None  # the data folder (samples, seq_NN) whose listings are cached
        self._masks: dict[str, list[str]] | None = None  # frame stem -> mask names; None: no labels/
        self._frames: set[str] = set()

    @classmethod
    def detect(cls, root: Path) -> str | None:
        if found := _patient_folders(root):
            return found
        for child in child_dirs(root):
            if not PATIENT.fullmatch(child) and (found := _patient_folders(root / child)):
                return f"{child}/{found}"
        return None

    def _listings(self, folder: Path) -> None:
        """List ``folder``/frames and ``folder``/labels once (the walk visits them in a row)."""
        if folder == self._folder:
            return
        self._folder = folder
        try:
            self._frames = {Path(n).stem for n in os.listdir(folder / "frames")}
        except OSError:
            self._frames = set()
        try:
            names = sorted(os.listdir(folder / "labels"))
        except OSError:
            self._masks = None
            return
        self._masks = {}
        for name in names:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                self._masks.setdefault(Path(name).stem.split("_")[0], []).append(name)

    def record(self, entry: FileEntry) -> Entry:
        parts = entry.parts
        if len(parts) not in (4, 5) or not ers_patient(parts):
            return self.misplaced(entry)
        folder = entry.file.parent.parent
        self._listings(folder)
        if parts[-2] == "labels":
            frame = entry.stem.split("_")[0]
            if frame in self._frames:
                return Skipped(entry.rel, ANNOTATION)
            return Rejection(str(entry.file), f"annotation mask for frame {frame}, which is not in ../frames/")
        if self._masks is None:
            return Rejection(str(entry.file), "no labels/ folder beside this frames/ folder")
        names = self._masks.get(entry.stem, [])
        if not names:
            return Rejection(
                str(entry.file), f"no mask in ../labels/ names this frame (expected {entry.stem}_<code>….png)"
            )
        codes, problem = frame_codes(names)
        if problem:
            return Rejection(str(entry.file), problem)
        return ImageRecord(entry.file, entry.rel, "|".join(codes), patient_id=parts[-4])

"""SEE-AI (capsule endoscopy, ``imageNNNNN.jpg``): the released YOLO layout, class folders, or flat
images with a label file.

The release: ``SEE_AI_project_all_images/imageNNNNN.jpg`` and ``SEE_AI_project_all_txt/imageNNNNN.txt``
(each folder possibly nested in one of the same name, as the Kaggle archive unpacks), one YOLO box
``cls cx cy w h`` per line. Every class in an image's box file is one of its labels; an image
without a box file, or with an empty one, is ``normal``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

from endoctl.sources.base import Entry, FileEntry, ImageRecord, Rejection, Skipped, child_dirs, register
from endoctl.sources.csv_labels import LabelFile

IMAGES, BOXES = "SEE_AI_project_all_images", "SEE_AI_project_all_txt"
CLASSES = (
    "angiodysplasia",
    "erosion",
    "stenosis",
    "lymphangiectasia",
    "lymph follicle",
    "SMT",
    "polyp-like",
    "bleeding",
    "diverticulum",
    "erythema",
    "foreign body",
    "vein",
)  # YOLO class ids 0-11
NORMAL = "normal"
BOX_FILES = "box files"
DISTINCT_FOLDERS = ("angiodysplasia", "lymph follicle", "SMT", "polyp-like")  # class folders only SEE-AI uses


def release_folder(root: Path, name: str) -> Path | None:
    """``root/name``, or ``root/name/name`` when the archive nests it; None when absent."""
    if name not in child_dirs(root):
        return None
    return root / name / name if name in child_dirs(root / name) else root / name


def parse_boxes(text: str, where: str) -> tuple[list[str], str]:
    """(class names in the file, "") or ([], "<where> line N: problem") for the first bad line."""
    names = set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        at = f"{where} line {number}"
        if len(fields) != 5:
            return [], f"{at}: expected 'cls cx cy w h', got {line.strip()!r}"
        if not (fields[0].isascii() and fields[0].isdigit()) or int(fields[0]) >= len(CLASSES):
            return [], f"{at}: unknown class id {fields[0]!r} (0-{len(CLASSES) - 1})"
        try:
            coords = [float(v) for v in fields[1:]]
        except ValueError:
            return [], f"{at}: box values {' '.join(fields[1:])!r} are not numbers"
        if not all(math.isfinite(v) for v in coords):
            return [], f"{at}: box values {' '.join(fields[1:])!r} are not finite"
        names.add(CLASSES[int(fields[0])])
    return sorted(names), ""


@register
class SeeAI(LabelFile):
    name = "see-ai"
    layout = (
        f"{IMAGES}/imageNNNNN.jpg + {BOXES}/imageNNNNN.txt (YOLO boxes; each folder may be nested once "
        "in itself), or <class>/imageNNNNN.jpg, or flat imageNNNNN.jpg with --labels CSV (file,label)"
    )
    label_rule = (
        "release layout: the class of every box line (ids 0-11: " + ", ".join(CLASSES) + "), sorted and "
        "joined with '|'; no box file or an empty one: normal; a malformed line or unknown class id rejects "
        "the image naming file, line and value. Otherwise the class folder, or every label the --labels "
        "file lists for the image (joined with '|')"
    )
    patient_rule = "none (SEE-AI publishes no patient or procedure ids; images come from 523 procedures)"
    labels = (*CLASSES, NORMAL)
    evidence = {"layout": "3", "label": "3", "patient": "V"}
    signature = f"{IMAGES}/ (or class folders {', '.join(DISTINCT_FOLDERS)})"
    optional_labels = True

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        self.images = release_folder(root, IMAGES)
        boxes = labels if labels is not None and labels.is_dir() else None
        if self.images is not None and labels is not None and boxes is None:
            raise ValueError(
                f"{root} has the SEE-AI release layout ({IMAGES}/), which reads its box files: "
                f"--labels must be a folder of box files, not {labels}"
            )
        if self.images is None and boxes is not None:
            raise ValueError(f"--labels {labels} is a folder of box files, but {root} has no {IMAGES}/ folder")
        super().__init__(root, None if self.images is not None else labels)
        self.boxes = (boxes or release_folder(root, BOXES)) if self.images is not None else None
        if self.images is not None and self.boxes is None:  # else every image would silently read as normal
            raise FileNotFoundError(
                f"{root} has {IMAGES}/ but no {BOXES}/ folder of box files (or pass --labels FOLDER)"
            )
        self.box_files: set[str] = set(os.listdir(self.boxes)) if self.boxes is not None else set()
        self.image_stems: set[str] = {Path(n).stem for n in os.listdir(self.images)} if self.images else set()

    @classmethod
    def detect(cls, root: Path) -> str | None:
        if release_folder(root, IMAGES):
            return f"{IMAGES}/"
        known = [d for d in child_dirs(root) if d in DISTINCT_FOLDERS]
        return f"{known[0]}/" if known else None

    def scan(self) -> Iterator[Entry]:
        for entry in super().scan():
            if isinstance(entry, Skipped) and self.boxes is not None and (self.root / entry.rel).parent == self.boxes:
                stem = Path(entry.rel).stem
                if stem in self.image_stems:
                    yield Skipped(entry.rel, BOX_FILES)
                else:
                    yield Rejection(str(self.root / entry.rel), f"box file without an image {stem}.* in {IMAGES}/")
            else:
                yield entry

    def record(self, entry: FileEntry) -> Entry:
        if self.images is not None:
            if entry.file.parent != self.images:
                return self.misplaced(entry)
            box = f"{entry.stem}.txt"
            if box not in self.box_files:
                return ImageRecord(entry.file, entry.rel, NORMAL)
            assert self.boxes is not None
            text = (self.boxes / box).read_text(encoding="utf-8", errors="replace")
            names, problem = parse_boxes(text, os.path.relpath(self.boxes / box, self.root))
            if problem:
                return Rejection(str(entry.file), problem)
            return ImageRecord(entry.file, entry.rel, "|".join(names) or NORMAL)
        if self.table is not None:
            return super().record(entry)
        if len(entry.parts) != 2:
            return self.misplaced(entry)
        return ImageRecord(entry.file, entry.rel, entry.parts[0])

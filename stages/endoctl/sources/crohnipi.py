"""CrohnIPI (capsule, Crohn's lesions): ``imgs/<frame>.jpg`` + ``CrohnIPI_description.csv`` (ISO-8859-1;
columns ``Frame name, Label, Fold``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from endoctl.io import read_table
from endoctl.sources.base import Adapter, Entry, FileEntry, ImageRecord, Rejection, child_dirs, missing_listed, register

DESCRIPTION = "CrohnIPI_description.csv"
ENCODING = "iso-8859-1"
IMAGES = "imgs"
CODES = ("N", "E", "O", "AU", "U3-10", "U>10", "S")  # normal, erythema, oedema, aphthoid, ulcer 3-10 / >10 mm, stenosis
FOLDS = ("1", "2", "3", "4", "5")
COLUMNS = ("frame name", "label", "fold")


def find_description(root: Path) -> Path | None:
    """``CrohnIPI_description.csv`` in ``root`` or in one folder below it (``DataCrohnIPI/``)."""
    for folder in (root, *(root / c for c in child_dirs(root))):
        if (folder / DESCRIPTION).is_file():
            return folder / DESCRIPTION
    return None


@register
class CrohnIPI(Adapter):
    name = "crohnipi"
    layout = (
        f"imgs/<frame>.jpg + {DESCRIPTION} beside imgs/ (in SRC or one folder below, e.g. DataCrohnIPI/; "
        "with --labels FILE: SRC/imgs/)"
    )
    label_rule = (
        f"the Label column of {DESCRIPTION} (read as ISO-8859-1), exactly one of {', '.join(CODES)}; "
        "another value, an image not listed, or a listed image that is missing is rejected"
    )
    patient_rule = "none (CrohnIPI publishes no patient ids)"
    split_rule = "fold_1 ... fold_5 from the Fold column (the official 5-fold cross-validation)"
    labels = CODES
    evidence = {"layout": "3", "label": "3", "split": "3"}
    signature = f"{DESCRIPTION} in SRC or one folder below"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        description = labels if labels is not None else find_description(root)
        if description is None:
            raise FileNotFoundError(f"{DESCRIPTION} not found in {root} or one folder below (or pass --labels FILE)")
        df = read_table(description, "CrohnIPI description", encoding=ENCODING)
        column = {c.lower(): c for c in df.columns}
        missing = [c for c in COLUMNS if c not in column]
        if missing:
            raise ValueError(f"{description}: missing column(s) {missing} (found {list(df.columns)})")
        self.description = description
        self.images = (root if labels is not None else description.parent) / IMAGES
        self.rows: dict[str, tuple[str, str]] = {}  # frame name -> (label, split)
        self.bad: dict[str, str] = {}
        for index, row in df.iterrows():
            name, label, fold = (row[column[c]] for c in COLUMNS)
            where = f"{description.name} row {index + 2}"
            if label not in CODES:
                self.bad[name] = f"{where}: label {label!r} is not one of {', '.join(CODES)}"
            elif fold not in FOLDS:
                self.bad[name] = f"{where}: fold {fold!r} is not 1-5"
            elif name in self.rows and self.rows[name] != (label, f"fold_{fold}"):
                self.bad[name] = f"{where}: {name} listed again with another label or fold"
            elif name not in self.bad:
                self.rows[name] = (label, f"fold_{fold}")
        self.seen: set[str] = set()

    @classmethod
    def detect(cls, root: Path) -> str | None:
        found = find_description(root)
        return found.relative_to(root).as_posix() if found else None

    def scan(self) -> Iterator[Entry]:
        yield from super().scan()
        yield from missing_listed(self.images, dict.fromkeys(self.rows, self.description.name), self.bad, self.seen)

    def record(self, entry: FileEntry) -> Entry:
        if entry.file.parent != self.images:
            return self.misplaced(entry)
        name = entry.parts[-1]
        key = name if name in self.rows or name in self.bad else entry.stem  # names listed without suffix
        self.seen.add(key)
        if key in self.bad:
            return Rejection(str(entry.file), self.bad[key])
        if key not in self.rows:
            return Rejection(str(entry.file), f"not listed in {self.description.name}")
        label, split = self.rows[key]
        return ImageRecord(entry.file, entry.rel, label, official_split=split)

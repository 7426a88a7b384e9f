"""MedFMC Endo (multi-label colonoscopy): ``images/<img_id>.png`` + ``endo_train.csv`` / ``endo_val.csv``
(0/1 columns ulcer, erosion, polyp, tumor), as in ``MedFMC_train/endo/`` and ``MedFMC_val/endo/``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from endoctl.io import read_table
from endoctl.sources.base import Adapter, Entry, FileEntry, ImageRecord, Rejection, child_dirs, missing_listed, register
from endoctl.sources.csv_labels import PATH_COLUMNS

FINDINGS = ("ulcer", "erosion", "polyp", "tumor")  # the CSV columns; also the order of the list files [?]
SPLIT_CSVS = {"endo_train.csv": "train", "endo_val.csv": "val"}
SPLIT_LISTS = {"trainval.txt": "trainval", "test_WithLabel.txt": "test"}
IMAGE_DIRS = ("images", "image")
STUDY_CHARS = 18  # 13333_2021.11_0003_55200215.png -> 13333_2021.11_0003 (the MedFM baseline's rule)
MEDFMC_NAME = re.compile(r"[0-9]{5}_[0-9]{4}\.[0-9]{2}_[0-9]{4}_[0-9]+")  # the names' shape, for audit
ONE, ZERO = {"1", "1.0"}, {"0", "0.0"}


def medfmc_patient(stem: str) -> str:
    """The study (patient) id: the first 18 characters of the file name."""
    return stem[:STUDY_CHARS]


def label_of(flags: dict[str, bool]) -> str:
    """Present findings sorted and joined with '|', or ``normal`` when none is present."""
    return "|".join(sorted(f for f, on in flags.items() if on)) or "normal"


@dataclass
class Table:
    """The labels of one folder's images, from its CSVs (first) and list files."""

    folder: Path
    rows: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # name -> (label, split, file)
    bad: dict[str, str] = field(default_factory=dict)  # name -> rejection reason
    seen: set[str] = field(default_factory=set)

    @property
    def files(self) -> str:
        present = [n for n in (*SPLIT_CSVS, *SPLIT_LISTS) if (self.folder / n).is_file()]
        return " or ".join(present)

    def add(self, name: str, label: str, split: str, file: str) -> None:
        if name in self.bad:
            return
        if name in self.rows and self.rows[name][1:] != (split, file):
            self.bad[name] = f"listed in both {self.rows[name][2]} and {file}"
        elif name in self.rows and self.rows[name][0] != label:
            self.bad[name] = f"listed twice in {file} with different labels"
        else:
            self.rows[name] = (label, split, file)

    def read_csv(self, file: Path, split: str) -> None:
        df = read_table(file, "MedFMC label file")
        column = {c.lower(): c for c in df.columns}
        image = next((column[c] for c in ("img_id", *PATH_COLUMNS) if c in column), None)
        missing = [f for f in FINDINGS if f not in column]
        if image is None or missing:
            raise ValueError(
                f"{file}: expected columns img_id and {', '.join(FINDINGS)}; "
                f"missing {(['img_id'] if image is None else []) + missing}, found {list(df.columns)}"
            )
        for index, row in df.iterrows():
            self.parse(row[image], [(f, row[column[f]]) for f in FINDINGS], split, f"{file.name} row {index + 2}")

    def read_list(self, file: Path, split: str) -> None:
        for number, line in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{file.name} line {number}"
            if self.rows.get(Path(fields[0]).name, ("", "", ""))[2] in SPLIT_CSVS:  # the CSVs win
                continue
            if len(fields) != 1 + len(FINDINGS):
                self.bad.setdefault(Path(fields[0]).name, f"{where}: expected a name and {len(FINDINGS)} 0/1 values")
                continue
            self.parse(fields[0], list(zip(FINDINGS, fields[1:])), split, where)

    def parse(self, path: str, values: list[tuple[str, str]], split: str, where: str) -> None:
        name = Path(path.replace("\\", "/")).name
        for finding, value in values:
            if value not in ONE | ZERO:
                self.bad.setdefault(name, f"{where}: {finding} is {value!r}, not 0 or 1")
                return
        self.add(name, label_of({f: v in ONE for f, v in values}), split, where.split(" ")[0])


def table_folders(root: Path) -> list[Path]:
    """Folders in ``root`` or up to two levels below (``MedFMC_train/endo``) holding label files."""
    folders = [root] + [root / c for c in child_dirs(root)]
    folders += [f / c for f in folders[1:] for c in child_dirs(f) if c not in IMAGE_DIRS]
    names = (*SPLIT_CSVS, *SPLIT_LISTS)
    return [f for f in folders if any((f / n).is_file() for n in names)]


def read_tables(folder: Path) -> Table:
    table = Table(folder)
    for name, split in SPLIT_CSVS.items():
        if (folder / name).is_file():
            table.read_csv(folder / name, split)
    for name, split in SPLIT_LISTS.items():
        if (folder / name).is_file():
            table.read_list(folder / name, split)
    return table


@register
class MedFMCEndo(Adapter):
    name = "medfmc-endo"
    layout = (
        "images/<img_id>.png (or image/ [3]) + endo_train.csv, endo_val.csv beside it, e.g. "
        "MedFMC_train/endo/ and MedFMC_val/endo/ below SRC; optional trainval.txt / test_WithLabel.txt"
    )
    label_rule = (
        "the findings whose 0/1 column (ulcer, erosion, polyp, tumor, found by name) is 1, sorted and "
        "joined with '|' (e.g. erosion|polyp), or 'normal' when all four are 0; an image only in a list "
        "file ('name.png 0 1 0 0') reads its values in the column order ulcer, erosion, polyp, tumor. "
        "An image listed nowhere, a listed image that is missing, or a value other than 0/1 is rejected"
    )
    patient_rule = (
        "the study id: the first 18 characters of the file name (13333_2021.11_0003_55200215.png -> 13333_2021.11_0003)"
    )
    split_rule = (
        "train or val from the CSV that lists the image (endo_train.csv, endo_val.csv); an image only "
        "in trainval.txt or test_WithLabel.txt: trainval or test"
    )
    labels = tuple(sorted((*FINDINGS, "normal")))
    evidence = {"layout": "3", "label": "3", "patient": "V", "split": "3"}
    signature = "endo_train.csv, endo_val.csv, trainval.txt or test_WithLabel.txt in SRC or up to two folders below"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        if labels is not None:
            folder = labels if labels.is_dir() else labels.parent
            self.fixed: Table | None = read_tables(folder)
            if not self.fixed.files:
                raise FileNotFoundError(f"no {', '.join((*SPLIT_CSVS, *SPLIT_LISTS))} in --labels folder {folder}")
            self.tables = {folder: self.fixed}
        else:
            self.fixed = None
            self.tables = {folder: read_tables(folder) for folder in table_folders(root)}

    @classmethod
    def detect(cls, root: Path) -> str | None:
        found = table_folders(root)
        if not found:
            return None
        folder = found[0]
        names = [n for n in (*SPLIT_CSVS, *SPLIT_LISTS) if (folder / n).is_file()]
        rel = folder.relative_to(root).as_posix()
        return f"{'' if rel == '.' else rel + '/'}{names[0]}"

    def scan(self) -> Iterator[Entry]:
        yield from super().scan()
        for table in self.tables.values():
            images = next(
                (table.folder / d for d in IMAGE_DIRS if (table.folder / d).is_dir()), table.folder / "images"
            )
            yield from missing_listed(images, {n: row[2] for n, row in table.rows.items()}, table.bad, table.seen)

    def record(self, entry: FileEntry) -> Entry:
        if len(entry.parts) < 2 or entry.parts[-2] not in IMAGE_DIRS:
            return self.misplaced(entry)
        table = self.fixed or self.tables.get(entry.file.parent.parent)
        if table is None:
            return Rejection(
                str(entry.file),
                "no endo_train.csv, endo_val.csv, trainval.txt or test_WithLabel.txt beside this images folder",
            )
        name = entry.parts[-1]
        table.seen.add(name)
        if name in table.bad:
            return Rejection(str(entry.file), table.bad[name])
        if name not in table.rows:
            return Rejection(str(entry.file), f"not listed in {table.files}")
        label, split, _ = table.rows[name]
        return ImageRecord(entry.file, entry.rel, label, medfmc_patient(entry.stem), split)

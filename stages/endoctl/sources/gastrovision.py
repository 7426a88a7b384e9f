"""GastroVision: ``<Class>/<uuid>.jpg`` (27 classes, names with spaces), official split CSVs optional."""

from __future__ import annotations

from pathlib import Path

from endoctl.io import read_csv
from endoctl.sources.base import Adapter, FileEntry, ImageRecord, Rejection, child_dirs, register

OFFICIAL_SPLITS = ("train", "validate", "test")
CLASSES = (
    "Accessory tools",
    "Angiectasia",
    "Barrett's esophagus",
    "Blood in lumen",
    "Cecum",
    "Colon diverticula",
    "Colon polyps",
    "Colorectal cancer",
    "Duodenal bulb",
    "Dyed-lifted-polyps",
    "Dyed-resection-margins",
    "Erythema",
    "Esophageal varices",
    "Esophagitis",
    "Gastric polyps",
    "Gastroesophageal_junction_normal z-line",
    "Ileocecal valve",
    "Mucosal inflammation large bowel",
    "Normal esophagus",
    "Normal mucosa and vascular pattern in the large bowel",
    "Normal stomach",
    "Pylorus",
    "Resected polyps",
    "Resection margins",
    "Retroflex rectum",
    "Small bowel_terminal ileum",
    "Ulcer",
)


@register
class GastroVision(Adapter):
    name = "gastrovision"
    layout = "<Class>/<uuid>.jpg"
    label_rule = "the class folder name (e.g. 'Colon polyps', 'Small bowel_terminal ileum')"
    split_rule = (
        "train/validate/test from the official train.csv, validate.csv, test.csv "
        "(Filename column) found in --labels DIR or SRC"
    )
    labels = CLASSES
    evidence = {"layout": "?", "label": "V", "split": "V"}
    signature = "two or more of GastroVision's 27 class folders (e.g. 'Colon polyps')"

    @classmethod
    def detect(cls, root: Path) -> str | None:
        known = [d for d in child_dirs(root) if d in CLASSES]
        return f"{known[0]}/, {known[1]}/" if len(known) >= 2 else None

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        super().__init__(root, labels)
        folder = root if labels is None else labels.parent if labels.is_file() else labels
        if not folder.is_dir():
            raise FileNotFoundError(f"--labels folder of split CSVs not found: {labels}")
        self.split: dict[str, str] = {}
        for name in OFFICIAL_SPLITS:
            csv = folder / f"{name}.csv"
            if csv.is_file():
                for filename in read_csv(csv)["Filename"]:
                    self.split[filename] = name

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        if len(entry.parts) != 2:
            return self.misplaced(entry)
        split = self.split.get(entry.parts[1], "")
        return ImageRecord(entry.file, entry.rel, entry.parts[0], official_split=split)

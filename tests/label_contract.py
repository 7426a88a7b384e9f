"""Every label string the ingest adapters of the EndoExtend24 sources emit (the ``label`` column;
several labels of one image are sorted and joined with '|'), per ``--format``.

Shared by the taxonomy tests (every string is mapped) and the split tests (a manifest holding all
of them splits with no unknown label).
"""

from __future__ import annotations

from itertools import combinations

ERS_CODES = (
    [f"c{i:02d}" for i in range(1, 35)]
    + [f"g{i:02d}" for i in range(1, 71)]
    + [f"h{i:02d}" for i in range(1, 8)]
    + ["b01", "b02"]
    + [f"q{i:02d}" for i in range(1, 11)]
)
MEDFMC_FINDINGS = ["erosion", "polyp", "tumor", "ulcer"]

CONTRACT: dict[str, list[str]] = {
    "ers": ERS_CODES,
    "limuc": ["Mayo 0", "Mayo 1", "Mayo 2", "Mayo 3"],
    "medfmc-endo": ["normal"] + ["|".join(c) for k in range(1, 5) for c in combinations(MEDFMC_FINDINGS, k)],
    "crohnipi": ["N", "E", "O", "AU", "U3-10", "U>10", "S"],
    "kid": [
        # KID 2 class folders
        "vascular",
        "inflammatory",
        "polypoid",
        "normal-esophagus",
        "normal-small-bowel",
        "normal-colon",
        "normal-stomach",
        "ampulla-of-vater",
        # KID 1 class folders, as spelled in the copies seen
        "Angioectasias",
        "active bleeding",
        "Lymphangiectasias",
        "Aphthae",
        "Chylous cysts",
        "Nodular lymphangiectasias",
        "Polypoid lesions",
        "Stenoses",
        "Ulcers",
        "Villous oedemas",
        "angioectasias",
        "aphthae",
        "chylous-cysts",
        "lymphangiectasias",
        "polypoid-lesions",
        "stenoses",
        "ulcers",
        "villous-oedemas",
        "bleeding",
        # flat file-name stems (CE24's KID copies)
        "normaleso",
        "normalcolon",
        "normalsb",
        "angioectasia",
        "lymphangiectasia",
    ],
    "see-ai": [
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
        "normal",
    ],
    "hyperkvasir": [
        # labeled-images/<tract>/<category>/<finding>/ folders
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
        # official_splits/{2,5}_fold_split.csv class names where they differ
        "hemorroids",
        "normal-cecum",
        "normal-pylorus",
        "normal-z-line",
        "oesophagitis-a",
        "oesophagitis-b-d",
        "polyp",
        "short-segment-barretts",
    ],
}

# Multi-label rows as the multi-label adapters write them (sorted, '|'-joined).
MULTI = {
    "ers": ["c01|c02|h01", "c22|h01", "b01|g19", "c20|q02", "q02|q05", "h01|q07", "c05|c22|g51"],
    "see-ai": ["erosion|erythema", "bleeding|polyp-like", "SMT|vein", "angiodysplasia|erosion|foreign body"],
}


def every_label() -> list[tuple[str, str]]:
    """(format, label) for every single label of the contract plus the multi-label rows."""
    rows = [(fmt, label) for fmt, labels in CONTRACT.items() for label in labels]
    return rows + [(fmt, label) for fmt, labels in MULTI.items() for label in labels]

"""Class taxonomy: the packaged YAML validates and covers every label of the demo, of the real
label sets in ../shared and of the EndoExtend24 adapters' label contract (ERS codes, LIMUC, MedFMC,
CrohnIPI, KID 1/2, SEE-AI, HyperKvasir); map_labels' exclusion reasons, quality flags, the three
several-classes rules (exclude, priority, multi-label), unknown-label errors, custom taxonomies
(version 1 and 2) and their validation errors, and (hypothesis) that no row is ever lost."""

from __future__ import annotations

import importlib.resources
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st
from label_contract import CONTRACT, ERS_CODES, every_label

from endoctl.ingest import ingest
from endoctl.sources import REGISTRY, get_adapter
from endoctl.sources.ce24 import CLASSES as CE24_CLASS_ORDER
from endoctl.synth import CE24_CLASS_OF, KC_FINDINGS, KID_CLASSES, SynthConfig, synth
from endoctl.taxonomy import (
    DEFAULT_TAXONOMY,
    FINDING_NAME,
    QUALITY_ONLY,
    UNLABELLED,
    Taxonomy,
    load_taxonomy,
    map_labels,
)

CE24_ORDER = list(CE24_CLASS_ORDER)  # the adapter's official order: the taxonomy must agree
DATASETS = {
    "ce24",
    "kvasir-capsule",
    "kid",
    "see-ai",
    "hyperkvasir",
    "kvasir-v2",
    "gastrovision",
    "ers",
    "limuc",
    "medfmc-endo",
    "crohnipi",
}
KC_FOLDERS = [
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
]
HYPERKVASIR = [
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
    # official_splits/*_fold_split.csv spellings
    "hemorroids",
    "normal-cecum",
    "normal-pylorus",
    "normal-z-line",
    "oesophagitis-a",
    "oesophagitis-b-d",
    "polyp",
    "short-segment-barretts",
]
KVASIR_V2 = [
    "dyed-lifted-polyps",
    "dyed-resection-margins",
    "esophagitis",
    "normal-cecum",
    "normal-pylorus",
    "normal-z-line",
    "polyps",
    "ulcerative-colitis",
]
SEE_AI = [
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
]
KID_REAL = [
    "vascular",
    "inflammatory",
    "polypoid",
    "lymphangiectasia",
    "normal-small-bowel",
    "normal-esophagus",
    "normal-stomach",
    "normal-colon",
    "ampulla-of-vater",
]
FINDINGS_EXPECTED = [
    "angiectasia",
    "blood-fresh",
    "blood-hematin",
    "erosion",
    "erythema",
    "ulcer",
    "polyp",
    "lymphangiectasia",
    "lymphoid-follicle",
    "foreign-body",
    "worms",
    "normal-clean-mucosa",
    "ileocecal-valve",
    "pylorus",
    "ampulla-of-vater",
    "reduced-mucosal-view",
    "stenosis",
    "submucosal-tumor",
    "diverticulum",
    "vein",
    "esophagitis",
    "barretts",
    "z-line",
    "cecum",
    "retroflex-rectum",
    "ulcerative-colitis",
    "dyed-lifted-polyps",
    "dyed-resection-margins",
    "hemorrhoids",
    "bbps-0-1",
    "vascular-lesion",
    "inflammatory-lesion",
    "protruding-lesion",
    "normal",
]


PACKAGED = load_taxonomy()  # loaded once: hypothesis examples must not re-read the YAML


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return PACKAGED


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"{s}/{i}.jpg" for i, (s, _) in enumerate(rows)],
            "source": [s for s, _ in rows],
            "label": [lab for _, lab in rows],
        }
    )


def one(tax: Taxonomy, source: str, label: str, target: str, **kw) -> pd.Series:
    return map_labels(frame([(source, label)]), tax, target, **kw).iloc[0]


# ----------------------------------------------------------------------------- the packaged taxonomy


def test_packaged_taxonomy_loads_and_validates(tax):
    assert DEFAULT_TAXONOMY.is_file()
    assert importlib.resources.files("endoctl").joinpath("taxonomies/taxonomy-v2.yaml").is_file()
    assert tax.version == 2
    # every ERS code (123) is a finding of its own; other datasets add their own
    assert 123 <= len(tax.findings) <= 250
    assert all(FINDING_NAME.fullmatch(f) and d.strip() for f, d in tax.findings.items())
    assert set(FINDINGS_EXPECTED) <= set(tax.findings)
    assert set(tax.sources) == DATASETS
    assert DATASETS <= set(REGISTRY), "taxonomy dataset keys are ingest --format names"
    assert {"ce24", "ee24-ce24", "ee24", "coarse"} <= set(tax.targets)
    assert tax.quality and tax.quality <= set(tax.findings)
    for dataset, table in tax.sources.items():
        for label, findings in table.items():
            assert findings and findings == sorted(set(findings)), (dataset, label)
            assert set(findings) <= set(tax.findings), (dataset, label)
    for target in tax.targets.values():
        assert target.description
        assert set(target.map) <= set(tax.findings)
        assert set(target.map.values()) <= set(target.classes)
        assert set(target.map.values()) == set(target.classes), f"{target.name}: a class no finding reaches"


def test_real_label_spellings_are_mapped(tax):
    assert sorted(tax.sources["ce24"]) == sorted(CE24_ORDER)
    assert set(KC_FOLDERS) <= set(tax.sources["kvasir-capsule"])
    assert {"Foreign Body", "Reduced Mucosal View", "Ampulla of Vater"} <= set(tax.sources["kvasir-capsule"])
    assert sorted(tax.sources["hyperkvasir"]) == sorted(HYPERKVASIR)
    assert sorted(tax.sources["kvasir-v2"]) == sorted(KVASIR_V2)
    assert set(SEE_AI) <= set(tax.sources["see-ai"])
    assert set(KID_REAL) <= set(tax.sources["kid"])
    assert len(tax.sources["gastrovision"]) == 27


def test_targets_ce24_and_ee24(tax):
    ce24, ee24 = tax.targets["ce24"], tax.targets["ee24-ce24"]
    assert ce24.classes == CE24_ORDER == ee24.classes
    assert ce24.sources == ["ce24"] and ee24.sources is None
    assert (ce24.several, ee24.several) == ("exclude", "priority")
    assert ee24.priority[-1] == "Normal" and sorted(ee24.priority) == sorted(CE24_ORDER)
    examples = [
        ("hyperkvasir", "polyps", "polyp"),
        ("gastrovision", "Colon polyps", "polyp"),
        ("kvasir-capsule", "Blood - fresh", "bleeding"),
        ("kvasir-capsule", "Ileocecal valve", "normal"),
        ("kvasir-capsule", "Pylorus", "normal"),
        ("kvasir-capsule", "Normal clean mucosa", "normal"),
        ("see-ai", "angiodysplasia", "angioectasia"),
        ("ce24", "Foreign Body", "foreign body"),
        ("kid", "normal-small-bowel", "normal"),
    ]
    for source, label, cls in examples:
        row = one(tax, source, label, "ee24-ce24")
        assert (row.target_class, row.excluded) == (cls, ""), (source, label)
    # findings outside the 10 classes are excluded, and the reason names them
    row = one(tax, "hyperkvasir", "esophagitis-a", "ee24-ce24")
    assert row.target_class == "" and "esophagitis" in row.excluded and "esophagitis-grade-a" in row.excluded


def test_coarse_findings_are_not_guessed_into_fine_classes(tax):
    for label, finding in [("vascular", "vascular-lesion"), ("inflammatory", "inflammatory-lesion")]:
        for target in ("ee24-ce24",):
            row = one(tax, "kid", label, target)
            assert row.target_class == "" and finding in row.excluded and row.findings == finding
        assert one(tax, "kid", label, "coarse").target_class == label
    assert one(tax, "kid", "polypoid", "coarse").target_class == "protruding"


def test_class_mapping_format(tax):
    mapping = tax.targets["ce24"].class_mapping()
    assert mapping == {name.lower(): i for i, name in enumerate(CE24_ORDER)}
    assert mapping["angioectasia"] == 0 and mapping["foreign body"] == 4 and mapping["worms"] == 9
    assert list(mapping.values()) == list(range(10))
    assert json.loads(json.dumps(mapping)) == mapping
    assert tax.targets["coarse"].class_mapping()["normal"] == 0


# ----------------------------------------------------------------------------- demo data


@pytest.fixture(scope="module")
def demo_manifests(tmp_path_factory) -> dict[str, pd.DataFrame]:
    root = tmp_path_factory.mktemp("taxonomy-demo")
    synth(
        root / "raw",
        SynthConfig(videos=2, frames_per_video=6, kid_patients=2, kid_images_per_patient=3, ce24_test_videos=1),
    )
    out = {}
    for folder, fmt in [("kvasir_capsule", "kvasir-capsule"), ("kid", "kid"), ("ce24", "ce24")]:
        out[fmt] = ingest(get_adapter(fmt, root / "raw" / folder).scan(), fmt, root).manifest
    return out


def test_every_demo_label_is_mapped(tax, demo_manifests):
    manifest = pd.concat(list(demo_manifests.values()), ignore_index=True)
    for target in tax.targets:
        out = map_labels(manifest, tax, target)
        assert len(out) == len(manifest)
        assert ((out.target_class != "") ^ (out.excluded != "")).all()
    # every label the demo writer can produce, not only those this small draw happened to use
    assert set(KC_FINDINGS) <= set(tax.sources["kvasir-capsule"])
    assert {cls for _, cls in KC_FINDINGS.values()} <= set(tax.sources["kvasir-capsule"])
    assert set(KID_CLASSES.values()) <= set(tax.sources["kid"])
    assert set(CE24_CLASS_OF.values()) <= set(tax.sources["ce24"])


def test_demo_outcomes(tax, demo_manifests):
    ce24 = map_labels(demo_manifests["ce24"], tax, "ce24")
    assert (ce24.excluded == "").all(), "every demo CE24 image is labelled (test truth xlsx included)"
    assert set(ce24.target_class) <= set(tax.targets["ce24"].class_mapping())
    kc = map_labels(demo_manifests["kvasir-capsule"], tax, "ce24")
    assert (kc.target_class == "").all()
    assert kc.excluded.str.contains("source 'kvasir-capsule' not used by target 'ce24'").all()
    kid = map_labels(demo_manifests["kid"], tax, "ee24-ce24")
    coarse = kid.label.isin(["vascular", "inflammatory"])
    assert (kid.target_class[coarse] == "").all() and (kid.excluded[coarse] != "").all()
    assert (kid.target_class[kid.label == "normal-small-bowel"] == "normal").all()


# ----------------------------------------------------------------------------- real label sets (../shared)


def test_gastrovision_classes_covered(tax):
    meta = pd.read_csv(shared_path("gastrovision", "GastroVision_metadata.csv"), dtype=str)
    classes = sorted(meta["Class"].unique())
    assert len(classes) == 27
    assert classes == sorted(tax.sources["gastrovision"])
    out = map_labels(pd.DataFrame({"source": "gastrovision", "label": meta["Class"]}), tax, "ee24-ce24")
    assert (out.loc[meta["Class"] == "Colon polyps", "target_class"] == "polyp").all()


def test_ce24_classes_covered(tax):
    training = pd.read_excel(shared_path("ce24", "training_data.xlsx"), nrows=5)
    classes = [c for c in training.columns if c not in ("image_path", "Dataset")]
    assert classes == CE24_ORDER, "the official column order"
    test = pd.read_excel(shared_path("ce24", "test_data.xlsx"), dtype=str)
    labels = sorted(set(classes) | set(test["class_label"]))
    for target in ("ce24", "ee24-ce24"):
        out = map_labels(pd.DataFrame({"source": "ce24", "label": labels}), tax, target)
        assert (out.excluded == "").all(), out[out.excluded != ""]
        assert list(out.target_class) == [c.lower() for c in labels]


def test_kvasir_capsule_metadata_covered(tax):
    meta = pd.read_csv(shared_path("kvasir_capsule", "metadata.csv"), sep=";", dtype=str)
    values = sorted(meta["finding_class"].dropna().unique())
    assert "Foreign Body" in values  # metadata spelling; the folder says 'Foreign body'
    out = map_labels(pd.DataFrame({"source": "kvasir-capsule", "label": values + KC_FOLDERS}), tax, "coarse")
    assert len(out) == len(values) + len(KC_FOLDERS)
    splits = pd.concat(
        [pd.read_csv(shared_path("kvasir_capsule", f"official_split_{k}.csv"), dtype=str) for k in (0, 1)]
    )
    map_labels(pd.DataFrame({"source": "kvasir-capsule", "label": splits["label"].unique()}), tax, "coarse")


# ----------------------------------------------------------------------------- EndoExtend24 sources


def test_every_contract_label_is_mapped(tax):
    """Every label string the adapters emit is known, under every target (no unknown-label error)."""
    rows = every_label()
    df = frame(rows)
    for dataset, labels in CONTRACT.items():
        assert set(labels) <= set(tax.sources[dataset]) | {label for label in labels if "|" in label}, dataset
    for target in tax.targets:
        out = map_labels(df, tax, target)
        assert len(out) == len(rows) and ((out.target_class != "") ^ (out.excluded != "")).all()


def test_adapter_vocabularies_are_covered(tax):
    """Every vocabulary an adapter declares (``Adapter.labels``) is covered by the taxonomy."""
    declared = {name: adapter.labels for name, adapter in REGISTRY.items() if getattr(adapter, "labels", None)}
    assert {"ers", "limuc", "medfmc-endo", "crohnipi", "kid", "see-ai", "hyperkvasir"} <= set(declared)
    for name, labels in declared.items():
        assert name in tax.sources, f"--format {name} declares labels but is not a taxonomy dataset"
        assert set(labels) <= set(tax.sources[name]), (name, sorted(set(labels) - set(tax.sources[name])))


def test_every_ers_code_and_the_quality_flags(tax):
    ers = tax.sources["ers"]
    assert sorted(ers) == sorted(ERS_CODES) and len(ers) == 123
    unnamed = {code for code, findings in ers.items() if findings == [f"ers-{code}"]}
    assert all(tax.findings[f"ers-{code}"].startswith(f"ERS code {code}:") for code in unnamed)
    # the official mapper's groups reach their findings
    groups = {
        "polyp": ["c22", "g14", "g31", "g45"],
        "ulcer": ["c26", "c27", "c32", "g18", "g19", "g50", "g51", "g52"],
        "blood": ["b01", "c02", "c05", "g05", "g08", "g19", "g39", "g51"],
    }
    for finding, codes in groups.items():
        assert all(finding in tax.general(ers[code]) for code in codes), finding
    assert all(ers[code] == [f"ers-{code}"] for code in ERS_CODES)  # each code its own finding (ers-123)
    assert [tax.general(ers[f"q{i:02d}"]) for i in (2, 5, 7)] == [["blur"]] * 3
    general_quality = {f for i in range(1, 11) for f in tax.general(ers[f"q{i:02d}"])}
    assert general_quality == {f for f in tax.quality if f not in tax.refines}
    assert {f"ers-q{i:02d}" for i in range(1, 11)} <= tax.quality  # refinements of a quality flag are ones
    assert all(tax.general(ers[f"h{i:02d}"]) == ["normal"] for i in range(1, 8))
    assert tax.general(ers["b02"]) == ["normal"]
    ee24 = map_labels(frame([("ers", code) for code in ERS_CODES]), tax, "ee24-ce24").set_index("label")
    assert (ee24.loc[[f"h{i:02d}" for i in range(1, 8)] + ["b02"], "target_class"] == "normal").all()
    assert ee24.loc["b01", "target_class"] == "bleeding" and ee24.loc["c22", "target_class"] == "polyp"
    quality = ee24.loc[[f"q{i:02d}" for i in range(1, 11)]]
    assert (quality.target_class == "").all() and quality.excluded.str.startswith(QUALITY_ONLY + ": ").all()
    assert ee24.loc["q02", "excluded"] == "quality flag only: blur"
    # a quality flag beside a finding neither decides nor blocks the class, and stays in findings
    row = one(tax, "ers", "c22|q02", "ee24-ce24")
    assert (row.findings, row.target_class, row.excluded) == ("blur|polyp", "polyp", "")
    assert one(tax, "ers", "h01|q07", "ee24").target_class == "normal"
    assert one(tax, "ers", "q02|q05", "ee24").excluded == "quality flag only: blur"


def test_worms_is_one_marked_ers_entry(tax):
    """Which ERS code is worms is unknown: exactly one code maps to worms, between the marker comments."""
    assert [code for code, findings in tax.sources["ers"].items() if "worms" in tax.general(findings)] == ["c20"]
    text = DEFAULT_TAXONOMY.read_text(encoding="utf-8")
    block = text[text.index("# >>> WORMS") : text.index("# <<< WORMS")]
    assert "ASSUMPTION" in block and re.findall(r"^\s+ers-(\w+): worms$", block, re.M) == ["c20"]
    assert one(tax, "ers", "c20", "ee24-ce24").target_class == "worms"
    assert one(tax, "ers", "c20", "ce24").excluded.startswith("source 'ers' not used")


@pytest.mark.parametrize(
    "source, label, expected",
    [
        # LIMUC: Mayo >= 1 is Ulcer, Mayo 0 (inactive colitis) is not normal
        ("limuc", "Mayo 0", "no finding maps"),
        ("limuc", "Mayo 1", "ulcer"),
        ("limuc", "Mayo 2", "ulcer"),
        ("limuc", "Mayo 3", "ulcer"),
        # CrohnIPI: normal, erythema, the three ulcer codes; oedema and stenosis are outside CE24's classes
        ("crohnipi", "N", "normal"),
        ("crohnipi", "E", "erythema"),
        ("crohnipi", "AU", "ulcer"),
        ("crohnipi", "U3-10", "ulcer"),
        ("crohnipi", "U>10", "ulcer"),
        ("crohnipi", "O", "no finding maps"),
        ("crohnipi", "S", "no finding maps"),
        # MedFMC: multi-label columns; tumour is not a CE24 class, the priority list resolves the rest
        ("medfmc-endo", "normal", "normal"),
        ("medfmc-endo", "tumor", "no finding maps"),
        ("medfmc-endo", "tumor|ulcer", "ulcer"),
        ("medfmc-endo", "erosion|ulcer", "ulcer"),
        ("medfmc-endo", "erosion|polyp|tumor|ulcer", "polyp"),
        # HyperKvasir: every ulcerative-colitis grade is Ulcer (the paper's 851), official-split spellings
        ("hyperkvasir", "ulcerative-colitis-grade-0-1", "ulcer"),
        ("hyperkvasir", "ulcerative-colitis-grade-3", "ulcer"),
        ("hyperkvasir", "normal-pylorus", "normal"),
        ("hyperkvasir", "polyp", "polyp"),
        ("hyperkvasir", "oesophagitis-a", "no finding maps"),
        # KID 1 / KID 2
        ("kid", "Angioectasias", "angioectasia"),
        ("kid", "active bleeding", "bleeding"),
        ("kid", "Aphthae", "ulcer"),
        ("kid", "Nodular lymphangiectasias", "lymphangiectasia"),
        ("kid", "Polypoid lesions", "polyp"),
        ("kid", "normalsb", "normal"),
        ("kid", "Chylous cysts", "no finding maps"),
        ("kid", "vascular", "no finding maps"),
        # SEE-AI, single and multi-label (priority: an object in the lumen first, erythema late)
        ("see-ai", "angiodysplasia", "angioectasia"),
        ("see-ai", "lymph follicle", "no finding maps"),
        ("see-ai", "erosion|erythema", "erosion"),
        ("see-ai", "angiodysplasia|erosion|foreign body", "foreign body"),
        ("see-ai", "bleeding|polyp-like", "bleeding"),
        # ERS: a lesion beside healthy mucosa is the lesion; ulcer with bleeding is Bleeding
        ("ers", "c22|h01", "polyp"),
        ("ers", "b01|g19", "bleeding"),
        ("ers", "c01", "no finding maps"),
    ],
)
def test_ee24_ce24_mappings_of_the_new_sources(tax, source, label, expected):
    row = one(tax, source, label, "ee24-ce24")
    if expected == "no finding maps":
        assert row.target_class == "" and row.excluded.startswith("no finding maps into target 'ee24-ce24'")
    else:
        assert (row.target_class, row.excluded) == (expected, "")


def test_several_classes_rules(tax):
    """The same labels under each rule: priority (first in the list wins), multi-label, exclude."""
    row = one(tax, "ers", "c05|c22|h01", "ee24-ce24")  # c05 -> blood + colorectal-cancer
    assert (row.target_class, row.candidates) == ("bleeding", "bleeding|normal|polyp")
    row = one(tax, "ers", "c05|c22|h01", "ee24")
    assert row.target_class == row.candidates == "normal|blood|polyp|colorectal-cancer"  # findings order
    row = one(tax, "ers", "c05|c22|h01", "coarse")
    assert row.target_class == "" and row.excluded.startswith("ambiguous: findings map to several 'coarse' classes")
    assert row.candidates == "normal|vascular|protruding"
    # graded labels keep the generic and the specific finding as classes of the multi-label target
    assert one(tax, "hyperkvasir", "oesophagitis-a", "ee24").target_class == "esophagitis|esophagitis-grade-a"
    assert one(tax, "ce24", "Polyp", "ee24-ce24").candidates == "polyp"


def test_every_finding_target(tax):
    ee24 = tax.targets["ee24"]
    assert ee24.multi_label and ee24.sources is None
    assert ee24.classes == [f for f in tax.findings if f not in tax.quality and f not in tax.refines]
    assert ee24.map == {f: f for f in ee24.classes}
    assert not set(ee24.classes) & tax.quality
    assert ee24.class_mapping() == {f: i for i, f in enumerate(ee24.classes)}


def test_paper_reference_counts(tax):
    ref = tax.targets["ee24-ce24"].reference
    assert ref is not None and "EndoExtend24" in ref.source
    assert ref.images == sum(ref.totals.values()) == 130205
    assert ref.totals["Worms"] == ref.datasets["ers"]["Worms"] == 201  # all worms come from ERS
    assert ref.datasets["limuc"] == {"Normal": 0, "Ulcer": 5166}
    assert ref.datasets["crohnipi"] == {"Normal": 2124, "Ulcer": 956, "Erythema": 125}
    assert ref.datasets["hyperkvasir"] == {"Ulcer": 851}
    assert [t.name for t in tax.targets.values() if t.reference] == ["ee24-ce24"]


# ----------------------------------------------------------------------------- map_labels behaviour


def test_exclusion_reasons(tax):
    out = map_labels(
        frame(
            [
                ("ce24", ""),  # unlabelled
                ("kvasir-capsule", "Polyp"),  # source not used by the target
                ("ce24", "Polyp"),  # kept
            ]
        ),
        tax,
        "ce24",
    )
    assert list(out.excluded[:2]) == [UNLABELLED, "source 'kvasir-capsule' not used by target 'ce24' (uses: ce24)"]
    assert (out.target_class[2], out.excluded[2]) == ("polyp", "")
    row = one(tax, "kvasir-capsule", "Reduced mucosal view", "ee24-ce24")
    assert row.excluded == "no finding maps into target 'ee24-ce24': reduced-mucosal-view"
    assert one(tax, "hyperkvasir", "", "coarse").excluded == UNLABELLED
    nan = map_labels(pd.DataFrame({"source": ["ce24"], "label": [None]}), tax, "ce24").iloc[0]
    assert (nan.findings, nan.target_class, nan.excluded) == ("", "", UNLABELLED)


def test_ambiguity_and_multi_label(tax):
    row = one(tax, "see-ai", "bleeding|erosion", "coarse")  # coarse: several_classes exclude
    assert row.target_class == "" and row.findings == "blood|erosion" and row.candidates == "vascular|inflammatory"
    assert (
        row.excluded.startswith("ambiguous")
        and "blood -> Vascular" in row.excluded
        and "erosion -> Inflammatory" in row.excluded
    )
    # findings of one label that land in the same class are not ambiguous
    row = one(tax, "see-ai", " erosion | erythema ", "coarse")
    assert (row.target_class, row.findings, row.candidates) == ("inflammatory", "erosion|erythema", "inflammatory")
    # findings outside the target are ignored when another finding maps
    row = one(tax, "see-ai", "vein|erosion|vein", "ee24-ce24")
    assert (row.target_class, row.findings, row.excluded) == ("erosion", "erosion|vein", "")
    # one label, several findings
    row = one(tax, "hyperkvasir", "ulcerative-colitis-grade-2", "coarse")
    assert (row.findings, row.target_class) == ("ulcerative-colitis|ulcerative-colitis-grade-2", "inflammatory")


def test_formats_map_sources_to_datasets(tax):
    out = map_labels(
        frame([("kc-2021", "Foreign body"), ("ce24-official", "Worms")]),
        tax,
        "ce24",
        formats={"kc-2021": "kvasir-capsule", "ce24-official": "ce24"},
    )
    assert out.target_class[1] == "worms"
    assert out.excluded[0] == "source 'kc-2021' (dataset 'kvasir-capsule') not used by target 'ce24' (uses: ce24)"


def test_unknown_labels_are_one_error_listing_them(tax):
    rows = [("kid", f"mystery-{i:02d}") for i in range(25)] + [("kid", "vascular"), ("nowhere", "x|y")]
    rows += [("kid", "mystery-00")] * 3  # repeated: listed once
    with pytest.raises(ValueError) as info:
        map_labels(frame(rows), tax, "coarse")
    msg = str(info.value)
    assert msg.startswith("27 source label(s) not in the taxonomy")
    listed = re.findall(r"^  (.+)$", msg, re.M)
    assert len(listed) == 21 and listed[-1] == "... and 7 more"
    assert listed[:20] == sorted(listed[:20]) and listed[0] == "kid: mystery-00"
    assert "vascular" not in msg
    with pytest.raises(ValueError, match=r"nowhere: x  \[dataset not in the taxonomy\]"):
        map_labels(frame([("nowhere", "x|y")]), tax, "coarse")
    # unknown labels fail even when the target does not use that source
    with pytest.raises(ValueError, match="kvasir-capsule: Foreign Bodys"):
        map_labels(frame([("kvasir-capsule", "Foreign Bodys")]), tax, "ce24")
    # exact spelling: a case variant is not silently accepted
    with pytest.raises(ValueError, match="ce24: polyp"):
        map_labels(frame([("ce24", "polyp")]), tax, "ce24")


def test_unknown_target_and_missing_columns(tax):
    with pytest.raises(ValueError, match=r"unknown target 'ce42'; choose one of ce24, coarse, ee24, ee24-ce24"):
        map_labels(frame([("ce24", "Polyp")]), tax, "ce42")
    with pytest.raises(ValueError, match="no column"):
        map_labels(pd.DataFrame({"source": ["ce24"]}), tax, "ce24")


def test_rows_kept_in_order_and_input_untouched(tax):
    df = frame([("ce24", "Polyp"), ("kid", ""), ("kvasir-capsule", "Ulcer"), ("ce24", "Polyp")] * 3)
    df.index = [7, 3, 11, 0, 5, 2, 9, 1, 4, 8, 6, 10]
    df["extra"] = range(len(df))
    before = df.copy()
    out = map_labels(df, tax, "ee24-ce24")
    pd.testing.assert_frame_equal(df, before)
    assert list(out.index) == list(df.index)
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert list(out.columns[-4:]) == ["findings", "target_class", "excluded", "candidates"]


def test_speed_one_million_rows(tax):
    pairs = [(s, lab) for s in ("kvasir-capsule", "kid", "ce24") for lab in tax.sources[s]] + [("ce24", "")]
    pick = np.random.default_rng(0).integers(len(pairs), size=1_000_000)
    df = pd.DataFrame(
        {
            "source": np.array([p[0] for p in pairs], dtype=object)[pick],
            "label": np.array([p[1] for p in pairs], dtype=object)[pick],
        }
    )
    start = time.perf_counter()
    out = map_labels(df, tax, "ee24-ce24")
    assert time.perf_counter() - start < 2.0
    assert len(out) == 1_000_000


LABEL_POOL = (
    [("ce24", lab) for lab in CE24_ORDER]
    + [("kvasir-capsule", lab) for lab in KC_FOLDERS]
    + [
        ("kid", "vascular"),
        ("kid", "normal-small-bowel"),
        ("see-ai", "bleeding"),
        ("see-ai", "vein"),
        ("hyperkvasir", "esophagitis-a"),
        ("gastrovision", "Colon polyps"),
        ("ers", "c22"),
        ("ers", "h01"),
        ("ers", "b01"),
        ("ers", "q02"),
        ("ers", "q05"),
        ("ers", "g19"),
        ("ers", "c01"),
        ("crohnipi", "E"),
        ("crohnipi", "U>10"),
        ("limuc", "Mayo 0"),
        ("medfmc-endo", "tumor"),
        ("medfmc-endo", "ulcer"),
    ]
)


@st.composite
def manifests(draw) -> pd.DataFrame:
    rows = []
    for _ in range(draw(st.integers(0, 30))):
        source = draw(st.sampled_from(sorted({s for s, _ in LABEL_POOL})))
        labels = [lab for s, lab in LABEL_POOL if s == source]
        picked = draw(st.lists(st.sampled_from(labels), max_size=3))
        rows.append((source, "|".join(picked)))
    return frame(rows)


@settings(max_examples=80, deadline=None)
@given(manifests(), st.sampled_from(["ce24", "ee24-ce24", "coarse", "ee24"]))
def test_property_every_row_kept_exactly_one_outcome(df, target):
    tax = PACKAGED
    spec = tax.targets[target]
    out = map_labels(df, tax, target)
    assert list(out.image_id) == list(df.image_id) and list(out.index) == list(df.index)
    assert ((out.target_class != "") ^ (out.excluded != "")).all()
    kept = out.target_class[out.target_class != ""]
    parts = kept.str.split("|")
    assert set(parts.explode()) <= set(spec.class_mapping())
    assert (parts.str.len() == 1).all() or spec.multi_label
    # the class always comes from the candidates: all of them (multi-label) or one
    for cls, cand in zip(kept, out.candidates[kept.index]):
        assert cls == cand if spec.multi_label else cls in cand.split("|")
    assert (
        out.excluded[out.excluded.str.startswith("ambiguous")]
        .index.isin(out.index[out.candidates.str.contains("|", regex=False)])
        .all()
    )
    assert ((out.findings == "") == (df.label == "")).all()
    assert (
        out.excluded[df.label == ""].isin([UNLABELLED]) | out.excluded[df.label == ""].str.contains("not used")
    ).all()


# ----------------------------------------------------------------------------- custom taxonomies


MINIMAL = """\
version: 1
findings:
  polyp: A polyp.
  normal: Nothing found.
sources:
  mine:
    Polyp: polyp
    Both: [polyp, normal]
    Normal: normal
targets:
  two:
    description: Polyp or not.
    classes: [Normal, Polyp]
    map:
      normal: Normal
      polyp: Polyp
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_custom_taxonomy_override(tmp_path):
    tax = load_taxonomy(write(tmp_path, MINIMAL))
    assert set(tax.targets) == {"two"} and tax.sources["mine"]["Both"] == ["normal", "polyp"]
    out = map_labels(frame([("mine", "Polyp"), ("mine", "Both"), ("mine", "Normal")]), tax, "two")
    assert list(out.target_class) == ["polyp", "", "normal"]
    assert out.excluded[1].startswith("ambiguous")


MINIMAL_V2 = """\
version: 2
findings:
  polyp: A polyp.
  normal: Nothing found.
  blur: Blurred.
quality: [blur]
sources:
  mine:
    Polyp: polyp
    Normal: normal
    Blurry: blur
targets:
  two:
    description: Polyp or not.
    classes: [Normal, Polyp]
    several_classes: priority
    priority: [Polyp, Normal]
    map:
      normal: Normal
      polyp: Polyp
    reference:
      source: A paper.
      images: 5
      totals: {Normal: 3, Polyp: 2}
      datasets:
        mine: {Polyp: 2}
  all:
    description: Every finding.
    classes: every-finding
    several_classes: multi-label
"""


def test_custom_taxonomy_version_2(tmp_path):
    tax = load_taxonomy(write(tmp_path, MINIMAL_V2))
    assert tax.version == 2 and tax.quality == {"blur"}
    assert tax.targets["all"].classes == ["polyp", "normal"] and tax.targets["two"].priority == ["Polyp", "Normal"]
    out = map_labels(frame([("mine", "Normal|Polyp"), ("mine", "Blurry"), ("mine", "Blurry|Normal")]), tax, "two")
    assert list(out.target_class) == ["polyp", "", "normal"] and out.excluded[1] == "quality flag only: blur"
    out = map_labels(frame([("mine", "Normal|Polyp")]), tax, "all")
    assert out.target_class[0] == "polyp|normal"
    assert tax.targets["two"].reference.datasets == {"mine": {"Polyp": 2}}


# (text in the minimal file, replacement, expected problem)
V1_CASES = [
    ("    Polyp: polyp\n", "    Polyp: polypp\n", "sources.mine.'Polyp': unknown finding(s) 'polypp'"),
    ("      polyp: Polyp\n", "      polyp: Polyps\n", "targets.two.map.polyp: class 'Polyps' is not one"),
    ("      polyp: Polyp\n", "      polyp: Polyp\n      ulcer: Polyp\n", "targets.two.map.ulcer: unknown finding"),
    ("    Normal: normal\n", "    Normal: normal\n    Polyp: normal\n", "duplicate key 'Polyp' at line 10"),
    ("  normal: Nothing found.\n", "  normal: Nothing found.\n  polyp: Again.\n", "duplicate key 'polyp'"),
    ("version: 1\n", "version: 3\n", "version: must be one of [1, 2]"),
    (
        "    classes: [Normal, Polyp]\n",
        "    classes: [Normal, Polyp]\n    several_classes: priority\n",
        "targets.two.several_classes: unknown key (needs version: 2)",
    ),
    ("findings:\n", "quality: [normal]\nfindings:\n", "quality: unknown top-level key (needs version: 2)"),
    (
        "    classes: [Normal, Polyp]\n",
        "    classes: [Normal, Polyp]\n    sources: [yours]\n",
        "targets.two.sources: unknown dataset 'yours'",
    ),
    ("    classes: [Normal, Polyp]\n", "    classes: [Normal, Polyp, polyp]\n", "repeated class(es)"),
    ("  polyp: A polyp.\n", "  Polyp Big: A polyp.\n", "findings.Polyp Big: finding names are lower-case"),
    ("targets:\n", "extras: 1\ntargets:\n", "extras: unknown top-level key"),
    (
        "    description: Polyp or not.\n",
        "    description: Polyp or not.\n    mapp: {}\n",
        "targets.two.mapp: unknown key",
    ),
]
V2_CASES = [
    (
        "    several_classes: priority\n",
        "    several_classes: first\n",
        "targets.two.several_classes: must be one of exclude, priority, multi-label, got 'first'",
    ),
    ("    priority: [Polyp, Normal]\n", "    priority: [Polyp]\n", "targets.two.priority: must list every class"),
    (
        "    priority: [Polyp, Normal]\n",
        "    priority: [Polyp, Polyp, Normal]\n",
        "targets.two.priority: must list every class",
    ),
    ("    priority: [Polyp, Normal]\n", "", "targets.two.priority: must list every class"),
    (
        "    several_classes: multi-label\n",
        "    several_classes: multi-label\n    priority: [polyp, normal]\n",
        "targets.all.priority: only used with several_classes: priority (here multi-label)",
    ),
    ("    classes: [Normal, Polyp]\n", "    classes: [Normal, Polyp|Normal]\n", "contains '|'"),
    (
        "    classes: every-finding\n",
        "    classes: every-finding\n    map: {polyp: polyp}\n",
        "targets.all.map: must be left out with classes: every-finding",
    ),
    ("quality: [blur]\n", "quality: [blurry]\n", "quality.blurry: unknown finding"),
    (
        "      polyp: Polyp\n",
        "      polyp: Polyp\n      blur: Normal\n",
        "targets.two.map.blur: is a quality flag: quality flags never decide a class",
    ),
    (
        "      totals: {Normal: 3, Polyp: 2}\n",
        "      totals: {Normal: 3, Polyp: 1}\n",
        "targets.two.reference.totals: add up to 4, not images: 5",
    ),
    (
        "      totals: {Normal: 3, Polyp: 2}\n",
        "      totals: {Normal: 3, Polyps: 2}\n",
        "targets.two.reference.totals.Polyps: not one of the target's classes",
    ),
    (
        "        mine: {Polyp: 2}\n",
        "        yours: {Polyp: 2}\n",
        "targets.two.reference.datasets.yours: unknown dataset",
    ),
    (
        "        mine: {Polyp: 2}\n",
        "        mine: {Polyp: 7}\n",
        "targets.two.reference.datasets.mine.Polyp: 7 is more than the class total 2",
    ),
    ("      images: 5\n", "      images: -5\n", "targets.two.reference.images: must be a whole number >= 0"),
    ("      source: A paper.\n", "", "targets.two.reference.source: needs the publication"),
]


@pytest.mark.parametrize(
    "base, old, new, problem", [(MINIMAL, *case) for case in V1_CASES] + [(MINIMAL_V2, *case) for case in V2_CASES]
)
def test_validation_errors_name_file_and_key(tmp_path, base, old, new, problem):
    assert old in base
    path = write(tmp_path, base.replace(old, new, 1))
    with pytest.raises(ValueError) as info:
        load_taxonomy(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="not valid YAML"):
        load_taxonomy(write(tmp_path, "version: [1\n"))
    with pytest.raises(ValueError, match="must be a mapping"):
        load_taxonomy(write(tmp_path, "- 1\n"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_taxonomy(tmp_path / "nope.yaml")

"""Class taxonomy: the packaged YAML validates and covers every label of the demo and of the real
label sets in ../shared; map_labels' exclusion reasons, ambiguity, multi-labels, unknown-label
errors, custom taxonomies and their validation errors, and (hypothesis) that no row is ever lost."""

from __future__ import annotations

import importlib.resources
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_path
from endoctl.ingest import ingest
from endoctl.sources import REGISTRY, get_adapter
from endoctl.synth import CE24_CLASSES, KC_FINDINGS, KID_CLASSES, SynthConfig, synth
from endoctl.taxonomy import DEFAULT_TAXONOMY, FINDING_NAME, UNLABELLED, Taxonomy, load_taxonomy, map_labels

CE24_ORDER = ["Angioectasia", "Bleeding", "Erosion", "Erythema", "Foreign Body", "Lymphangiectasia", "Normal",
              "Polyp", "Ulcer", "Worms"]
DATASETS = {"ce24", "kvasir-capsule", "kid", "see-ai", "hyperkvasir", "kvasir-v2", "gastrovision"}
KC_FOLDERS = ["Ampulla of vater", "Angiectasia", "Blood - fresh", "Blood - hematin", "Erosion", "Erythema",
              "Foreign body", "Ileocecal valve", "Lymphangiectasia", "Normal clean mucosa", "Polyp", "Pylorus",
              "Reduced mucosal view", "Ulcer"]
HYPERKVASIR = ["barretts", "barretts-short-segment", "bbps-0-1", "bbps-2-3", "cecum", "dyed-lifted-polyps",
               "dyed-resection-margins", "esophagitis-a", "esophagitis-b-d", "hemorrhoids", "ileum", "impacted-stool",
               "polyps", "pylorus", "retroflex-rectum", "retroflex-stomach", "ulcerative-colitis-grade-0-1",
               "ulcerative-colitis-grade-1", "ulcerative-colitis-grade-1-2", "ulcerative-colitis-grade-2",
               "ulcerative-colitis-grade-2-3", "ulcerative-colitis-grade-3", "z-line"]
KVASIR_V2 = ["dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum", "normal-pylorus",
             "normal-z-line", "polyps", "ulcerative-colitis"]
SEE_AI = ["angiodysplasia", "erosion", "stenosis", "lymphangiectasia", "lymph follicle", "SMT", "polyp-like",
          "bleeding", "diverticulum", "erythema", "foreign body", "vein", "normal"]
KID_REAL = ["vascular", "inflammatory", "polypoid", "lymphangiectasia", "normal-small-bowel", "normal-esophagus",
            "normal-stomach", "normal-colon", "ampulla-of-vater"]
FINDINGS_EXPECTED = [
    "angiectasia", "blood-fresh", "blood-hematin", "erosion", "erythema", "ulcer", "polyp", "lymphangiectasia",
    "lymphoid-follicle", "foreign-body", "worms", "normal-clean-mucosa", "ileocecal-valve", "pylorus",
    "ampulla-of-vater", "reduced-mucosal-view", "stenosis", "submucosal-tumor", "diverticulum", "vein",
    "esophagitis", "barretts", "z-line", "cecum", "retroflex-rectum", "ulcerative-colitis", "dyed-lifted-polyps",
    "dyed-resection-margins", "hemorrhoids", "bbps-0-1", "vascular-lesion", "inflammatory-lesion",
    "protruding-lesion", "normal",
]


PACKAGED = load_taxonomy()  # loaded once: hypothesis examples must not re-read the YAML


@pytest.fixture(scope="module")
def tax() -> Taxonomy:
    return PACKAGED


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {"image_id": [f"{s}/{i}.jpg" for i, (s, _) in enumerate(rows)],
         "source": [s for s, _ in rows], "label": [lab for _, lab in rows]}
    )


def one(tax: Taxonomy, source: str, label: str, target: str, **kw) -> pd.Series:
    return map_labels(frame([(source, label)]), tax, target, **kw).iloc[0]


# ----------------------------------------------------------------------------- the packaged taxonomy


def test_packaged_taxonomy_loads_and_validates(tax):
    assert DEFAULT_TAXONOMY.is_file()
    assert importlib.resources.files("endoctl").joinpath("taxonomies/taxonomy-v1.yaml").is_file()
    assert tax.version == 1
    assert 50 <= len(tax.findings) <= 123  # EndoExtend24 supports up to 123 findings
    assert all(FINDING_NAME.fullmatch(f) and d.strip() for f, d in tax.findings.items())
    assert set(FINDINGS_EXPECTED) <= set(tax.findings)
    assert set(tax.sources) == DATASETS
    assert DATASETS <= set(REGISTRY), "taxonomy dataset keys are ingest --format names"
    assert {"ce24", "ee24-ce24", "coarse"} <= set(tax.targets)
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
    synth(root / "raw", SynthConfig(videos=2, frames_per_video=6, kid_patients=2, kid_images_per_patient=3,
                                    ce24_test_videos=1))
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
    assert set(CE24_CLASSES.values()) <= set(tax.sources["ce24"])


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


# ----------------------------------------------------------------------------- map_labels behaviour


def test_exclusion_reasons(tax):
    out = map_labels(frame([
        ("ce24", ""),                                 # unlabelled
        ("kvasir-capsule", "Polyp"),                  # source not used by the target
        ("ce24", "Polyp"),                            # kept
    ]), tax, "ce24")
    assert list(out.excluded[:2]) == [UNLABELLED, "source 'kvasir-capsule' not used by target 'ce24' (uses: ce24)"]
    assert (out.target_class[2], out.excluded[2]) == ("polyp", "")
    row = one(tax, "kvasir-capsule", "Reduced mucosal view", "ee24-ce24")
    assert row.excluded == "no finding maps into target 'ee24-ce24': reduced-mucosal-view"
    assert one(tax, "hyperkvasir", "", "coarse").excluded == UNLABELLED
    nan = map_labels(pd.DataFrame({"source": ["ce24"], "label": [None]}), tax, "ce24").iloc[0]
    assert (nan.findings, nan.target_class, nan.excluded) == ("", "", UNLABELLED)


def test_ambiguity_and_multi_label(tax):
    row = one(tax, "see-ai", "bleeding|erosion", "ee24-ce24")
    assert row.target_class == "" and row.findings == "blood|erosion"
    assert row.excluded.startswith("ambiguous") and "blood -> Bleeding" in row.excluded and "erosion -> Erosion" in row.excluded
    # findings of one label that land in the same class are not ambiguous
    row = one(tax, "see-ai", "bleeding|erosion", "coarse")
    assert row.excluded.startswith("ambiguous")  # Vascular vs Inflammatory
    row = one(tax, "see-ai", " erosion | erythema ", "coarse")
    assert (row.target_class, row.findings) == ("inflammatory", "erosion|erythema")
    # findings outside the target are ignored when another finding maps
    row = one(tax, "see-ai", "vein|erosion|vein", "ee24-ce24")
    assert (row.target_class, row.findings, row.excluded) == ("erosion", "erosion|vein", "")
    # one label, several findings
    row = one(tax, "hyperkvasir", "ulcerative-colitis-grade-2", "coarse")
    assert (row.findings, row.target_class) == ("ulcerative-colitis|ulcerative-colitis-grade-2", "inflammatory")


def test_formats_map_sources_to_datasets(tax):
    out = map_labels(frame([("kc-2021", "Foreign body"), ("ce24-official", "Worms")]), tax, "ce24",
                     formats={"kc-2021": "kvasir-capsule", "ce24-official": "ce24"})
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
    with pytest.raises(ValueError, match=r"unknown target 'ce42'; choose one of ce24, coarse, ee24-ce24"):
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
    assert list(out.columns[-3:]) == ["findings", "target_class", "excluded"]


def test_speed_one_million_rows(tax):
    pairs = [(s, lab) for s in ("kvasir-capsule", "kid", "ce24") for lab in tax.sources[s]] + [("ce24", "")]
    pick = np.random.default_rng(0).integers(len(pairs), size=1_000_000)
    df = pd.DataFrame({"source": np.array([p[0] for p in pairs], dtype=object)[pick],
                       "label": np.array([p[1] for p in pairs], dtype=object)[pick]})
    start = time.perf_counter()
    out = map_labels(df, tax, "ee24-ce24")
    assert time.perf_counter() - start < 2.0
    assert len(out) == 1_000_000


LABEL_POOL = [
    ("ce24", lab) for lab in CE24_ORDER
] + [("kvasir-capsule", lab) for lab in KC_FOLDERS] + [
    ("kid", "vascular"), ("kid", "normal-small-bowel"), ("see-ai", "bleeding"), ("see-ai", "vein"),
    ("hyperkvasir", "esophagitis-a"), ("gastrovision", "Colon polyps"),
]


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
@given(manifests(), st.sampled_from(["ce24", "ee24-ce24", "coarse"]))
def test_property_every_row_kept_exactly_one_outcome(df, target):
    tax = PACKAGED
    out = map_labels(df, tax, target)
    assert list(out.image_id) == list(df.image_id) and list(out.index) == list(df.index)
    assert ((out.target_class != "") ^ (out.excluded != "")).all()
    assert set(out.target_class) - {""} <= set(tax.targets[target].class_mapping())
    assert ((out.findings == "") == (df.label == "")).all()
    assert (out.excluded[df.label == ""].isin([UNLABELLED]) | out.excluded[df.label == ""].str.contains("not used")).all()


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


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("    Polyp: polyp\n", "    Polyp: polypp\n", "sources.mine.'Polyp': unknown finding(s) 'polypp'"),
        ("      polyp: Polyp\n", "      polyp: Polyps\n", "targets.two.map.polyp: class 'Polyps' is not one"),
        ("      polyp: Polyp\n", "      polyp: Polyp\n      ulcer: Polyp\n", "targets.two.map.ulcer: unknown finding"),
        ("    Normal: normal\n", "    Normal: normal\n    Polyp: normal\n", "duplicate key 'Polyp' at line 10"),
        ("  normal: Nothing found.\n", "  normal: Nothing found.\n  polyp: Again.\n", "duplicate key 'polyp'"),
        ("version: 1\n", "version: 2\n", "version: must be one of [1]"),
        ("    classes: [Normal, Polyp]\n", "    classes: [Normal, Polyp]\n    sources: [yours]\n",
         "targets.two.sources: unknown dataset 'yours'"),
        ("    classes: [Normal, Polyp]\n", "    classes: [Normal, Polyp, polyp]\n", "repeated class(es)"),
        ("  polyp: A polyp.\n", "  Polyp Big: A polyp.\n", "findings.Polyp Big: finding names are lower-case"),
        ("targets:\n", "extras: 1\ntargets:\n", "extras: unknown top-level key"),
        ("    description: Polyp or not.\n", "    description: Polyp or not.\n    mapp: {}\n",
         "targets.two.mapp: unknown key"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, old, new, problem):
    assert old in MINIMAL
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
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

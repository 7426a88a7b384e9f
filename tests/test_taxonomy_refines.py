"""Refined findings ("finding X refines parent Y") and the ers-123 target.

ERS's 123 codes are each a finding of their own (the paper's "up to 123 distinct pathological
findings"); a code with a known meaning refines the unified finding(s) it used to map to. The
check that matters: every target that existed before reads every label of every source exactly as
it did. ``tests/data/taxonomy-v2-before-refines.yaml`` is the packaged taxonomy as it was before
refinements (frozen, never edited): every label of every source it lists, alone and in pairs, goes
through ``map_labels`` with both files for every target it defines.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pandas as pd
import pytest
from label_contract import ERS_CODES

from endoctl.taxonomy import DEFAULT_TAXONOMY, MAPPED_COLUMNS, UNLABELLED, load_taxonomy, map_labels

BEFORE = Path(__file__).resolve().parent / "data" / "taxonomy-v2-before-refines.yaml"
PACKAGED = load_taxonomy()


def frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"{s}/{i}.jpg" for i, (s, _) in enumerate(rows)],
            "source": [s for s, _ in rows],
            "label": [lab for _, lab in rows],
        }
    )


def every_label_and_pair(tax) -> pd.DataFrame:
    """Every label of every source of ``tax``, alone, in every pair within its source, and in 3,000
    seeded triples (several codes per ERS frame); plus an unlabelled row per source."""
    rows: list[tuple[str, str]] = []
    rng = random.Random(0)
    for dataset, table in tax.sources.items():
        labels = sorted(table)
        rows.append((dataset, ""))
        rows += [(dataset, label) for label in labels]
        rows += [(dataset, f"{a}|{b}") for a, b in itertools.combinations(labels, 2)]
        if len(labels) >= 3:
            rows += [(dataset, "|".join(rng.sample(labels, 3))) for _ in range(3000 if dataset == "ers" else 100)]
    return frame(rows)


def test_every_existing_target_reads_every_label_as_before():
    before = load_taxonomy(BEFORE)
    after = PACKAGED
    assert before.version == after.version
    # the same sources with the same labels; every finding of before still exists (refinements are new)
    assert {d: sorted(t) for d, t in before.sources.items()} == {d: sorted(t) for d, t in after.sources.items()}
    assert set(before.findings) <= set(after.findings) and before.quality <= after.quality
    assert set(before.targets) < set(after.targets)
    manifest = every_label_and_pair(before)
    assert len(manifest) > 10_000
    for name, old in before.targets.items():
        new = after.targets[name]
        assert (new.classes, new.class_mapping(), new.sources) == (old.classes, old.class_mapping(), old.sources), name
        assert (new.several, new.priority, new.reference, new.quality_classes) == (
            old.several,
            old.priority,
            old.reference,
            old.quality_classes,
        ), name
        was = map_labels(manifest, before, name)
        now = map_labels(manifest, after, name)
        # target_class and excluded decide the split; findings and candidates go into the reports
        for column in MAPPED_COLUMNS:
            diff = was[column] != now[column]
            assert not diff.any(), (name, column, now.loc[diff, ["source", "label"]].head(5).to_dict("records"))


def test_frozen_copy_is_the_old_format():
    """The reference file has no refinements and maps ERS codes to the shared findings (c26, c27: ulcer)."""
    before = load_taxonomy(BEFORE)
    assert not before.refines and "ers-123" not in before.targets
    assert before.sources["ers"]["c26"] == before.sources["ers"]["c27"] == ["ulcer"]
    assert BEFORE.read_bytes() != DEFAULT_TAXONOMY.read_bytes()


def test_every_ers_code_is_a_finding_under_its_parent(tax=PACKAGED):
    before = load_taxonomy(BEFORE)
    for code in ERS_CODES:
        (finding,) = tax.sources["ers"][code]
        assert finding == f"ers-{code}" and finding in tax.findings
        # read by a target that maps no refinement, each code is exactly the finding(s) it was
        assert tax.general([finding]) == before.sources["ers"][code], code
    assert tax.refines["ers-c26"] == tax.refines["ers-c27"] == ("ulcer",)
    assert tax.refines["ers-c05"] == ("blood", "colorectal-cancer")
    assert "ers-c01" not in tax.refines  # a code of unconfirmed meaning has no parent


def test_ers_123_target():
    spec = PACKAGED.target("ers-123")
    assert len(spec.classes) == 123 == len(spec.class_mapping())
    assert spec.classes == list(ERS_CODES)
    assert spec.sources == ["ers"] and spec.multi_label and spec.quality_classes
    out = map_labels(frame([("ers", code) for code in ERS_CODES]), PACKAGED, "ers-123")
    assert list(out.target_class) == list(ERS_CODES) and (out.excluded == "").all()
    assert list(out.findings) == [f"ers-{code}" for code in ERS_CODES]
    # c26 and c27 are one class (Ulcer) in every other target, two here
    for other in ("ee24-ce24", "ee24", "coarse"):
        pair = map_labels(frame([("ers", "c26"), ("ers", "c27")]), PACKAGED, other)
        assert pair.target_class[0] == pair.target_class[1] != ""
    rows = frame([("ers", "c22|h01|q02"), ("ers", ""), ("ce24", "Ulcer"), ("ers", "q02|q05")])
    out = map_labels(rows, PACKAGED, "ers-123")
    assert list(out.target_class) == ["c22|h01|q02", "", "", "q02|q05"]
    assert out.excluded[1] == UNLABELLED and out.excluded[2].startswith("source 'ce24' not used by target 'ers-123'")


# ----------------------------------------------------------------------------- the format


REFINED = """\
version: 2
findings:
  ulcer: An ulcer.
  ulcer-small: A small ulcer.
  ulcer-tiny: A tiny ulcer.
  normal: Nothing found.
  blur: Blurred.
  blur-motion: Motion blur.
refines:
  ulcer-small: ulcer
  ulcer-tiny: ulcer-small
  blur-motion: blur
quality: [blur]
sources:
  mine:
    Ulcer: ulcer
    Small: ulcer-small
    Tiny: ulcer-tiny
    Normal: normal
    Shaky: blur-motion
targets:
  coarse:
    description: Ulcer or not.
    classes: [Normal, Ulcer]
    map: {normal: Normal, ulcer: Ulcer}
  fine:
    description: Ulcer sizes.
    classes: [Ulcer, Small, Shaky]
    several_classes: multi-label
    quality_classes: true
    map: {ulcer: Ulcer, ulcer-small: Small, blur-motion: Shaky}
  all:
    description: Every finding.
    classes: every-finding
    several_classes: multi-label
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "refined.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_refined_findings_read_per_target(tmp_path):
    tax = load_taxonomy(write(tmp_path, REFINED))
    assert tax.refines == {"ulcer-small": ("ulcer",), "ulcer-tiny": ("ulcer-small",), "blur-motion": ("blur",)}
    assert tax.quality == {"blur", "blur-motion"}  # a refinement of a quality flag is one
    assert tax.targets["all"].classes == ["ulcer", "normal"]  # refinements are not every-finding classes
    rows = frame([("mine", "Tiny"), ("mine", "Small|Normal"), ("mine", "Shaky"), ("mine", "Shaky|Tiny")])
    coarse = map_labels(rows, tax, "coarse")
    assert list(coarse.findings) == ["ulcer", "normal|ulcer", "blur", "blur|ulcer"]
    assert list(coarse.target_class) == ["ulcer", "", "", "ulcer"] and coarse.excluded[2] == "quality flag only: blur"
    fine = map_labels(rows, tax, "fine")  # reads ulcer-tiny as ulcer-small (the nearest mapped ancestor)
    assert list(fine.findings) == ["ulcer-small", "normal|ulcer-small", "blur-motion", "blur-motion|ulcer-small"]
    assert list(fine.target_class) == ["small", "small", "shaky", "small|shaky"]
    assert list(map_labels(rows, tax, "all").target_class) == ["ulcer", "ulcer|normal", "", "ulcer"]


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("  ulcer-small: ulcer\n", "  ulcer-small: ulcers\n", "unknown parent finding(s) 'ulcers'"),
        ("  ulcer-small: ulcer\n", "  ulcer-huge: ulcer\n", "refines.ulcer-huge: unknown finding"),
        ("  ulcer-small: ulcer\n", "  ulcer-small: []\n", "refines.ulcer-small: refines a finding or a non-empty"),
        ("  ulcer-small: ulcer\n", "  ulcer-small: ulcer-tiny\n", "refines.ulcer-small: is its own ancestor"),
        ("    quality_classes: true\n", "", "targets.fine.map.blur-motion: is a quality flag"),
        ("    quality_classes: true\n", "    quality_classes: yes please\n", "quality_classes: must be true or false"),
        ("version: 2\n", "version: 1\n", "refines: unknown top-level key (needs version: 2)"),
    ],
)
def test_refines_validation(tmp_path, old, new, problem):
    assert old in REFINED
    path = write(tmp_path, REFINED.replace(old, new, 1))
    with pytest.raises(ValueError) as info:
        load_taxonomy(path)
    assert problem in str(info.value)

"""``endoctl split``: leak-free stratified group splits, pins, kept assignments, report.

Synthetic tests use a tiny taxonomy written here (so they do not move when the packaged taxonomy
grows), with one target per several-classes rule (exclude, priority, multi-label); multi-label
stratification; the packaged taxonomy over every label of the adapters' contract (ee24-ce24 and
its composition table beside the paper's numbers, the multi-label ee24); the real-data tests use
../shared and the packaged taxonomy's ce24 / ee24-ce24 targets.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from label_contract import every_label
from typer.testing import CliRunner

from endoctl.assignment import assign
from endoctl.cli import app
from endoctl.io import read_csv, write_csv
from endoctl.sources.ce24 import CLASSES as CE24_CLASS_ORDER
from endoctl.split import OUTPUT_FILES, Pin, parse_pin, split
from endoctl.taxonomy import load_taxonomy

runner = CliRunner()

TAXONOMY_YAML = """\
version: 2
findings:
  normal: "Normal mucosa."
  lesion-a: "Lesion A."
  lesion-b: "Lesion B."
  lesion-c: "Lesion C."
  other: "A finding no test target uses."
sources:
  alpha: {Normal: normal, A: lesion-a, B: lesion-b, C: lesion-c, Other: other}
  beta: {normal: normal, a: lesion-a, b: lesion-b, c: lesion-c}
targets:
  abc:
    description: "Every source, four classes."
    classes: [Normal, A, B, C]
    map: {normal: Normal, lesion-a: A, lesion-b: B, lesion-c: C}
  alpha-only:
    description: "Source alpha only."
    classes: [Normal, A, B, C]
    sources: [alpha]
    map: {normal: Normal, lesion-a: A, lesion-b: B, lesion-c: C}
  abc-priority:
    description: "Every source; several classes: the first in the priority list."
    classes: [Normal, A, B, C]
    several_classes: priority
    priority: [C, B, A, Normal]
    map: {normal: Normal, lesion-a: A, lesion-b: B, lesion-c: C}
  abc-multi:
    description: "Every source, multi-label."
    classes: [Normal, A, B, C]
    several_classes: multi-label
    map: {normal: Normal, lesion-a: A, lesion-b: B, lesion-c: C}
"""
LABELS = {"alpha": ["Normal", "A", "B", "C"], "beta": ["normal", "a", "b", "c"]}
BASIC = ["image_id", "source", "path", "label", "patient_id", "official_split"]


@pytest.fixture(scope="module")
def taxonomy_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("taxonomy") / "taxonomy.yaml"
    path.write_text(TAXONOMY_YAML, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def taxonomy(taxonomy_file):
    return load_taxonomy(taxonomy_file)


def make_manifest(
    source: str,
    patients: int = 12,
    per_patient: int = 8,
    singles: int = 30,
    seed: int = 0,
    hashes: bool = True,
    test_patients: int = 0,
    extra: list[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Rows like ingest writes: patients with several frames, singletons without a patient id."""
    rng = np.random.default_rng(seed)
    names = LABELS[source]
    rows = []
    for p in range(patients):
        for k in range(per_patient):
            label = names[0] if rng.random() < 0.6 else names[1 + rng.integers(3)]
            split_name = "test" if p >= patients - test_patients else "train"
            rows.append((f"{source}/{label}/p{p}_{k}.jpg", label, f"P{p}", split_name))
    for k in range(singles):
        label = names[rng.integers(4)]
        rows.append((f"{source}/{label}/single{k}.jpg", label, "", "train"))
    for name, label in extra:
        rows.append((f"{source}/{name}", label, "", "train"))
    df = pd.DataFrame(rows, columns=["image_id", "label", "patient_id", "official_split"])
    df["source"] = source
    df["path"] = "raw/" + df["image_id"]
    df = df[BASIC]
    if hashes:
        df["width"], df["height"], df["bytes"] = "64", "64", "1000"
        df["sha256"] = [hashlib.sha256(i.encode()).hexdigest() for i in df["image_id"]]
        df["phash"] = df["dhash"] = "0" * 16
    return df.sort_values("image_id").reset_index(drop=True)


def write_duplicates(folder: Path, pairs: list[tuple[str, str]], source_of) -> Path:
    """``duplicates.csv`` (clusters) + ``duplicate_pairs.csv`` as ``dedupe`` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    from endoctl.grouping import components

    ids = sorted({i for pair in pairs for i in pair})
    pos = {i: k for k, i in enumerate(ids)}
    labels = components(len(ids), np.array([pos[a] for a, _ in pairs]), np.array([pos[b] for _, b in pairs]))
    sizes = np.bincount(labels)
    write_csv(
        folder / "duplicates.csv",
        pd.DataFrame(
            {
                "image_id": ids,
                "source": [source_of(i) for i in ids],
                "cluster": [f"c{x}" for x in labels],
                "cluster_size": sizes[labels],
            }
        ),
    )
    write_csv(
        folder / "duplicate_pairs.csv",
        pd.DataFrame([(a, b, 3, "near") for a, b in pairs], columns=["image_id_a", "image_id_b", "distance", "kind"]),
    )
    return folder / "duplicates.csv"


def run_split(*args: str, ok: bool = True):
    result = runner.invoke(app, ["split", *map(str, args)])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def outputs(folder: Path) -> dict[str, pd.DataFrame]:
    return {name: read_csv(folder / f"{name}.csv") for name in ("train_val", "test", "excluded")}


def report(folder: Path) -> dict:
    return json.loads((folder / "split_report.json").read_text(encoding="utf-8"))


def assert_no_straddle(tv: pd.DataFrame, te: pd.DataFrame) -> None:
    assert not set(tv["group"]) & set(te["group"])
    assert (tv.groupby("group")["fold"].nunique() == 1).all()


# ----------------------------------------------------------------------------------- unit level


def test_parse_pin() -> None:
    assert parse_pin("test=ce24:test") == Pin("ce24", "test")
    assert parse_pin("test=kid") == Pin("kid", None)
    assert str(parse_pin("test=ce24:test")) == "test=ce24:test"
    for bad in ("ce24:test", "train=ce24", "test=", "test=:x", "test=ce24:"):
        with pytest.raises(ValueError):
            parse_pin(bad)


def test_bad_arguments_fail_before_labels_and_groups(taxonomy, monkeypatch) -> None:
    """A pin matching nothing, or impossible sizes, stop the split before any labelling or grouping
    (on 226k rows those take most of a minute)."""
    df = make_manifest("alpha")

    def must_not_run(*args, **kwargs):
        raise AssertionError("heavy work started before the arguments were checked")

    monkeypatch.setattr("endoctl.split.group_images", must_not_run)
    with pytest.raises(
        ValueError, match=r"--pin test=alpha:testing matches no image .*official splits of 'alpha': 'train'"
    ):
        split(df, None, taxonomy, "abc", pins=["test=alpha:testing"], labeler=must_not_run)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split(df, None, taxonomy, "abc", test_fraction=1.0, labeler=must_not_run)
    with pytest.raises(ValueError, match="folds must be >= 1"):
        split(df, None, taxonomy, "abc", folds=0, labeler=must_not_run)


def test_assign_pins_previous_and_conflicts() -> None:
    groups = pd.Series(["g1", "g1", "g2", "g2", "g3", "g3", "g4", "g5", "g6", "g6"], index=list("abcdefghij"))
    y = pd.Series(["x", "y", "x", "x", "y", "", "x", "y", "x", "y"], index=groups.index)
    previous = pd.Series(["test", "", "1", "1", "0", "test", "2", "", "0", "2"], index=groups.index)
    pinned = pd.Series([False] * 6 + [True, False, False, False], index=groups.index)
    out = assign(groups, y, 0.2, 3, 0, pinned, previous)
    place = {
        g: (out.loc[groups == g, "split"].unique().tolist(), out.loc[groups == g, "fold"].unique().tolist())
        for g in groups.unique()
    }
    assert place["g1"] == (["test"], [-1])  # kept in test
    assert place["g2"] == (["train_val"], [1])  # kept in fold 1
    assert place["g3"] == (["test"], [-1])  # was in fold 0 and test: split conflict -> test
    assert place["g4"] == (["test"], [-1])  # pinned beats previous fold 2
    assert place["g6"] == (["train_val"], [0])  # folds 0 and 2 (one each): lower fold
    how = out.groupby(groups)["how"].first()
    assert how.to_dict() == {
        "g1": "kept",
        "g2": "kept",
        "g3": "conflict-split",
        "g4": "conflict-pin",
        "g5": "assigned",
        "g6": "conflict-fold",
    }
    with pytest.raises(ValueError, match="fold 2, but --folds is 2"):
        assign(groups, y, 0.2, 2, 0, pinned, previous)


def test_assign_nested_groups_keep_their_upstream_place() -> None:
    groups = pd.Series(["g1", "g1", "g2", "g3", "g3", "g3", "g4", "g5", "g6"], index=list("abcdefghi"))
    y = pd.Series(["x", "y", "x", "y", "x", "x", "y", "x", "y"], index=groups.index)
    nested = pd.Series(["test", "", "2", "1", "test", "1", "", "0", "1"], index=groups.index)
    previous = pd.Series(["", "", "0", "", "", "", "", "", ""], index=groups.index)
    out = assign(groups, y, 0.2, 3, 0, None, previous, nested=nested)
    place = out.groupby(groups)[["split", "fold"]].first().apply(tuple, axis=1).to_dict()
    assert place["g1"] == ("test", -1)  # upstream test (the row absent upstream follows its group)
    assert place["g2"] == ("train_val", 2)  # nesting beats a previous place (fold 0)
    assert place["g3"] == ("train_val", 1)  # upstream fold 1 + test: fold 1 (test rows were never trained on)
    assert place["g5"] == ("train_val", 0)
    how = out.groupby(groups)["how"].first().to_dict()
    assert how == {"g1": "nested", "g2": "nested", "g3": "nested", "g4": "assigned", "g5": "nested", "g6": "nested"}
    # a group spread over two upstream folds (upstream was grouped differently): the fold holding most
    spread = pd.Series(["1", "2", "2"], index=["a", "b", "c"])
    out = assign(
        pd.Series(["g"] * 3, index=spread.index), pd.Series(["x"] * 3, index=spread.index), 0.2, 3, 0, nested=spread
    )
    assert out["fold"].tolist() == [2, 2, 2] and set(out["how"]) == {"nest-conflict"}
    # a pinned group that upstream trains on cannot be a clean test: an error naming the group
    pinned = pd.Series([False, False, True] + [False] * 6, index=groups.index)
    with pytest.raises(ValueError, match=r"group g2 holds a pinned image .* fold 2 .*pin the same images there"):
        assign(groups, y, 0.2, 3, 0, pinned, nested=nested)
    pinned = pd.Series([True] + [False] * 8, index=groups.index)  # pinned and in upstream test: fine
    assert assign(groups, y, 0.2, 3, 0, pinned, nested=nested).loc["a", "split"] == "test"


def test_assign_balances_many_small_groups() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    groups = pd.Series([f"g{i}" for i in rng.integers(0, 1500, n)])
    y = pd.Series(rng.choice(["n", "a", "b", "c"], n, p=[0.7, 0.15, 0.1, 0.05]))
    out = assign(groups, y, 0.2, 5, 0)
    share = (out["split"] == "test").mean()
    assert abs(share - 0.2) < 0.005
    overall = y.value_counts(normalize=True)
    for key, part in [("test", out["split"] == "test")] + [(f, out["fold"] == f) for f in range(5)]:
        dev = (y[part].value_counts(normalize=True).reindex(overall.index, fill_value=0) - overall).abs().max()
        assert dev < 0.01, (key, dev)
    assert out.groupby(groups)["fold"].nunique().max() == 1


def multi_label_population(n: int = 5000, n_groups: int = 1500, seed: int = 2) -> tuple[pd.Series, pd.Series]:
    """Groups of varying size whose rows carry 1-3 co-occurring labels ('e' only ever beside 'a')."""
    rng = np.random.default_rng(seed)
    groups = pd.Series([f"g{i}" for i in rng.zipf(1.6, n) % n_groups])
    labels = []
    for _ in range(n):
        row = {str(rng.choice(["n", "a", "b", "c", "d"], p=[0.5, 0.2, 0.15, 0.1, 0.05]))}
        if "a" in row and rng.random() < 0.4:
            row.add("e")
        if rng.random() < 0.2:
            row.add(str(rng.choice(["b", "c", "d"])))
        labels.append("|".join(sorted(row)))
    return groups, pd.Series(labels)


def test_assign_multi_label_rows_count_for_each_class() -> None:
    groups, y = multi_label_population()
    out = assign(groups, y, 0.2, 5, 0)
    assert out.groupby(groups)["fold"].nunique().max() == 1
    assert abs((out["split"] == "test").mean() - 0.2) < 0.01
    carries = pd.DataFrame({c: y.str.split("|").map(lambda s, c=c: c in s) for c in "nabcde"})
    overall = carries.mean()
    for key, part in [("test", out["split"] == "test")] + [(f, out["fold"] == f) for f in range(5)]:
        dev = (carries[part].mean() - overall).abs()
        assert dev.max() < 0.02, (key, dev.round(4).to_dict())  # 'e' never occurs alone, yet is balanced
    # the count vector of a multi-label row holds each of its classes once and the image once
    one = assign(pd.Series(["g0", "g1"]), pd.Series(["a|b", "a"]), 0.5, 1, 0)
    assert sorted(one["split"]) == ["test", "train_val"]


# ------------------------------------------------------------------------------------ hypothesis


@st.composite
def populations(draw):
    n = draw(st.integers(0, 50))
    folds = draw(st.integers(1, 4))
    idx = st.lists
    groups = draw(idx(st.integers(0, 12), min_size=n, max_size=n))
    y = draw(idx(st.sampled_from(["", "a", "a", "b", "c"]), min_size=n, max_size=n))
    pinned = draw(idx(st.booleans().map(lambda b: b and draw(st.booleans())), min_size=n, max_size=n))
    previous = draw(idx(st.sampled_from(["", "", "", "test"] + [str(f) for f in range(folds)]), min_size=n, max_size=n))
    fraction = draw(st.sampled_from([0.0, 0.2, 0.5]))
    seed = draw(st.integers(0, 3))
    perm = draw(st.permutations(list(range(n))))
    use_previous = draw(st.booleans())
    frame = pd.DataFrame(
        {"group": [f"g{g}" for g in groups], "y": y, "pinned": pinned, "previous": previous},
        index=[f"r{i}" for i in range(n)],
    )
    return frame, folds, fraction, seed, perm, use_previous


@settings(max_examples=150, deadline=None)
@given(populations())
def test_assign_properties(case) -> None:
    df, folds, fraction, seed, perm, use_previous = case
    prev = df["previous"] if use_previous else None
    out = assign(df["group"], df["y"], fraction, folds, seed, df["pinned"], prev)
    assert out.index.equals(df.index)
    assert set(out["split"]) <= {"train_val", "test"}
    assert ((out["split"] == "test") == (out["fold"] == -1)).all()
    assert out["fold"].between(-1, folds - 1).all()
    # one place per group
    assert (out.groupby(df["group"])[["split", "fold"]].nunique() <= 1).all().all()
    # pinned groups in test
    pinned_groups = set(df.loc[df["pinned"], "group"])
    assert (out.loc[df["group"].isin(pinned_groups), "split"] == "test").all()
    if prev is not None:
        for g, rows in df[df["previous"] != ""].groupby("group"):
            seen = set(rows["previous"])
            got = out.loc[df["group"] == g].iloc[0]
            if g in pinned_groups or "test" in seen:
                assert got["split"] == "test"
            elif len(seen) == 1:
                assert got["fold"] == int(seen.pop())
    # reruns identical; row order irrelevant
    again = assign(df["group"], df["y"], fraction, folds, seed, df["pinned"], prev)
    pd.testing.assert_frame_equal(out, again)
    shuffled = df.iloc[perm]
    other = assign(
        shuffled["group"],
        shuffled["y"],
        fraction,
        folds,
        seed,
        shuffled["pinned"],
        shuffled["previous"] if prev is not None else None,
    )
    pd.testing.assert_frame_equal(out, other.loc[df.index])


@st.composite
def manifests(draw):
    n = draw(st.integers(1, 40))
    rows = []
    for i in range(n):
        source = draw(st.sampled_from(["alpha", "beta"]))
        label = draw(st.sampled_from(LABELS[source] + ([""] if source == "beta" else ["Other", "A|B", "A|A"])))
        patient = draw(st.sampled_from(["", "", "P1", "P2", "P3", "P4", "P5"]))
        official = draw(st.sampled_from(["train", "test"]))
        rows.append((f"{source}/img{i:03d}.jpg", source, f"p/{i}", label, patient, official))
    df = pd.DataFrame(rows, columns=BASIC)
    ids = df["image_id"].tolist()
    pairs = draw(st.lists(st.tuples(st.sampled_from(ids), st.sampled_from(ids)), max_size=6))
    pins = draw(st.lists(st.sampled_from(["test=alpha:test", "test=beta", "test=beta:train"]), max_size=2, unique=True))
    perm = draw(st.permutations(list(range(n))))
    return df, pd.DataFrame(pairs, columns=["image_id_a", "image_id_b"]), pins, perm


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifests(), st.sampled_from(["abc", "alpha-only", "abc-priority", "abc-multi"]), st.integers(1, 3))
def test_split_properties(taxonomy, case, target, folds) -> None:
    df, pairs, pins, perm = case
    matching = [p for p in pins if parse_pin(p).matches(df).any()]
    if matching != pins:  # a pin that matches nothing is a typo: an error, never a silent no-op
        with pytest.raises(ValueError, match="matches no image"):
            split(df, pairs, taxonomy, target, folds=folds, pins=pins, seed=1)
        pins = matching
    res = split(df, pairs, taxonomy, target, folds=folds, pins=pins, seed=1)
    tv, te, ex = res.train_val, res.test, res.excluded
    ids = list(tv["image_id"]) + list(te["image_id"]) + list(ex["image_id"])
    assert sorted(ids) == sorted(df["image_id"])  # every row exactly once
    assert (ex["reason"] != "").all() and (tv["target_class"] != "").all() and (te["target_class"] != "").all()
    assert (
        list(tv.columns) == list(te.columns) == ["image_id", "source", "path", "label", "target_class", "group", "fold"]
    )
    assert tv["image_id"].is_monotonic_increasing and te["image_id"].is_monotonic_increasing
    assert_no_straddle(tv, te)
    s = res.report["straddling"]
    assert s["groups_across_splits"] == s["groups_across_folds"] == s["patients_across_splits"] == 0
    assert s["duplicate_pairs_across_folds_or_splits"] == 0
    # pinned rows (kept ones) and everything sharing a group, patient or pair with them are in test
    pinned = pd.Series(False, index=df.index)
    for p in pins:
        pinned |= parse_pin(p).matches(df)
    all_groups = pd.concat([tv, te])[["image_id", "group"]]
    pinned_ids = set(df.loc[pinned, "image_id"])
    assert not pinned_ids & set(tv["image_id"])
    for a, b in pairs.itertuples(index=False):
        if a in pinned_ids:
            assert b not in set(tv["image_id"])
    assert all_groups["image_id"].is_unique
    # reruns identical; input row order irrelevant
    again = split(df.iloc[perm], pairs.iloc[::-1], taxonomy, target, folds=folds, pins=pins, seed=1)
    for a, b in [(tv, again.train_val), (te, again.test), (ex, again.excluded)]:
        pd.testing.assert_frame_equal(a, b)
    assert res.report == again.report


def as_upstream(result) -> pd.DataFrame:
    """A split result as :func:`endoctl.split.read_previous` reads its folder."""
    return pd.concat(
        [
            result.train_val.assign(split="train_val")[["image_id", "split", "fold"]],
            result.test.assign(split="test", fold="")[["image_id", "split", "fold"]],
        ],
        ignore_index=True,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(manifests(), st.sampled_from(["abc", "alpha-only"]), st.integers(1, 3), st.data())
def test_nested_split_properties(taxonomy, case, target, folds, data) -> None:
    """Upstream split on some of the rows, downstream nested in it on all of them: no image of
    downstream fold k or test is in an upstream fold other than k, unless upstream grouped the
    images differently (a nest-conflict, reported); with the same rows, never."""
    from endoctl.grouping import build_groups

    df, pairs, pins, _ = case
    upstream_rows = np.array(data.draw(st.lists(st.booleans(), min_size=len(df), max_size=len(df))))
    up_df = df[upstream_rows]
    if not len(up_df):
        return
    pins = [p for p in pins if parse_pin(p).matches(up_df).any()]
    upstream = as_upstream(split(up_df, pairs, taxonomy, "abc", folds=folds, pins=pins, seed=1))
    where = dict(zip(upstream["image_id"], np.where(upstream["split"] == "test", "test", upstream["fold"])))
    group_of = build_groups(df, pairs).set_index("image_id")["group"]  # the downstream grouping, every row
    places = {g: {where[i] for i in ids if i in where} for g, ids in group_of.groupby(group_of).groups.items()}
    try:
        res = split(df, pairs, taxonomy, target, folds=folds, pins=pins, seed=2, nest_in=upstream)
    except ValueError as exc:  # a pinned group upstream trains on: linked through a row absent upstream
        assert "pin the same images there" in str(exc) and not upstream_rows.all()
        pinned = pd.concat([parse_pin(p).matches(df) for p in pins], axis=1).any(axis=1)
        assert any(places[g] - {"test"} for g in set(group_of[df.loc[pinned, "image_id"]]))
        event("pinned group trained upstream: error")
        return
    tv, te = res.train_val, res.test
    assert_no_straddle(tv, te)
    seen, seen_group = set(), set()
    for k in range(folds):
        held = pd.concat([tv[tv["fold"] == str(k)], te])["image_id"]
        trained = {i for i, w in where.items() if w not in ("test", str(k))}
        seen |= set(held[held.isin(trained)])
        seen_group |= set(held[held.map(group_of).isin(set(group_of[list(trained)]))])
    n = res.report["nesting"]
    assert n["images_seen_in_training_upstream"] == len(seen)
    assert n["images_whose_group_is_seen_in_training_upstream"] == len(seen_group)
    conflicts = {g for g, p in places.items() if len(p - {"test"}) > 1 and g in set(tv["group"]) | set(te["group"])}
    assert n["nest_conflicts"] == len(conflicts)
    event(f"nest conflicts: {bool(conflicts)}, images seen upstream: {bool(seen)}")
    if not conflicts:
        assert not seen and not seen_group
    if upstream_rows.all():  # same rows, same grouping: every labelled group nested, nothing seen upstream
        assert n["nest_conflicts"] == n["groups_absent_upstream"] == n["images_absent_upstream"] == 0
    # a group held in one upstream place keeps it, whatever the downstream labels and pins
    for g, rows in pd.concat([tv, te.assign(fold="test")]).groupby("group"):
        if len(places[g]) == 1:
            assert set(rows["fold"]) == places[g]


# ------------------------------------------------------------------------------------------ CLI


def test_cli_outputs_contract(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", test_patients=2, extra=[("odd.jpg", "Other"), ("multi.jpg", "A|B")])
    gamma = make_manifest("beta", patients=6, seed=3, hashes=False)[BASIC]  # file list only: no hash columns
    gamma["source"] = "gamma"
    gamma["image_id"] = gamma["image_id"].str.replace("beta/", "gamma/", n=1)
    gamma.loc[0, "label"] = ""
    write_csv(tmp_path / "alpha.csv", alpha)
    write_csv(tmp_path / "gamma.csv", gamma)
    link = (
        alpha["image_id"][alpha["patient_id"] == "P0"].iloc[0],
        gamma["image_id"][gamma["patient_id"] == "P1"].iloc[0],
    )
    dups = write_duplicates(tmp_path / "dedupe", [link], lambda i: i.split("/")[0])
    out = tmp_path / "split"
    res = run_split(
        "--manifest",
        tmp_path / "alpha.csv",
        "--manifest",
        tmp_path / "gamma.csv",
        "--duplicates",
        dups,
        "--target",
        "abc",
        "--taxonomy",
        taxonomy_file,
        "--format-of",
        "gamma=beta",
        "--out",
        out,
        "--folds",
        "3",
    )
    assert "split abc:" in res.stdout and "straddling groups 0" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    o = outputs(out)
    tv, te, ex = o["train_val"], o["test"], o["excluded"]
    for frame in (tv, te):
        assert list(frame.columns) == ["image_id", "source", "path", "label", "target_class", "group", "fold"]
        assert frame["image_id"].is_monotonic_increasing
    assert set(tv["fold"]) == {"0", "1", "2"} and set(te["fold"]) == {""}
    assert list(ex.columns) == ["image_id", "source", "reason"]
    assert len(tv) + len(te) + len(ex) == len(alpha) + len(gamma)
    reasons = dict(zip(ex["image_id"], ex["reason"]))
    assert reasons["alpha/odd.jpg"].startswith("no finding maps into target")
    assert reasons["alpha/multi.jpg"].startswith("ambiguous")
    assert reasons[gamma["image_id"][0]] == "unlabelled image"
    assert set(tv["target_class"]) | set(te["target_class"]) == {"normal", "a", "b", "c"}
    assert (out / "class_mapping.json").read_text() == '{\n  "normal": 0,\n  "a": 1,\n  "b": 2,\n  "c": 3\n}\n'
    assert_no_straddle(tv, te)
    # the duplicate link joins alpha's P0 and gamma's P1 into one group
    both = pd.concat([tv, te])
    group_of = dict(zip(both["image_id"], both["group"]))
    assert group_of[link[0]] == group_of[link[1]]
    assert both[both["image_id"].isin(alpha["image_id"][alpha["patient_id"] == "P0"])]["group"].nunique() == 1
    r = report(out)
    assert r["rows"] == {"in": len(alpha) + len(gamma), "train_val": len(tv), "test": len(te), "excluded": len(ex)}
    assert sum(r["excluded"].values()) == len(ex)
    assert r["straddling"]["groups_across_splits"] == r["straddling"]["patients_across_splits"] == 0
    assert r["params"]["formats"] == {"gamma": "beta"} and r["params"]["duplicate_pairs"].endswith(
        "duplicate_pairs.csv"
    )
    assert abs(r["test_fraction"]["achieved"] - 0.2) < 0.06
    md = (out / "split_report.md").read_text()
    for needle in ("Straddling", "Class proportions", "Excluded images by reason", "ambiguous", "Pins"):
        assert needle in md


def test_cli_pins(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=14, test_patients=3)
    # an official test image that also belongs to a train patient: the whole patient follows it
    alpha.loc[alpha["patient_id"].eq("P0").idxmax(), "official_split"] = "test"
    beta = make_manifest("beta", patients=5, seed=2)
    # a beta copy of an alpha test image (found by dedupe): its beta patient goes to test too
    test_img = alpha.loc[alpha["patient_id"] == "P13", "image_id"].iloc[0]
    copy = beta.loc[beta["patient_id"] == "P2", "image_id"].iloc[0]
    dups = write_duplicates(tmp_path / "d", [(test_img, copy)], lambda i: i.split("/")[0])
    write_csv(tmp_path / "alpha.csv", alpha)
    write_csv(tmp_path / "beta.csv", beta)
    out = tmp_path / "out"
    run_split(
        "--manifest",
        tmp_path / "alpha.csv",
        "--manifest",
        tmp_path / "beta.csv",
        "--duplicates",
        dups,
        "--target",
        "abc",
        "--taxonomy",
        taxonomy_file,
        "--out",
        out,
        "--pin",
        "test=alpha:test",
    )
    o = outputs(out)
    te_ids = set(o["test"]["image_id"])
    pinned = alpha[alpha["official_split"] == "test"]
    assert set(pinned["image_id"]) <= te_ids
    assert set(alpha.loc[alpha["patient_id"].isin(["P0", "P11", "P12", "P13"]), "image_id"]) <= te_ids
    assert set(beta.loc[beta["patient_id"] == "P2", "image_id"]) <= te_ids
    r = report(out)
    assert r["pinned"]["images"] == len(pinned) and r["pinned"]["pinned_groups_not_in_test"] == 0
    assert r["pinned"]["groups"] == 4
    assert r["pinned"]["labelled_images_in_pinned_groups"] <= len(te_ids)
    # a whole-source pin
    out2 = tmp_path / "out2"
    run_split(
        "--manifest",
        tmp_path / "alpha.csv",
        "--manifest",
        tmp_path / "beta.csv",
        "--target",
        "abc",
        "--taxonomy",
        taxonomy_file,
        "--out",
        out2,
        "--pin",
        "test=beta",
        "--test-fraction",
        "0.1",
    )
    o2 = outputs(out2)
    assert set(beta["image_id"]) <= set(o2["test"]["image_id"])
    assert not (o2["train_val"]["source"] == "beta").any()


def test_cli_keep_assignments(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=15, singles=40)
    write_csv(tmp_path / "alpha.csv", alpha)
    first = tmp_path / "v1"
    common = ["--target", "abc", "--taxonomy", taxonomy_file]
    run_split("--manifest", tmp_path / "alpha.csv", *common, "--out", first, "--seed", "3")
    before = pd.concat([outputs(first)["train_val"], outputs(first)["test"]]).set_index("image_id")["fold"]
    beta = make_manifest("beta", patients=10, singles=40, seed=5)
    write_csv(tmp_path / "beta.csv", beta)
    second = tmp_path / "v2"
    # a different seed would shuffle everything; kept groups must not move anyway
    res = run_split(
        "--manifest",
        tmp_path / "alpha.csv",
        "--manifest",
        tmp_path / "beta.csv",
        *common,
        "--out",
        second,
        "--seed",
        "9",
        "--keep-assignments",
        first,
    )
    assert "kept" in res.stdout and "0 conflicts" in res.stdout
    o = outputs(second)
    after = pd.concat([o["train_val"], o["test"]]).set_index("image_id")["fold"]
    pd.testing.assert_series_equal(after.loc[before.index], before)  # same split (fold '' = test) and fold
    assert o["train_val"]["source"].eq("beta").any() and len(after) == len(alpha) + len(beta)
    r = report(second)
    assert r["keep"]["previous_images_present"] == len(before) and r["keep"]["conflicting_groups"] == 0
    assert r["keep"]["kept_groups"] == len(
        set(outputs(first)["train_val"]["group"]) | set(outputs(first)["test"]["group"])
    )
    # a new duplicate link merging a previous test group with a previous train_val group: conflict -> test
    prev_test = outputs(first)["test"]["image_id"].iloc[0]
    prev_train = outputs(first)["train_val"]["image_id"].iloc[0]
    dups = write_duplicates(tmp_path / "d", [(prev_test, prev_train)], lambda i: i.split("/")[0])
    third = tmp_path / "v3"
    res = run_split(
        "--manifest", tmp_path / "alpha.csv", *common, "--out", third, "--keep-assignments", first, "--duplicates", dups
    )
    assert "1 conflicts" in res.stdout and "merged images previously in different splits" in res.output
    o3 = outputs(third)
    assert {prev_test, prev_train} <= set(o3["test"]["image_id"])
    conflict = report(third)["keep"]["conflicts"]
    assert len(conflict) == 1 and conflict[0]["kind"] == "conflict-split" and conflict[0]["now"] == "test"
    # a previous split folder is needed in full
    res = run_split(
        "--manifest", tmp_path / "alpha.csv", *common, "--out", third, "--keep-assignments", tmp_path, ok=False
    )
    assert res.exit_code == 2 and "train_val.csv not found" in res.output


def test_cli_nest_in(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=15, singles=40, test_patients=2)
    beta = make_manifest("beta", patients=10, singles=40, seed=5)
    write_csv(tmp_path / "alpha.csv", alpha)
    write_csv(tmp_path / "beta.csv", beta)
    manifests = [
        "--manifest",
        tmp_path / "alpha.csv",
        "--manifest",
        tmp_path / "beta.csv",
        "--taxonomy",
        taxonomy_file,
        "--folds",
        "3",
        "--pin",
        "test=alpha:test",
    ]
    up, down = tmp_path / "abc", tmp_path / "alpha-only"
    run_split(*manifests, "--target", "abc", "--out", up)
    res = run_split(*manifests, "--target", "alpha-only", "--out", down, "--nest-in", up, "--seed", "7")
    assert "validation/test images seen in training upstream 0" in res.stdout
    assert "(no --nest-in)" in (up / "split_report.md").read_text()
    # from the files: an image of downstream fold k or test is in upstream fold k or test
    o_up, o = outputs(up), outputs(down)
    where = pd.concat([o_up["train_val"], o_up["test"].assign(fold="test")]).set_index("image_id")["fold"]
    held = pd.concat([o["train_val"], o["test"].assign(fold="test")])
    assert held["image_id"].isin(where.index).all()
    for k in ("0", "1", "2"):
        ids = held.loc[held["fold"].isin([k, "test"]), "image_id"]
        assert where[ids].isin([k, "test"]).all()
    assert (held["fold"] == held["image_id"].map(where)).all()  # the same rows: exactly the upstream places
    n = report(down)["nesting"]
    assert n["images_seen_in_training_upstream"] == n["images_whose_group_is_seen_in_training_upstream"] == 0
    assert set(n["folds"]) == {"0", "1", "2"} and n["nest_conflicts"] == n["groups_absent_upstream"] == 0
    assert n["folds"]["0"]["images"] == (o["train_val"]["fold"] == "0").sum() + len(o["test"])
    assert report(down)["params"]["nest_in"] == str(up)
    md = (down / "split_report.md").read_text()
    assert "- images of this split's validation/test seen in training upstream: 0\n" in md

    # upstream grouped differently (no duplicate link there): the link merges an upstream fold-0 group
    # with a fold-1 group; the merged group cannot be clean, and the report says so
    tv_up = o_up["train_val"]
    a = tv_up.loc[(tv_up["fold"] == "0") & tv_up["image_id"].str.startswith("alpha/"), "image_id"].iloc[0]
    b = tv_up.loc[(tv_up["fold"] == "1") & tv_up["image_id"].str.startswith("alpha/"), "image_id"].iloc[0]
    dups = write_duplicates(tmp_path / "d", [(a, b)], lambda i: i.split("/")[0])
    leaky = tmp_path / "leaky"
    res = run_split(*manifests, "--target", "alpha-only", "--out", leaky, "--nest-in", up, "--duplicates", dups)
    n = report(leaky)["nesting"]
    merged = (tv_up["group"] == tv_up.set_index("image_id").at[a, "group"]) | (
        tv_up["group"] == tv_up.set_index("image_id").at[b, "group"]
    )
    minority = merged & tv_up["image_id"].str.startswith("alpha/")
    assert n["nest_conflicts"] == 1 and n["images_seen_in_training_upstream"] > 0
    assert n["images_seen_in_training_upstream"] <= minority.sum()
    assert "LEAK" in res.stderr and "re-split upstream" in res.stderr
    # pins that upstream did not make, another fold count, a missing folder: one-line errors
    free = tmp_path / "free"
    run_split(*manifests[:-2], "--target", "abc", "--out", free)
    res = run_split(*manifests, "--target", "alpha-only", "--out", tmp_path / "x", "--nest-in", free, ok=False)
    assert res.exit_code == 2 and "pin the same images there" in res.output
    res = run_split(
        *manifests[:-4],
        "--folds",
        "2",
        "--pin",
        "test=alpha:test",
        "--target",
        "alpha-only",
        "--out",
        tmp_path / "x",
        "--nest-in",
        up,
        ok=False,
    )
    assert res.exit_code == 2 and "upstream split has fold 2, but --folds is 2" in res.output
    res = run_split(*manifests, "--target", "alpha-only", "--out", tmp_path / "x", "--nest-in", tmp_path, ok=False)
    assert res.exit_code == 2 and "--nest-in:" in res.output and "train_val.csv not found" in res.output
    assert not (tmp_path / "x").exists()


def test_cli_deterministic_and_row_order_free(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=20, singles=60, test_patients=2)
    beta = make_manifest("beta", patients=8, seed=4)
    write_csv(tmp_path / "alpha.csv", alpha)
    write_csv(tmp_path / "beta.csv", beta)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    write_csv(shuffled / "alpha.csv", alpha.sample(frac=1, random_state=1))
    write_csv(shuffled / "beta.csv", beta.sample(frac=1, random_state=2))
    common = ["--target", "abc", "--taxonomy", taxonomy_file, "--pin", "test=alpha:test"]
    runs = []
    for name, folder, order in [
        ("a", tmp_path, ("alpha", "beta")),
        ("b", tmp_path, ("alpha", "beta")),
        ("c", shuffled, ("beta", "alpha")),
    ]:
        out = tmp_path / f"out_{name}"
        args = [x for src in order for x in ("--manifest", folder / f"{src}.csv")]
        run_split(*args, *common, "--out", out)
        runs.append(out)
    for file in OUTPUT_FILES:
        assert (runs[0] / file).read_bytes() == (runs[1] / file).read_bytes(), file
    for file in ("train_val.csv", "test.csv", "excluded.csv", "class_mapping.json"):
        assert (runs[0] / file).read_bytes() == (runs[2] / file).read_bytes(), file
    ra, rc = report(runs[0]), report(runs[2])
    ra.pop("params"), rc.pop("params")
    assert ra == rc


def test_cli_giant_group_warning(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=3, per_patient=40, singles=30)  # each patient ~ 27 %
    write_csv(tmp_path / "alpha.csv", alpha)
    args = ["--manifest", tmp_path / "alpha.csv", "--target", "abc", "--taxonomy", taxonomy_file]
    res = run_split(*args, "--out", tmp_path / "o1")
    assert "warning:" in res.stderr and "max-group-share" in res.stderr
    r = report(tmp_path / "o1")
    assert r["groups"]["too_large"] and any("largest group" in w for w in r["warnings"])
    assert r["groups"]["largest"]["images"] == 40 and r["groups"]["largest"]["share"] == round(40 / 150, 6)
    res = run_split(*args, "--out", tmp_path / "o2", "--max-group-share", "0.3")
    assert "largest group" not in res.output and not report(tmp_path / "o2")["groups"]["too_large"]


def test_cli_errors(tmp_path: Path, taxonomy_file: Path) -> None:
    alpha = make_manifest("alpha", patients=3)
    write_csv(tmp_path / "alpha.csv", alpha)
    base = ["--manifest", tmp_path / "alpha.csv", "--out", tmp_path / "o", "--taxonomy", taxonomy_file]
    cases = [
        (["--manifest", tmp_path / "nope.csv", "--target", "abc", "--out", tmp_path / "o"], "manifest not found"),
        ([*base, "--target", "nope"], "unknown target 'nope'"),
        ([*base, "--target", "abc", "--pin", "train=alpha"], "only test can be pinned"),
        ([*base, "--target", "abc", "--pin", "test=alpha:testing"], "matches no image"),
        ([*base, "--target", "abc", "--format-of", "alpha"], "NAME=FORMAT"),
        ([*base, "--target", "abc", "--manifest", tmp_path / "alpha.csv"], "image ids must be unique"),
        ([*base, "--target", "abc", "--duplicates", tmp_path / "nope.csv"], "--duplicates file not found"),
    ]
    for args, message in cases:
        res = run_split(*args, ok=False)
        assert res.exit_code == 2 and message in res.output, (args, res.output)
    assert not (tmp_path / "o").exists()
    bad = alpha.copy()
    bad.loc[0, "label"] = "Mystery"
    write_csv(tmp_path / "bad.csv", bad)
    res = run_split(
        "--manifest",
        tmp_path / "bad.csv",
        "--target",
        "abc",
        "--taxonomy",
        taxonomy_file,
        "--out",
        tmp_path / "o",
        ok=False,
    )
    assert res.exit_code == 2 and "alpha: Mystery" in res.output


def test_cli_rules_counted_in_the_report(tmp_path: Path, taxonomy_file: Path) -> None:
    """The same manifest under each several-classes rule: what each did, per class, in the report."""
    alpha = make_manifest(
        "alpha", extra=[("ab.jpg", "A|B"), ("bc.jpg", "B|C"), ("abc.jpg", "A|B|C"), ("aa.jpg", "A|A")]
    )
    write_csv(tmp_path / "alpha.csv", alpha)
    got = {}
    for target in ("abc", "abc-priority", "abc-multi"):
        run_split(
            "--manifest",
            tmp_path / "alpha.csv",
            "--target",
            target,
            "--taxonomy",
            taxonomy_file,
            "--out",
            tmp_path / target,
        )
        o = outputs(tmp_path / target)
        both = pd.concat([o["train_val"], o["test"]]).set_index("image_id")["target_class"]
        got[target] = (both, report(tmp_path / target), (tmp_path / target / "split_report.md").read_text())
    both, r, md = got["abc"]
    assert "alpha/ab.jpg" not in both and both["alpha/aa.jpg"] == "a"
    assert r["several_classes"] | {"per_class": None} == {
        "rule": "exclude",
        "priority": None,
        "images": 3,
        "resolved_by_priority": 0,
        "kept_multi_label": 0,
        "excluded_as_ambiguous": 3,
        "per_class": None,
    }
    assert r["several_classes"]["per_class"]["b"] == {"images": 3, "excluded_as_ambiguous": 3}
    assert "rule: exclude" in md and r["composition"] is None
    both, r, md = got["abc-priority"]
    assert (both["alpha/ab.jpg"], both["alpha/bc.jpg"], both["alpha/abc.jpg"]) == ("b", "c", "c")
    s = r["several_classes"]
    assert (s["rule"], s["priority"], s["resolved_by_priority"], s["excluded_as_ambiguous"]) == (
        "priority",
        ["c", "b", "a", "normal"],
        3,
        0,
    )
    assert s["per_class"] == {
        "a": {"images": 2, "won": 0, "lost": 2},
        "b": {"images": 3, "won": 1, "lost": 2},
        "c": {"images": 2, "won": 2, "lost": 0},
    }
    assert "c > b > a > normal" in md
    both, r, md = got["abc-multi"]
    assert (both["alpha/ab.jpg"], both["alpha/abc.jpg"], both["alpha/aa.jpg"]) == ("a|b", "a|b|c", "a")
    assert r["several_classes"]["kept_multi_label"] == 3
    assert r["several_classes"]["per_class"]["c"] == {"images": 2, "kept_multi_label": 2}
    # a multi-label image counts once per class in the class tables, once in the split sizes
    n_images = r["rows"]["train_val"] + r["rows"]["test"]
    assert sum(p["images"] for p in r["proportions"].values()) == n_images + 1 + 1 + 2
    assert sum(r["fold_sizes"].values()) == r["rows"]["train_val"]


def test_cli_every_contract_label_of_every_source(tmp_path: Path) -> None:
    """The packaged taxonomy over a manifest holding every label of every EE24 source: no unknown
    label; ee24-ce24 reports its composition beside the paper's numbers; ee24 splits multi-label."""
    rows = every_label()
    rng = np.random.default_rng(0)
    COPIES = 3  # noqa: N806
    records = [
        {
            "image_id": f"{fmt}/{k}_{i}.png",
            "source": fmt,
            "path": f"raw/{fmt}/{k}_{i}.png",
            "label": label,
            "patient_id": f"P{rng.integers(30)}" if fmt in ("ers", "limuc", "medfmc-endo") else "",
            "official_split": "",
        }
        for k in range(COPIES)
        for i, (fmt, label) in enumerate(rows)
    ]
    manifests = tmp_path / "ingest"
    for fmt, part in pd.DataFrame(records).groupby("source"):
        write_csv(manifests / f"{fmt}.csv", part)
    run_split("--manifest", manifests, "--target", "ee24-ce24", "--out", tmp_path / "ee24-ce24")
    r = report(tmp_path / "ee24-ce24")
    ex = outputs(tmp_path / "ee24-ce24")["excluded"]
    assert (
        ex["reason"].str.startswith("quality flag only").sum() == COPIES * 11
    )  # q01, q03, q04, q06, q08-q10 and blur rows
    assert r["several_classes"]["rule"] == "priority" and r["several_classes"]["resolved_by_priority"] > 0
    comp = r["composition"]
    assert comp["paper_totals"]["worms"] == comp["paper_datasets"]["ers"]["worms"] == 201
    assert comp["datasets"][:4] == ["ers", "limuc", "crohnipi", "hyperkvasir"]
    assert comp["build"]["worms"]["ers"] == COPIES * 2  # c20 and c20|q02
    assert comp["build"]["ulcer"]["limuc"] == COPIES * 3 and comp["build"]["normal"]["limuc"] == 0
    assert comp["build_totals"] == {c: sum(v.values()) for c, v in comp["build"].items()}
    assert comp["build_images_total"] == r["rows"]["train_val"] + r["rows"]["test"]
    md = (tmp_path / "ee24-ce24" / "split_report.md").read_text()
    table = md[md.index("## Composition beside the published numbers") :]
    assert "| ers | ers (paper) | limuc | limuc (paper) |" in table
    assert f"| Worms | {COPIES * 2} | 201 |" in table and "| **images** |" in table and "130,205" in table
    multi = [manifests / f"{fmt}.csv" for fmt in ("ers", "medfmc-endo", "see-ai")]  # the multi-label sources
    run_split(*[a for m in multi for a in ("--manifest", m)], "--target", "ee24", "--out", tmp_path / "ee24")
    o = outputs(tmp_path / "ee24")
    both = pd.concat([o["train_val"], o["test"]])
    assert both["target_class"].str.contains("|", regex=False).any()
    assert report(tmp_path / "ee24")["several_classes"]["kept_multi_label"] > 0
    assert_no_straddle(o["train_val"], o["test"])
    # an unknown code is still one clear error naming it
    bad = pd.DataFrame(records[:3]).assign(label=["c01", "c99", "c35|h01"])
    write_csv(tmp_path / "bad.csv", bad)
    res = run_split("--manifest", tmp_path / "bad.csv", "--target", "ee24-ce24", "--out", tmp_path / "bad", ok=False)
    assert res.exit_code == 2 and "ers: c35" in res.output and "ers: c99" in res.output


def test_split_help_lists_options() -> None:
    res = runner.invoke(app, ["split", "--help"])
    assert res.exit_code == 0
    for option in (
        "--manifest",
        "--duplicates",
        "--target",
        "--out",
        "--test-fraction",
        "--folds",
        "--seed",
        "--pin",
        "--keep-assignments",
        "--taxonomy",
        "--max-group-share",
        "--format-of",
        "--nest-in",
    ):
        assert option in res.output


# ------------------------------------------------------------------------------------ real data

CE24_CLASSES = list(CE24_CLASS_ORDER)


@pytest.fixture(scope="module")
def ce24_manifest() -> pd.DataFrame:
    """CE24 training + validation as a hash-less manifest, patients from the ce24 file-name rule."""
    from endoctl.sources.ce24 import ce24_patient

    frames = []
    for name, official in (("training_data.xlsx", "training"), ("validation_data.xlsx", "validation")):
        df = pd.read_excel(shared_path("ce24", name))
        path = df["image_path"].str.replace("\\", "/", regex=False)
        frames.append(
            pd.DataFrame(
                {
                    "image_id": "ce24/" + path,
                    "source": "ce24",
                    "path": path,
                    "label": df[CE24_CLASSES].idxmax(axis=1),
                    "patient_id": [ce24_patient(s, PurePosixPath(p).stem) for s, p in zip(df["Dataset"], path)],
                    "official_split": official,
                    "sub_source": df["Dataset"],
                    "file": path.str.rsplit("/", n=1).str[-1],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def proportion_table(tv: pd.DataFrame, te: pd.DataFrame) -> pd.DataFrame:
    """Per class: share (%) overall, in train_val, test and each fold; recomputed from the outputs."""
    both = pd.concat([tv.assign(part="train_val"), te.assign(part="test")])
    overall = both["target_class"].value_counts(normalize=True)
    cols = {"overall": overall * 100}
    parts = {"train_val": tv, "test": te} | {f"fold {f}": tv[tv["fold"] == f] for f in sorted(tv["fold"].unique())}
    for name, part in parts.items():
        cols[name] = (
            part["target_class"].value_counts(normalize=True).reindex(overall.index, fill_value=0) - overall
        ) * 100
    table = pd.DataFrame(cols)
    table["groups"] = both.groupby("target_class")["group"].nunique()
    return table


def test_real_ce24_split_has_no_straddling_videos(tmp_path: Path, ce24_manifest: pd.DataFrame) -> None:
    m = ce24_manifest
    kvasir = m[m["sub_source"] == "KVASIR"]
    official = kvasir.groupby("patient_id")["official_split"].nunique()
    assert int((official > 1).sum()) == 41  # shared/README: all 41 videos straddle the official split
    see_ai = m[m["sub_source"] == "SEE-AI"]
    assert int((see_ai.groupby("file")["official_split"].nunique() > 1).sum()) == 171
    # What dedupe finds: the same SEE-AI/KID/... file listed under several folders is one image.
    same = m.groupby(["sub_source", "file"])["image_id"].agg(list)
    pairs = [(ids[0], other) for ids in same if len(ids) > 1 for other in ids[1:]]
    dups = write_duplicates(tmp_path / "dedupe", pairs, lambda i: "ce24")
    write_csv(tmp_path / "ce24.csv", m[BASIC])
    out = tmp_path / "ce24"
    began = time.perf_counter()
    res = run_split("--manifest", tmp_path / "ce24.csv", "--duplicates", dups, "--target", "ce24", "--out", out)
    seconds = time.perf_counter() - began
    o = outputs(out)
    tv, te = o["train_val"], o["test"]
    assert len(tv) + len(te) + len(o["excluded"]) == len(m)
    assert_no_straddle(tv, te)
    # independent of the group column: videos and SEE-AI file names from the manifest
    where = pd.concat([tv.assign(b="f" + tv["fold"]), te.assign(b="test")]).set_index("image_id")["b"]
    kv = kvasir.assign(b=kvasir["image_id"].map(where))
    straddling_videos = int((kv.groupby("patient_id")["b"].apply(lambda b: b.str[0].nunique()) > 1).sum())
    straddling_video_folds = int((kv.groupby("patient_id")["b"].nunique() > 1).sum())
    assert straddling_videos == straddling_video_folds == 0
    sa = see_ai.assign(b=see_ai["image_id"].map(where))
    assert int((sa.groupby("file")["b"].nunique() > 1).sum()) == 0
    table = proportion_table(tv, te)
    print(
        f"\nCE24 real split: {len(m)} images, {res.stdout.strip()}\nCLI run {seconds:.1f} s; "
        f"test fraction {len(te) / (len(tv) + len(te)):.4f}; straddling KVASIR videos 0 (official 41)\n"
        f"deviation from overall class share, percentage points:\n{table.round(2).to_string()}"
    )
    assert abs(len(te) / (len(tv) + len(te)) - 0.2) < 0.01
    stratifiable = table[table["groups"] >= 5]
    assert (stratifiable[["train_val", "test"]].abs() <= 2.0).all().all(), stratifiable
    r = report(out)
    assert r["straddling"]["groups_across_splits"] == r["straddling"]["patients_across_splits"] == 0
    assert r["max_abs_deviation_pp_classes_with_5_groups"]["test"] <= 2.0
    assert "Class proportions" in (out / "split_report.md").read_text()


def test_real_kvasir_capsule_split_has_no_straddling_videos(tmp_path: Path) -> None:
    meta = read_csv(shared_path("kvasir_capsule", "metadata.csv"), sep=";")
    meta = meta.drop_duplicates(["filename", "finding_class"])  # some frames are listed once per box
    m = pd.DataFrame(
        {
            "image_id": "kvasir-capsule/" + meta["finding_class"] + "/" + meta["filename"],
            "source": "kvasir-capsule",
            "path": "labelled_images/" + meta["finding_class"] + "/" + meta["filename"],
            "label": meta["finding_class"],
            "patient_id": meta["video_id"],
            "official_split": "",
        }
    )
    official = pd.concat(
        [read_csv(shared_path("kvasir_capsule", f"official_split_{k}.csv")).assign(k=k) for k in (0, 1)]
    )
    official_straddle = int(
        (official.assign(v=official["filename"].str.split("_").str[0]).groupby("v")["k"].nunique() > 1).sum()
    )
    assert official_straddle == 7  # shared/README
    write_csv(tmp_path / "kc.csv", m)
    out = tmp_path / "kc"
    began = time.perf_counter()
    res = run_split("--manifest", tmp_path / "kc.csv", "--target", "ee24-ce24", "--out", out)
    seconds = time.perf_counter() - began
    o = outputs(out)
    tv, te, ex = o["train_val"], o["test"], o["excluded"]
    assert len(tv) + len(te) + len(ex) == len(m) and len(ex) > 0  # reduced mucosal view, hematin: excluded
    video = m.set_index("image_id")["patient_id"]
    where = pd.concat([tv.assign(b="f" + tv["fold"]), te.assign(b="test")])
    where["video"] = where["image_id"].map(video)
    assert int((where.groupby("video")["b"].nunique() > 1).sum()) == 0
    table = proportion_table(tv, te)
    print(
        f"\nKvasir-Capsule real split (ee24-ce24): {len(m)} images, {where['video'].nunique()} videos; "
        f"{res.stdout.strip()}\nCLI run {seconds:.1f} s; test fraction {len(te) / (len(tv) + len(te)):.4f}; "
        f"straddling videos 0 (official 2-fold split: 7)\nexcluded: {report(out)['excluded']}\n"
        f"deviation from overall class share, percentage points:\n{table.round(2).to_string()}"
    )
    assert abs(len(te) / (len(tv) + len(te)) - 0.2) < 0.02
    assert report(out)["straddling"]["groups_across_folds"] == 0


def test_real_ce24_with_official_test_pinned(tmp_path: Path, ce24_manifest: pd.DataFrame) -> None:
    truth = pd.read_excel(shared_path("ce24", "test_data.xlsx"))
    names = truth["image_path"].str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]
    test_rows = pd.DataFrame(
        {
            "image_id": "ce24/testing/Images/" + names,
            "source": "ce24",
            "path": "testing/Images/" + names,
            "label": truth["class_label"],
            "patient_id": "",
            "official_split": "test",
        }
    )
    m = pd.concat([ce24_manifest[BASIC], test_rows], ignore_index=True)
    write_csv(tmp_path / "ce24.csv", m)
    out = tmp_path / "pinned"
    res = run_split("--manifest", tmp_path / "ce24.csv", "--target", "ce24", "--out", out, "--pin", "test=ce24:test")
    o = outputs(out)
    tv, te = o["train_val"], o["test"]
    assert set(test_rows["image_id"]) <= set(te["image_id"])
    assert_no_straddle(tv, te)
    table = proportion_table(tv, te)
    r = report(out)
    print(
        f"\nCE24 with the official test pinned: {res.stdout.strip()}\n"
        f"deviation from overall class share, percentage points:\n{table.round(2).to_string()}"
    )
    assert r["pinned"]["images"] == len(test_rows) and r["pinned"]["pinned_groups_not_in_test"] == 0
    assert abs(r["test_fraction"]["achieved"] - 0.2) < 0.01
    assert (table.loc[table["groups"] >= 5, ["train_val", "test"]].abs() <= 2.0).all().all()

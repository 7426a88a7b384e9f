"""Leak-free train/test splits: stratified GROUP assignment with pins and kept assignments.

A *group* (``endoctl.grouping.build_groups``) is a connected component of "same source patient /
video" and "duplicate pair" links, built over ALL input manifests, so a CE24 copy of a
Kvasir-Capsule frame shares the video's group even when only CE24 is in the target. Every group
goes wholly to ``test`` or to one of ``folds`` folds of ``train_val``; nothing else decides where
an image goes.

Flow: manifests → one table sorted by ``image_id`` (input row order never matters) → groups →
``taxonomy.map_labels`` (rows with an ``excluded`` reason are listed, never dropped) → pins and
previous assignments fix some groups → :func:`endoctl.assignment.assign` places the rest →
outputs + report (:func:`write_split`). The report (:mod:`endoctl.split_report`) recounts
straddles from the output tables, not from the assignment.

*Nesting* (``--nest-in UPSTREAM``): a split of a second target (fine-tuning) whose groups keep
their place in the split of the first (pre-training). Training upstream on all folds but k and
then validating downstream on fold k is only clean if every image of downstream fold k (or test)
is in upstream fold k (or test): :func:`endoctl.split_report.nesting_check` recomputes that from the output tables and
the upstream split's files.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.assignment import TEST, TRAIN_VAL, Progress, assign, check_fractions
from endoctl.grouping import LinkRule, group_images, smallest_per_key
from endoctl.io import EXCLUDED_FILE, MAPPING_FILE, SPLIT_REPORT_FILE, SPLIT_REPORT_MD_FILE, TEST_FILE, TRAIN_VAL_FILE
from endoctl.split_report import Placement, SplitRequest, build_report, places, report_markdown
from endoctl.taxonomy import LABEL_SEP

OUTPUT_COLUMNS = ["image_id", "source", "path", "label", "target_class", "group", "fold"]  # train_val/test rows
EXCLUDED_COLUMNS = ["image_id", "source", "reason"]
MANIFEST_REQUIRED = ["image_id", "source", "path", "label"]
OPTIONAL_COLUMNS = ["patient_id", "official_split"]
PAIR_KEY_COLUMNS = ["image_id_a", "image_id_b"]  # the duplicate-pair columns a split needs
PAIR_EVIDENCE_COLUMNS = ["kind", "distance", "similarity"]  # read too when present: links are weighed
OUTPUT_FILES = (TRAIN_VAL_FILE, TEST_FILE, MAPPING_FILE, EXCLUDED_FILE, SPLIT_REPORT_FILE, SPLIT_REPORT_MD_FILE)


# --------------------------------------------------------------------------------------- pins


@dataclass(frozen=True)
class Pin:
    """``test=SOURCE[:OFFICIAL_SPLIT]``: matching images, and every group holding one, go to test."""

    source: str
    official_split: str | None = None

    def __str__(self) -> str:
        return f"{TEST}={self.source}" + (f":{self.official_split}" if self.official_split is not None else "")

    def matches(self, manifest: pd.DataFrame) -> pd.Series:
        hit = manifest["source"] == self.source
        if self.official_split is not None:
            hit &= manifest["official_split"] == self.official_split
        return hit


def parse_pin(text: str) -> Pin:
    """Parse ``test=ce24:test`` or ``test=ce24`` (a whole source); anything else is a ValueError."""
    where, sep, what = text.partition("=")
    if not sep or where.strip() != TEST or not what.strip():
        raise ValueError(
            f"--pin {text!r}: expected test=SOURCE or test=SOURCE:OFFICIAL_SPLIT (only test can be pinned)"
        )
    source, colon, official = what.strip().partition(":")
    if not source:
        raise ValueError(f"--pin {text!r}: empty source name")
    if colon and not official:
        raise ValueError(f"--pin {text!r}: empty official split after ':'")
    return Pin(source, official if colon else None)


def match_pins(pins: Sequence[Pin], table: pd.DataFrame) -> tuple[pd.Series, dict[str, int]]:
    """Rows each pin holds in test, and the count per pin; a pin matching nothing is an error."""
    pinned = pd.Series(False, index=table.index)
    hits = {}
    for p in pins:
        hit = p.matches(table)
        if not hit.any():  # a typo here would silently leak the images it meant to protect
            splits = sorted(set(table.loc[table["source"] == p.source, "official_split"]))
            raise ValueError(
                f"--pin {p} matches no image (sources: {', '.join(sorted(set(table['source'])))}; "
                f"official splits of {p.source!r}: {', '.join(map(repr, splits)) or 'none'})"
            )
        hits[str(p)] = int(hit.sum())
        pinned |= hit
    return pinned, hits


# --------------------------------------------------------------------------------------- inputs


def combine_manifests(
    manifests: pd.DataFrame | Sequence[pd.DataFrame], names: Sequence[str] | None = None
) -> pd.DataFrame:
    """One table of every input row (``image_id, source, path, label, patient_id, official_split``
    plus ``sha256`` when present), sorted by ``image_id``; ids must be unique across manifests."""
    frames = [manifests] if isinstance(manifests, pd.DataFrame) else list(manifests)
    names = list(names) if names is not None else [f"manifest {i + 1}" for i in range(len(frames))]
    parts = []
    for name, df in zip(names, frames):
        missing = [c for c in MANIFEST_REQUIRED if c not in df.columns]
        if missing:
            raise ValueError(
                f"{name}: missing column(s) {missing} (need {MANIFEST_REQUIRED}, optional {OPTIONAL_COLUMNS})"
            )
        cols = MANIFEST_REQUIRED + [c for c in OPTIONAL_COLUMNS + ["sha256"] if c in df.columns]
        part = df[cols].copy()
        for col in OPTIONAL_COLUMNS + ["sha256"]:
            if col not in part.columns:
                part[col] = ""
        part = part.astype(object).fillna("").astype(str)
        part["_manifest"] = name
        parts.append(part)
    if not parts:
        raise ValueError("no manifest given")
    table = pd.concat(parts, ignore_index=True)
    dup = table["image_id"].duplicated(keep=False)
    if dup.any():
        first = table.loc[dup, "image_id"].min()
        where = sorted(set(table.loc[table["image_id"] == first, "_manifest"]))
        raise ValueError(
            f"image_id {first!r} occurs {int((table['image_id'] == first).sum())} times (in {', '.join(where)}); "
            f"{int(dup.sum())} rows share an id: image ids must be unique over all manifests (one row per image; "
            f"a source given twice?)"
        )
    table = table.drop(columns="_manifest").sort_values("image_id", kind="stable").reset_index(drop=True)
    return table[MANIFEST_REQUIRED + OPTIONAL_COLUMNS + ["sha256"]]


def load_duplicates(duplicates_csv: str | Path) -> tuple[pd.DataFrame, dict]:
    """Pairs from ``duplicate_pairs.csv`` beside ``duplicates.csv`` with their evidence (kind,
    distance, similarity), or, without it, from the clusters (every member linked to its cluster's
    smallest id, unweighed); returns (pairs, info for the report)."""
    from endoctl.io import PAIRS_FILE, read_csv

    path = Path(duplicates_csv)
    dups = read_csv(path)
    missing = {"image_id", "cluster"} - set(dups.columns)
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {sorted(missing)} (expected image_id, source, cluster, cluster_size)"
        )
    dups = dups[dups["cluster"] != ""]
    head = smallest_per_key(dups["cluster"], dups["image_id"])
    cluster_pairs = pd.DataFrame({"image_id_a": head, "image_id_b": dups["image_id"].to_numpy(dtype=object)})
    cluster_pairs = cluster_pairs[cluster_pairs["image_id_a"] != cluster_pairs["image_id_b"]]
    pair_file = path.with_name(PAIRS_FILE)
    frames = [cluster_pairs]
    info = {
        "duplicates": str(duplicates_csv),
        "clusters": int(dups["cluster"].nunique()),
        "cluster_links": len(cluster_pairs),
        "pairs_file": None,
        "pairs": 0,
    }
    if pair_file.is_file():
        pairs = read_csv(pair_file)
        missing = set(PAIR_KEY_COLUMNS) - set(pairs.columns)
        if missing:
            raise ValueError(
                f"{pair_file}: missing column(s) {sorted(missing)} (expected image_id_a, image_id_b, distance, kind)"
            )
        frames = [pairs[PAIR_KEY_COLUMNS + [c for c in PAIR_EVIDENCE_COLUMNS if c in pairs]]]  # clusters: its links
        info.update(pairs_file=str(pair_file), pairs=len(pairs))
    return pd.concat(frames, ignore_index=True), info


def read_previous(folder: str | Path, option: str = "--keep-assignments") -> pd.DataFrame:
    """``image_id, split, fold`` from a previous split's ``train_val.csv`` and ``test.csv``
    (``option`` names the command-line option in errors)."""
    from endoctl.io import read_csv

    folder = Path(folder)
    frames = []
    for name, split_name in ((TRAIN_VAL_FILE, TRAIN_VAL), (TEST_FILE, TEST)):
        file = folder / name
        if not file.is_file():
            raise FileNotFoundError(f"{option}: {file} not found (expected a split folder)")
        df = read_csv(file)
        missing = {"image_id", "fold"} - set(df.columns)
        if missing:
            raise ValueError(f"{file}: missing column(s) {sorted(missing)}")
        frames.append(
            pd.DataFrame(
                {"image_id": df["image_id"], "split": split_name, "fold": df["fold"] if split_name == TRAIN_VAL else ""}
            )
        )
    prev = pd.concat(frames, ignore_index=True)
    dup = prev["image_id"].duplicated(keep=False)
    if dup.any():
        raise ValueError(
            f"{folder}: image_id {prev.loc[dup, 'image_id'].min()!r} is listed more than once in the previous split"
        )
    return prev


def _sha_pairs(table: pd.DataFrame) -> pd.DataFrame:
    """Byte-identical files (same sha256) are one image: link them even without dedupe output."""
    sha = table["sha256"]
    known = table[sha != ""]
    head = smallest_per_key(known["sha256"], known["image_id"])
    pairs = pd.DataFrame({"image_id_a": head, "image_id_b": known["image_id"].to_numpy(dtype=object)})
    return pairs[pairs["image_id_a"] != pairs["image_id_b"]].reset_index(drop=True)


# --------------------------------------------------------------------------------------- split


@dataclass
class SplitResult:
    train_val: pd.DataFrame
    test: pd.DataFrame
    excluded: pd.DataFrame
    class_mapping: dict[str, int]
    report: dict
    warnings: list[str] = field(default_factory=list)


def _default_labeler(manifest: pd.DataFrame, taxonomy, target: str, formats: Mapping[str, str] | None) -> pd.DataFrame:
    from endoctl.taxonomy import map_labels

    return map_labels(manifest, taxonomy, target, formats=formats)


def _aligned_labels(table: pd.DataFrame, mapped: pd.DataFrame) -> pd.DataFrame:
    """``target_class, excluded, candidates`` per row of ``table`` from ``map_labels``' answer
    (``candidates``: every class the row's findings reach; empty when the labeler gives none)."""
    missing = {"image_id", "target_class", "excluded"} - set(mapped.columns)
    if missing:
        raise ValueError(f"map_labels returned no column(s) {sorted(missing)}")
    mapped = mapped.reset_index(drop=True)
    if len(mapped) != len(table) or not (mapped["image_id"].to_numpy() == table["image_id"].to_numpy()).all():
        if len(mapped) != len(table) or set(mapped["image_id"]) != set(table["image_id"]):
            raise ValueError(
                f"map_labels returned {len(mapped)} rows for {len(table)} input rows (rows must not be dropped)"
            )
        mapped = mapped.set_index("image_id").loc[table["image_id"]].reset_index()
    out = pd.DataFrame(
        {
            "target_class": mapped["target_class"].astype(object).fillna("").astype(str).to_numpy(),
            "excluded": mapped["excluded"].astype(object).fillna("").astype(str).to_numpy(),
            "candidates": (
                mapped["candidates"].astype(object).fillna("").astype(str).to_numpy()
                if "candidates" in mapped.columns
                else ""
            ),
        }
    )
    unexplained = (out["target_class"] == "") & (out["excluded"] == "")
    out.loc[unexplained, "excluded"] = "no target class"
    out.loc[out["excluded"] != "", "target_class"] = ""
    return out


def _class_mapping(taxonomy, target: str) -> dict[str, int]:
    """The target's class -> index, by index; an unknown target is a ValueError."""
    if target not in getattr(taxonomy, "targets", {}):
        known = ", ".join(sorted(getattr(taxonomy, "targets", {}))) or "none"
        raise ValueError(f"unknown target {target!r} (taxonomy targets: {known})")
    return {
        str(k): int(v)
        for k, v in sorted(taxonomy.targets[target].class_mapping().items(), key=lambda kv: (kv[1], kv[0]))
    }


def _label_rows(table: pd.DataFrame, mapped: pd.DataFrame, request: SplitRequest) -> pd.DataFrame:
    """``table`` with the labeler's answer (``mapped``) as ``target_class, excluded, candidates``; a kept
    row's class outside the target's class mapping is a ValueError."""
    labels = _aligned_labels(table, mapped)
    table = table.assign(
        target_class=labels["target_class"].to_numpy(),
        excluded=labels["excluded"].to_numpy(),
        candidates=labels["candidates"].to_numpy(),
    )
    known = {k.lower() for k in request.mapping}
    kept_classes = set(table.loc[table["excluded"] == "", "target_class"])
    unknown = sorted({c for v in kept_classes for c in v.split(LABEL_SEP) if c.lower() not in known})
    if unknown:
        raise ValueError(
            f"target classes {unknown} are not in target {request.target!r}'s class mapping {list(request.mapping)}"
        )
    return table


def _given_pairs(pairs: pd.DataFrame | None) -> pd.DataFrame:
    """The duplicate pairs as text ids, their evidence as numbers (NaN where unknown)."""
    if pairs is None or not len(pairs):
        return pd.DataFrame(columns=PAIR_KEY_COLUMNS)
    given = pairs[PAIR_KEY_COLUMNS].astype(str)
    if "kind" in pairs:
        given["kind"] = pairs["kind"].astype(str)
    for column in ("distance", "similarity"):
        if column in pairs:
            given[column] = pd.to_numeric(pairs[column].replace("", np.nan), errors="coerce")
    return given


def _group_rows(
    table: pd.DataFrame, pairs: pd.DataFrame | None, max_group_share: float
) -> tuple[pd.DataFrame, pd.DataFrame, int, pd.DataFrame]:
    """``table`` with ``group, group_size`` over the given duplicate pairs (near links weighed, see
    :class:`endoctl.grouping.LinkRule`) and same-sha256 links; the links that joined, how many came
    from sha256, and the refused ones."""
    sha_links = _sha_pairs(table)
    all_pairs = pd.concat([_given_pairs(pairs), sha_links], ignore_index=True)
    rule = LinkRule(max_size=max(1, int(max_group_share * len(table))))
    grouping = group_images(table, all_pairs, rule)
    table = table.assign(group=grouping.groups["group"].to_numpy(), group_size=grouping.groups["group_size"].to_numpy())
    refused = grouping.refused
    joined = all_pairs.merge(refused[PAIR_KEY_COLUMNS], how="left", on=PAIR_KEY_COLUMNS, indicator=True)
    joined = joined[joined["_merge"] == "left_only"].drop(columns="_merge")
    return table, joined[PAIR_KEY_COLUMNS], len(sha_links), refused


def _place_per_row(table: pd.DataFrame, split_table: pd.DataFrame) -> pd.Series:
    """Per row of ``table`` its place in a :func:`read_previous` table: 'test', the fold, or '' when absent."""
    return table["image_id"].map(places(split_table)).astype(object).fillna("")  # object: "" also when none match


def _upstream_place_per_row(table: pd.DataFrame, nest_in: pd.DataFrame, folds: int) -> pd.Series:
    """:func:`_place_per_row` in the split this one nests in, which must not have more folds."""
    place = _place_per_row(table, nest_in)
    up_folds = sorted({int(f) for f in nest_in.loc[nest_in["split"] == TRAIN_VAL, "fold"]})
    if up_folds and up_folds[-1] >= folds:
        raise ValueError(
            f"--nest-in: the upstream split has fold {up_folds[-1]}, but --folds is {folds}: "
            f"nest with the upstream split's --folds"
        )
    return place


def _place_rows(
    request: SplitRequest,
    manifests: pd.DataFrame | Sequence[pd.DataFrame],
    names: Sequence[str] | None,
    pairs: pd.DataFrame | None,
    taxonomy,
    labeler: Callable[..., pd.DataFrame],
    on_progress: Progress | None,
) -> Placement:
    """Every input row labelled, grouped over all manifests and placed by :func:`endoctl.assignment.assign`."""
    table = combine_manifests(manifests, names)
    pinned, pin_hits = match_pins(request.pins, table)  # before labels and groups: a bad pin fails in a second
    table = _label_rows(table, labeler(table.copy(), taxonomy, request.target, request.formats), request)
    table, all_pairs, n_sha_links, refused = _group_rows(table, pairs, request.max_group_share)
    previous = _place_per_row(table, request.previous) if request.previous is not None else None
    upstream = _upstream_place_per_row(table, request.nest_in, request.folds) if request.nest_in is not None else None
    placed = assign(
        table["group"],
        table["target_class"].where(table["excluded"] == "", ""),
        request.test_fraction,
        request.folds,
        request.seed,
        pinned,
        previous,
        on_progress,
        nested=upstream,
    )
    table = table.assign(split=placed["split"].to_numpy(), fold=placed["fold"].to_numpy(), how=placed["how"].to_numpy())
    return Placement(table, all_pairs, n_sha_links, pinned, pin_hits, previous, refused)


def _output_tables(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``train_val``, ``test`` (the kept rows, :data:`OUTPUT_COLUMNS`) and ``excluded`` (with the reason)."""
    keep = table["excluded"] == ""
    kept = table[keep]
    train_val = kept[kept["split"] == TRAIN_VAL].copy()
    train_val["fold"] = train_val["fold"].astype(str)
    test = kept[kept["split"] == TEST].copy()
    test["fold"] = ""
    excluded = (
        table.loc[~keep, ["image_id", "source", "excluded"]]
        .rename(columns={"excluded": "reason"})
        .reset_index(drop=True)
    )
    if len(train_val) + len(test) + len(excluded) != len(table):  # pragma: no cover - invariant
        raise AssertionError("rows in != train_val + test + excluded")
    return train_val[OUTPUT_COLUMNS].reset_index(drop=True), test[OUTPUT_COLUMNS].reset_index(drop=True), excluded


def split(
    manifests: pd.DataFrame | Sequence[pd.DataFrame],
    pairs: pd.DataFrame | None,
    taxonomy,
    target: str,
    *,
    formats: Mapping[str, str] | None = None,
    test_fraction: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    pins: Sequence[Pin | str] = (),
    previous: pd.DataFrame | None = None,
    max_group_share: float = 0.25,
    params: Mapping | None = None,
    names: Sequence[str] | None = None,
    labeler: Callable[..., pd.DataFrame] | None = None,
    on_progress: Progress | None = None,
    nest_in: pd.DataFrame | None = None,
    source_counts: Mapping | None = None,
) -> SplitResult:
    """Split every labelled row of ``manifests`` into train_val folds and test, leak-free.

    ``pairs``: duplicate links (``image_id_a, image_id_b``), e.g. from :func:`load_duplicates`;
    byte-identical files (same ``sha256``, when the column exists) are linked as well.
    ``taxonomy``/``target``: ``taxonomy.targets[target].class_mapping()`` and
    ``labeler(manifest, taxonomy, target, formats)`` (default ``endoctl.taxonomy.map_labels``),
    which returns ``target_class`` ('' if excluded) and ``excluded`` (the reason) per row.
    ``previous``: :func:`read_previous` of an earlier split (``--keep-assignments``).
    ``nest_in``: :func:`read_previous` of the split this one nests in (``--nest-in``): groups
    keep their place there (see :func:`endoctl.assignment.assign`), the report's ``nesting`` checks it.
    ``params``: recorded in the report's ``params`` on top of the arguments above (the CLI adds
    file names there).
    ``source_counts``: :func:`endoctl.published.counts` of the inputs, the report's ``source_counts``
    (found / accepted / rejected per source beside the published counts).
    """
    pins = [p if isinstance(p, Pin) else parse_pin(p) for p in pins]
    check_fractions(test_fraction, folds)
    mapping = _class_mapping(taxonomy, target)
    request = SplitRequest(
        target=target,
        mapping=mapping,
        spec=taxonomy.targets[target],
        formats=formats,
        test_fraction=test_fraction,
        folds=folds,
        seed=seed,
        pins=pins,
        max_group_share=max_group_share,
        previous=previous,
        nest_in=nest_in,
        params=params,
    )
    placed = _place_rows(request, manifests, names, pairs, taxonomy, labeler or _default_labeler, on_progress)
    train_val, test, excluded = _output_tables(placed.table)
    report = build_report(request, placed, train_val, test, excluded)
    report["source_counts"] = dict(source_counts) if source_counts is not None else None
    return SplitResult(train_val, test, excluded, mapping, report, list(report["warnings"]))


def write_split(result: SplitResult, out_dir: str | Path) -> list[Path]:
    """Write the six output files as one set: built in a hidden sibling folder and swapped in with
    one rename (:func:`endoctl.io.atomic_dir`), so a reader or a killed run never sees a new
    ``train_val.csv`` beside an old ``test.csv`` (images in both) or a report of other files."""
    from endoctl.io import atomic_dir, write_csv, write_text

    out = Path(out_dir)
    with atomic_dir(out, OUTPUT_FILES, what="split outputs") as tmp:
        write_csv(tmp / TRAIN_VAL_FILE, result.train_val)
        write_csv(tmp / TEST_FILE, result.test)
        write_text(tmp / MAPPING_FILE, json.dumps(result.class_mapping, indent=2) + "\n")
        write_csv(tmp / EXCLUDED_FILE, result.excluded[EXCLUDED_COLUMNS])
        write_text(tmp / SPLIT_REPORT_FILE, json.dumps(result.report, indent=2) + "\n")
        write_text(tmp / SPLIT_REPORT_MD_FILE, report_markdown(result.report))
    return [out / name for name in OUTPUT_FILES]

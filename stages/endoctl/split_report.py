"""The report written beside a split: ``split_report.json`` and its Markdown rendering.

Kept apart from the placing (:mod:`endoctl.split`, :mod:`endoctl.assignment`) because the report
must not trust it: every count of images, groups, patients and duplicate pairs across splits or
folds is recomputed from the output tables (and, for ``--nest-in``, from the upstream split's
files), so a placing bug shows up here as a leak instead of being reported as its own intent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from endoctl.assignment import TEST, TRAIN_VAL
from endoctl.grouping import TOO_LARGE, patient_keys
from endoctl.published import markdown as published_markdown
from endoctl.taxonomy import LABEL_SEP, MULTI_LABEL, PRIORITY, Target

if TYPE_CHECKING:
    from endoctl.split import Pin

WELL_STRATIFIABLE = 5  # classes spread over at least this many groups can be balanced


# --------------------------------------------------------------------------------------- what a split hands over


@dataclass(frozen=True)
class SplitRequest:
    """What a split was asked for: what the report records and checks against."""

    target: str
    mapping: dict[str, int]  # the target's class -> index (class_mapping.json)
    spec: Target
    formats: Mapping[str, str] | None  # source name -> taxonomy dataset, where they differ
    test_fraction: float
    folds: int
    seed: int
    pins: list[Pin]
    max_group_share: float
    previous: pd.DataFrame | None  # endoctl.split.read_previous of the --keep-assignments split
    nest_in: pd.DataFrame | None  # endoctl.split.read_previous of the --nest-in split
    params: Mapping | None  # recorded in the report's params over the above (the CLI adds file names)

    def report_params(self) -> dict:
        """The report's ``params``: the arguments above, then ``params`` over them."""
        used = {
            "target": self.target,
            "test_fraction": self.test_fraction,
            "folds": self.folds,
            "seed": self.seed,
            "pins": [str(p) for p in self.pins],
            "max_group_share": self.max_group_share,
            "formats": dict(self.formats or {}),
            "keep_assignments": self.previous is not None,
            "nest_in": self.nest_in is not None,
        }
        used.update(self.params or {})
        return used


@dataclass(frozen=True)
class Placement:
    """Every input row labelled, grouped and placed, and what grouped and fixed the rows."""

    table: (
        pd.DataFrame
    )  # endoctl.split.combine_manifests' + target_class, excluded, candidates, group, group_size, split, fold, how
    pairs: pd.DataFrame  # every duplicate link the groups were built from, same-sha256 links included
    n_sha_links: int
    pinned: pd.Series  # per row: matched by a pin
    pin_hits: dict[str, int]  # images per pin
    previous_place: pd.Series | None  # per row: its place in the --keep-assignments split ('test', a fold, '')
    refused: pd.DataFrame  # grouping.REFUSED_COLUMNS: the near links weighed and left between groups


def class_order(mapping: Mapping[str, int], classes: Iterable[str]) -> list[str]:
    """``classes`` in the target's class-mapping order (unknown ones last, by name), so report tables
    read in the order of ``class_mapping.json``."""
    rank = {str(k).lower(): int(v) for k, v in mapping.items()}
    return sorted(set(classes), key=lambda c: (rank.get(c.lower(), len(rank)), c))


# --------------------------------------------------------------------------------------- report


def places(split_table: pd.DataFrame) -> pd.Series:
    """``'test'`` or the fold number (text) per image id of a :func:`endoctl.split.read_previous` table."""
    prev = split_table.set_index("image_id")
    return pd.Series(np.where(prev["split"] == TEST, TEST, prev["fold"].astype(str)), index=prev.index)


def nesting_check(
    train_val: pd.DataFrame, test: pd.DataFrame, upstream: pd.DataFrame, folds: int, group_of: pd.Series | None = None
) -> dict:
    """Per fold k: images of this split's fold k or test that the upstream split trains on when it
    validates on fold k (all its folds but k), from the tables alone; 0 everywhere = nested.

    ``upstream``: :func:`endoctl.split.read_previous` of the upstream folder. ``group_of`` (image id -> group,
    this split's grouping, over every input image) adds the stricter count: held-out images whose
    group (patient/video, duplicates) has an image the upstream split trains on.
    """
    where = places(upstream)
    held_out = {
        str(k): pd.concat([train_val.loc[train_val["fold"] == str(k), "image_id"], test["image_id"]])
        for k in range(folds)
    }
    every = pd.concat([train_val["image_id"], test["image_id"]])
    seen: set[str] = set()
    seen_group: set[str] = set()
    per_fold = {}
    for k, ids in held_out.items():
        up = ids.map(where)
        hit = up.notna() & (up != TEST) & (up != k)
        row = {"images": len(ids), "in_upstream": int(up.notna().sum()), "seen_in_training_upstream": int(hit.sum())}
        seen |= set(ids[hit])
        if group_of is not None:
            trained = where[(where != TEST) & (where != k)].index
            groups = set(group_of.reindex(trained).dropna())
            shared = ids.map(group_of).isin(groups)
            row["group_seen_in_training_upstream"] = int(shared.sum())
            seen_group |= set(ids[shared])
        per_fold[k] = row
    out = {
        "images_seen_in_training_upstream": len(seen),
        "images_absent_upstream": int((~every.isin(where.index)).sum()),
        "folds": per_fold,
    }
    if group_of is not None:
        out["images_whose_group_is_seen_in_training_upstream"] = len(seen_group)
    return out


def straddling(train_val: pd.DataFrame, test: pd.DataFrame, key: str = "group") -> dict:
    """Keys present in both train_val and test, and train_val keys in more than one fold,
    counted from the output tables alone."""
    both = sorted(set(train_val[key]) & set(test[key]) - {""})
    folds_per = train_val[train_val[key] != ""].groupby(key)["fold"].nunique()
    multi = sorted(folds_per[folds_per > 1].index)
    return {"across_splits": len(both), "across_folds": len(multi), "examples": (both + multi)[:5]}


def _per_class(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with one row per class of ``target_class`` (multi-label values are '|'-joined)."""
    return frame.assign(target_class=frame["target_class"].str.split(LABEL_SEP)).explode("target_class")


def _pct(x: float) -> float:
    return round(100.0 * x, 3)


def _outputs_by_bin(train_val: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """train_val and test rows in one table with their ``split`` and ``bin`` ('test' or 'fold j')."""
    outputs = pd.concat([train_val.assign(split=TRAIN_VAL), test.assign(split=TEST)], ignore_index=True)
    outputs["bin"] = np.where(outputs["split"] == TEST, TEST, "fold " + outputs["fold"].astype(str))
    return outputs


def _class_counts(per_class: pd.DataFrame, classes: list[str], sources: list[str]) -> dict:
    """Images per class x split x source (a multi-label image counts in each of its classes)."""
    counts = {c: {s: {src: 0 for src in sources} for s in (TRAIN_VAL, TEST)} for c in classes}
    for (c, s, src), n in per_class.groupby(["target_class", "split", "source"]).size().items():
        counts[c][s][src] = int(n)
    return counts


def _proportions_report(outputs: pd.DataFrame, per_class: pd.DataFrame, classes: list[str], folds: int) -> dict:
    """Per class its share of every bin (train_val, test, each fold) beside its overall share, and per
    bin the largest deviation, over all classes and over the well-stratifiable ones. Shares stay per
    image: a class's share of a bin = images carrying it / images in the bin."""
    bins = [TRAIN_VAL, TEST] + [f"fold {j}" for j in range(folds)]
    per_bin = pd.crosstab(per_class["target_class"], per_class["bin"])
    per_bin[TRAIN_VAL] = per_bin.drop(columns=[TEST], errors="ignore").sum(axis=1)
    per_bin = per_bin.reindex(index=classes, columns=bins, fill_value=0)
    sizes = outputs["bin"].value_counts().reindex(bins, fill_value=0)
    sizes[TRAIN_VAL] = int((outputs["split"] == TRAIN_VAL).sum())
    overall = per_class["target_class"].value_counts()
    groups_per_class = per_class.groupby("target_class")["group"].nunique()
    proportions, max_dev, max_dev_strat = {}, {b: 0.0 for b in bins}, {b: 0.0 for b in bins}
    for c in classes:
        base = overall.get(c, 0) / max(len(outputs), 1)
        row = {
            "overall_pct": _pct(base),
            "images": int(overall.get(c, 0)),
            "groups": int(groups_per_class.get(c, 0)),
            "splits": {},
        }
        for b in bins:
            n, size = int(per_bin.at[c, b]), int(sizes[b])
            share = n / size if size else 0.0
            dev = _pct(share - base) if size else 0.0
            row["splits"][b] = {"images": n, "pct": _pct(share), "deviation_pp": dev}
            max_dev[b] = max(max_dev[b], abs(dev))
            if row["groups"] >= WELL_STRATIFIABLE:
                max_dev_strat[b] = max(max_dev_strat[b], abs(dev))
        proportions[c] = row
    return {
        "proportions": proportions,
        "max_abs_deviation_pp": {b: round(v, 3) for b, v in max_dev.items()},
        "max_abs_deviation_pp_classes_with_5_groups": {b: round(v, 3) for b, v in max_dev_strat.items()},
    }


def _largest_group(table: pd.DataFrame, kept: pd.DataFrame) -> tuple[dict | None, float]:
    """The largest group (of every input row) for the report, None without rows, and its share of all rows."""
    if not len(table):
        return None, 0.0
    largest = table.loc[table["group_size"].idxmax()]
    share = float(largest["group_size"] / len(table))
    gid = largest["group"]
    info = {
        "group": gid,
        "images": int(largest["group_size"]),
        "share": round(share, 6),
        "labelled_images": int((kept["group"] == gid).sum()),
        "split": str(table.loc[table["group"] == gid, "split"].iloc[0]),
    }
    return info, share


def _straddling_report(train_val: pd.DataFrame, test: pd.DataFrame, kept: pd.DataFrame, pairs: pd.DataFrame) -> dict:
    """Groups, patients and duplicate pairs in more than one split or fold, from the output tables alone."""
    groups = straddling(train_val, test, "group")
    patient_of = kept.set_index("image_id")["patient_id"]
    tv_p = train_val.assign(patient=patient_keys(train_val.assign(patient_id=train_val["image_id"].map(patient_of))))
    te_p = test.assign(patient=patient_keys(test.assign(patient_id=test["image_id"].map(patient_of))))
    patients = straddling(tv_p, te_p, "patient")
    where = pd.concat([train_val.assign(b="f" + train_val["fold"]), test.assign(b=TEST)]).set_index("image_id")["b"]
    pa, pb = pairs["image_id_a"].map(where), pairs["image_id_b"].map(where)
    both_in = pa.notna() & pb.notna()
    return {
        "groups_across_splits": groups["across_splits"],
        "groups_across_folds": groups["across_folds"],
        "patients_across_splits": patients["across_splits"],
        "patients_across_folds": patients["across_folds"],
        "duplicate_pairs_across_splits": int((both_in & ((pa == TEST) != (pb == TEST))).sum()),
        "duplicate_pairs_across_folds_or_splits": int((both_in & (pa != pb)).sum()),
        "examples": groups["examples"] + patients["examples"],
    }


REFUSED_LISTED = 1000  # refused links listed one by one in the report (all are counted)


def _refused_report(placed: Placement) -> dict:
    """The near links weighed and refused (:class:`endoctl.grouping.LinkRule`), where their images
    went, and each listed with its evidence: what an audit of this split will find across splits."""
    table = placed.table.set_index("image_id")
    place = pd.Series(np.where(table["split"] == TEST, TEST, "f" + table["fold"].astype(str)), index=table.index)
    refused = placed.refused
    pa, pb = refused["image_id_a"].map(place), refused["image_id_b"].map(place)
    ga, gb = refused["image_id_a"].map(table["group"]), refused["image_id_b"].map(table["group"])
    listed = refused.assign(group_a=ga, group_b=gb, place_a=pa, place_b=pb).head(REFUSED_LISTED)
    return {
        "links": len(refused),
        "by_reason": {str(k): int(v) for k, v in sorted(refused["reason"].value_counts().items())},
        "group_pairs": int(pd.Series(list(zip(np.minimum(ga, gb), np.maximum(ga, gb))), dtype=object).nunique()),
        "across_splits": int(((pa == TEST) != (pb == TEST)).sum()),
        "across_folds_or_splits": int((pa != pb).sum()),
        "listed": [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
            for row in listed.astype(object).to_dict("records")
        ],
    }


def _pinned_report(placed: Placement, request: SplitRequest, kept: pd.DataFrame, train_val: pd.DataFrame) -> dict:
    """The pins, the images they matched and the groups holding those (all in test when 0 are not)."""
    table = placed.table
    pinned_groups = set(table.loc[placed.pinned, "group"])
    return {
        "pins": [str(p) for p in request.pins],
        "images_per_pin": placed.pin_hits,
        "images": int(placed.pinned.sum()),
        "groups": len(pinned_groups),
        "images_in_pinned_groups": int(table["group"].isin(pinned_groups).sum()),
        "labelled_images_in_pinned_groups": int(kept["group"].isin(pinned_groups).sum()),
        "pinned_groups_not_in_test": int(len(set(train_val["group"]) & pinned_groups)),
    }


def _keep_conflicts(table: pd.DataFrame, hows: pd.Series, previous_place: pd.Series) -> list[dict]:
    """Per group merged across previous splits/folds (how ``conflict-*``): its previous places and its new one."""
    present = previous_place != ""
    conflicts = []
    for gid in sorted(hows[hows.str.startswith("conflict")].index):
        rows = table[(table["group"] == gid) & present]
        before = previous_place[rows.index].value_counts()
        conflicts.append(
            {
                "group": gid,
                "kind": hows[gid],
                "previous": {str(k): int(v) for k, v in sorted(before.items())},
                "now": str(rows["split"].iloc[0]) if rows["split"].iloc[0] == TEST else f"fold {rows['fold'].iloc[0]}",
                "images": int((table["group"] == gid).sum()),
            }
        )
    return conflicts


def _keep_report(placed: Placement, request: SplitRequest, hows: pd.Series) -> dict | None:
    """What ``--keep-assignments`` kept, assigned anew and found in conflict; None without it."""
    if request.previous is None:
        return None
    table, previous_place = placed.table, placed.previous_place
    conflicts = _keep_conflicts(table, hows, previous_place)
    previous_ids = set(request.previous["image_id"])
    return {
        "previous_images": len(previous_ids),
        "previous_images_present": int((previous_place != "").sum()),
        "previous_images_missing": len(previous_ids - set(table["image_id"])),
        "kept_groups": int((hows == "kept").sum()),
        "new_groups": int((hows == "assigned").sum()),
        "conflicting_groups": len(conflicts),
        "conflicts": conflicts,
    }


def _nesting_report(
    placed: Placement,
    request: SplitRequest,
    kept: pd.DataFrame,
    hows: pd.Series,
    train_val: pd.DataFrame,
    test: pd.DataFrame,
) -> dict | None:
    """:func:`nesting_check` against the ``--nest-in`` split plus how many groups nested; None without it."""
    if request.nest_in is None:
        return None
    table = placed.table
    nesting = nesting_check(train_val, test, request.nest_in, request.folds, table.set_index("image_id")["group"])
    labelled = hows[hows.index.isin(kept["group"])]
    nesting["nested_groups"] = int(labelled.isin(["nested", "nest-conflict"]).sum())
    nesting["nest_conflicts"] = int((labelled == "nest-conflict").sum())
    nesting["groups_absent_upstream"] = int((~labelled.isin(["nested", "nest-conflict"])).sum())
    return nesting


def _warnings(
    request: SplitRequest,
    n_test: int,
    n_kept: int,
    largest: tuple[dict | None, float],
    straddle: dict,
    keep: dict | None,
    nesting: dict | None,
    refused: dict,
) -> list[str]:
    """What the report's numbers call for a warning about, in a fixed order (``largest``: info, share)."""
    out = []
    info, share = largest
    if share > request.max_group_share:
        out.append(
            f"largest group {info['group']} holds {share:.1%} of all images (> --max-group-share "
            f"{request.max_group_share:.0%}): duplicate or patient links chained much of the data together; "
            f"the split cannot be balanced around it"
        )
    if request.test_fraction > 0 and n_kept and n_test / n_kept > request.test_fraction + 0.05:
        out.append(
            f"test holds {n_test / n_kept:.1%} of images (asked {request.test_fraction:.0%}): pinned, kept or nested "
            "groups exceed the target"
        )
    capped = [e for e in refused["listed"] if e["reason"] == TOO_LARGE and e["place_a"] != e["place_b"]]
    if capped:
        out.append(
            f"{len(capped)} duplicate link(s) across splits/folds were refused because the group would exceed "
            f"--max-group-share {request.max_group_share:.0%}: possible leaks, listed in report 'refused_links'"
        )
    leak_counts = ("groups_across_splits", "groups_across_folds", "patients_across_splits", "patients_across_folds")
    if any(straddle[k] for k in leak_counts) or straddle["duplicate_pairs_across_folds_or_splits"]:
        out.append("LEAK: groups, patients or duplicate pairs straddle splits/folds (see report 'straddling')")
    if keep is not None and keep["conflicting_groups"]:
        out.append(
            f"{keep['conflicting_groups']} group(s) merged images previously in different splits/folds (see report "
            "'keep.conflicts')"
        )
    if nesting is not None and (
        nesting["images_seen_in_training_upstream"] or nesting["images_whose_group_is_seen_in_training_upstream"]
    ):
        out.append(
            f"LEAK: {nesting['images_seen_in_training_upstream']} validation/test image(s) are trained on "
            f"by the split this one nests in ({nesting['nest_conflicts']} group(s) are in several "
            f"upstream folds: re-split upstream with the same manifests and duplicates)"
        )
    return out


def build_report(
    request: SplitRequest, placed: Placement, train_val: pd.DataFrame, test: pd.DataFrame, excluded: pd.DataFrame
) -> dict:
    """``split_report.json``, its warnings included: recounted from the output tables, not taken from
    the assignment."""
    table = placed.table
    kept = table[table["excluded"] == ""]
    outputs = _outputs_by_bin(train_val, test)
    per_class = _per_class(outputs)
    classes = class_order(request.mapping, per_class["target_class"])
    sources = sorted(set(outputs["source"]))
    largest = _largest_group(table, kept)
    hows = table.drop_duplicates("group").set_index("group")["how"]
    straddle = _straddling_report(train_val, test, kept, placed.pairs)
    keep = _keep_report(placed, request, hows)
    nesting = _nesting_report(placed, request, kept, hows, train_val, test)
    refused = _refused_report(placed)
    n_kept = len(kept)
    return {
        "params": request.report_params(),
        "rows": {"in": len(table), "train_val": len(train_val), "test": len(test), "excluded": len(excluded)},
        "test_fraction": {"asked": request.test_fraction, "achieved": round(len(test) / n_kept, 6) if n_kept else 0.0},
        "classes": classes,
        "sources": sources,
        "counts": _class_counts(per_class, classes, sources),
        "fold_sizes": {str(j): int((train_val["fold"] == str(j)).sum()) for j in range(request.folds)},
        **_proportions_report(outputs, per_class, classes, request.folds),
        "groups": {
            "total": int(table["group"].nunique()),
            "with_labelled_images": int(kept["group"].nunique()),
            "train_val": int(train_val["group"].nunique()),
            "test": int(test["group"].nunique()),
            "largest": largest[0],
            "max_group_share": request.max_group_share,
            "too_large": largest[1] > request.max_group_share,
            "duplicate_links": len(placed.pairs),
            "sha256_links": placed.n_sha_links,
        },
        "straddling": straddle,
        "refused_links": refused,
        "pinned": _pinned_report(placed, request, kept, train_val),
        "keep": keep,
        "nesting": nesting,
        "excluded": {str(k): int(v) for k, v in sorted(excluded["reason"].value_counts().items())},
        "warnings": _warnings(request, len(test), n_kept, largest, straddle, keep, nesting, refused),
        "several_classes": _several_classes_report(table, request.spec, request.mapping),
        "composition": _composition_report(
            pd.concat([train_val, test], ignore_index=True), request.spec, request.formats or {}
        ),
    }


def _several_classes_report(table: pd.DataFrame, spec, mapping: Mapping[str, int]) -> dict:
    """What the target's ``several_classes`` rule did to the images whose findings reach several
    classes (every input row with several ``candidates``), in total and per class."""
    rows = table[table["candidates"].str.contains(LABEL_SEP, regex=False)]
    kept = rows["excluded"] == ""
    rule = spec.several
    per = _per_class(rows.assign(target_class=rows["candidates"], chosen=rows["target_class"]))
    per_class = {}
    for cls in class_order(mapping, per["target_class"]):
        among = per[per["target_class"] == cls]
        entry = {"images": len(among)}
        if rule == PRIORITY:
            entry["won"] = int((among["chosen"] == cls).sum())
            entry["lost"] = len(among) - entry["won"]
        elif rule == MULTI_LABEL:
            entry["kept_multi_label"] = int((among["excluded"] == "").sum())
        else:
            entry["excluded_as_ambiguous"] = int((among["excluded"] != "").sum())
        per_class[cls] = entry
    return {
        "rule": rule,
        "priority": [c.lower() for c in spec.priority] if spec.priority else None,
        "images": len(rows),
        "resolved_by_priority": int(kept.sum()) if rule == PRIORITY else 0,
        "kept_multi_label": int(kept.sum()) if rule == MULTI_LABEL else 0,
        "excluded_as_ambiguous": int((~kept).sum()),
        "per_class": per_class,
    }


def _composition_report(outputs: pd.DataFrame, spec, formats: Mapping[str, str]) -> dict | None:
    """Images per taxonomy dataset x target class of this build beside the target's published
    reference counts (``reference`` in the taxonomy), or None when the target has none."""
    ref = spec.reference
    if ref is None:
        return None
    outputs = outputs.assign(dataset=outputs["source"].map(lambda s: formats.get(s, s)))
    build = _per_class(outputs).groupby(["target_class", "dataset"]).size()
    totals = build.groupby(level=0).sum()
    classes = [c.lower() for c in spec.classes]
    datasets = list(ref.datasets) + sorted(set(outputs["dataset"]) - set(ref.datasets))
    images = outputs["dataset"].value_counts()
    return {
        "reference": ref.source,
        "classes": classes,
        "class_names": list(spec.classes),
        "datasets": datasets,
        "build": {c: {d: int(build.get((c, d), 0)) for d in datasets} for c in classes},
        "build_totals": {c: int(totals.get(c, 0)) for c in classes},
        "build_images": {d: int(images.get(d, 0)) for d in datasets},
        "build_images_total": len(outputs),
        "paper_totals": {c.lower(): n for c, n in ref.totals.items()},
        "paper_datasets": {d: {c.lower(): n for c, n in cells.items()} for d, cells in ref.datasets.items()},
        "paper_images_total": ref.images,
    }


def _md(text: object) -> str:
    """Text from the data (class, source and group names, labels) made inert in Markdown: a ``<`` would
    start raw HTML (``<script>``) and an ``&`` an entity; ``>`` mid-line is plain text and stays readable."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(_md, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _refused_md(refused: dict | None, shown: int = 10) -> list[str]:
    """The refused near links: counts, and the first few with their evidence."""
    if not refused or not refused["links"]:
        return []
    reasons = ", ".join(f"{k}: {v}" for k, v in refused["by_reason"].items())
    out = [
        "## Refused links (weighed near links left between groups)",
        "",
        f"- {refused['links']} links between {refused['group_pairs']} pairs of groups ({reasons}); "
        f"{refused['across_splits']} across train_val/test, {refused['across_folds_or_splits']} across folds or splits",
        "",
    ]
    rows = [
        [
            e["image_id_a"],
            e["image_id_b"],
            e["kind"],
            e["distance"],
            e["similarity"],
            e["reason"],
            e["place_a"],
            e["place_b"],
        ]
        for e in refused["listed"][:shown]
    ]
    header = ["image a", "image b", "kind", "pHash distance", "similarity", "reason", "a in", "b in"]
    return out + [_md_table(header, rows), ""]


def _several_classes_md(info: dict | None) -> list[str]:
    if not info:
        return []
    out = [f"## Images whose findings reach several classes (rule: {info['rule']})", ""]
    if info["priority"]:
        out.append("- priority (first wins): " + " > ".join(map(_md, info["priority"])))
    out += [
        f"- images: {info['images']} = resolved by priority {info['resolved_by_priority']} + kept multi-label "
        f"{info['kept_multi_label']} + excluded as ambiguous {info['excluded_as_ambiguous']}",
        "",
    ]
    if info["per_class"]:
        keys = [k for k in next(iter(info["per_class"].values())) if k != "images"]
        out += [
            _md_table(
                ["class", "images among"] + [k.replace("_", " ") for k in keys],
                [[c, e["images"]] + [e[k] for k in keys] for c, e in info["per_class"].items()],
            ),
            "",
        ]
    return out


def _composition_md(comp: dict | None) -> list[str]:
    """Source x class counts in the layout of the publication's table, its numbers beside them."""
    if not comp:
        return []

    def num(n: int | None) -> str:
        return "–" if n is None else f"{n:,}"

    header = ["class"]
    for d in comp["datasets"]:
        header += [d] + ([f"{d} (paper)"] if d in comp["paper_datasets"] else [])
    header += ["total", "total (paper)", "difference"]
    rows = []
    for c, name in zip(comp["classes"], comp["class_names"]):
        cells = [name]
        for d in comp["datasets"]:
            cells.append(num(comp["build"][c][d]))
            if d in comp["paper_datasets"]:
                cells.append(num(comp["paper_datasets"][d].get(c)))
        paper = comp["paper_totals"].get(c)
        total = comp["build_totals"][c]
        cells += [num(total), num(paper), "–" if paper is None else f"{total - paper:+,}"]
        rows.append(cells)
    cells = ["**images**"]
    for d in comp["datasets"]:
        cells += [num(comp["build_images"][d])] + (["–"] if d in comp["paper_datasets"] else [])
    paper = comp["paper_images_total"]
    cells += [
        num(comp["build_images_total"]),
        num(paper),
        "–" if paper is None else f"{comp['build_images_total'] - paper:+,}",
    ]
    rows.append(cells)
    return [
        "## Composition beside the published numbers",
        "",
        f"Reference: {comp['reference']} Images per source dataset and class of this build (train_val + "
        "test); '(paper)' columns and the paper total where the publication gives them, '–' where it does not.",
        "",
        _md_table(header, rows),
        "",
    ]


def report_markdown(report: dict) -> str:
    """A readable rendering of ``split_report.json``."""
    r = report
    p = r["params"]
    out = [f"# Split report: {_md(p.get('target', ''))}", ""]
    rows = r["rows"]
    out += [
        f"- rows in: {rows['in']} = train_val {rows['train_val']} + test {rows['test']} + excluded {rows['excluded']}",
        f"- test fraction: {r['test_fraction']['achieved']:.2%} (asked {r['test_fraction']['asked']:.0%})",
        "- fold sizes: " + ", ".join(f"{k}: {v}" for k, v in r["fold_sizes"].items()),
    ]
    g = r["groups"]
    largest = g["largest"]
    out += [
        f"- groups: {g['total']} ({g['with_labelled_images']} with labelled images; train_val {g['train_val']}, test "
        f"{g['test']}); "
        f"{g['duplicate_links']} duplicate links ({g['sha256_links']} from equal sha256)"
    ]
    if largest:
        out.append(
            f"- largest group: {_md(largest['group'])}, {largest['images']} images ({largest['share']:.1%} of all; "
            f"limit {g['max_group_share']:.0%}), {largest['labelled_images']} labelled, in {largest['split']}"
        )
    s = r["straddling"]
    out += [
        "",
        "## Straddling (recomputed from the outputs; must all be 0)",
        "",
        _md_table(["check", "count"], [[k, v] for k, v in s.items() if k != "examples"]),
        "",
    ]
    out += _refused_md(r.get("refused_links"))
    if r["warnings"]:
        out += ["## Warnings", ""] + [f"- {_md(w)}" for w in r["warnings"]] + [""]
    bins = list(r["max_abs_deviation_pp"])
    out += ["## Class proportions (% of each split; deviation from overall in percentage points)", ""]
    prop_rows = []
    for c, row in r["proportions"].items():
        cells = [c, row["images"], row["groups"], f"{row['overall_pct']:.2f}"]
        cells += [f"{row['splits'][b]['pct']:.2f} ({row['splits'][b]['deviation_pp']:+.2f})" for b in bins]
        prop_rows.append(cells)
    prop_rows.append(["**max abs dev**", "", "", ""] + [f"{r['max_abs_deviation_pp'][b]:.2f}" for b in bins])
    prop_rows.append(
        [f"**max abs dev, classes with ≥{WELL_STRATIFIABLE} groups**", "", "", ""]
        + [f"{r['max_abs_deviation_pp_classes_with_5_groups'][b]:.2f}" for b in bins]
    )
    out += [_md_table(["class", "images", "groups", "overall %"] + bins, prop_rows), ""]
    out += ["## Counts per class × split × source", ""]
    header = ["class"] + [f"{sp} / {src}" for sp in (TRAIN_VAL, TEST) for src in r["sources"]]
    out += [
        _md_table(
            header,
            [[c] + [r["counts"][c][sp][src] for sp in (TRAIN_VAL, TEST) for src in r["sources"]] for c in r["classes"]],
        ),
        "",
    ]
    out += _several_classes_md(r.get("several_classes")) + _composition_md(r.get("composition"))
    out += [_md(line) for line in published_markdown(r.get("source_counts"))]  # source names: from the data
    pn = r["pinned"]
    out += [
        "## Pins",
        "",
        f"- pins: {_md(', '.join(pn['pins']) or 'none')}",
        f"- pinned images: {pn['images']} "
        f"({_md(', '.join(f'{k}: {v}' for k, v in pn['images_per_pin'].items()) or '-')})",
        f"- pinned groups: {pn['groups']} holding {pn['images_in_pinned_groups']} images "
        f"({pn['labelled_images_in_pinned_groups']} labelled), all in test: {pn['pinned_groups_not_in_test'] == 0}",
        "",
    ]
    out += _nesting_markdown(r.get("nesting"))
    k = r["keep"]
    out += ["## Kept assignments", ""]
    if k is None:
        out += ["- none (no --keep-assignments)", ""]
    else:
        out += [
            f"- previous images: {k['previous_images']} ({k['previous_images_present']} present, "
            f"{k['previous_images_missing']} missing)",
            f"- kept groups: {k['kept_groups']}, newly assigned groups: {k['new_groups']}, conflicts: "
            f"{k['conflicting_groups']}",
        ]
        out += [
            f"  - {_md(c['group'])} ({c['kind']}): previously {c['previous']}, now {c['now']}" for c in k["conflicts"]
        ]
        out.append("")
    out += ["## Excluded images by reason", ""]
    out += [f"- {_md(reason)}: {n}" for reason, n in r["excluded"].items()] or ["- none"]
    out += ["", "## Parameters", "", "```json", json.dumps(p, indent=2, sort_keys=True), "```", ""]
    return "\n".join(out)


def _nesting_markdown(n: dict | None) -> list[str]:
    out = ["## Nesting in the upstream split (recomputed from the outputs and its files; must be 0)", ""]
    if n is None:
        return out + ["- none (no --nest-in)", ""]
    out += [
        f"- images of this split's validation/test seen in training upstream: {n['images_seen_in_training_upstream']}",
        f"- ... whose group (patient/video, duplicates) has an image trained upstream: "
        f"{n['images_whose_group_is_seen_in_training_upstream']}",
        f"- groups nested: {n['nested_groups']} ({n['nest_conflicts']} in several upstream folds); absent upstream "
        f"(assigned here): {n['groups_absent_upstream']} groups, {n['images_absent_upstream']} images",
        "",
        _md_table(
            [
                "validation fold k (upstream trains on all other folds)",
                "images in fold k + test",
                "in upstream",
                "seen in training upstream",
                "group seen in training upstream",
            ],
            [
                [k, f["images"], f["in_upstream"], f["seen_in_training_upstream"], f["group_seen_in_training_upstream"]]
                for k, f in n["folds"].items()
            ],
        ),
        "",
    ]
    return out

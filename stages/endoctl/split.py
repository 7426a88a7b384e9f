"""Leak-free train/test splits: stratified GROUP assignment with pins and kept assignments.

A *group* (``endoctl.grouping.build_groups``) is a connected component of "same source patient /
video" and "duplicate pair" links, built over ALL input manifests, so a CE24 copy of a
Kvasir-Capsule frame shares the video's group even when only CE24 is in the target. Every group
goes wholly to ``test`` or to one of ``folds`` folds of ``train_val``; nothing else decides where
an image goes.

Flow: manifests → one table sorted by ``image_id`` (input row order never matters) → groups →
``taxonomy.map_labels`` (rows with an ``excluded`` reason are listed, never dropped) → pins and
previous assignments fix some groups → :func:`assign` places the rest → outputs + report
(:func:`write_split`). The report (:mod:`endoctl.split_report`) recounts straddles from the output
tables, not from the assignment.

*Nesting* (``--nest-in UPSTREAM``): a split of a second target (fine-tuning) whose groups keep
their place in the split of the first (pre-training). Training upstream on all folds but k and
then validating downstream on fold k is only clean if every image of downstream fold k (or test)
is in upstream fold k (or test): :func:`endoctl.split_report.nesting_check` recomputes that from the output tables and
the upstream split's files.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.grouping import LinkRule, group_images, smallest_per_key
from endoctl.io import EXCLUDED_FILE, MAPPING_FILE, SPLIT_REPORT_FILE, SPLIT_REPORT_MD_FILE, TEST_FILE, TRAIN_VAL_FILE
from endoctl.split_report import (
    TEST,
    TRAIN_VAL,
    Placement,
    SplitRequest,
    build_report,
    places,
    report_markdown,
)
from endoctl.taxonomy import LABEL_SEP

OUTPUT_COLUMNS = ["image_id", "source", "path", "label", "target_class", "group", "fold"]  # train_val/test rows
EXCLUDED_COLUMNS = ["image_id", "source", "reason"]
MANIFEST_REQUIRED = ["image_id", "source", "path", "label"]
OPTIONAL_COLUMNS = ["patient_id", "official_split"]
PAIR_KEY_COLUMNS = ["image_id_a", "image_id_b"]  # the duplicate-pair columns a split needs
PAIR_EVIDENCE_COLUMNS = ["kind", "distance", "similarity"]  # read too when present: links are weighed
OUTPUT_FILES = (TRAIN_VAL_FILE, TEST_FILE, MAPPING_FILE, EXCLUDED_FILE, SPLIT_REPORT_FILE, SPLIT_REPORT_MD_FILE)
SIZE_WEIGHT = 1.0  # refinement: a 10 % bin-size error costs as much as a 10-point class deviation

Progress = Callable[[int, int], None]


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


# --------------------------------------------------------------------------------------- assign


def _previous_bin(value, folds: int) -> int:
    """'test' -> 0, fold 'j' -> j+1, empty/NaN -> -1."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    text = str(value).strip()
    if text == "":
        return -1
    if text == TEST:
        return 0
    try:
        fold = int(float(text))
    except ValueError:
        raise ValueError(f"previous assignment {text!r} is neither 'test' nor a fold number") from None
    if not 0 <= fold < folds:
        raise ValueError(f"previous assignment has fold {fold}, but --folds is {folds}: re-split with the same folds")
    return fold + 1


def _greedy(
    counts: np.ndarray,
    fixed: np.ndarray,
    weights: np.ndarray,
    order: np.ndarray,
    on_progress: Progress | None = None,
    offset: int = 0,
    total: int = 0,
) -> np.ndarray:
    """Bin per group: ``fixed`` groups (>= 0) stay, the others are placed in ``order``, then
    polished by :func:`_refine`.

    ``counts``: groups x (classes + image total). Each free group goes to the bin that minimises
    the mean over the group's non-zero columns of the standard deviation, across bins, of the fill
    ratio ``load[b, c] / target[b, c]`` (``target`` = bin weight x column total): every bin takes
    its weight's share of every class AND of the big groups (so test is not just the small
    leftovers: its mix of sources and group sizes stays representative). Exact ties go to the
    least-filled bin (image total / its target), then the lowest bin.

    scikit-learn's StratifiedGroupKFold (``_find_best_fold``) minimises the mean over ALL classes
    of the standard deviation, across its equal folds, of fold count / class total; on the class
    columns that ranks bins as this does (columns the group lacks add the same to every bin, and
    equal weights only scale the ratios). What differs: bins of unequal weight, the image-total
    column, and ties (scikit-learn's are ``np.isclose`` ones, to the fold with fewer samples, then
    the lowest).
    """
    n_bins = len(weights)
    bins = fixed.copy()
    totals = counts.sum(axis=0)
    target = weights[:, None] * totals[None, :]
    load = np.zeros((n_bins, counts.shape[1]), dtype=np.float64)
    placed = bins >= 0
    np.add.at(load, bins[placed], counts[placed])
    active = np.flatnonzero(weights > 0)
    t_act = target[active]
    eye = np.eye(len(active))
    fill_target = np.where(t_act[:, -1] > 0, t_act[:, -1], 1.0)
    free = order[~placed[order]]
    step = max(1, len(free) // 100)
    ranks = np.arange(len(active))
    n_active = len(active)
    bumps: dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    labelled = np.flatnonzero(counts[free, -1] > 0)
    done = 0
    for end in [*labelled, len(free)]:
        if end > done:  # groups without labelled images change no load: all go where lexsort puts
            # all-zero costs (least filled bin, then the lowest)
            bins[free[done:end]] = active[np.argmin(load[active, -1] / fill_target)]
        if end == len(free):
            break
        g = free[end]
        v = counts[g]
        key = v.tobytes()
        if key not in bumps:  # per distinct count vector: its columns, targets, bin increments
            nz = np.flatnonzero(v)
            bumps[key] = (nz, t_act[:, nz], eye[:, :, None] * (v[nz] / t_act[:, nz])[:, None, :])
        nz, t_nz, bump = bumps[key]
        # candidate a: bin a's row gains v / target; std over bins, mean over the group's columns.
        # The std and mean are numpy's own ufunc steps (``_methods._var``), bit for bit, without
        # their per-call overhead.
        cand = load[active][:, nz] / t_nz + bump
        mean = np.add.reduce(cand, axis=1, keepdims=True)
        np.true_divide(mean, n_active, out=mean)
        dev = np.subtract(cand, mean)
        np.square(dev, out=dev)
        spread = np.add.reduce(dev, axis=1)
        np.true_divide(spread, n_active, out=spread)
        np.sqrt(spread, out=spread)
        cost = np.add.reduce(spread, axis=1)
        np.true_divide(cost, len(nz), out=cost)
        best = active[np.lexsort((ranks, load[active, -1] / fill_target, cost))[0]]
        bins[g] = best
        load[best] += v
        if on_progress is not None and (end // step != done // step or end == len(free) - 1):
            on_progress(offset + end + 1, total or len(free))
        done = end + 1
    if on_progress is not None and len(free):
        on_progress(offset + len(free), total or len(free))
    return _refine(counts, bins, free, weights, SIZE_WEIGHT)


def _bin_cost(load: np.ndarray, target_total: np.ndarray, overall: np.ndarray, lam: float) -> np.ndarray:
    """Per bin: squared class-proportion deviations + lam * squared relative size error."""
    tot = load[..., -1]
    safe = np.where(tot > 0, tot, 1.0)
    prop = load[..., :-1] / safe[..., None]
    dev = np.where(tot[..., None] > 0, prop - overall, 0.0)
    size = (tot - target_total) / np.where(target_total > 0, target_total, 1.0)
    return np.square(dev).sum(axis=-1) + lam * np.square(size)


def _refine(
    counts: np.ndarray,
    bins: np.ndarray,
    movable: np.ndarray,
    weights: np.ndarray,
    lam: float,
    max_steps: int = 2000,
    swap_pool: int = 256,
) -> np.ndarray:
    """Local search after the greedy pass: while it lowers the summed per-bin cost (``_bin_cost``),
    apply the best single-group move, or when no move helps, the best swap of two groups between
    bins among the ``swap_pool`` largest movable groups (a swap keeps bin sizes, which a lone
    move of a big group cannot). Deterministic: ties go to the first candidate in group order."""
    bins = bins.copy()
    movable = np.sort(movable)
    movable = movable[counts[movable, -1] > 0]
    active = np.flatnonzero(weights > 0)
    if len(movable) == 0 or len(active) < 2:
        return bins
    n_bins = len(weights)
    totals = counts.sum(axis=0)
    overall = totals[:-1] / max(totals[-1], 1.0)
    target_total = weights * totals[-1]
    load = np.zeros((n_bins, counts.shape[1]))
    np.add.at(load, bins[bins >= 0], counts[bins >= 0])
    v = counts[movable]
    pool = np.sort(np.argsort(-v[:, -1], kind="stable")[:swap_pool])  # positions in movable
    vp = v[pool]
    # Groups with equal counts in the same bin are interchangeable moves (thousands of singletons
    # of one class): evaluate one per (count vector, bin), the first in group order.
    _, kind = np.unique(v, axis=0, return_inverse=True)
    kind = kind.reshape(-1)
    position = np.arange(len(v))
    for _ in range(max_steps):
        cur = _bin_cost(load, target_total, overall, lam)
        a = bins[movable]
        # first group of each (kind, bin), in (kind, bin) order: np.unique's return_index without
        # its sort of every group at every step
        first = np.full((kind.max() + 1) * n_bins, len(v))
        np.minimum.at(first, kind * n_bins + a, position)
        cand = first[first < len(v)]
        vc, ac = v[cand], a[cand]
        cost_a = _bin_cost(load[ac] - vc, target_total[ac], overall, lam) - cur[ac]
        delta = np.full((len(cand), n_bins), np.inf)
        for b in active:
            delta[:, b] = cost_a + _bin_cost(load[b] + vc, target_total[b], overall, lam) - cur[b]
        delta[np.arange(len(cand)), ac] = np.inf
        best = int(np.argmin(delta))
        k, b = divmod(best, n_bins)
        if delta[k, b] < -1e-12:
            g = cand[k]
            load[a[g]] -= v[g]
            load[b] += v[g]
            bins[movable[g]] = b
            continue
        ap = a[pool]
        diff = vp[None, :, :] - vp[:, None, :]  # [i, j] = v_j - v_i: bin of i gains j, loses i
        new_i = _bin_cost(load[ap][:, None, :] + diff, target_total[ap][:, None], overall, lam)
        new_j = _bin_cost(load[ap][None, :, :] - diff, target_total[ap][None, :], overall, lam)
        swap = new_i + new_j - cur[ap][:, None] - cur[ap][None, :]
        swap[ap[:, None] == ap[None, :]] = np.inf
        best = int(np.argmin(swap)) if swap.size else 0
        i, j = divmod(best, len(pool))
        if not swap.size or not swap[i, j] < -1e-12:
            break
        gi, gj = pool[i], pool[j]
        bi, bj = a[gi], a[gj]
        load[bi] += v[gj] - v[gi]
        load[bj] += v[gi] - v[gj]
        bins[movable[gi]], bins[movable[gj]] = bj, bi
    return bins


def check_fractions(test_fraction: float, folds: int) -> None:
    """The split sizes make sense (checked before any work)."""
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")


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


def _group_counts(gid: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted group ids, each row's group index, and per group its labelled images per class and in
    total (groups x (classes + 1)): what the placing balances. A multi-label row weighs in every class
    it carries and once in the total."""
    uniq, g_of = (
        np.unique(gid, return_inverse=True) if len(gid) else (np.array([], dtype=object), np.array([], dtype=np.int64))
    )
    n_groups = len(uniq)
    labelled = lab != ""
    per_class = pd.Series(lab[labelled], index=np.flatnonzero(labelled), dtype=object).str.split(LABEL_SEP).explode()
    classes = np.array(sorted(set(per_class)), dtype=object)
    c_of = np.searchsorted(classes, per_class.to_numpy()) if len(classes) else np.zeros(0, dtype=np.int64)
    counts = np.zeros((n_groups, len(classes) + 1), dtype=np.float64)
    np.add.at(counts, (g_of[per_class.index.to_numpy(dtype=np.int64)], c_of), 1.0)
    counts[:, -1] = np.bincount(g_of[labelled], minlength=n_groups)
    return uniq, g_of, counts


def _rows_per_bin(places: pd.Series, g_of: np.ndarray, n_groups: int, folds: int) -> np.ndarray:
    """Rows per group and bin (0 test, j + 1 fold j) of ``places``: 'test', a fold number or empty per row."""
    bins = np.array([_previous_bin(v, folds) for v in places.tolist()], dtype=np.int64)
    has = bins >= 0
    table = np.zeros((n_groups, folds + 1), dtype=np.int64)
    np.add.at(table, (g_of[has], bins[has]), 1)
    return table


def _keep_previous(table: np.ndarray, fixed: np.ndarray, how: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A group with rows in one place of the previous split keeps it ('kept'); rows in test and train_val
    send it to test ('conflict-split'), rows in several folds to the fold holding most ('conflict-fold',
    ties -> lower fold)."""
    fixed, how = fixed.copy(), how.copy()
    seen = table > 0
    kinds = seen.sum(axis=1)
    one = kinds == 1
    fixed[one] = table[one].argmax(axis=1)
    how[one] = "kept"
    split_conflict = (kinds > 1) & seen[:, 0]
    fixed[split_conflict] = 0
    how[split_conflict] = "conflict-split"
    fold_conflict = (kinds > 1) & ~seen[:, 0]
    fixed[fold_conflict] = table[fold_conflict, 1:].argmax(axis=1) + 1
    how[fold_conflict] = "conflict-fold"
    return fixed, how


def _nest(table: np.ndarray, fixed: np.ndarray, how: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A group with rows upstream goes where they are, whatever its previous place: test when all are in
    test, else the upstream fold holding most ('nested'; 'nest-conflict' when they are in several folds).
    Also returns which groups are nested."""
    fixed, how = fixed.copy(), how.copy()
    nested = table.any(axis=1)
    in_folds = (table[:, 1:] > 0).sum(axis=1)
    fixed[nested] = np.where(in_folds > 0, table[:, 1:].argmax(axis=1) + 1, 0)[nested]
    how[nested] = np.where(in_folds > 1, "nest-conflict", "nested")[nested]
    return fixed, how, nested


def _pin_to_test(
    pinned: np.ndarray, nested: np.ndarray, fixed: np.ndarray, how: np.ndarray, group_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pinned groups go to test, out of a previous fold too ('conflict-pin'); a pinned group that the split
    this one nests in trains on (has in a fold) is a ValueError: the pin could not keep it unseen."""
    trained = np.flatnonzero(pinned & nested & (fixed > 0))
    if len(trained):
        g = trained[0]
        raise ValueError(
            f"group {group_ids[g]} holds a pinned image but the split it nests in has it in fold "
            f"{fixed[g] - 1} ({len(trained)} such group(s)): pin the same images there"
        )
    fixed, how = fixed.copy(), how.copy()
    moved = pinned & (fixed > 0)
    how[moved] = "conflict-pin"
    how[pinned & ~moved & np.isin(how, ["assigned", "kept"])] = "pinned"
    fixed[pinned] = 0
    return fixed, how


def _fixed_places(
    group_ids: np.ndarray,
    g_of: np.ndarray,
    folds: int,
    pin: np.ndarray,
    previous: pd.Series | None,
    nested: pd.Series | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group the bin fixed before any is placed (-1 free, 0 test, j + 1 fold j) and how: previous
    places, upstream places over them, pins over both (``pin``, ``previous``, ``nested``: per row)."""
    n_groups = len(group_ids)
    fixed = np.full(n_groups, -1, dtype=np.int64)
    how = np.full(n_groups, "assigned", dtype=object)
    if previous is not None:
        fixed, how = _keep_previous(_rows_per_bin(previous, g_of, n_groups, folds), fixed, how)
    nested_groups = np.zeros(n_groups, dtype=bool)
    if nested is not None:
        fixed, how, nested_groups = _nest(_rows_per_bin(nested, g_of, n_groups, folds), fixed, how)
    if pin.any():
        pinned_groups = np.zeros(n_groups, dtype=bool)
        pinned_groups[g_of[pin]] = True
        fixed, how = _pin_to_test(pinned_groups, nested_groups, fixed, how, group_ids)
    return fixed, how


def _placing_order(counts: np.ndarray, seed: int) -> np.ndarray:
    """The groups (in sorted-id order) shuffled with ``seed``, then stably by descending labelled images:
    the big, hard-to-place groups go first, equal sizes in seeded order."""
    order = np.random.default_rng(seed).permutation(len(counts))
    return order[np.argsort(-counts[order, -1], kind="stable")]


def _place_free_groups(
    counts: np.ndarray,
    fixed: np.ndarray,
    order: np.ndarray,
    test_fraction: float,
    folds: int,
    on_progress: Progress | None,
) -> np.ndarray:
    """Bin per group (0 test, j + 1 fold j); ``fixed`` groups (>= 0) stay. Stage 1 splits test from
    train_val (what matters most: the held-out proportions), stage 2 train_val into equal folds."""
    n_free = int((fixed < 0).sum())
    side = np.where(fixed < 0, -1, np.minimum(fixed, 1))
    side = _greedy(counts, side, np.array([test_fraction, 1.0 - test_fraction]), order, on_progress, 0, 2 * n_free)
    in_tv = side == 1
    fold = np.where(fixed > 0, fixed - 1, -1)
    sub = np.flatnonzero(in_tv)
    remap = np.full(len(fixed), -1, dtype=np.int64)
    remap[sub] = np.arange(len(sub))
    sub_order = remap[order[in_tv[order]]]
    fold_sub = _greedy(
        counts[sub],
        fold[sub],
        np.full(folds, 1.0 / folds),
        sub_order,
        on_progress,
        n_free,
        n_free + int((fold[sub] < 0).sum()),
    )
    bins = np.zeros(len(fixed), dtype=np.int64)
    bins[sub] = fold_sub + 1
    return bins


def assign(
    groups: pd.Series,
    y: pd.Series,
    test_fraction: float = 0.2,
    folds: int = 5,
    seed: int = 0,
    pinned: pd.Series | None = None,
    previous: pd.Series | None = None,
    on_progress: Progress | None = None,
    *,
    nested: pd.Series | None = None,
) -> pd.DataFrame:
    """Place every group wholly in ``test`` or one ``train_val`` fold; one result row per input row.

    ``groups``: group id per row. ``y``: class per row, or several joined by '|' (a multi-label
    row counts once for each of its classes and once for the image total); empty/NaN rows
    (excluded images) ride along with their group but do not count for sizes or strata.
    ``pinned``: bool per row; a group with any pinned row goes to test. ``previous``: per row
    ``'test'``, a fold number, or empty/NaN;
    a group whose previous rows agree keeps that place. Rows previously in test and train_val
    in one group (a "conflict": the group merged across splits) go to test; rows previously in
    several folds (and never in test) go to the fold holding most of them. A pin beats a previous
    train_val place ("conflict-pin").

    ``nested``: per row the place in the split this one nests in (same values as ``previous``);
    it beats ``previous``. A group with upstream rows goes where they are: test when they are all
    in test, else the upstream fold holding most of them (ties -> lower fold; rows in upstream
    test never leak, wherever the group goes). Rows in two upstream folds ("nest-conflict": the
    upstream split was grouped differently) cannot all be clean; :func:`endoctl.split_report.nesting_check` counts them.
    A pinned group that upstream put in a fold is a ValueError: it was trained on upstream.

    Returns ``split`` (``'train_val'``/``'test'``), ``fold`` (0..folds-1, -1 for test) and ``how``
    (``pinned``, ``kept``, ``conflict-split``, ``conflict-fold``, ``conflict-pin``, ``nested``,
    ``nest-conflict``, ``assigned``), indexed like ``groups``.

    How the free groups are placed (deterministic given ``seed``):

    1. Groups are enumerated in sorted-id order, always shuffled with ``seed``
       (``numpy.random.default_rng(seed).permutation``), then stably sorted by descending labelled
       size (images, a multi-label one once): the largest, hardest-to-place groups go first
       (:func:`_placing_order`). scikit-learn's StratifiedGroupKFold (1.9) sorts by another key: it
       enumerates groups in sorted-id order too, shuffles them only with ``shuffle=True`` (its
       ``random_state``'s ``RandomState.shuffle``), then stably sorts by the descending standard
       deviation, across classes, of each group's class counts (``np.std(counts, axis=1)``): a group
       whose images are all of one class goes before one of the same size spread over the classes,
       and size itself is no key.
    2. Stage 1 splits them into test (weight ``test_fraction``) vs train_val; stage 2 splits the
       train_val groups into ``folds`` equal folds (:func:`_place_free_groups`). Test comes first
       because its proportions matter most; the folds then do what they can (a fold that must hold
       a video with 60 % of a class cannot be balanced: the report says so).
    3. Each stage is greedy like StratifiedGroupKFold, generalised to bins of unequal weight, to
       groups fixed in advance (pinned/kept groups are loaded first) and to multi-label rows (a
       group's count vector holds, per class, its images carrying that class, as in iterative
       stratification): a group goes to the bin that minimises the spread (std across bins) of the
       fill ratios load / target over the group's classes and the image total (:func:`_greedy`).
    4. A local search then moves single groups, or swaps two of the largest, while that lowers
       the sum over bins of squared class-proportion deviations + squared relative size error
       (:func:`_refine`).

    scikit-learn's StratifiedGroupKFold is not used: it cannot keep pinned or previously placed
    groups where they are, and only makes equal folds (no 20 % test + 5 folds of the rest).
    """
    check_fractions(test_fraction, folds)
    index = groups.index
    group_ids, g_of, counts = _group_counts(
        groups.astype(str).to_numpy(dtype=object), y.reindex(index).fillna("").astype(str).to_numpy(dtype=object)
    )
    pin = (
        pinned.reindex(index).fillna(False).astype(bool).to_numpy()
        if pinned is not None
        else np.zeros(len(index), dtype=bool)
    )
    fixed, how = _fixed_places(
        group_ids,
        g_of,
        folds,
        pin,
        previous.reindex(index) if previous is not None else None,
        nested.reindex(index) if nested is not None else None,
    )
    bins = _place_free_groups(counts, fixed, _placing_order(counts, seed), test_fraction, folds, on_progress)
    row_bin = bins[g_of] if len(group_ids) else np.zeros(0, dtype=np.int64)
    return pd.DataFrame(
        {
            "split": np.where(row_bin == 0, TEST, TRAIN_VAL).astype(object),
            "fold": np.where(row_bin == 0, -1, row_bin - 1).astype(np.int64),
            "how": how[g_of] if len(group_ids) else np.zeros(0, dtype=object),
        },
        index=index,
    )


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
    return table["image_id"].map(places(split_table)).fillna("")


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
    """Every input row labelled, grouped over all manifests and placed by :func:`assign`."""
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
    keep their place there (see :func:`assign`), the report's ``nesting`` checks it.
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

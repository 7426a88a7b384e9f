"""Placing whole groups in test or a train_val fold, class-stratified: the algorithm behind
:func:`endoctl.split.split`.

It works on a group id and a class per row only (no files, taxonomy or grouping), so the placing
can be tested and benchmarked on its own, and the split report can check it from the outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from endoctl.taxonomy import LABEL_SEP

TEST, TRAIN_VAL = "test", "train_val"
SIZE_WEIGHT = 1.0  # refinement: a 10 % bin-size error costs as much as a 10-point class deviation

Progress = Callable[[int, int], None]


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

"""Exact and near-duplicate images across all sources, plus frame-sequence links, clustered.

- exact: same sha256 (only one representative per content enters the near search);
- near: pHash Hamming distance <= ``max_distance``, confirmed by dHash distance <= ``dhash_distance``
  (two hashes of different kinds must agree, which removes most chance pHash collisions) and by the
  pixels: the correlation of the two 8x8 content grids over their bright cells is at least
  ``min_similarity`` (:func:`endoctl.hashing.grid_similarity`). A link is evidence, not chance: at
  the scale of a merged dataset, hash-only links chain unrelated images into one giant group;
- sequence: frames numbered within ``sequence_gap`` of each other under the same prefix of one
  source whose pHash distance is <= ``sequence_distance``. The prefix is the part of the image path
  that names the video: the file-name prefix of ``<video>_<frame>`` and ``imageNNNNN`` (never the
  folder: Kvasir-Capsule files one video's frames under several finding folders), and the
  ``<patient>/seq_NN/frames/`` folders of ERS, whose frame files are numbered afresh per sequence.

The near search is exact and sub-quadratic: multi-index hashing. The 64 bits (after a fixed bit
permutation that spreads the correlated low-frequency DCT bits) are cut into ``m`` disjoint
chunks; by the pigeonhole principle two hashes within distance D agree to within ``D // m`` bits
on at least one chunk, so only pairs sharing a bucket of some chunk's radius-``D // m``
neighbourhood are compared. Each pair is kept only from the first chunk that finds it. The probe
loop is compiled with numba and releases the GIL, so worker threads scale across cores.
"""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from endoctl.grouping import components, smallest_per_key, stable_ids
from endoctl.hashing import from_hex, grid_evidence, grid_from_hex, grid_similarity
from endoctl.io import DEDUPE_REPORT_FILE, DUPLICATES_FILE, PAIR_COLUMNS, PAIRS_FILE, atomic_dir, write_csv, write_text
from endoctl.params import DedupeParams, resolve_workers

CLUSTER_COLUMNS = ["image_id", "source", "cluster", "cluster_size"]
OUTPUT_FILES = (DUPLICATES_FILE, PAIRS_FILE, DEDUPE_REPORT_FILE)
KIND_RANK = {"exact": 0, "near": 1, "sequence": 2}
_PERMUTATION = np.random.default_rng(20240917).permutation(64)


@dataclass(frozen=True)
class Layout:
    """How the 64 bits are cut: chunk (shift, width) pairs and the per-chunk search radius."""

    chunks: tuple[tuple[int, int], ...]
    radius: int


def layout(n: int, max_distance: int) -> Layout:
    """Pick the chunk count minimising the measured cost of probes and bucket scans for ``n`` hashes."""
    best: tuple[float, Layout] | None = None
    for m in range(2, 9):
        radius = max_distance // m
        widths = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
        if max(widths) > 24:
            continue
        cost = 0.0
        for w in widths:
            probes = sum(_comb(w, k) for k in range(radius + 1))
            cost += probes * (1 + 0.1 * n / 2**w)  # measured: a probe costs ~10 bucket entries
        shifts = np.cumsum([0, *widths[:-1]])
        candidate = Layout(tuple(zip(map(int, shifts), widths)), radius)
        if best is None or cost < best[0]:
            best = (cost, candidate)
    assert best is not None
    return best[1]


def _comb(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


def permute_bits(values: np.ndarray) -> np.ndarray:
    """Apply the fixed bit permutation (Hamming distances are unchanged)."""
    bits = np.unpackbits(values.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)
    packed = np.ascontiguousarray(np.packbits(bits[:, _PERMUTATION], axis=1))
    return packed.view(">u8").ravel().astype(np.uint64)


def _masks(width: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << b for b in combo) for combo in itertools.combinations(range(width), k)]
    return np.array(masks, dtype=np.int64)


def _chunk_keys(values: np.ndarray, shift: int, width: int) -> np.ndarray:
    return ((values >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)


@numba.njit(inline="always")
def _popcount(x: np.uint64) -> np.int64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@numba.njit(cache=True, nogil=True)
def _probe(
    sorted_values,
    sorted_keys,
    order,
    starts,
    start_off,
    masks,
    mask_off,
    shifts,
    widths,
    radius,
    max_distance,
    c,
    a_lo,
    a_hi,
    out_i,
    out_j,
    out_d,
    count,
):  # pragma: no cover - compiled
    """Chunk ``c``, sorted positions a_lo..a_hi; returns (next position, pairs written).

    Items are visited in bucket order and each pair (a, p) is taken only with a < p, so every
    bucket is scanned sequentially and a pair found from both sides is reported once.
    A returned position < a_hi means the output buffer is full.
    """
    cap = out_i.shape[0]
    base = start_off[c]
    for a in range(a_lo, a_hi):
        before = count
        hi = sorted_values[c, a]
        key = sorted_keys[c, a]
        for m in range(mask_off[c], mask_off[c + 1]):
            q = key ^ masks[m]
            end = starts[base + q + 1]
            if end <= a + 1:
                continue
            for p in range(max(starts[base + q], a + 1), end):
                x = hi ^ sorted_values[c, p]
                d = _popcount(x)
                if d > max_distance:
                    continue
                first = True
                for e in range(c):  # an earlier chunk finds this pair too: report it once
                    part = (x >> np.uint64(shifts[e])) & np.uint64((1 << widths[e]) - 1)
                    if _popcount(part) <= radius:
                        first = False
                        break
                if not first:
                    continue
                if count == cap:
                    return a, before
                i, j = order[c, a], order[c, p]
                out_i[count] = min(i, j)
                out_j[count] = max(i, j)
                out_d[count] = d
                count += 1
    return a_hi, count


def _scan_range(index: dict, c: int, i_lo: int, i_hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the compiled probe over sorted positions i_lo..i_hi of chunk c, growing the buffers as needed."""
    cap = max(1024, 4 * (i_hi - i_lo))
    out = [np.empty(cap, np.int64) for _ in range(3)]
    count, i = 0, i_lo
    while True:
        i, count = _probe(
            index["sorted_values"],
            index["sorted_keys"],
            index["order"],
            index["starts"],
            index["start_off"],
            index["masks"],
            index["mask_off"],
            index["shifts"],
            index["widths"],
            index["radius"],
            index["max_distance"],
            c,
            i,
            i_hi,
            *out,
            count,
        )
        if i >= i_hi:
            return tuple(a[:count] for a in out)
        out = [np.concatenate([a, np.empty(len(a), np.int64)]) for a in out]


def near_pairs(hashes: np.ndarray, max_distance: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All index pairs (i < j) with Hamming distance <= ``max_distance``, sorted; exact and sub-quadratic."""
    values = permute_bits(np.asarray(hashes, dtype=np.uint64))
    n = len(values)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2:
        return empty, empty, empty
    lay = layout(n, max_distance)
    keys = np.stack([_chunk_keys(values, shift, width) for shift, width in lay.chunks])
    order = np.argsort(keys, axis=1, kind="stable")
    starts = [np.concatenate([[0], np.cumsum(np.bincount(k, minlength=1 << w))]) for k, (_, w) in zip(keys, lay.chunks)]
    masks = [_masks(w, lay.radius) for _, w in lay.chunks]
    index = {
        "sorted_values": np.take_along_axis(np.broadcast_to(values, keys.shape), order, axis=1),
        "sorted_keys": np.take_along_axis(keys, order, axis=1),
        "order": order,
        "starts": np.concatenate(starts),
        "start_off": np.cumsum([0, *map(len, starts)]),
        "masks": np.concatenate(masks),
        "mask_off": np.cumsum([0, *map(len, masks)]),
        "shifts": np.array([s for s, _ in lay.chunks], np.int64),
        "widths": np.array([w for _, w in lay.chunks], np.int64),
        "radius": lay.radius,
        "max_distance": max_distance,
    }
    bounds = np.linspace(0, n, max(1, workers) * 4 + 1).astype(int)
    ranges = [(c, lo, hi) for c in range(len(lay.chunks)) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
    with ThreadPoolExecutor(max(1, workers)) as pool:  # the kernel releases the GIL
        parts = list(pool.map(lambda r: _scan_range(index, *r), ranges))
    i = np.concatenate([p[0] for p in parts])
    j = np.concatenate([p[1] for p in parts])
    d = np.concatenate([p[2] for p in parts])
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def frame_parts(paths: pd.Series, pattern: str) -> pd.DataFrame:
    """``prefix`` and ``frame`` of each path (without its extension) where ``pattern`` is found, else NaN."""
    return paths.str.replace(r"\.[^./]*$", "", regex=True).str.extract(pattern)


def exact_pairs(manifest: pd.DataFrame) -> pd.DataFrame:
    """Same sha256: every copy linked to the group's smallest image_id."""
    ids = manifest["image_id"].to_numpy(dtype=object)
    head = smallest_per_key(manifest["sha256"], ids)
    dup = head != ids
    return pd.DataFrame(
        {"image_id_a": head[dup], "image_id_b": ids[dup], "distance": 0, "kind": "exact", "similarity": 1.0}
    )


def _grids(manifest: pd.DataFrame) -> np.ndarray | None:
    """Every row's 8x8 grid, decoded once; None for manifests written before the column existed."""
    return grid_from_hex(manifest["grid"]) if "grid" in manifest else None


def _similarity(grids: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Grid similarity of rows ``a`` and ``b`` rounded to 4 places for the pairs file (NaN without grids)."""
    if grids is None:
        return np.full(len(a), np.nan)
    return np.round(grid_similarity(grids[a], grids[b]), 4)


def sequence_pairs(manifest: pd.DataFrame, params: DedupeParams) -> pd.DataFrame:
    """Frames of one source and prefix numbered within ``sequence_gap`` and pHash-close."""
    parts = frame_parts(manifest["path"], params.sequence_pattern)
    framed = manifest.assign(prefix=parts["prefix"], frame=pd.to_numeric(parts["frame"])).dropna(subset=["frame"])
    framed = framed.sort_values(["source", "prefix", "frame", "image_id"]).reset_index(drop=True)
    key = (framed["source"] + "\0" + framed["prefix"]).to_numpy()
    frame = framed["frame"].to_numpy()
    ph = from_hex(framed["phash"])
    ids = framed["image_id"].to_numpy()
    grids = _grids(framed)
    out = []
    for k in range(1, len(framed)):
        same = (key[k:] == key[:-k]) & (frame[k:] - frame[:-k] <= params.sequence_gap)
        if not same.any():
            break
        a = np.flatnonzero(same)
        d = np.bitwise_count(ph[a] ^ ph[a + k]).astype(np.int64)
        close = d <= params.sequence_distance
        a, d = a[close], d[close]
        pair = np.sort(np.stack([ids[a], ids[a + k]]), axis=0)
        sim = _similarity(grids, a, a + k)
        out.append(
            pd.DataFrame(
                {"image_id_a": pair[0], "image_id_b": pair[1], "distance": d, "kind": "sequence", "similarity": sim}
            )
        )
    return pd.concat(out) if out else pd.DataFrame(columns=PAIR_COLUMNS)


def confirmed(
    reps: pd.DataFrame, i: np.ndarray, j: np.ndarray, params: DedupeParams, grids: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Which hash-near pairs (rows i, j) the dHash and the pixels agree with, and the grid similarity
    of those kept, rounded for the pairs file (NaN without grids).

    Manifests written before the grid column existed (``grids`` None) are confirmed by dHash alone.
    """
    dh = from_hex(reps["dhash"])
    keep = np.bitwise_count(dh[i] ^ dh[j]) <= params.dhash_distance
    if grids is None:
        return keep, np.full(int(keep.sum()), np.nan)
    similarity, confirms = grid_evidence(grids[i[keep]], grids[j[keep]], params.min_similarity)
    if params.min_similarity > 0:
        similarity = similarity[confirms]
        keep[keep] = confirms
    return keep, np.round(similarity, 4)


def find_pairs(manifest: pd.DataFrame, params: DedupeParams = DedupeParams()) -> pd.DataFrame:
    """Every linking pair (exact, near, sequence), one row per image pair, sorted.

    ``manifest`` needs ``image_id, source, path, sha256, phash, dhash`` (and ``grid`` for the pixel
    check). Near search runs on one representative per sha256, so a thousand identical files cost
    one hash, not a million pairs.
    """
    manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
    exact = exact_pairs(manifest)
    reps = manifest.drop_duplicates("sha256").reset_index(drop=True)
    i, j, d = near_pairs(from_hex(reps["phash"]), params.max_distance, resolve_workers(params.workers))
    grids = _grids(reps)
    keep, sim = confirmed(reps, i, j, params, grids)
    i, j, d = i[keep], j[keep], d[keep]
    ids = reps["image_id"].to_numpy()
    near = pd.DataFrame({"image_id_a": ids[i], "image_id_b": ids[j], "distance": d, "kind": "near", "similarity": sim})
    frames = sequence_pairs(manifest, params) if params.sequence_gap > 0 else None
    found = [p for p in (exact, near, frames) if p is not None and len(p)]
    if not found:  # no duplicate and no sequence link at all
        return pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "distance" else object) for c in PAIR_COLUMNS})
    pairs = pd.concat(found, ignore_index=True)
    pairs["rank"] = pairs["kind"].map(KIND_RANK)
    pairs = pairs.sort_values(["image_id_a", "image_id_b", "rank", "distance"], kind="stable")
    pairs = pairs.drop_duplicates(["image_id_a", "image_id_b"]).drop(columns="rank")
    pairs["distance"] = pairs["distance"].astype(np.int64)
    return pairs.reset_index(drop=True)[PAIR_COLUMNS]


@dataclass
class DedupeResult:
    clusters: pd.DataFrame
    pairs: pd.DataFrame
    report: dict


def cluster(manifest: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Duplicate clusters (exact + near pairs; sequence links only join groups, not clusters)."""
    manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
    index = pd.Series(np.arange(len(manifest)), index=manifest["image_id"])
    dup = pairs[pairs["kind"] != "sequence"]
    labels = components(len(manifest), index[dup["image_id_a"]].to_numpy(), index[dup["image_id_b"]].to_numpy())
    sizes = np.bincount(labels)[labels] if len(labels) else labels
    return pd.DataFrame(
        {
            "image_id": manifest["image_id"],
            "source": manifest["source"],
            "cluster": stable_ids(manifest["image_id"].tolist(), labels, "c"),
            "cluster_size": sizes,
        }
    )[CLUSTER_COLUMNS]


def report(manifest: pd.DataFrame, clusters: pd.DataFrame, pairs: pd.DataFrame, params: DedupeParams) -> dict:
    """What a curator needs to see: cross-source copies, label conflicts, the largest cluster."""
    merged = clusters.merge(manifest[["image_id", "label"]], on="image_id")
    multi = merged[merged["cluster_size"] > 1]
    by_cluster = multi.groupby("cluster")
    sources = by_cluster["source"].nunique()
    labels = multi.assign(key=multi["source"] + ":" + multi["label"]).groupby("cluster")
    per_source = multi.groupby(["cluster", "source"])["label"].nunique()
    conflict_ids = sorted(per_source[per_source > 1].index.get_level_values("cluster").unique())
    largest = None
    if len(clusters):  # the biggest cluster, ties to the smallest id (no sort of every row)
        top = clusters["cluster_size"] == clusters["cluster_size"].max()
        largest = clusters[top & (clusters["cluster"] == clusters.loc[top, "cluster"].min())].iloc[0]
    seq = pairs[pairs["kind"] == "sequence"]
    return {
        "images": int(len(clusters)),
        "clusters": int(clusters["cluster"].nunique()),
        "duplicate_clusters": int(multi["cluster"].nunique()),
        "images_in_duplicate_clusters": int(len(multi)),
        "pairs": {kind: int((pairs["kind"] == kind).sum()) for kind in KIND_RANK},
        "cross_source_clusters": int((sources > 1).sum()),
        "conflicting_label_clusters": len(conflict_ids),
        "conflicting_label_examples": {
            c: sorted(labels.get_group(c)["key"].unique().tolist()) for c in conflict_ids[:10]
        },
        "largest_cluster": None
        if largest is None
        else {
            "cluster": largest["cluster"],
            "size": int(largest["cluster_size"]),
            "sources": sorted(merged.loc[merged["cluster"] == largest["cluster"], "source"].unique().tolist()),
        },
        "sequence_linked_images": int(len(set(seq["image_id_a"]) | set(seq["image_id_b"]))),
        "params": {k: v for k, v in params.__dict__.items() if k != "workers"},
    }


HASH_COLUMNS = ("phash", "dhash")


def validate_manifest(manifest: pd.DataFrame, name: str) -> None:
    """One-line ``ValueError`` naming ``name``, the column, the row and the value of the first problem."""
    missing = sorted({"image_id", "source", "path", "label", "sha256", *HASH_COLUMNS} - set(manifest.columns))
    if missing:
        raise ValueError(
            f"{name}: missing column(s) {missing} (found {list(manifest.columns)}): an `endoctl ingest` manifest is "
            "needed"
        )
    expected = {"image_id": "non-empty", **dict.fromkeys(HASH_COLUMNS, "16 hex digits"), "grid": "128 hex digits"}
    for column, what in expected.items():
        if column not in manifest:  # grid: manifests of older versions are confirmed by dHash alone
            continue
        values = manifest[column]
        bad = values == "" if column == "image_id" else ~values.str.fullmatch(f"[0-9a-fA-F]{{{what.split()[0]}}}")
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ValueError(
                f"{name}: row {row + 2} column {column}: {values.iloc[row]!r} "
                f"({int(bad.sum())} bad value(s); {what} expected)"
            )


def dedupe(manifest: pd.DataFrame, params: DedupeParams = DedupeParams()) -> DedupeResult:
    missing = {"image_id", "source", "path", "label", "sha256", "phash", "dhash"} - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks column(s) {sorted(missing)}: run endoctl ingest first")
    duplicated = manifest["image_id"].duplicated()
    if duplicated.any():
        raise ValueError(f"image_id {manifest.loc[duplicated, 'image_id'].iloc[0]!r} appears in two manifests")
    pairs = find_pairs(manifest, params)
    clusters = cluster(manifest, pairs)
    return DedupeResult(clusters, pairs, report(manifest, clusters, pairs, params))


def dedupe_manifests(
    frames: list[pd.DataFrame], names: list[str], params: DedupeParams = DedupeParams()
) -> DedupeResult:
    """Every source's manifest (checked each under its own name) deduplicated together."""
    for name, frame in zip(names, frames):
        validate_manifest(frame, name)
    return dedupe(pd.concat(frames, ignore_index=True), params)


def write_dedupe(result: DedupeResult, out: str | Path) -> None:
    """The three files of a dedupe run, replaced together."""
    with atomic_dir(out, OUTPUT_FILES, what="dedupe outputs") as tmp:
        write_csv(tmp / DUPLICATES_FILE, result.clusters)
        write_csv(tmp / PAIRS_FILE, result.pairs)
        write_text(tmp / DEDUPE_REPORT_FILE, json.dumps(result.report, indent=2, sort_keys=True) + "\n")

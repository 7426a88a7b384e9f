"""Slow, obviously-right references the fast code is checked against (tests and benchmarks)."""

from __future__ import annotations

import numpy as np


def synthetic_hashes(n: int, seed: int = 0, max_flips: int = 8) -> np.ndarray:
    """Hashes with realistic duplicate structure, like sklearn's make_blobs: checks the fast search.

    A third as many random cluster centres as hashes; each hash is a centre with 0..max_flips
    random bit flips.
    """
    rng = np.random.default_rng(seed)
    n_centres = max(1, n // 3)
    centres = rng.integers(0, 2**63, n_centres, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n_centres).astype(
        np.uint64
    )
    out = centres[rng.integers(0, n_centres, n)]
    flips = rng.integers(0, max_flips + 1, n)
    for k in range(max_flips):
        bit = rng.integers(0, 64, n).astype(np.uint64)
        out = out ^ np.where(flips > k, np.uint64(1) << bit, np.uint64(0))
    return out


def brute_force_pairs(
    hashes: np.ndarray, max_distance: int, block: int = 2048
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference all-pairs scan (blocked XOR + popcount): what the fast search must equal."""
    values = np.asarray(hashes, dtype=np.uint64)
    out_i, out_j, out_d = [], [], []
    for start in range(0, len(values), block):
        rows = values[start : start + block]
        d = np.bitwise_count(rows[:, None] ^ values[None, :])
        ii, jj = np.nonzero(d <= max_distance)
        ii = ii + start
        keep = ii < jj
        out_i.append(ii[keep]), out_j.append(jj[keep]), out_d.append(d[ii[keep] - start, jj[keep]].astype(np.int64))
    i, j, d = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (out_i, out_j, out_d))
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]

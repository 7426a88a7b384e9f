"""endoctl's perceptual hashes: 64-bit pHash and dHash of the 32x32 luma thumbnail, in exact arithmetic.

Definitions (stable; changing them changes every manifest):
- thumbnail: upright luma, box-resampled to 32x32 (see :mod:`endoctl.imaging`; JPEGs are first
  decoded at a reduced DCT scale, so the values are endoctl's own, not ``imagehash``-compatible);
- pHash: 2-D DCT-II of the thumbnail with the integer matrix ``D = round(2**18 * C)`` (``C``: the
  orthonormal DCT-II basis, its 8 lowest frequencies), ``c = D X D^T`` (64 integers, DC included,
  as ``imagehash.phash``); bit = ``2 c > c(32) + c(33)``, i.e. coefficient > the median of the 64
  (``c(k)``: k-th smallest);
- dHash: the thumbnail box-summed to 9 wide x 8 high with integer area weights (``_box_weights``:
  32 x the exact box-average weights, which are multiples of 1/32), bit = sum > its left neighbour's.
Bits are packed row-major, most significant first, and written as 16 lower-case hex digits.
- grid: the thumbnail's 8x8 block means, rounded half up (``(sum of 16 + 8) // 16``), 64 bytes written
  as 128 hex digits; the pixels a near pair is confirmed against (:func:`grid_similarity`).

Why integers: every bit compares two numbers that may be equal (145 of the 555 real images in
``../shared`` have two equal dHash box means). With real-valued weights the comparison of equal
values is decided by rounding, which depends on the BLAS kernel's summation order and so on the
CPU. Here every matrix entry, product and partial sum is an integer of magnitude below 2**53
(checked below), so float64 arithmetic is exact in any order: the hashes are the same bits on every
machine, ties included (a tie is "not greater": bit 0). Hashes are computed for a whole batch at
once (float64 BLAS on integer values), so the per-image cost is a few microseconds.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from endoctl.imaging import DARK_LEVEL

_N = 32
_DCT_BITS = 18  # fixed-point scale of the integer DCT matrix (see the bound check below)
_EXACT = 2**53  # float64 represents every integer below this exactly


def _dct_matrix(n: int, keep: int, bits: int) -> np.ndarray:
    """``round(2**bits * C)`` for the orthonormal DCT-II rows 0..keep-1, as exact integers (float64).

    ``math.cos`` may differ between C libraries in the last ulp; no entry lies within 1e-6 of a
    rounding boundary, so the integers cannot.
    """
    scaled = [
        [
            2**bits * math.sqrt((1 if k else 0.5) * 2 / n) * math.cos(math.pi * (2 * x + 1) * k / (2 * n))
            for x in range(n)
        ]
        for k in range(keep)
    ]
    margin = min(abs(abs(v - math.floor(v)) - 0.5) for row in scaled for v in row)
    assert margin > 1e-6, "integer DCT entry too close to a rounding boundary"
    return np.array([[math.floor(v + 0.5) for v in row] for row in scaled], dtype=np.float64)


def _box_weights(n_out: int, n_in: int) -> np.ndarray:
    """Integer area weights: ``n_in`` x the box-average weights of resampling ``n_in`` pixels to ``n_out``.

    Output ``o`` covers input ``[o * n_in / n_out, (o + 1) * n_in / n_out)``; in units of
    ``1 / n_out`` pixel its overlap with input pixel ``i`` is an integer, and the weights of one
    output sum to ``n_in``.
    """
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        lo, hi = o * n_in, (o + 1) * n_in  # in units of 1 / n_out pixel
        for i in range(n_in):
            w[o, i] = max(0, min(hi, (i + 1) * n_out) - max(lo, i * n_out))
    return w


_DCT8 = _dct_matrix(_N, 8, _DCT_BITS)  # (8, 32)
_ROWS8 = _box_weights(8, _N)  # (8, 32)
_COLS9 = _box_weights(9, _N)  # (9, 32)
# Largest |value| any partial sum can reach for 0..255 thumbnails (x 2 for the median comparison).
assert 2 * 255 * np.abs(_DCT8).sum(axis=1).max() ** 2 < _EXACT
assert 255 * _ROWS8.sum(axis=1).max() * _COLS9.sum(axis=1).max() < _EXACT


def _pack(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bool -> (N,) uint64, first bit most significant."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _luma(thumbs: np.ndarray) -> np.ndarray:
    return np.asarray(thumbs, dtype=np.float64).reshape(-1, _N, _N)


def phash_batch(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) uint8 luma -> (N,) uint64 pHash (exact: see the module docstring)."""
    x = _luma(thumbs)
    coeffs = (_DCT8 @ x @ _DCT8.T).reshape(len(x), 64)
    middle = np.partition(coeffs, (31, 32), axis=1)
    return _pack(2 * coeffs > (middle[:, 31] + middle[:, 32])[:, None])


def dhash_batch(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) uint8 luma -> (N,) uint64 dHash (exact: see the module docstring)."""
    x = _luma(thumbs)
    grid = _ROWS8 @ x @ _COLS9.T  # (N, 8, 9) box sums
    return _pack((grid[:, :, 1:] > grid[:, :, :-1]).reshape(len(x), 64))


def to_hex(values: np.ndarray) -> list[str]:
    return [f"{int(v):016x}" for v in values]


def from_hex(values) -> np.ndarray:
    """16-hex-digit strings -> uint64 (one ``bytes.fromhex`` for the batch; raises ValueError on bad input)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)  # a pandas column: no per-item access
    if all(len(v) == 16 for v in values):
        return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64)
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


GRID = 8  # grid cells per side
MIN_CELLS = 16  # fewer bright cells in common: compare all 64 (a dark picture has no content mask)


def grid_batch(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) uint8 luma -> (N, 64) uint8 block means, exact integer rounding."""
    x = np.asarray(thumbs, dtype=np.int64).reshape(-1, GRID, _N // GRID, GRID, _N // GRID)
    cells = (_N // GRID) ** 2
    return ((x.sum(axis=(2, 4)) + cells // 2) // cells).reshape(-1, GRID * GRID).astype(np.uint8)


def grid_hex(grids: np.ndarray) -> list[str]:
    return [row.tobytes().hex() for row in np.asarray(grids, dtype=np.uint8)]


def grid_from_hex(values) -> np.ndarray:
    """128-hex-digit strings -> (N, 64) uint8 (raises ValueError on bad input)."""
    values = values.tolist() if hasattr(values, "tolist") else list(values)  # a pandas column: no per-item access
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(len(values), GRID * GRID).copy()


def _masked_moments(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: n*cov, n*var(a), n*var(b) (times n) over the cells bright in both, as exact int64."""
    a, b = a.astype(np.int64), b.astype(np.int64)
    mask = (a > DARK_LEVEL) & (b > DARK_LEVEL)
    mask[mask.sum(axis=1) < MIN_CELLS] = True
    n = mask.sum(axis=1)
    sa, sb = (a * mask).sum(axis=1), (b * mask).sum(axis=1)
    cov = n * (a * b * mask).sum(axis=1) - sa * sb
    var_a = n * (a * a * mask).sum(axis=1) - sa * sa
    var_b = n * (b * b * mask).sum(axis=1) - sb * sb
    return cov, var_a, var_b


def grid_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of two (N, 64) grids over the cells bright in both (0 where one is flat).

    Masking the dark cells matters: endoscopes burn a black inset and field-of-view corners into
    every frame, which alone correlate two unrelated pictures of one device. Float64 of exact
    integer moments: the same bits on every machine (see :func:`grid_confirms` for the decision).
    """
    return grid_evidence(a, b, 0.0)[0]


def grid_confirms(a: np.ndarray, b: np.ndarray, threshold: float) -> np.ndarray:
    """``grid_similarity >= threshold`` (0..1) decided in exact integers (no float rounding decides a link)."""
    return grid_evidence(a, b, threshold)[1]


def grid_evidence(a: np.ndarray, b: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(:func:`grid_similarity`, :func:`grid_confirms`) from one pass over the two grids."""
    cov, var_a, var_b = _masked_moments(a, b)
    denom = np.sqrt(var_a.astype(np.float64) * var_b.astype(np.float64))
    similarity = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    t = Fraction(str(threshold))
    p, q = t.numerator, t.denominator
    # corr >= p/q  <=>  cov >= 0 and cov^2 q^2 >= p^2 var_a var_b (Python integers: no overflow)
    lhs = cov.astype(object) ** 2 * (q * q)
    rhs = var_a.astype(object) * var_b.astype(object) * (p * p)
    flat = (var_a == 0) | (var_b == 0)
    return similarity, ~flat & (cov >= 0) & (lhs >= rhs).astype(bool)

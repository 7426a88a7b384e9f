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

import numpy as np

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
    values = list(values)
    if all(len(v) == 16 for v in values):
        return np.frombuffer(bytes.fromhex("".join(values)), dtype=">u8").astype(np.uint64)
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)

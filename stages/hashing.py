"""endoctl's perceptual hashes: 64-bit pHash and dHash of the 32x32 luma thumbnail.

Definitions (stable; changing them changes every manifest):
- thumbnail: upright luma, box-resampled to 32x32 (see :mod:`endoctl.imaging`; JPEGs are first
  decoded at a reduced DCT scale, so the values are endoctl's own, not ``imagehash``-compatible);
- pHash: 2-D DCT-II (orthonormal) of the thumbnail, keep the 8x8 lowest frequencies, bit =
  coefficient > median of those 64 (DC included, as ``imagehash.phash``);
- dHash: thumbnail box-resampled to 9 wide x 8 high, bit = pixel > its left neighbour.
Bits are packed row-major, most significant first, and written as 16 lower-case hex digits.
Hashes are computed for a whole batch at once so the per-image cost is a few microseconds.
"""

from __future__ import annotations

import numpy as np

_N = 32


def _dct_matrix(n: int, keep: int) -> np.ndarray:
    k = np.arange(keep)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT8 = _dct_matrix(_N, 8)  # (8, 32)


def _box_weights(n_out: int, n_in: int) -> np.ndarray:
    """Area-average resampling matrix, so the dHash grid is exact box means of the thumbnail."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for o in range(n_out):
        lo, hi = o * scale, (o + 1) * scale
        for i in range(int(np.floor(lo)), int(np.ceil(hi))):
            w[o, i] = min(hi, i + 1) - max(lo, i)
    return w / scale


_ROWS8 = _box_weights(8, _N)  # (8, 32)
_COLS9 = _box_weights(9, _N)  # (9, 32)


def _pack(bits: np.ndarray) -> np.ndarray:
    """(N, 64) bool -> (N,) uint64, first bit most significant."""
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def phash_batch(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) luma -> (N,) uint64 pHash."""
    x = np.asarray(thumbs, dtype=np.float64).reshape(-1, _N, _N)
    coeffs = (_DCT8 @ x @ _DCT8.T).reshape(len(x), 64)
    med = np.median(coeffs, axis=1, keepdims=True)
    return _pack(coeffs > med)


def dhash_batch(thumbs: np.ndarray) -> np.ndarray:
    """(N, 32, 32) luma -> (N,) uint64 dHash."""
    x = np.asarray(thumbs, dtype=np.float64).reshape(-1, _N, _N)
    grid = _ROWS8 @ x @ _COLS9.T  # (N, 8, 9)
    return _pack((grid[:, :, 1:] > grid[:, :, :-1]).reshape(len(x), 64))


def to_hex(values: np.ndarray) -> list[str]:
    return [f"{int(v):016x}" for v in values]


def from_hex(values) -> np.ndarray:
    return np.array([int(v, 16) for v in values], dtype=np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)

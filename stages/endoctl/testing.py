"""What tests and benchmarks plant and check against (like ``numpy.testing``): images with known
structure, planted degradations, hashes with known duplicates, and slow, obviously-right
references the fast code must equal. Never imported by a pipeline stage.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def scene(seed: int = 0, size: tuple[int, int] = (96, 80)) -> Image.Image:
    """A smooth, structured RGB test image (pHash of pure noise is meaningless)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, phase = rng.uniform(1, 4, 3)
        base[..., c] = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    return Image.fromarray((base * 255).astype(np.uint8))


def _jpeg(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    return out.getvalue()


def degraded_copies(path: str | Path) -> dict[str, bytes]:
    """The image and planted degradations of it, each a JPEG, like dedupe's synthetic hashes: the
    thresholds are chosen on real images and these (tests/test_quality.py, benchmarks/bench_report.py)."""
    im = Image.open(path).convert("RGB")
    a, w = np.asarray(im, dtype=np.float64), im.width

    def blur(share: float) -> bytes:
        return _jpeg(np.asarray(im.filter(ImageFilter.GaussianBlur(share * w)), dtype=np.float64))

    return {
        "original": Path(path).read_bytes(),
        "dark x0.25": _jpeg(a * 0.25),
        "dark x0.15": _jpeg(a * 0.15),
        "whiteout 70%": _jpeg(a * 0.3 + 255 * 0.7),
        "brightened x2.5": _jpeg(a * 2.5),
        "blur 0.5% of width": blur(0.005),
        "blur 1% of width": blur(0.01),
        "uniform (mean colour)": _jpeg(np.broadcast_to(a.mean(axis=(0, 1)), a.shape)),
        "dark uniform + noise": _jpeg(12 + np.random.default_rng(0).normal(0, 2, a.shape)),
    }


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

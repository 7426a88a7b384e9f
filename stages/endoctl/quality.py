"""Image-quality measures and flags: dark, overexposed, low-information, blurry, odd size or aspect.

Every image is decoded once at a reduced scale (``imaging.decode_gray`` at ``DECODE_SIDE``: JPEG
DCT scaling, as in ingest) and its content region (black borders removed, see
``imaging.content_box``) box-resampled to ``REGION`` x ``REGION`` luma. On that region:

- **brightness**: mean luma (0-255). Dark below ``dark``, overexposed above ``overexposed``.
- **contrast**: standard deviation of luma. Low-information (near-uniform) below ``low_information``.
- **sharpness**: mean |Laplacian| / mean |gradient|. The Laplacian (second derivative) of an edge
  falls faster under blur than its gradient, so the ratio drops for blurry images whatever their
  brightness and contrast; blurry below ``blurry`` (near-uniform images have no edges to judge:
  they are low-information, not blurry).

Size flags come from the manifest's ``width``/``height`` alone: odd size when the shorter side is
below ``min_side`` or the size (square root of the area) is more than ``size_factor`` away from its
source's median; odd aspect when the longer side exceeds ``max_aspect`` times the shorter.

All three measures are ratios of integer sums over the uint8 region, and each flag is decided by
one IEEE operation on those sums, so the same pixels give the same flags on every machine. Why the
default thresholds: README "Image quality" (measured on the real images in ``../shared``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from endoctl.imaging import ImageRejected, content_box, decode_gray, read_image_file
from endoctl.parallel import imap_chunks
from endoctl.params import MAX_PIXELS, QualityParams

DECODE_SIDE = 128  # decode scale: 1/4 of a 620x530 frame; blur of 1% of the width stays visible
REGION = 64  # the measured content region, whatever the image size: measures are scale-free
IMAGES_PER_TASK = 64
FLAGS = ("dark", "overexposed", "low_information", "blurry", "odd_size", "odd_aspect", "unreadable")
MEASURE_COLUMNS = ["brightness", "contrast", "sharpness"]
QUALITY_COLUMNS = ["image_id", "source", "path", "width", "height", *MEASURE_COLUMNS, "flags", "reason"]


def region(gray: np.ndarray) -> np.ndarray:
    """The content region of a luma image, box-resampled to ``REGION`` x ``REGION`` uint8."""
    image = Image.fromarray(np.ascontiguousarray(gray))
    return np.asarray(image.resize((REGION, REGION), Image.Resampling.BOX, box=content_box(gray)))


def sums(regions: np.ndarray) -> np.ndarray:
    """Per region (k, REGION, REGION) the exact integer sums behind the measures.

    Columns: sum of luma, sum of squared luma, sum |Laplacian|, sum |dx| + |dy| (central
    differences, twice the gradient), all over the interior pixels but the first two over all.
    """
    r = regions.astype(np.int64)
    inner = r[:, 1:-1, 1:-1]
    lap = r[:, 1:-1, :-2] + r[:, 1:-1, 2:] + r[:, :-2, 1:-1] + r[:, 2:, 1:-1] - 4 * inner
    grad = np.abs(r[:, 1:-1, 2:] - r[:, 1:-1, :-2]) + np.abs(r[:, 2:, 1:-1] - r[:, :-2, 1:-1])
    return np.stack(
        [r.sum(axis=(1, 2)), (r * r).sum(axis=(1, 2)), np.abs(lap).sum(axis=(1, 2)), grad.sum(axis=(1, 2))], axis=1
    )


def measures(s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """brightness, contrast, sharpness from :func:`sums` rows."""
    n = REGION * REGION
    brightness = s[:, 0] / n
    variance = (n * s[:, 1] - s[:, 0] * s[:, 0]) / (n * n)  # exact integers until the division
    sharpness = 2 * s[:, 2] / np.maximum(s[:, 3], 1)
    return brightness, np.sqrt(variance), sharpness


def measure_files(files: list[str], max_pixels: int = MAX_PIXELS) -> list[tuple[int, ...] | str]:
    """Per file the four sums of :func:`sums`, or the reason it cannot be read."""
    out: list[tuple[int, ...] | str] = []
    regions, slots = [], []
    for file in files:
        try:
            regions.append(region(decode_gray(read_image_file(Path(file)), max_pixels, DECODE_SIDE).pixels))
        except ImageRejected as exc:
            out.append(str(exc))
            continue
        slots.append(len(out))
        out.append(())
    if regions:
        for slot, row in zip(slots, sums(np.stack(regions)).tolist()):
            out[slot] = tuple(row)
    return out


def _measure_task(args: tuple[list[str], int]) -> list[tuple[int, ...] | str]:
    return measure_files(*args)


@dataclass
class QualityResult:
    table: pd.DataFrame  # QUALITY_COLUMNS, one row per manifest image, sorted by image_id
    decoded: int  # distinct files decoded (one per sha256)
    seconds: float


def measure_images(
    manifest: pd.DataFrame,
    data_root: str | Path = ".",
    workers: int = 1,
    max_pixels: int = MAX_PIXELS,
    on_progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """The sums of every distinct file (first ``image_id`` per ``sha256``) as columns
    ``s_luma, s_luma2, s_lap, s_grad`` (empty) or ``reason``, one row per manifest image."""
    manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
    key = manifest["sha256"].where(manifest["sha256"] != "", manifest["image_id"])
    reps = manifest.assign(key=key).drop_duplicates("key")
    files = [str(Path(data_root) / p) for p in reps["path"]]
    jobs: Iterator = ((files[i : i + IMAGES_PER_TASK], max_pixels) for i in range(0, len(files), IMAGES_PER_TASK))
    results: list[tuple[int, ...] | str] = []
    for part in imap_chunks(_measure_task, jobs, workers if len(files) > IMAGES_PER_TASK else 1):
        results.extend(part)
        if on_progress:
            on_progress(len(results), len(files))
    rows = {
        k: (r if isinstance(r, tuple) else (None,) * 4) + ("" if isinstance(r, tuple) else r,)
        for k, r in zip(reps["key"], results)
    }
    table = pd.DataFrame([rows[k] for k in key], columns=["s_luma", "s_luma2", "s_lap", "s_grad", "reason"])
    return pd.concat([manifest[["image_id", "source", "path", "width", "height"]], table], axis=1)


def flag(measured: pd.DataFrame, params: QualityParams = QualityParams()) -> pd.DataFrame:
    """QUALITY_COLUMNS from :func:`measure_images`' table: measures rounded for reading, ``flags``
    joined with ``|`` in ``FLAGS`` order, decided on the exact sums."""
    df = measured.reset_index(drop=True)
    ok = df["reason"] == ""
    s = df.loc[ok, ["s_luma", "s_luma2", "s_lap", "s_grad"]].to_numpy(dtype=np.int64).reshape(-1, 4)
    n = REGION * REGION
    raw = {name: np.full(len(df), np.nan) for name in MEASURE_COLUMNS}
    for name, values in zip(MEASURE_COLUMNS, measures(s)):
        raw[name][ok.to_numpy()] = values
    hits = {name: np.zeros(len(df), bool) for name in FLAGS}
    okv = ok.to_numpy()
    hits["dark"][okv] = s[:, 0] < params.dark * n
    hits["overexposed"][okv] = s[:, 0] > params.overexposed * n
    hits["low_information"][okv] = n * s[:, 1] - s[:, 0] * s[:, 0] < (params.low_information * n) ** 2
    hits["blurry"][okv] = (2 * s[:, 2] < params.blurry * np.maximum(s[:, 3], 1)) & ~hits["low_information"][okv]
    hits["unreadable"] = ~okv
    width = pd.to_numeric(df["width"], errors="coerce").fillna(0).to_numpy(np.int64)
    height = pd.to_numeric(df["height"], errors="coerce").fillna(0).to_numpy(np.int64)
    short, long_ = np.minimum(width, height), np.maximum(width, height)
    area = width * height
    median = pd.Series(area).groupby(df["source"].to_numpy()).transform("median").to_numpy()
    f2 = params.size_factor**2
    hits["odd_size"] = (short < params.min_side) | (area * f2 < median) | (area > median * f2)
    hits["odd_aspect"] = long_ > params.max_aspect * np.maximum(short, 1)
    flags = (
        np.array([[name if hits[name][i] else "" for name in FLAGS] for i in range(len(df))], dtype=object)
        if len(df)
        else np.zeros((0, len(FLAGS)), dtype=object)
    )
    out = df[["image_id", "source", "path", "width", "height"]].copy()
    out["brightness"] = np.round(raw["brightness"], 2)
    out["contrast"] = np.round(raw["contrast"], 2)
    out["sharpness"] = np.round(raw["sharpness"], 3)
    out["flags"] = ["|".join(f for f in row if f) for row in flags]
    out["reason"] = df["reason"]
    return out[QUALITY_COLUMNS]


def assess(
    manifest: pd.DataFrame,
    params: QualityParams = QualityParams(),
    data_root: str | Path = ".",
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> QualityResult:
    """Measure and flag every image of ``manifest`` (needs image_id, source, path, width, height, sha256)."""
    start = time.perf_counter()
    measured = measure_images(manifest, data_root, workers, max_pixels, on_progress)
    decoded = int(manifest["sha256"].where(manifest["sha256"] != "", manifest["image_id"]).nunique())
    return QualityResult(flag(measured, params), decoded, time.perf_counter() - start)

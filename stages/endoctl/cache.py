"""Pre-resized image cache: pay the decode of full-size images once, not once per epoch.

A capsule frame or an endoscopy photo is decoded and resized every time training draws it; at
many epochs and a GPU that waits, that decode is the bottleneck. ``endoctl cache`` writes each
image of a split folder once as a JPEG whose shorter side is ``size`` (never enlarged), and a copy
of the split folder whose ``path`` column points at those files (``source_path`` keeps the
original). Training reads the cached folder like any split folder, so nothing else changes.

Cached names follow ``image_id`` (``<source>/<path in the source>``), so two split folders of the
same images produce identical files (DVC's content-addressed cache stores them once). Images that
cannot be read go to ``rejected.csv`` with the reason: rows in = cached + rejected.

The whole output folder is one set (CSVs that point at images that exist): it is built in a hidden
sibling folder (``staging``) and swapped in with one rename by :func:`endoctl.io.atomic_dir`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd
import simplejpeg
from PIL import Image

from endoctl.imaging import ImageRejected, check_size, decode_rgb, plain_jpeg, read_image_file
from endoctl.io import (
    MAPPING_FILE,
    REJECTED_FILE,
    SPLIT_FILES,
    atomic_dir,
    check_output_dir,
    read_csv,
    write_bytes,
    write_csv,
)
from endoctl.parallel import imap_chunks
from endoctl.params import MAX_PIXELS, CacheParams, resolve_workers

COPIED_FILES = (MAPPING_FILE,)
OUTPUT_FILES = ("images", *SPLIT_FILES, *COPIED_FILES, REJECTED_FILE)  # everything a cache folder holds
IMAGES_PER_TASK = 32  # images per worker task: amortises process hand-off, keeps the progress bar moving


@dataclass(frozen=True)
class CacheResult:
    tables: dict[str, pd.DataFrame]  # split file name -> rows with cached paths
    rejected: pd.DataFrame  # image_id, path, reason
    images: int  # distinct images cached
    seconds: float


def cached_name(image_id: str) -> str:
    """Relative file name of an image's cached copy: its ``image_id``, as a ``.jpg``."""
    parts = [p for p in PurePosixPath(image_id.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    if not parts:
        raise ValueError(f"image_id {image_id!r} names no file")
    name = PurePosixPath(*parts)
    return str(name if name.suffix.lower() in (".jpg", ".jpeg") else name.with_name(name.name + ".jpg"))


def shrink(pixels: np.ndarray, size: int, full: tuple[int, int] | None = None) -> np.ndarray:
    """``pixels`` (H x W x 3, uint8) with the shorter side at most ``size`` (aspect kept, never enlarged).

    ``full``: the image's own (width, height) when ``pixels`` was decoded at a reduced DCT scale, so
    the result's size never depends on how it was decoded. Whole factors go first through Pillow's
    box reduction (an exact area average); what is left (a factor below 2) is OpenCV's bit-exact
    fixed-point bilinear resize, which at such factors reads about every source pixel and costs a
    quarter of Pillow's antialiasing filter: this resize was the cache's largest cost per image.
    """
    height, width = pixels.shape[:2]
    full_w, full_h = full or (width, height)
    short = min(full_w, full_h)
    if short <= size:
        return pixels
    scale = size / short
    target = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
    whole = min(width // target[0], height // target[1])
    if whole >= 2:
        pixels = np.asarray(Image.fromarray(pixels).reduce(whole))
    return cv2.resize(pixels, target, interpolation=cv2.INTER_LINEAR_EXACT)


def dct_floor(width: int, height: int, size: int) -> tuple[int, int]:
    """``(min_width, min_height)`` asking libjpeg-turbo for the largest of its 1/2, 1/4, 1/8 scales
    that keeps both sides >= ``size`` (or the full image): those scales have SIMD inverse DCTs, the
    others (3/8, 7/8, ...) plain C ones that decode a 336 px frame slower than at full size."""
    scale = next((d for d in (8, 4, 2) if min(width, height) >= size * d), 1)
    return -(-width // scale), -(-height // scale)


def encode(path: Path, size: int, quality: int, max_pixels: int = MAX_PIXELS) -> bytes:
    """The cached JPEG bytes of one image (raises :class:`ImageRejected` with why).

    Plain JPEGs (no Exif rotation, not CMYK: nearly all endoscopy images) go through libjpeg-turbo
    directly, decoded at a DCT scale (:func:`dct_floor`: a 720x576 frame at 1/2, a 336 px capsule
    frame at full size) so little is left to resample. A colour JPEG already within ``size`` is its
    own cached copy, after a full read of its data at 1/8 scale has checked it: no second lossy
    encoding (CE24's 224 px frames, a third of a merged capsule dataset). Anything else is decoded by
    Pillow. Decoding (integer IDCT), resampling (fixed-point) and encoding are deterministic: the same
    bytes for the same library versions.
    """
    data = read_image_file(path)
    head = plain_jpeg(data)
    pixels = None
    if head is not None:
        width, height, colorspace = head
        check_size(width, height, max_pixels)
        try:
            if colorspace != "Gray" and min(width, height) <= size:
                simplejpeg.decode_jpeg(data, "GRAY", min_height=1, min_width=1, strict=True)
                return data
            min_width, min_height = dct_floor(width, height, size)
            pixels = simplejpeg.decode_jpeg(data, "RGB", min_height=min_height, min_width=min_width, strict=True)
        except ValueError:
            pixels = None  # Pillow decodes it again and names the problem
    if pixels is None:
        im = decode_rgb(data, max_pixels)
        width, height = im.size
        pixels = np.asarray(im)
    small = np.ascontiguousarray(shrink(pixels, size, (width, height)))
    return simplejpeg.encode_jpeg(
        small, quality=quality, colorspace="RGB", colorsubsampling="444" if quality >= 90 else "420"
    )


def _cache_task(args: tuple[list[tuple[str, str]], str, str, int, int, int]) -> list[tuple[str, str | None]]:
    """Cache one chunk of (image_id, path); return (image_id, None) or (image_id, reason)."""
    items, root, out_dir, size, quality, max_pixels = args
    cv2.setNumThreads(1)  # the cache runs one process per core already
    done = []
    for image_id, path in items:
        try:
            data = encode(Path(root) / path, size, quality, max_pixels)
            target = Path(out_dir) / cached_name(image_id)  # inside the staging folder: no temp file needed
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)  # made durable once for the whole folder when it is swapped in
            done.append((image_id, None))
        except ImageRejected as exc:
            done.append((image_id, str(exc)))
    return done


def read_split(split_dir: Path) -> dict[str, pd.DataFrame]:
    """The split CSVs present in ``split_dir`` (at least one), each with a ``path`` column."""
    tables = {}
    for name in SPLIT_FILES:
        file = split_dir / name
        if file.is_file():
            df = read_csv(file)
            missing = [c for c in ("image_id", "path") if c not in df.columns]
            if missing:
                raise ValueError(f"{file}: missing column(s) {missing}; found {list(df.columns)}")
            tables[name] = df
    if not tables:
        raise FileNotFoundError(f"no {' or '.join(SPLIT_FILES)} in {split_dir} (run `endoctl split` first)")
    if not any(len(df) for df in tables.values()):
        raise ValueError(
            f"{split_dir}: {' and '.join(tables)} {'has' if len(tables) == 1 else 'have'} no rows (header only): "
            "nothing to cache"
        )
    return tables


def build_cache(
    split_dir: str | Path,
    out_dir: str | Path,
    size: int = 256,
    quality: int = 95,
    data_root: str | Path = ".",
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    staging: str | Path | None = None,
    max_pixels: int = MAX_PIXELS,
) -> CacheResult:
    """Cache every image of a split folder under ``out_dir/images`` and return the re-pointed tables.

    Paths in the returned tables are ``out_dir/images/<cached name>`` as given (relative when
    ``out_dir`` is), like the split CSVs' own paths relative to ``data_root``. The files are
    written below ``staging`` when given (the folder that will become ``out_dir``).
    """
    if size < 8 or not 1 <= quality <= 100:
        raise ValueError(f"size must be >= 8 and quality in 1..100, got size {size}, quality {quality}")
    started = time.perf_counter()
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    tables = read_split(split_dir)
    rows = pd.concat(list(tables.values()), ignore_index=True)[["image_id", "path"]]
    conflicting = rows.groupby("image_id")["path"].nunique()
    if (conflicting > 1).any():
        raise ValueError(f"{split_dir}: image_id {conflicting[conflicting > 1].index[0]!r} has several paths")
    unique = rows.drop_duplicates("image_id").sort_values("image_id", kind="stable")
    items = list(zip(unique["image_id"], unique["path"]))
    images_dir = out_dir / "images"
    write_dir = Path(staging) / "images" if staging is not None else images_dir
    jobs: Iterator = (
        (items[i : i + IMAGES_PER_TASK], str(data_root), str(write_dir), size, quality, max_pixels)
        for i in range(0, len(items), IMAGES_PER_TASK)
    )
    reasons: dict[str, str] = {}
    done = 0

    def collect(parts: Iterator[list[tuple[str, str | None]]]) -> None:
        nonlocal done
        for part in parts:
            reasons.update({image_id: why for image_id, why in part if why is not None})
            done += len(part)
            if on_progress:
                on_progress(done, len(items))

    collect(imap_chunks(_cache_task, jobs, workers if len(items) > IMAGES_PER_TASK else 1))
    out = {}
    for name, df in tables.items():
        keep = ~df["image_id"].isin(reasons)
        cached = df.loc[keep].copy()
        cached.insert(cached.columns.get_loc("path") + 1, "source_path", cached["path"])
        cached["path"] = [(images_dir / cached_name(i)).as_posix() for i in cached["image_id"]]
        out[name] = cached.reset_index(drop=True)
    rejected = unique[unique["image_id"].isin(reasons)].assign(reason=lambda d: d["image_id"].map(reasons))
    return CacheResult(out, rejected.reset_index(drop=True), len(items) - len(reasons), time.perf_counter() - started)


def write_cache(result: CacheResult, split_dir: str | Path, out_dir: str | Path) -> None:
    """Write the re-pointed split CSVs, a copy of the class mapping and ``rejected.csv``."""
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    for name, df in result.tables.items():
        write_csv(out_dir / name, df)
    for name in COPIED_FILES:
        if (split_dir / name).is_file():
            write_bytes(out_dir / name, (split_dir / name).read_bytes())
    write_csv(out_dir / REJECTED_FILE, result.rejected)


def cache_split(
    split_dir: str | Path,
    out: str | Path,
    params: CacheParams = CacheParams(),
    data_root: str | Path = ".",
    on_progress: Callable[[int, int], None] | None = None,
) -> CacheResult:
    """The cached copy of a split folder, replaced as a whole; an unusable split fails before anything is staged."""
    read_split(split_dir)
    check_output_dir(out, OUTPUT_FILES, what="cache outputs")
    with atomic_dir(out, OUTPUT_FILES, what="cache outputs") as tmp:
        result = build_cache(
            split_dir,
            out,
            params.size,
            params.quality,
            data_root,
            resolve_workers(params.workers),
            on_progress,
            staging=tmp,
            max_pixels=params.max_pixels,
        )
        write_cache(result, split_dir, tmp)
    return result

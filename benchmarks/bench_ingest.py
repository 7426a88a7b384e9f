"""Ingest throughput vs the ``imagehash.phash`` baseline, measured in the same run.

Files: the real Kvasir-SEG JPEGs in ../shared/real_images/kvasir_seg, copied ``--copies`` times
into a temporary ``folder`` layout (page cache warmed first, as in a re-run).
Rows: decode-only ceilings (Pillow draft vs simplejpeg), the imagehash baseline on one core,
and the full ``endoctl ingest`` (walk + read + sha256 + size + pHash + dHash) at 1 and 2 workers.
Below the table: endoctl's exact integer hashes vs the float64 definition they replaced (same
thumbnails of all 555 real images in ../shared/real_images, batches of 64 as in ingest): time per
image and how many bits differ. Writes benchmarks/results/ingest.md.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import simplejpeg
from PIL import Image
from smoke import add_arguments, out_path, write_table

from endoctl.hashing import dhash_batch, phash_batch
from endoctl.imaging import _pillow, thumbnail
from endoctl.ingest import ingest
from endoctl.sources import get_adapter

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "real_images" / "kvasir_seg"
OUT = ROOT / "benchmarks" / "results" / "ingest.md"


def _float_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The float64 matrices of the previous hash definition (orthonormal DCT, box means)."""
    k, x = np.arange(8)[:, None], np.arange(32)[None, :]
    dct = np.cos(np.pi * (2 * x + 1) * k / 64) * np.sqrt(2.0 / 32)
    dct[0] /= np.sqrt(2.0)
    cols = np.zeros((9, 32))
    for o in range(9):
        lo, hi = o * 32 / 9, (o + 1) * 32 / 9
        for i in range(int(np.floor(lo)), int(np.ceil(hi))):
            cols[o, i] = min(hi, i + 1) - max(lo, i)
    return dct, np.kron(np.eye(8), np.full((1, 4), 0.25)), cols / (32 / 9)


_F_DCT, _F_ROWS, _F_COLS = _float_matrices()


def float_hashes(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The previous (float, rounding-dependent) pHash and dHash, as the speed and bit baseline."""
    x = thumbs.astype(np.float64)
    coeffs = (_F_DCT @ x @ _F_DCT.T).reshape(len(x), 64)
    ph = np.packbits(coeffs > np.median(coeffs, axis=1, keepdims=True), axis=1).view(">u8").ravel()
    grid = _F_ROWS @ x @ _F_COLS.T
    dh = np.packbits((grid[:, :, 1:] > grid[:, :, :-1]).reshape(len(x), 64), axis=1).view(">u8").ravel()
    return ph.astype(np.uint64), dh.astype(np.uint64)


def exact_hashes(thumbs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return phash_batch(thumbs), dhash_batch(thumbs)


def hash_comparison(repeats: int, limit: int | None = None, loops: int = 20) -> list[str]:
    """Exact vs float hashes on the real thumbnails: microseconds per image and bits that differ."""
    files = sorted(SHARED.parent.rglob("*.jpg"))[:limit]
    thumbs = np.stack([thumbnail(f.read_bytes()).luma for f in files])
    batches = [thumbs[i : i + 64] for i in range(0, len(thumbs), 64)]

    def us_per_image(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(loops):
                for batch in batches:
                    fn(batch)
            best = min(best, (time.perf_counter() - start) / (loops * len(thumbs)))
        return best * 1e6

    t_float, t_exact = us_per_image(float_hashes), us_per_image(exact_hashes)
    (fp, fd), (ep, ed) = float_hashes(thumbs), exact_hashes(thumbs)
    bits_p, bits_d = np.bitwise_count(fp ^ ep), np.bitwise_count(fd ^ ed)
    grid = _F_ROWS @ thumbs.astype(np.float64) @ _F_COLS.T
    ties = int(np.any(np.isclose(grid[:, :, 1:], grid[:, :, :-1], rtol=0, atol=1e-9), axis=(1, 2)).sum())
    return [
        f"- hashes (pHash + dHash, batches of 64), {len(files)} real images: exact integer definition "
        f"{t_exact:.2f} us/image vs the float64 definition it replaced {t_float:.2f} us/image "
        f"({t_exact / t_float:.2f}x the time; ingest spends ~{1e6 / 1800:.0f} us per image in all)",
        f"- bits that differ, exact vs float on this machine: pHash {int(bits_p.sum())} bits in "
        f"{int((bits_p > 0).sum())} images, dHash {int(bits_d.sum())} bits in {int((bits_d > 0).sum())} images; "
        f"{ties} images have two equal dHash box means, whose float bit depends on rounding order",
    ]


def rate(fn, items) -> float:
    start = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - start)


def best_of(n: int, fn) -> float:
    return max(fn() for _ in range(n))


def _decode_all(datas: list[bytes]) -> None:
    for data in datas:
        simplejpeg.decode_jpeg(data, "GRAY", min_height=32, min_width=32)


def decode_scaling(datas: list[bytes]) -> float:
    """The machine's own 2-process ceiling: the decode loop alone, 1 process vs 2 (no I/O, no IPC)."""
    start = time.perf_counter()
    _decode_all(datas)
    one = time.perf_counter() - start
    ctx = multiprocessing.get_context("fork")
    start = time.perf_counter()
    procs = [ctx.Process(target=_decode_all, args=(datas[i::2],)) for i in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return one / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    add_arguments(parser)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skip: {SHARED} not found (real Kvasir-SEG JPEGs needed)")
        return 0
    originals = sorted(SHARED.glob("*.jpg"))
    limit, loops = None, 20
    if args.smoke:
        originals, limit, loops = originals[:24], 24, 1
        args.copies, args.repeats = 2, 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for c in range(args.copies):
            folder = root / f"copy{c}"
            folder.mkdir()
            for f in originals:
                shutil.copyfile(f, folder / f.name)
        files = sorted(str(p) for p in root.rglob("*.jpg"))
        datas = [Path(f).read_bytes() for f in files]  # warm the page cache
        n = len(files)

        def pillow_draft(data: bytes) -> None:
            im = Image.open(io.BytesIO(data))
            im.draft("L", (32, 32))
            im.load()

        rows = []
        base = best_of(args.repeats, lambda: rate(lambda f: imagehash.phash(Image.open(f)), files[:1000]))
        rows.append(("imagehash.phash (baseline)", 1, base))
        rows.append(("decode only: Pillow draft L", 1, best_of(args.repeats, lambda: rate(pillow_draft, datas))))
        rows.append(
            (
                "decode only: simplejpeg GRAY scaled",
                1,
                best_of(
                    args.repeats,
                    lambda: rate(lambda d: simplejpeg.decode_jpeg(d, "GRAY", min_height=32, min_width=32), datas),
                ),
            )
        )
        for workers in (1, 2):

            def run(workers: int = workers) -> float:
                result = ingest(get_adapter("folder", root).scan(), "bench", root, workers)
                assert len(result.manifest) == n and result.rejected.empty
                return n / result.seconds

            rows.append((f"endoctl ingest, {workers} worker{'s' * (workers > 1)}", workers, best_of(args.repeats, run)))
        ceiling = best_of(args.repeats, lambda: decode_scaling(datas))
        same = sum(np.array_equal(thumbnail(d).luma, _pillow(d, 1 << 40).luma) for d in datas[: len(originals)])

    one = rows[3][2]
    lines = [
        f"# ingest benchmark ({n} real Kvasir-SEG JPEGs, {os.cpu_count()} cores, best of {args.repeats})",
        "",
        "| what | workers | img/s | x imagehash |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {w} | {r:,.0f} | {r / base:.2f} |" for name, w, r in rows],
        "",
        f"- ingest per core vs imagehash.phash: **{one / base:.2f}x** (target >= 4x, stretch 5x)",
        f"- 2 workers vs 1: **{rows[4][2] / one:.2f}x** (target >= 1.8x); this machine's ceiling, "
        f"the bare decode loop in 2 processes vs 1: {ceiling:.2f}x",
        f"- simplejpeg vs Pillow draft decode: {rows[2][2] / rows[1][2]:.2f}x; "
        f"thumbnails identical on both paths for {same}/{len(originals)} files",
        *hash_comparison(args.repeats, limit, loops),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_table(out_path(args, OUT), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

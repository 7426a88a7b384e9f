"""`endoctl report`: per-image quality cost on real images, the whole report at 226k images, and the
quality thresholds measured on the real images.

1. Per image: the real JPEGs in ../shared/real_images (500 Kvasir-SEG, 55 capsule frames), read
   ``--repeats`` times: endoctl's quality measures (reduced-scale decode, 1 and 2 workers) against
   the same measures on a full-size Pillow decode (the baseline) and ingest's hash decode, same run.
2. Scale: a generated manifest of ``--images`` rows (default 226,000, the size of a merged
   EndoExtend24-like dataset) whose paths are links to the real images: video sources with frame
   sequences, clustered pHashes, an official split, a split folder; dedupe runs on it for real,
   then the report end to end (2 workers) with its time per phase and the size of what it writes.
3. Thresholds: each quality measure on every real image (1st / 50th / 99th percentile, min, max)
   and how many real images and planted degradations of them each default threshold flags.

Writes benchmarks/results/report.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from smoke import add_arguments, out_path, write_table

from endoctl.dedupe import dedupe
from endoctl.grouping import build_groups
from endoctl.hashing import to_hex
from endoctl.ingest import hash_files
from endoctl.io import write_csv, write_text
from endoctl.params import QualityParams, ReportParams
from endoctl.quality import FLAGS, assess, flag, measure_files, region, sums
from endoctl.report import build_report, load_inputs, write_report
from endoctl.testing import degraded_copies, synthetic_hashes

ROOT = Path(__file__).resolve().parents[1]

REAL = ROOT.parent / "shared" / "real_images"
OUT = ROOT / "benchmarks" / "results" / "report.md"
CLASSES = [
    "angioectasia",
    "bleeding",
    "erosion",
    "erythema",
    "foreign body",
    "lymphangiectasia",
    "normal",
    "polyp",
    "ulcer",
    "worms",
]


def rate(fn, files: list[str], repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn(files)
    return repeats * len(files) / (time.perf_counter() - start)


def baseline(files: list[str]) -> None:
    """The same measures on a full-size decode: what a straightforward implementation does."""
    regions = [region(np.asarray(Image.open(f).convert("L"))) for f in files]
    sums(np.stack(regions))


def per_image(files: list[str], repeats: int) -> list[str]:
    measure_files(files[:20])  # warm the page cache and imports
    base = rate(baseline, files, 1)
    ours = rate(measure_files, files, repeats)
    hashes = rate(hash_files, files, repeats)
    manifest = pd.DataFrame(
        {
            "image_id": [f"{k}/{f}" for k in range(repeats) for f in files],
            "source": "real",
            "path": [f for _ in range(repeats) for f in files],
            "width": 600,
            "height": 500,
        }
    )
    manifest["sha256"] = manifest["image_id"]  # every row decoded
    start = time.perf_counter()
    assess(manifest, workers=2)
    two = len(manifest) / (time.perf_counter() - start)
    rows = [
        ("full-size Pillow decode + the same measures (baseline)", 1, base),
        ("endoctl quality: reduced-scale decode (>= 128 px) + measures", 1, ours),
        ("endoctl quality, worker processes", 2, two),
        ("for scale: ingest's hash decode (>= 32 px) + sha256 + pHash/dHash", 1, hashes),
    ]
    out = [
        f"## Per image ({len(files)} real JPEGs x {repeats}; baseline once)",
        "",
        "| what | workers | img/s | x baseline |",
        "|---|---:|---:|---:|",
    ]
    out += [f"| {what} | {w} | {r:,.0f} | {r / base:.2f} |" for what, w, r in rows]
    out += [
        "",
        f"- reduced-scale decode vs full decode, one core: **{ours / base:.1f}x**; 2 workers vs 1: {two / ours:.2f}x",
        "",
    ]
    return out


def generated(root: Path, n: int, files: list[str], sizes: dict[str, tuple[int, int]]) -> tuple[Path, Path, Path]:
    """A manifest folder, dedupe outputs and one split folder for ``n`` images linked to real files."""
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    n_video = int(n * 0.6)
    frames_per_video = 500
    videos = [f"{v:016x}" for v in rng.integers(0, 2**63, n_video // frames_per_video + 1)]
    names, sources, patients, official = [], [], [], []
    for k in range(n):
        if k < n_video:
            video = videos[k // frames_per_video]
            names.append(f"capsule/{video}_{10000 + k % frames_per_video}.jpg")
            sources.append("capsule-video")
            patients.append(video)
            official.append("")
        else:
            names.append(f"photos/{k:07d}.jpg")
            sources.append("photos")
            patients.append("")
            official.append("test" if rng.random() < 0.2 else "train")
    (images / "capsule").mkdir()
    (images / "photos").mkdir()
    targets = [files[k % len(files)] for k in range(n)]
    for name, target in zip(names, targets):
        os.symlink(target, images / name)
    # pHash: frames drift ~14 bits per frame (sequence links, rarely near duplicates);
    # photos clustered like real duplicates
    walk = np.empty(n_video, np.uint64)
    start = rng.integers(0, 2**63, len(videos), dtype=np.uint64)
    for k in range(n_video):
        if k % frames_per_video == 0:
            walk[k] = start[k // frames_per_video]
        else:
            flips = rng.integers(0, 64, 16).astype(np.uint64)  # ~14 bits: real consecutive frames, median 20
            walk[k] = walk[k - 1] ^ np.bitwise_or.reduce(np.uint64(1) << flips)
    photos = synthetic_hashes(n - n_video, seed=1)
    copied = rng.random(len(photos)) < 0.03  # photos that are copies of video frames: clusters across sources
    flips = np.uint64(1) << rng.integers(0, 64, len(photos)).astype(np.uint64)
    photos[copied] = walk[rng.integers(0, n_video, copied.sum())] ^ flips[copied]
    phash = np.concatenate([walk, photos])
    manifest = pd.DataFrame(
        {
            "image_id": [f"{s}/{nm}" for s, nm in zip(sources, names)],
            "source": sources,
            "path": [str(images / nm) for nm in names],
            "label": "",
            "patient_id": patients,
            "official_split": official,
            "width": [sizes[t][0] for t in targets],
            "height": [sizes[t][1] for t in targets],
            "bytes": "0",
            "sha256": [hashlib.sha256(nm.encode()).hexdigest() for nm in names],
            "phash": to_hex(phash),
            "dhash": to_hex(phash),
        }
    )
    result = dedupe(manifest.astype(str))
    # labels as in real data: constant over runs of video frames, shared by a duplicate cluster, 1% noise
    run = [hashlib.sha1(f"{p}{k // 50}".encode()).digest()[0] for k, p in enumerate(patients)]
    cluster = result.clusters.set_index("image_id")["cluster"].reindex(manifest["image_id"]).to_numpy()
    by_cluster = [hashlib.sha1(c.encode()).digest()[0] for c in cluster]
    pick = np.where(np.arange(n) < n_video, run, by_cluster) % len(CLASSES)
    noise = rng.random(n) < 0.01
    pick[noise] = rng.integers(0, len(CLASSES), noise.sum())
    manifest["label"] = np.array(CLASSES)[pick]
    folder = root / "manifests"
    folder.mkdir()
    for source, part in manifest.groupby("source"):
        write_csv(folder / f"{source}.csv", part.astype(str))
        write_csv(
            folder / f"{source}.rejected.csv",
            pd.DataFrame({"path": [f"{source}/broken.jpg"], "reason": ["empty file (0 bytes)"]}),
        )
    write_csv(root / "duplicates.csv", result.clusters)
    write_csv(root / "duplicate_pairs.csv", result.pairs)
    write_text(root / "duplicates_report.json", json.dumps(result.report))
    groups = build_groups(manifest, result.pairs)
    key = groups["group"].map(lambda g: int(hashlib.sha1(g.encode()).hexdigest()[:8], 16) % 10)
    split = root / "split"
    split.mkdir()
    rows = manifest[["image_id", "source", "path", "label"]].assign(
        target_class=manifest["label"], group=groups["group"]
    )
    write_csv(split / "train_val.csv", rows[key >= 2].assign(fold=(key[key >= 2] % 5).astype(str)))
    write_csv(split / "test.csv", rows[key < 2].assign(fold=""))
    write_csv(split / "excluded.csv", pd.DataFrame(columns=["image_id", "source", "reason"]))
    return folder, root / "duplicates.csv", split


def scale(files: list[str], n: int) -> list[str]:
    sizes = {f: Image.open(f).size for f in files}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folder, duplicates, split = generated(Path(tmp), n, files, sizes)
        made = time.perf_counter() - start
        start = time.perf_counter()
        manifests = sorted(p for p in folder.glob("*.csv") if not p.name.endswith(".rejected.csv"))
        inputs = load_inputs(manifests, duplicates, [split])
        loaded = time.perf_counter() - start
        assert len(inputs.manifest) == n and len(inputs.splits) == 1, "the generated inputs read back"
        result = build_report(inputs, ReportParams(), QualityParams(), workers=2)
        assert result.summary["clusters"] <= n and result.summary["decoded"] <= n
        start = time.perf_counter()
        index = write_report(result, Path(tmp) / "report")
        assert index.is_file() and "<html" in index.read_text()[:1000].lower()
        written = time.perf_counter() - start
        out_files = [p for p in index.parent.rglob("*") if p.is_file()]
        thumbs = [p.stat().st_size for p in out_files if p.parent.name == "thumbs"]
        csv_bytes = {p.name: p.stat().st_size for p in out_files if p.suffix == ".csv"}
    s = result.summary
    other = result.seconds - result.quality_seconds
    return [
        f"## Scale: {n:,} images (generated manifest, paths linked to the real JPEGs; 2 workers)",
        "",
        f"Generated in {made:.0f} s: {s['clusters']:,} duplicate clusters ({s['cross_source']:,} across sources), "
        f"{s['sequences']:,} frame sequences, {s['conflicts']:,} label conflicts, {s['leaking_groups']:,} leaking "
        "groups.",
        "",
        "| phase | seconds |",
        "|---|---:|",
        f"| read inputs (manifests, dedupe outputs, split folder) | {loaded:.1f} |",
        f"| quality measures: {s['decoded']:,} images decoded, {s['decoded'] / result.quality_seconds:,.0f} img/s | "
        f"{result.quality_seconds:.1f} |",
        f"| analysis, galleries, {s['thumbnails']} thumbnails, page | {other:.1f} |",
        f"| write the folder (temp + rename) | {written:.1f} |",
        f"| **total** | **{loaded + result.seconds + written:.1f}** |",
        "",
        f"- index.html: **{len(result.html.encode()) / 1024:,.0f} KiB**; thumbnails: {len(thumbs)} files, "
        f"{sum(thumbs) / 1024:,.0f} KiB",
        "- CSVs (full lists): " + ", ".join(f"{k} {v / 1024**2:.1f} MiB" for k, v in sorted(csv_bytes.items())),
        "",
    ]


def thresholds(files: list[str]) -> list[str]:
    from endoctl.imaging import decode_gray
    from endoctl.quality import DECODE_SIDE

    rows = []
    for f in files:
        kind = "capsule" if "capsule" in f else "Kvasir-SEG"
        for name, data in degraded_copies(f).items():
            s = sums(region(decode_gray(data, side=DECODE_SIDE).pixels)[None])[0]
            rows.append((f"{kind}|{name}|{f}", kind, name, *s))
    df = pd.DataFrame(rows, columns=["image_id", "source", "variant", "s_luma", "s_luma2", "s_lap", "s_grad"])
    q = flag(df.assign(path="", width=600, height=500, reason=""), QualityParams())
    q["variant"] = df["variant"]
    out = [
        "## Quality thresholds on the real images",
        "",
        "Measures of the originals (min / 1st pct / median / 99th pct / max):",
        "",
        "| images | brightness | contrast | sharpness |",
        "|---|---|---|---|",
    ]
    for kind, part in q[q["variant"] == "original"].groupby("source"):
        cells = [
            " / ".join(f"{v:.2f}" for v in np.percentile(part[m].to_numpy(float), [0, 1, 50, 99, 100]))
            for m in ("brightness", "contrast", "sharpness")
        ]
        out.append(f"| {kind} ({len(part)}) | " + " | ".join(cells) + " |")
    p = QualityParams()
    out += [
        "",
        f"Images flagged by the defaults (dark < {p.dark:g}, overexposed > {p.overexposed:g}, low-information "
        f"< {p.low_information:g}, blurry < {p.blurry:g}), originals and planted degradations of each:",
        "",
        "| images | variant | dark | overexposed | low_information | blurry |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for (kind, variant), part in q.groupby(["source", "variant"], sort=False):
        counts = [int(part["flags"].str.split("|").map(lambda fs, f=f: f in fs).sum()) for f in FLAGS[:4]]
        out.append(f"| {kind} | {variant} | " + " | ".join(f"{c}/{len(part)}" for c in counts) + " |")
    blurry = q[(q["variant"] == "original") & q["flags"].str.contains("blurry")]
    out += [
        "",
        "Real images flagged blurry: "
        + ", ".join(f"{Path(i.split('|')[2]).name} ({s:.3f})" for i, s in zip(blurry["image_id"], blurry["sharpness"])),
        "",
    ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=226_000)
    parser.add_argument("--repeats", type=int, default=4)
    add_arguments(parser)
    args = parser.parse_args()
    files = sorted(str(f) for f in REAL.glob("*/*.jpg"))
    if not files:
        print(f"skip: no real images in {REAL}")
        return 0
    if args.smoke:  # a few of each kind of real image
        files = [f for f in files if "capsule" in f][:6] + [f for f in files if "capsule" not in f][:10]
        args.images, args.repeats = min(args.images, 3_000), 1
    load = os.getloadavg()[0]
    lines = [
        f"# report benchmark ({len(files)} real JPEGs, {os.cpu_count()} cores, load average {load:.1f} at start)",
        "",
    ]
    for run in (lambda: per_image(files, args.repeats), lambda: scale(files, args.images), lambda: thresholds(files)):
        part = run()
        lines += part
        print("\n".join(part), flush=True)
    write_table(out_path(args, OUT), "\n".join(lines).rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

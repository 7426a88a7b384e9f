"""Training-loader throughput from original images vs from the ``endoctl cache`` copies, same run.

Images: the real Kvasir-SEG JPEGs in ../shared/real_images/kvasir_seg (endoscopy photos of a few
hundred to ~1,900 px). Each row runs endoctl's training dataset (decode + timm train transform with
the endoscopy augmentations + normalise) over every image in one process, at 224 px, the paper's
input size; the cache row is the same loop over the 256-px copies. Also reports the one-off cost
of building the cache. Writes benchmarks/results/cache.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from smoke import add_arguments, out_path, write_table

from endoctl import data as datamod
from endoctl.cache import build_cache, write_cache
from endoctl.io import write_csv, write_text
from endoctl.model import create_model, data_config_for

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "real_images" / "kvasir_seg"
OUT = ROOT / "benchmarks" / "results" / "cache.md"
IMG_SIZE = 224
REPEATS = 3


def loader_rate(split_dir: Path, data_config: dict, repeats: int = REPEATS) -> float:
    split = datamod.load_split(split_dir, 0)
    frame = pd.concat([split.train, split.val], ignore_index=True)
    dataset = datamod.LabelledImages(frame, datamod.build_transform(data_config, True, datamod.Augment()), Path("."))
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(dataset)):
            x, _ = dataset[(i, i)]
            assert tuple(x.shape) == (3, IMG_SIZE, IMG_SIZE), x.shape
        best = max(best, len(dataset) / (time.perf_counter() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found (the real images live in ../shared)")
        return 0
    torch.set_num_threads(1)
    files = sorted(SHARED.glob("*.jpg"))
    repeats = REPEATS
    if args.smoke:
        files, repeats = files[:10], 1
    data_config = data_config_for(create_model("resnet18", 2, img_size=IMG_SIZE), IMG_SIZE)
    with tempfile.TemporaryDirectory() as tmp:
        split = Path(tmp) / "split"
        rows = [
            {
                "image_id": f"kvasir-seg/{f.name}",
                "source": "kvasir-seg",
                "path": str(f),
                "label": "polyp",
                "target_class": ["normal", "polyp"][i % 2],
                "group": f"g{i}",
                "fold": str(i % 5),
            }
            for i, f in enumerate(files)
        ]
        write_csv(split / "train_val.csv", pd.DataFrame(rows))
        write_text(split / "class_mapping.json", json.dumps({"normal": 0, "polyp": 1}))
        start = time.perf_counter()
        result = build_cache(split, Path(tmp) / "cache", size=256, workers=1)
        write_cache(result, split, Path(tmp) / "cache")
        build = len(files) / (time.perf_counter() - start)
        cached_files = sorted((Path(tmp) / "cache" / "images").rglob("*.jpg"))
        assert len(cached_files) == len(files), f"{len(cached_files)} cached copies of {len(files)} images"
        original = loader_rate(split, data_config, repeats)
        cached = loader_rate(Path(tmp) / "cache", data_config, repeats)
        mb = [
            sum(f.stat().st_size for f in files) / 1e6,
            sum(f.stat().st_size for f in cached_files) / 1e6,
        ]
    table = "\n".join(
        [
            "# Training loader: original images vs `endoctl cache` (256 px, JPEG q95)",
            "",
            f"{len(files)} real Kvasir-SEG JPEGs; endoctl's training dataset at {IMG_SIZE} px (decode + random resized "
            f"crop + flips/rot90 + colour jitter + normalise), one process, best of {repeats}; same run.",
            "",
            "| images read | img/s per process | MB on disk |",
            "|---|---:|---:|",
            f"| originals | {original:,.0f} | {mb[0]:,.1f} |",
            f"| cache (shorter side 256) | {cached:,.0f} | {mb[1]:,.1f} |",
            "",
            f"Speed-up from the cache: **{cached / original:.2f}x** per loader process. Building the cache once: "
            f"{build:,.0f} img/s on one worker.",
            "",
        ]
    )
    print(table)
    write_table(out_path(args, OUT), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

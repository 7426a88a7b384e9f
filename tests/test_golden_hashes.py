"""Golden file: sha256, pHash and dHash of the real images in ../shared/real_images never change silently.

The hashes decide which images are duplicates and so which split an image lands in; any change to
decoding, the thumbnail or the hash arithmetic shows up here. After a deliberate change, regenerate
the file (and say why in the commit):

    .venv/bin/python tests/test_golden_hashes.py --write      (or: make golden)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from conftest import shared_path

from endoctl.ingest import ingest
from endoctl.io import read_csv, write_csv
from endoctl.sources import get_adapter

GOLDEN = Path(__file__).resolve().parent / "data" / "real_image_hashes.csv"
REAL_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "real_images"
COLUMNS = ["path", "width", "height", "bytes", "sha256", "phash", "dhash"]


def current_hashes(root: Path) -> pd.DataFrame:
    """Every image below ``root/<folder>/`` through endoctl's real ingest path (one worker)."""
    result = ingest(get_adapter("folder", root).scan(), "real", root, workers=1)
    assert result.rejected.empty, result.rejected
    return result.manifest[COLUMNS].astype(str).sort_values("path").reset_index(drop=True)


def test_real_image_hashes_match_the_golden_file() -> None:
    root = shared_path("real_images")
    golden = read_csv(GOLDEN)
    now = current_hashes(root)
    assert len(golden) == 555 and set(golden["path"].str.split("/").str[0]) == {
        "kvasir_seg",
        "kvasir_capsule_video_131368cc17e44240",
    }
    assert now["path"].tolist() == golden["path"].tolist()
    changed = now[(now != golden).any(axis=1)]
    assert changed.empty, (
        f"{len(changed)} of {len(now)} real images changed hashes (first: {changed.iloc[0].to_dict()}); "
        f"if deliberate, regenerate with `make golden`"
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(__doc__)
    if not REAL_IMAGES.is_dir():
        sys.exit(f"{REAL_IMAGES} not found")
    table = current_hashes(REAL_IMAGES)
    write_csv(GOLDEN, table)
    print(f"wrote {len(table)} rows to {GOLDEN}")

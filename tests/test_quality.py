"""Image-quality measures and flags: exact boundaries, size rules, and the default thresholds on real images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from endoctl.params import QualityParams
from endoctl.quality import REGION, assess, flag, measures, region, sums
from endoctl.testing import degraded_copies
from tests.conftest import scene, shared_path


def _rows(regions: list[np.ndarray], sizes: list[tuple[int, int]] | None = None, source: str = "s") -> pd.DataFrame:
    s = sums(np.stack(regions))
    sizes = sizes or [(600, 500)] * len(regions)
    return pd.DataFrame(
        {
            "image_id": [f"{source}/{k}" for k in range(len(regions))],
            "source": source,
            "path": "",
            "width": [w for w, _ in sizes],
            "height": [h for _, h in sizes],
            "s_luma": s[:, 0],
            "s_luma2": s[:, 1],
            "s_lap": s[:, 2],
            "s_grad": s[:, 3],
            "reason": "",
        }
    )


def test_flags_are_decided_exactly_at_the_thresholds() -> None:
    flat = lambda v: np.full((REGION, REGION), v, np.uint8)  # noqa: E731
    q = flag(_rows([flat(39), flat(40), flat(200), flat(201)]))
    assert q["brightness"].tolist() == [39, 40, 200, 201]
    assert [f.split("|")[0] for f in q["flags"]] == ["dark", "low_information", "low_information", "overexposed"]
    assert not q["flags"].str.contains("blurry").any()  # uniform: no edges to judge, so low-information only
    # contrast exactly 6 (half the pixels at m-6, half at m+6) is not low-information; 5.5 is
    half = np.arange(REGION * REGION).reshape(REGION, REGION) % 2
    checker = lambda d: (100 + np.where(half, d, -d)).astype(np.uint8)  # noqa: E731
    q = flag(_rows([checker(6), checker(5)]))
    assert q["contrast"].tolist() == [6.0, 5.0]
    assert [("low_information" in f) for f in q["flags"]] == [False, True]


def test_sharpness_drops_with_blur_and_ignores_brightness_and_contrast() -> None:
    image = scene(3, (400, 400)).convert("L")
    sharp_edges = Image.fromarray(np.where(np.asarray(image) > 128, 200, 40).astype(np.uint8))
    versions = [
        sharp_edges,
        sharp_edges.filter(ImageFilter.GaussianBlur(3)),
        sharp_edges.filter(ImageFilter.GaussianBlur(8)),
    ]
    regions = [region(np.asarray(v)) for v in versions]
    regions.append((regions[0] // 2).astype(np.uint8))  # darker, less contrast, same edges
    _, _, sharpness = measures(sums(np.stack(regions)))
    assert sharpness[0] > sharpness[1] > sharpness[2]
    assert abs(sharpness[3] - sharpness[0]) < 0.1 * sharpness[0]


def test_size_flags_use_each_sources_median() -> None:
    flat = np.full((REGION, REGION), 120, np.uint8)
    sizes = [(600, 500)] * 4 + [(100, 100), (2000, 2000), (1800, 600), (620, 530)]
    q = flag(_rows([flat] * len(sizes), sizes, "a"))
    size_flags = [set(f.split("|")) & {"odd_size", "odd_aspect"} for f in q["flags"]]
    assert size_flags == [set()] * 4 + [{"odd_size"}, {"odd_size"}, {"odd_aspect"}, set()]
    # a source of small images is judged against the absolute minimum, not against the other sources
    q = flag(
        pd.concat([_rows([flat], [(150, 150)], "big"), _rows([flat], [(200, 200)], "small")], ignore_index=True),
        QualityParams(min_side=160),
    )
    assert q["flags"].str.contains("odd_size").tolist() == [True, False]


def test_unreadable_files_are_rows_with_a_reason(tmp_path: Path) -> None:
    blocks = np.kron(np.random.default_rng(1).integers(40, 220, (10, 12, 3)), np.ones((50, 50, 1)))
    Image.fromarray(blocks.astype(np.uint8)).save(tmp_path / "ok.jpg", quality=95)  # sharp, bright enough
    (tmp_path / "copy.jpg").write_bytes((tmp_path / "ok.jpg").read_bytes())
    (tmp_path / "text.jpg").write_bytes(b"not an image")
    names = ["ok.jpg", "copy.jpg", "text.jpg", "missing.jpg"]
    manifest = pd.DataFrame(
        {
            "image_id": [f"a/{n}" for n in names],
            "source": "a",
            "path": [str(tmp_path / n) for n in names],
            "width": 600,
            "height": 500,
            "sha256": ["x", "x", "y", "z"],
        }
    )
    result = assess(manifest)
    q = result.table.set_index("image_id")
    assert sorted(q.index) == sorted(manifest["image_id"]) and result.decoded == 3  # one decode per content
    assert q.at["a/ok.jpg", "flags"] == q.at["a/copy.jpg", "flags"] == "" and q.at["a/ok.jpg", "reason"] == ""
    assert q.at["a/text.jpg", "flags"] == "unreadable" and "not an image" in q.at["a/text.jpg", "reason"]
    assert (
        q.at["a/missing.jpg", "flags"] == "unreadable"
        and q.at["a/missing.jpg", "reason"] == "file not found (or broken symlink)"
    )


PLANTED = ("dark x0.15", "whiteout 70%", "blur 1% of width", "uniform (mean colour)", "dark uniform + noise")


def _assess_files(files: list[Path]) -> pd.DataFrame:
    sizes = [Image.open(f).size for f in files]
    manifest = pd.DataFrame(
        {
            "image_id": [str(f) for f in files],
            "source": [f.parent.name for f in files],
            "path": [str(f) for f in files],
            "width": [w for w, _ in sizes],
            "height": [h for _, h in sizes],
            "sha256": [str(f) for f in files],
        }
    )
    return assess(manifest, workers=2).table


def test_default_thresholds_on_the_real_images(tmp_path: Path) -> None:
    """The real images are (almost) never flagged; planted degradations of them always are."""
    seg = sorted(shared_path("real_images", "kvasir_seg").glob("*.jpg"))
    capsule = sorted(shared_path("real_images", "kvasir_capsule_video_131368cc17e44240").glob("*.jpg"))
    q = _assess_files(seg + capsule).set_index("image_id")
    flagged = q[q["flags"] != ""]
    assert set(flagged["flags"]) <= {"blurry"}, flagged
    blurry_seg = [i for i in flagged.index if "kvasir_seg" in i]
    blurry_capsule = sorted(int(Path(i).stem.split("_")[1]) for i in flagged.index if "capsule" in i)
    assert len(blurry_seg) <= 1  # of 500: one soft, washed-out frame (sharpness 0.87)
    assert len(blurry_capsule) <= 5 and all(28998 <= f <= 29007 for f in blurry_capsule), blurry_capsule  # motion blur

    planted = []
    for path in seg[::20] + capsule[::5]:
        for name, data in degraded_copies(path).items():
            if name not in PLANTED:
                continue
            file = tmp_path / name.replace(" ", "_").replace("%", "pc") / f"{path.parent.name[:10]}_{path.name}"
            file.parent.mkdir(exist_ok=True)
            file.write_bytes(data)
            planted.append(file)
    q = _assess_files(planted)
    kind = q["image_id"].map(lambda i: Path(i).parent.name)
    has = lambda f: q["flags"].str.split("|").map(lambda fs: f in fs)  # noqa: E731
    assert has("dark")[kind == "dark_x0.15"].all()
    assert has("overexposed")[kind == "whiteout_70pc"].mean() >= 0.95
    assert has("blurry")[kind == "blur_1pc_of_width"].all()
    uniform = kind == "uniform_(mean_colour)"
    assert has("low_information")[uniform].all() and not has("blurry")[uniform].any()
    assert (has("dark") & has("low_information"))[kind == "dark_uniform_+_noise"].all()


@pytest.mark.parametrize("workers", [1, 2])
def test_measures_are_identical_for_any_worker_count(tmp_path: Path, workers: int) -> None:
    files = []
    for k in range(70):  # more than one chunk
        files.append(tmp_path / f"{k}.jpg")
        scene(k, (120, 100)).save(files[-1], quality=90)
    manifest = pd.DataFrame(
        {
            "image_id": [f.name for f in files],
            "source": "a",
            "path": [str(f) for f in files],
            "width": 120,
            "height": 100,
            "sha256": [f.name for f in files],
        }
    )
    reference = assess(manifest, workers=1).table
    pd.testing.assert_frame_equal(assess(manifest, workers=workers).table, reference)

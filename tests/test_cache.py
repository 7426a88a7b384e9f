"""`endoctl cache`: pre-resized copies of a split folder's images that training reads unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from endoctl import data as datamod
from endoctl.cache import build_cache, cached_name, shrink, write_cache
from endoctl.cli import app
from endoctl.io import read_csv, write_csv
from endoctl.testing import scene

runner = CliRunner()


def make_split(root: Path) -> Path:
    """A split folder over large JPEG/PNG images, one small image and one corrupt file."""
    rows = []
    images = [
        ("a/big.jpg", (640, 480)),
        ("a/tall.png", (300, 900)),
        ("b/small.jpg", (90, 70)),
        ("b/photo.JPEG", (1000, 700)),
        ("b/broken.jpg", None),
    ]
    for i, (name, size) in enumerate(images):
        path = root / "raw" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if size is None:
            path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        else:
            scene(i, size).save(path, quality=92) if path.suffix.lower() != ".png" else scene(i, size).save(path)
        rows.append(
            {
                "image_id": f"demo/{name}",
                "source": "demo",
                "path": f"raw/{name}",
                "label": "x",
                "target_class": ["normal", "polyp"][i % 2],
                "group": f"g{i}",
                "fold": "" if i == 4 else str(i % 2),
            }
        )
    split = root / "manifests" / "demo"
    df = pd.DataFrame(rows)
    write_csv(split / "train_val.csv", df[df["fold"] != ""])
    write_csv(split / "test.csv", df[df["fold"] == ""])
    (split / "class_mapping.json").write_text(json.dumps({"normal": 0, "polyp": 1}))
    return split


def test_cached_names_stay_inside_the_cache_and_are_jpegs() -> None:
    assert cached_name("kid/a/b.jpg") == "kid/a/b.jpg"
    assert cached_name("ce24/x/y.png") == "ce24/x/y.png.jpg"  # keeps ids unique: y.png and y.jpg differ
    assert cached_name("s/../../etc/p.JPEG") == "s/etc/p.JPEG"
    with pytest.raises(ValueError, match="names no file"):
        cached_name("../")


def test_shrink_keeps_aspect_never_enlarges_and_stays_faithful() -> None:
    """Shapes are (height, width, 3); at any factor (whole factors box-reduced first) a textured
    image stays within ~3 grey levels of Pillow's antialiasing bicubic filter (nearest-neighbour
    sampling is 11-17 away, bilinear without the box reduction 8-11 at factors of 2.7 and more)."""
    assert shrink(np.zeros((480, 640, 3), np.uint8), 240).shape == (240, 320, 3)
    assert shrink(np.zeros((900, 300, 3), np.uint8), 100).shape == (300, 100, 3)
    small = np.zeros((100, 120, 3), np.uint8)
    assert shrink(small, 256) is small
    rng = np.random.default_rng(0)
    for size in ((2000, 1500), (1000, 700), (720, 576), (336, 336)):
        texture = rng.integers(-40, 41, size[::-1])[..., None]
        pixels = np.clip(np.asarray(scene(5, size)) + texture, 0, 255).astype(np.uint8)
        ours = shrink(pixels, 256).astype(float)
        theirs = np.asarray(Image.fromarray(pixels).resize(ours.shape[1::-1], Image.Resampling.BICUBIC), float)
        assert np.abs(ours - theirs).mean() < 4, size


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_accounts_for_every_image_and_training_reads_it(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.chdir(tmp_path)
    split = make_split(tmp_path)
    result = build_cache(split.relative_to(tmp_path), "cache/demo", size=96, workers=workers)
    write_cache(result, split, "cache/demo")
    assert result.images + len(result.rejected) == 5  # images in = cached + rejected
    assert (
        result.rejected["image_id"].tolist() == ["demo/b/broken.jpg"] and result.rejected["reason"].str.len().min() > 5
    )
    test = read_csv("cache/demo/test.csv")
    assert len(test) == 0  # the broken test image is reported in rejected.csv, not silently lost
    train_val = read_csv("cache/demo/train_val.csv")
    assert list(train_val.columns) == [
        "image_id",
        "source",
        "path",
        "source_path",
        "label",
        "target_class",
        "group",
        "fold",
    ]
    assert train_val["source_path"].tolist() == [
        "raw/a/big.jpg",
        "raw/a/tall.png",
        "raw/b/small.jpg",
        "raw/b/photo.JPEG",
    ]
    sizes = {}
    for path in train_val["path"]:
        assert path.startswith("cache/demo/images/demo/")
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            sizes[path.rsplit("/", 1)[-1]] = im.size
    assert sizes == {"big.jpg": (128, 96), "tall.png.jpg": (96, 288), "small.jpg": (90, 70), "photo.JPEG": (137, 96)}
    assert (tmp_path / "cache/demo/class_mapping.json").read_bytes() == (split / "class_mapping.json").read_bytes()
    # the cached folder is a split folder: training loads it as it loads the original
    loaded = datamod.load_split(Path("cache/demo"), 0)
    assert len(loaded.train) + len(loaded.val) == 4 and loaded.class_names == ["normal", "polyp"]
    original = np.asarray(Image.open("raw/a/big.jpg").convert("RGB").resize((128, 96), Image.Resampling.BICUBIC), float)
    cached = np.asarray(Image.open("cache/demo/images/demo/a/big.jpg"), float)
    assert np.abs(original - cached).mean() < 4  # a faithful copy, not a different image


def test_cli_is_deterministic_and_reports_counts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    split = make_split(tmp_path)
    outputs = []
    for run, workers in (("one", "1"), ("two", "2")):
        res = runner.invoke(app, ["cache", "manifests/demo", "--out", run, "--size", "64", "--workers", workers])
        assert res.exit_code == 0, res.output
        assert "5 images = cached 4 + rejected 1" in res.stdout and "img/s" in res.stdout
        outputs.append(
            {
                p.relative_to(tmp_path / run).as_posix(): p.read_bytes()
                for p in sorted((tmp_path / run).rglob("*"))
                if p.is_file()
            }
        )
    one, two = outputs
    assert set(one) == set(two) and len(one) == 4 + 4  # 4 images + train_val, test, class_mapping, rejected
    for name in one:
        if name.endswith(".csv"):
            assert one[name].replace(b"one/", b"") == two[name].replace(b"two/", b""), name
        else:
            assert one[name] == two[name], name
    res = runner.invoke(app, ["cache", "manifests/demo", "--out", "manifests/demo"])
    assert res.exit_code == 2 and "--out must differ" in res.stderr
    res = runner.invoke(app, ["cache", "manifests/none", "--out", "x"])
    assert res.exit_code == 2 and "manifests/none" in res.stderr
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["cache", "empty", "--out", "x"])
    assert res.exit_code == 2 and "train_val.csv or test.csv" in res.stderr
    assert split.is_dir()


def test_large_jpegs_are_decoded_at_a_dct_scale_and_sized_as_from_the_full_image(tmp_path: Path, monkeypatch) -> None:
    """libjpeg-turbo decodes a 1000x700 JPEG at 1/2 (500x350; 3/8 has no SIMD IDCT) for 256 px; the cached size is
    computed from the full size (366x256, as a full decode gives), and the copy stays faithful and
    deterministic. An Exif JPEG goes through Pillow with the same result size."""
    import simplejpeg

    from endoctl import cache

    scene(3, (1000, 700)).save(tmp_path / "p.jpg", quality=92)
    decoded = []
    real = simplejpeg.decode_jpeg
    monkeypatch.setattr(
        cache.simplejpeg, "decode_jpeg", lambda *a, **k: decoded.append(real(*a, **k).shape) or real(*a, **k)
    )
    data = cache.encode(tmp_path / "p.jpg", 256, 95)
    assert decoded == [(350, 500, 3)]
    cached = Image.open(io.BytesIO(data))
    full = shrink(np.asarray(Image.open(tmp_path / "p.jpg").convert("RGB")), 256)
    assert cached.size == full.shape[1::-1] == (366, 256) and cached.mode == "RGB"
    assert np.abs(np.asarray(cached, float) - np.asarray(full, float)).mean() < 3
    assert cache.encode(tmp_path / "p.jpg", 256, 95) == data
    exif = Image.Exif()
    exif[0x0112] = 1
    scene(3, (1000, 700)).save(tmp_path / "e.jpg", quality=92, exif=exif)
    decoded.clear()
    assert Image.open(io.BytesIO(cache.encode(tmp_path / "e.jpg", 256, 95))).size == (366, 256)
    assert decoded == []  # Pillow decoded it


def test_small_upright_rgb_jpegs_are_cached_as_they_are(tmp_path: Path) -> None:
    """Within the size, an RGB JPEG is its own cached copy (checked by a full decode); a rotated
    or grey one is re-encoded upright RGB; a truncated one is rejected with the reason."""
    from endoctl.cache import encode
    from endoctl.imaging import ImageRejected

    scene(4, (200, 150)).save(tmp_path / "rgb.jpg", quality=80)
    assert encode(tmp_path / "rgb.jpg", 256, 95) == (tmp_path / "rgb.jpg").read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    scene(4, (200, 150)).save(tmp_path / "rotated.jpg", quality=80, exif=exif)
    rotated = Image.open(io.BytesIO(encode(tmp_path / "rotated.jpg", 256, 95)))
    assert rotated.size == (150, 200) and not rotated.getexif().get(0x0112)
    scene(4, (200, 150)).convert("L").save(tmp_path / "grey.jpg", quality=80)
    assert Image.open(io.BytesIO(encode(tmp_path / "grey.jpg", 256, 95))).mode == "RGB"
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "rgb.jpg").read_bytes()[:-400])
    with pytest.raises(ImageRejected, match="truncated"):
        encode(tmp_path / "cut.jpg", 256, 95)


def test_cache_applies_ingests_pixel_limit(tmp_path: Path, monkeypatch) -> None:
    """``--max-pixels`` (params.yaml ``ingest.max_pixels``, passed on by dvc.yaml) decides here as in
    ingest: under a limit of 250,000 pixels the 640x480 JPEG, the 1000x700 JPEG (simplejpeg path) and
    the 300x900 PNG (Pillow path) are rejected as decompression bombs, the 90x70 one is cached; the
    default limit caches them all."""
    monkeypatch.chdir(tmp_path)
    make_split(tmp_path)
    res = runner.invoke(app, ["cache", "manifests/demo", "--out", "low", "--size", "64", "--max-pixels", "250000"])
    assert res.exit_code == 0, res.output
    rejected = read_csv(tmp_path / "low" / "rejected.csv").set_index("image_id")["reason"]
    bombs = {i for i, why in rejected.items() if why.startswith("decompression bomb")}
    assert bombs == {"demo/a/big.jpg", "demo/a/tall.png", "demo/b/photo.JPEG"}, rejected.to_dict()
    res = runner.invoke(app, ["cache", "manifests/demo", "--out", "default", "--size", "64"])
    assert res.exit_code == 0 and "rejected 1" in res.output, res.output  # only the broken file
    res = runner.invoke(app, ["cache", "manifests/demo", "--out", "zero", "--max-pixels", "0"])
    assert res.exit_code == 2 and "--max-pixels must be >= 1" in res.output

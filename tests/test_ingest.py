"""Ingest on a corpus of bad and unusual files: every file is accepted or rejected with a reason."""

from __future__ import annotations

import io
import multiprocessing
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image
from source_trees import TREES
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.hashing import from_hex, hamming
from endoctl.imaging import _pillow, _thumb, content_box, content_boxes, thumbnail, thumbs
from endoctl.ingest import MANIFEST_COLUMNS, hash_files, ingest
from endoctl.io import read_csv
from endoctl.sources import get_adapter
from endoctl.testing import scene

runner = CliRunner()


def jpeg_bytes(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, **kwargs)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge size, with a tiny IDAT (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def build_corpus(root: Path) -> dict[str, str]:
    """Write the corpus in the generic <class>/<image> layout; returns rel path -> expected outcome."""
    a, b = root / "class_a", root / "class_b"
    a.mkdir(parents=True)
    b.mkdir()
    upright = scene(1, (320, 240))
    good = jpeg_bytes(upright)
    (a / "good.jpg").write_bytes(good)
    (b / "good.jpg").write_bytes(good)  # the same file under two labels
    (a / "truncated.jpg").write_bytes(jpeg_bytes(scene(2, (200, 160)))[:1500])
    (a / "zero.jpg").write_bytes(b"")
    (a / "text.jpg").write_text("this is not an image\n")
    (a / "notes.xyz").write_bytes(b"\0\1\2")
    ico = io.BytesIO()
    scene(3, (32, 32)).save(ico, "ICO")
    (a / "icon.png").write_bytes(ico.getvalue())
    scene(4).convert("CMYK").save(a / "cmyk.jpg", "JPEG", quality=92)
    arr16 = np.asarray(scene(5).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(arr16).save(a / "deep16.png")
    scene(6).convert("P", palette=Image.Palette.ADAPTIVE).save(a / "palette.png")
    rgba = scene(7).convert("RGBA")
    rgba.putalpha(255)
    rgba.save(a / "rgba.png")
    scene(8).convert("L").save(a / "gray.jpg", quality=92)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers rotate 90 degrees clockwise to show it upright
    (a / "rotated.jpg").write_bytes(jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90), exif=exif))
    (a / "bomb.png").write_bytes(png_header_only(20_000, 20_000))
    os.symlink("loop.jpg", a / "loop.jpg")
    os.symlink("..", a / "up")
    os.symlink("missing.jpg", a / "dangling.jpg")
    fd = os.open(os.fsencode(str(a)) + b"/bad\xff.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, good)
    os.close(fd)
    (a / ".DS_Store").write_bytes(b"\0")
    (root / "README.md").write_text("about this dataset\n")
    return {
        "class_a/good.jpg": "ok",
        "class_b/good.jpg": "ok",
        "class_a/cmyk.jpg": "ok",
        "class_a/deep16.png": "ok",
        "class_a/palette.png": "ok",
        "class_a/rgba.png": "ok",
        "class_a/gray.jpg": "ok",
        "class_a/rotated.jpg": "ok",
        "class_a/truncated.jpg": "truncated",
        "class_a/zero.jpg": "empty file",
        "class_a/text.jpg": "not an image",
        "class_a/notes.xyz": "unsupported file type",
        "class_a/icon.png": "unsupported image format ICO",
        "class_a/bomb.png": "decompression bomb",
        "class_a/loop.jpg": "symlink loop",
        "class_a/up": "symlink loop",
        "class_a/dangling.jpg": "broken symlink",
        "class_a/bad\\xff.jpg": "not valid UTF-8",
    }


def test_bad_input_corpus_every_file_accounted(tmp_path: Path) -> None:
    expected = build_corpus(tmp_path / "src")
    out = tmp_path / "manifests" / "corpus"
    result = runner.invoke(
        app,
        [
            "ingest",
            str(tmp_path / "src"),
            "--format",
            "folder",
            "--source",
            "corpus",
            "--out",
            str(out),
            "--data-root",
            str(tmp_path),
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus"]  # no temporaries left
    manifest = read_csv(out / "manifest.csv")
    rejected = read_csv(out / "rejected.csv")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    accepted = {p.removeprefix("src/") for p in manifest["path"]}
    reasons = {p.removeprefix("src/"): r for p, r in zip(rejected["path"], rejected["reason"])}
    assert accepted == {k for k, v in expected.items() if v == "ok"}
    assert set(reasons) == {k for k, v in expected.items() if v != "ok"}
    for rel, fragment in expected.items():
        if fragment != "ok":
            assert fragment in reasons[rel], (rel, reasons[rel])
    assert f"found {len(expected)} = accepted {len(accepted)} + rejected {len(reasons)}" in result.output
    assert "skipped 2" in result.output  # .DS_Store and README.md


def test_special_modes_hash_like_their_plain_versions(tmp_path: Path) -> None:
    build_corpus(tmp_path)
    rows = ingest(get_adapter("folder", tmp_path).scan(), "c", tmp_path).manifest.set_index("path")
    ph = dict(zip(rows.index, from_hex(rows["phash"])))
    # EXIF-rotated copy hashes as the upright image and reports the upright size.
    sideways = tmp_path / "sideways.jpg"  # the stored pixels without the EXIF rotation
    sideways.write_bytes(jpeg_bytes(scene(1, (320, 240)).transpose(Image.Transpose.ROTATE_90)))
    wrong = from_hex([hash_files([str(sideways)])[0][4]])[0]
    assert hamming(ph["class_a/rotated.jpg"], ph["class_a/good.jpg"]) <= 8
    assert hamming(ph["class_a/rotated.jpg"], wrong) >= 20
    assert (rows.loc["class_a/rotated.jpg", "width"], rows.loc["class_a/rotated.jpg", "height"]) == (320, 240)
    # Both labels of the duplicated file stay visible, with one content hash.
    dup = rows.loc[["class_a/good.jpg", "class_b/good.jpg"]]
    assert set(dup["label"]) == {"class_a", "class_b"} and dup["sha256"].nunique() == 1
    # 16-bit, palette, RGBA, CMYK and grayscale images hash close to the 8-bit RGB scene they came from.
    reference = {}
    for seed, name in [(4, "cmyk.jpg"), (5, "deep16.png"), (6, "palette.png"), (7, "rgba.png"), (8, "gray.jpg")]:
        ref = tmp_path / f"ref{seed}.png"
        scene(seed).save(ref)
        reference[name] = hash_files([str(ref)])[0][4]
    for name, ref_hex in reference.items():
        d = hamming(ph[f"class_a/{name}"], from_hex([ref_hex])[0])
        assert d <= 8, (name, d)
    assert rows.loc["class_a/deep16.png", "width"] == 96


def test_output_identical_across_runs_and_workers(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(300):
        (src / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
        scene(i, (64, 48)).save(src / f"c{i % 3}" / f"img{i:03d}.jpg", quality=90)
    outputs = []
    for run, workers in enumerate(["1", "2", "2"]):
        out = tmp_path / f"run{run}" / "m"
        res = runner.invoke(
            app,
            [
                "ingest",
                str(src),
                "-f",
                "folder",
                "--source",
                "s",
                "--out",
                str(out),
                "--data-root",
                str(tmp_path),
                "--workers",
                workers,
            ],
        )
        assert res.exit_code == 0, res.output
        outputs.append(((out / "manifest.csv").read_bytes(), (out / "rejected.csv").read_bytes()))
    assert outputs[0] == outputs[1] == outputs[2]
    ids = read_csv(tmp_path / "run0" / "m" / "manifest.csv")["image_id"].tolist()
    assert ids == sorted(ids) and len(ids) == 300


@pytest.mark.parametrize("name", sorted(TREES))
def test_real_layouts_through_the_cli_with_format_auto(tmp_path: Path, name: str) -> None:
    """Each real layout is recognised, and every file is accepted, rejected with its reason or skipped."""
    root = tmp_path / "src"
    tree = TREES[name](root)
    out = tmp_path / "m" / name
    res = runner.invoke(
        app,
        [
            "ingest",
            str(root),
            "--format",
            "auto",
            "--source",
            name,
            "--out",
            str(out),
            "--data-root",
            str(root),
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"ingest {name}: --format auto chose {name}: found " in res.stderr
    manifest, rejected = read_csv(out / "manifest.csv"), read_csv(out / "rejected.csv")
    assert sorted(
        zip(manifest["path"], manifest["label"], manifest["patient_id"], manifest["official_split"])
    ) == sorted(tree.records)
    assert sorted(zip(rejected["path"], rejected["reason"])) == sorted(tree.rejected)
    assert (manifest["image_id"] == f"{name}/" + manifest["path"]).all() and (manifest["sha256"].str.len() == 64).all()
    kinds = ", ".join(f"{n} {why}" for why, n in sorted(tree.skipped.items()))
    assert (
        f"ingest {name}: format {name} (--format auto: " in res.stdout
        and f"; found {tree.found} = accepted {len(tree.records)} + rejected {len(tree.rejected)} "
        f"(skipped {sum(tree.skipped.values())}{': ' + kinds if kinds else ''}) in "
        in res.stdout
    ), res.stdout


def test_format_auto_on_an_unknown_folder_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    scene(0).save(tmp_path / "photos" / "a.jpg")
    res = runner.invoke(app, ["ingest", str(tmp_path), "-f", "auto", "--source", "s", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and not (tmp_path / "m").exists()
    message = res.stderr.strip()
    assert (
        "\n" not in message
        and "--format auto: no known layout in" in message
        and "ers: 4-digit patient folders" in message
    )
    assert "pass --format NAME" in message


def test_empty_source_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = runner.invoke(
        app, ["ingest", str(tmp_path / "empty"), "-f", "folder", "--source", "s", "--out", str(tmp_path / "m")]
    )
    assert res.exit_code != 0
    assert "no images found" in res.output and not (tmp_path / "m").exists()


def test_unusable_arguments_are_one_line_errors(tmp_path: Path) -> None:
    res = runner.invoke(app, ["ingest", str(tmp_path / "nope"), "-f", "folder", "--source", "s", "--out", "m"])
    assert res.exit_code == 2 and "source folder not found" in res.output
    res = runner.invoke(app, ["ingest", str(tmp_path), "-f", "nonsense", "--source", "s", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "unknown --format 'nonsense'" in res.output and "kvasir-capsule" in res.output


def test_strict_turns_rejections_into_failure(tmp_path: Path) -> None:
    (tmp_path / "src" / "c").mkdir(parents=True)
    scene(0).save(tmp_path / "src" / "c" / "ok.jpg")
    (tmp_path / "src" / "c" / "zero.jpg").write_bytes(b"")
    args = ["ingest", str(tmp_path / "src"), "-f", "folder", "--source", "s", "--out", str(tmp_path / "m")]
    assert runner.invoke(app, args).exit_code == 0
    res = runner.invoke(app, [*args, "--strict"])
    assert res.exit_code != 0 and "zero.jpg: empty file" in res.output


def _hash_as_nobody(files: list[str], conn) -> None:
    os.setgroups([])
    os.setresgid(65534, 65534, 65534)
    os.setresuid(65534, 65534, 65534)
    conn.send(hash_files(files))


def test_unreadable_file_is_rejected_not_fatal() -> None:
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        ok, locked = folder / "ok.jpg", folder / "locked.jpg"
        scene(0).save(ok)
        scene(1).save(locked)
        ok.chmod(0o644)
        locked.chmod(0o000)
        files = [str(ok), str(locked)]
        if os.geteuid() == 0:  # root reads anything: drop to 'nobody' in a forked child for a real EACCES
            parent, child = multiprocessing.get_context("fork").Pipe()
            proc = multiprocessing.get_context("fork").Process(target=_hash_as_nobody, args=(files, child))
            proc.start()
            result = parent.recv()
            proc.join()
        else:
            result = hash_files(files)
        assert isinstance(result[0], tuple)
        assert result[1] == "unreadable: permission denied"
    finally:
        for p in folder.iterdir():
            p.chmod(0o644)
            p.unlink()
        folder.rmdir()


def test_batched_content_boxes_and_thumbs_match_one_at_a_time() -> None:
    rng = np.random.default_rng(7)
    grays = []
    for shape in [(56, 56), (56, 56), (72, 90), (1, 1), (33, 200), (56, 56)]:
        for kind in range(4):
            g = rng.integers(0, 256, shape, dtype=np.uint8)
            if kind == 1:  # black border with a dim inset: a content region is found
                g[: shape[0] // 4] = 0
                g[:, : shape[1] // 5] = 16
            elif kind == 2:  # too dark: no content region, the whole image
                g[:] = rng.integers(0, 17)
            elif kind == 3:
                g = (g > 230).astype(np.uint8) * 255
            grays.append(g)
    batched = thumbs(grays)
    for g, t in zip(grays, batched):
        assert content_boxes(g[None])[0].tolist() == [float(v) for v in content_box(g)]
        assert np.array_equal(t, _thumb(g))


def test_real_kvasir_seg_fast_path_matches_pillow_and_survives_reencoding(tmp_path: Path) -> None:
    real = sorted(shared_path("real_images", "kvasir_seg").glob("*.jpg"))[:60]
    for f in real:  # libjpeg-turbo via simplejpeg and via Pillow draft: the same thumbnail
        data = f.read_bytes()
        assert np.array_equal(thumbnail(data).luma, _pillow(data, 1 << 40).luma), f.name
    copies = []
    for i, f in enumerate(real):
        im = Image.open(f).convert("RGB")
        copy = tmp_path / f"copy{i}.jpg"
        im.resize((im.width // 2, im.height // 2)).save(copy, quality=70)
        copies.append(str(copy))
    original = from_hex([r[4] for r in hash_files([str(f) for f in real])])
    reencoded = from_hex([r[4] for r in hash_files(copies)])
    distances = hamming(original, reencoded)
    assert np.median(distances) <= 4 and distances.max() <= 10
    # Distinct real images stay far apart.
    distinct = hamming(original[:, None], original[None, :])[np.triu_indices(len(original), 1)]
    assert np.percentile(distinct, 1) > 10


def png_1bit(width: int, height: int) -> bytes:
    """A real, fully decodable bilevel PNG of any size (compresses to ~100 kB even at 169 Mpx)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\0" + b"\x55" * ((width + 7) // 8)) * height
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b"")


def test_max_pixels_is_the_limit_pillow_applies_too(tmp_path: Path) -> None:
    """A 169-Mpx PNG is above Pillow's own warning limit (89,478,485) but below ingest's default
    (178,956,970): accepted, in worker processes too; --max-pixels above and below it decides."""
    src = tmp_path / "src" / "c"
    src.mkdir(parents=True)
    (src / "big.png").write_bytes(png_1bit(13_000, 13_000))
    scene(0).save(src / "small.jpg")
    out = tmp_path / "m"
    args = [
        "ingest",
        str(tmp_path / "src"),
        "-f",
        "folder",
        "--source",
        "s",
        "--out",
        str(out),
        "--data-root",
        str(tmp_path),
    ]
    res = runner.invoke(app, [*args, "--workers", "2"])
    assert res.exit_code == 0 and "accepted 2 + rejected 0" in res.output, res.output
    big = read_csv(out / "manifest.csv").set_index("path").loc["src/c/big.png"]
    assert (big["width"], big["height"]) == ("13000", "13000")
    assert isinstance(hash_files([str(src / "big.png")], max_pixels=500_000_000)[0], tuple)
    res = runner.invoke(app, [*args, "--workers", "1", "--max-pixels", "100000000"])
    assert res.exit_code == 0
    assert read_csv(out / "rejected.csv")["reason"].tolist() == [
        "decompression bomb: 13000x13000 = 169000000 pixels > limit 100000000"
    ]


def test_symlinks_out_of_the_source_are_not_followed(tmp_path: Path, monkeypatch) -> None:
    """A folder holding ``etc -> <a folder elsewhere>`` (issue 25): nothing from there is listed or read; the
    folder link is counted as skipped, a file link out is rejected unread; links inside the source work."""
    monkeypatch.chdir(tmp_path)
    outside, src = tmp_path / "elsewhere", tmp_path / "src"
    outside.mkdir()
    (outside / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    scene(0).save(outside / "x.jpg")
    (src / "Normal").mkdir(parents=True)
    (src / "Polyp").mkdir()
    scene(1).save(src / "Normal" / "a.jpg")
    os.symlink(outside, src / "etc")
    os.symlink(outside / "x.jpg", src / "Normal" / "out.jpg")
    os.symlink("../Normal/a.jpg", src / "Polyp" / "a.jpg")  # inside the source: read under both labels
    os.symlink(src / "Normal", src / "Zlias")  # the same folder again: rejected as already visited
    res = runner.invoke(app, ["ingest", "src", "-f", "folder", "--source", "s", "--out", "m", "--workers", "1"])
    assert res.exit_code == 0, res.output
    manifest, rejected = read_csv(tmp_path / "m/manifest.csv"), read_csv(tmp_path / "m/rejected.csv")
    assert list(zip(manifest["image_id"], manifest["label"])) == [
        ("s/Normal/a.jpg", "Normal"),
        ("s/Polyp/a.jpg", "Polyp"),
    ]
    assert dict(zip(rejected["path"], rejected["reason"])) == {
        "src/Normal/out.jpg": "symlink to a file outside the source folder: not followed",
        "src/Zlias": "symlink loop: folder already visited (a link back to it)",
    }
    assert "shadow" not in (tmp_path / "m/rejected.csv").read_text() + (tmp_path / "m/manifest.csv").read_text()
    summary = " ".join(res.output.split())
    assert "found 4 = accepted 2 + rejected 2 (skipped 1: 1 symlinked folders leading out of the source" in summary


def test_path_longer_than_the_system_takes_is_rejected(tmp_path: Path) -> None:
    """Folders nested past PATH_MAX (4,096 bytes, built relative to open folders): the entry too long to
    read is rejected naming its length; the images above it are ingested."""
    (tmp_path / "src" / "Normal").mkdir(parents=True)
    scene(0).save(tmp_path / "src" / "Normal" / "a.jpg")
    fd = os.open(tmp_path / "src" / "Normal", os.O_RDONLY)
    for _ in range(4096 // 250 + 1):
        os.mkdir("d" * 250, dir_fd=fd)
        fd, parent = os.open("d" * 250, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    image = os.open("b.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(image, jpeg_bytes(scene(1)))
    os.close(image)
    os.close(fd)
    out = tmp_path / "m"
    args = ["ingest", str(tmp_path / "src"), "-f", "folder", "--source", "s", "--out", str(out), "--workers", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert list(read_csv(out / "manifest.csv")["image_id"]) == ["s/Normal/a.jpg"]
    [reason] = read_csv(out / "rejected.csv")["reason"]
    assert reason.startswith("path too long (") and reason.endswith("the system reads at most 4096): not read")
    assert "found 2 = accepted 1 + rejected 1" in " ".join(res.output.split())


def test_multi_page_tiff_and_animated_png_are_rejected_saying_so(tmp_path: Path) -> None:
    """Only the first page would be hashed, without a word (issue 25): rejected naming the page count."""
    folder = tmp_path / "src" / "Normal"
    folder.mkdir(parents=True)
    scene(0).save(folder / "one.tif")
    scene(1).save(folder / "pages.tif", save_all=True, append_images=[scene(2), scene(3)])
    scene(4).save(folder / "moving.png", save_all=True, append_images=[scene(5)])
    out = tmp_path / "m"
    res = runner.invoke(
        app, ["ingest", str(tmp_path / "src"), "-f", "folder", "--source", "s", "--out", str(out), "--workers", "1"]
    )
    assert res.exit_code == 0, res.output
    assert list(read_csv(out / "manifest.csv")["image_id"]) == ["s/Normal/one.tif"]
    rejected = read_csv(out / "rejected.csv")
    assert dict(zip((Path(p).name for p in rejected["path"]), rejected["reason"])) == {
        "moving.png": "animated PNG (2 frames): only single images are read",
        "pages.tif": "multi-page TIFF (3 pages): only single images are read",
    }
    assert "found 3 = accepted 1 + rejected 2" in " ".join(res.output.split())

"""endoctl study: frames of a video or a numbered folder in order, streamed through a model chunk by chunk
(resumable after a kill), reuse of still frames, smoothing and segments, the timeline page."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from browser import blank, full_page, load_page
from conftest import shared_path
from PIL import Image
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.frames import FolderFrames, Geometry, StudyInputError, VideoFrames, model_geometry, open_study
from endoctl.imaging import thumbs
from endoctl.model import create_model, load_for_inference, save_checkpoint
from endoctl.predict import split_transform
from endoctl.study import (
    PICTURE_GAP,
    Pictures,
    Segments,
    frame_hash,
    smoothed,
)
from endoctl.taxonomy import load_taxonomy
from endoctl.testing import scene

runner = CliRunner()
CE24 = load_taxonomy().target("ce24")
CHAIN = ("real_images", "kvasir_capsule_video_131368cc17e44240")


def write_video(path: Path, frames: list[np.ndarray], fps: int = 2, fmt: str = "mp4") -> Path:
    """An H.264 video of ``frames`` (the encoder PyAV's FFmpeg carries)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "threads": "1"}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    path.write_bytes(buf.getvalue())
    return path


def study_frames(n: int, still: tuple[int, int] = (10, 30)) -> list[np.ndarray]:
    """``n`` 96 px frames of a moving scene, still (one frame repeated) from ``still[0]`` to ``still[1]``."""
    frames = []
    for i in range(n):
        k = still[0] if still[0] <= i < still[1] else i
        frames.append(np.asarray(scene(k // 3, (96, 96)).rotate(7 * (k % 3))))
    return frames


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("resnet10t", len(CE24.class_mapping()), img_size=32).eval()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, "resnet10t", CE24.class_mapping(), img_size=32)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "study.mp4", study_frames(60))


def study(args: list[str]) -> object:
    return runner.invoke(app, ["study", *map(str, args)])


# ---------------------------------------------------------------------------------------------
# Reading frames


def test_video_frames_come_in_order_with_their_times_at_the_models_size(video: Path) -> None:
    frames = list(VideoFrames(video, Geometry(32, 36)).frames())
    assert [f.index for f in frames] == list(range(60))
    assert [f.time for f in frames] == [i / 2 for i in range(60)]
    assert frames[0].pixels.shape == (32, 32, 3) and frames[0].thumb.shape == (112, 112, 3)
    later = list(VideoFrames(video, Geometry(32, 36)).frames(start=55))
    assert [f.index for f in later] == list(range(55, 60))
    assert np.array_equal(later[0].pixels, frames[55].pixels)


def test_frame_folder_in_frame_number_order_timed_by_fps(tmp_path: Path) -> None:
    for n in (10, 2, 1):
        scene(n, (64, 64)).save(tmp_path / f"frame_{n}.jpg")
    (tmp_path / "notes.txt").write_text("not a frame")
    scene(0, (64, 64)).save(tmp_path / "cover.jpg")  # no number: not a frame
    reader = FolderFrames(tmp_path, Geometry(32, 36), fps=4)
    got = [(f.name, f.time) for f in reader.frames()]
    assert got == [("frame_1.jpg", 0.0), ("frame_2.jpg", 0.25), ("frame_10.jpg", 2.25)]
    assert reader.skipped == 2


def test_folder_frames_follow_timms_eval_transform(ckpt: Path) -> None:
    """The study scales once with the decoder's scaler; the pixels stay close to what predict feeds."""
    folder = shared_path(*CHAIN)
    loaded = load_for_inference(ckpt, img_size=96)
    transform, _, _ = split_transform(loaded.data_config)
    frame = next(FolderFrames(folder, model_geometry(loaded.data_config), 2.0).frames())
    expected = transform(Image.open(folder / frame.name).convert("RGB")).permute(1, 2, 0).numpy()
    assert frame.pixels.shape == expected.shape
    assert np.abs(frame.pixels.astype(int) - expected.astype(int)).mean() < 3


def test_frame_hash_is_ingests_hash_and_the_real_chain_has_no_near_neighbours() -> None:
    """On 55 consecutive real capsule frames no neighbours are within 4 pHash bits (min 8, median 20):
    a moving capsule leaves nothing for --reuse-distance 4 to reuse."""
    folder = shared_path(*CHAIN)
    frames = list(FolderFrames(folder, Geometry(32, 36), 2.0).frames())
    hashes = [int(frame_hash(f.thumb)) for f in frames]
    distances = [(a ^ b).bit_count() for a, b in zip(hashes, hashes[1:])]
    assert min(distances) == 8 and np.median(distances) == 20
    import cv2

    from endoctl.hashing import phash_batch

    luma = cv2.cvtColor(frames[0].thumb, cv2.COLOR_RGB2GRAY)
    assert int(phash_batch(np.stack(thumbs([luma])))[0]) == hashes[0]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing.mp4", "study not found"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "expected a video"),
        (lambda p: (p / "fake.mp4").write_bytes(b"not a video at all") and p / "fake.mp4", "not a readable video"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no numbered frames"),
    ],
)
def test_bad_study_inputs_say_what_is_wrong(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(StudyInputError, match=message) as err:
        open_study(path, Geometry(32, 36), 2.0)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_truncated_videos_name_the_last_good_frame(tmp_path: Path) -> None:
    """Matroska does not count its frames; its duration gives the cut away. AVI counts them."""
    full = write_video(tmp_path / "full.mkv", study_frames(40), fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    reader = open_study(cut, Geometry(32, 36), 2.0)
    seen = []
    with pytest.raises(StudyInputError, match=r"cut\.mkv: truncated: .* after frame (\d+) \(the last good one") as err:
        seen.extend(f.index for f in reader.frames())
    assert f"after frame {seen[-1]} " in str(err.value) and 0 < len(seen) < 40


# ---------------------------------------------------------------------------------------------
# Smoothing, segments, pictures (pure)


def _chunks(probs: np.ndarray, sizes: list[int]) -> list[dict[str, np.ndarray]]:
    out, start = [], 0
    for size in sizes:
        part = probs[start : start + size]
        n = len(part)
        out.append({"index": np.arange(start, start + n), "reason": np.full(n, "", dtype=str), "probs": part})
        start += n
    return out


def test_smoothing_is_a_centred_average_whatever_the_chunks() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), 50).astype(np.float32)
    whole = np.concatenate([s for _, s in smoothed(_chunks(probs, [50]), 5)])
    for sizes in ([7] * 8, [1, 2, 3, 44], [3] * 17):
        parts = list(smoothed(_chunks(probs, sizes), 5))
        assert np.array_equal(np.concatenate([s for _, s in parts]), whole)  # bit for bit
        assert np.array_equal(np.concatenate([r["index"] for r, _ in parts]), np.arange(50))
    p = probs.astype(np.float64)
    assert np.allclose(whole[10], p[8:13].mean(axis=0)) and np.allclose(whole[0], p[0:3].mean(axis=0))
    assert np.allclose(whole[49], p[47:50].mean(axis=0))


def test_segments_are_runs_of_one_finding_long_enough() -> None:
    names = ["Normal", "Polyp", "Ulcer"]
    label = np.array([0, 1, 1, 1, 0, 2, 2, 0, 1, 1, 1, 1, 2])
    probs = np.zeros((13, 3), np.float32)
    probs[np.arange(13), label] = np.linspace(0.4, 1.0, 13)
    segments = Segments(names, background=0, min_frames=3)
    segments.feed(np.arange(13), np.arange(13) / 2, probs, label)
    table = segments.table()
    assert table[["class", "first_frame", "last_frame", "frames", "peak_frame"]].values.tolist() == [
        ["Polyp", 1, 3, 3, 3],
        ["Polyp", 8, 11, 4, 11],
    ]
    assert table["first_time"].tolist() == [0.5, 4.0]


def test_pictures_keep_the_best_frames_apart() -> None:
    pictures = Pictures.empty(classes=1, top=3)
    index = np.array([5, 6, 40, 80, 81, 120])
    prob = np.array([0.9, 0.95, 0.5, 0.7, 0.6, 0.2], np.float32)
    thumbs_ = np.zeros((6, 112, 112, 3), np.uint8)
    pictures.offer(0, index[:3], prob[:3], index[:3] / 2, thumbs_[:3])
    pictures.offer(0, index[3:], prob[3:], index[3:] / 2, thumbs_[3:])
    assert pictures.index[0].tolist() == [6, 80, 40]  # 5 and 81 are within PICTURE_GAP of better ones
    assert PICTURE_GAP > 1


# ---------------------------------------------------------------------------------------------
# The command


def test_study_of_a_video_writes_every_output(ckpt: Path, video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = study([video, "--checkpoint", ckpt, "--out", out, "--chunk-frames", 16, "--batch-size", 8])
    assert res.exit_code == 0, res.output
    assert "study: 60 frames = predicted 60 + reused 0 + rejected 0" in res.output
    frames = pd.read_csv(out / "frames.csv")
    assert frames["frame"].tolist() == list(range(60)) and frames["time"].tolist() == [i / 2 for i in range(60)]
    names = list(CE24.class_mapping())
    classes = [c for c in frames.columns if c not in ("frame", "time", "predicted_class", "reused_from")]
    assert len(classes) == len(names) and np.allclose(frames[classes].sum(axis=1), 1, atol=1e-5)
    assert frames["reused_from"].isna().all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == summary["predicted"] == 60 and summary["complete"]
    assert sum(c["frames"] for c in summary["classes"].values()) == 60
    assert summary["run"]["frames"] == 60 and summary["run"]["frames_per_second"] > 0
    segments = pd.read_csv(out / "segments.csv")
    assert summary["segments"] == len(segments)
    html = (out / "timeline.html").read_text()
    assert "<script" not in html and "http" not in html.replace("http://www.w3.org", "")
    assert html.count('<path class="line"') == len(classes)
    assert not list(tmp_path.glob(".*study-work"))  # the chunks are gone once the outputs are written


def test_reuse_skips_still_frames_and_records_their_source(ckpt: Path, video: Path, tmp_path: Path) -> None:
    every, reuse = tmp_path / "every", tmp_path / "reuse"
    for out, extra in ((every, []), (reuse, ["--reuse-distance", 2])):
        res = study([video, "--checkpoint", ckpt, "--out", out, "--chunk-frames", 16, *extra])
        assert res.exit_code == 0, res.output
    a, b = pd.read_csv(every / "frames.csv"), pd.read_csv(reuse / "frames.csv")
    reused = b["reused_from"].notna()
    assert reused[11:30].all()  # the capsule rests on frame 10 for 20 frames
    sources = b.loc[reused, "reused_from"].astype(int)
    assert (sources < b.loc[reused, "frame"]).all() and b.loc[sources, "reused_from"].isna().all()
    classes = a.columns[2:-2]
    assert np.allclose(b.loc[reused, classes].to_numpy(), b.loc[sources, classes].to_numpy())
    still = b["frame"].between(11, 29)  # an exact still: the video's own frames differ by encoding noise only
    assert np.abs(a.loc[still, classes].to_numpy() - b.loc[still, classes].to_numpy()).max() < 0.05
    summary = json.loads((reuse / "summary.json").read_text())
    assert summary["reused"] == int(reused.sum()) and summary["predicted"] == 60 - summary["reused"]


def test_a_killed_study_resumes_and_ends_byte_identical(ckpt: Path, tmp_path: Path) -> None:
    """SIGKILL mid-run (a real process), run again: finished chunks are kept, the outputs are those of
    an uninterrupted run, bit for bit."""
    long = write_video(tmp_path / "long.mp4", study_frames(240, still=(0, 0)))
    args = ["--checkpoint", ckpt, "--chunk-frames", 16, "--batch-size", 8, "--no-timings"]
    plain = study([long, "--out", tmp_path / "plain", *args])
    assert plain.exit_code == 0, plain.output
    out, work = tmp_path / "out", tmp_path / ".out.study-work"
    cmd = [sys.executable, "-m", "endoctl", "study", str(long), "--out", str(out), *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (work / "chunk-000003.npz").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in work.glob("chunk-*.npz"))
    assert 4 <= len(done) < 15 and not out.exists(), done
    res = study([long, "--out", out, *args])
    assert res.exit_code == 0, res.output
    kept = re.search(r"resuming \S+: (\d+) finished chunks", " ".join(res.output.split()))
    assert kept and len(done) - 1 <= int(kept.group(1)) <= len(done), res.output  # killed before its state?
    for name in ("frames.csv", "segments.csv", "summary.json", "timeline.html", "rejected.csv"):
        assert (out / name).read_bytes() == (tmp_path / "plain" / name).read_bytes(), name
    assert not work.exists()


def test_a_changed_setting_starts_over(ckpt: Path, video: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    work = tmp_path / ".out.study-work"
    work.mkdir()
    (work / "meta.json").write_text("{}")  # chunks of another run
    (work / "state.npz").write_bytes(b"")
    res = study([video, "--checkpoint", ckpt, "--out", out])
    assert res.exit_code == 0 and "resuming" not in res.output, res.output


def test_a_truncated_video_keeps_the_frames_before_the_cut(ckpt: Path, tmp_path: Path) -> None:
    full = write_video(tmp_path / "full.mkv", study_frames(40), fmt="matroska")
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 6 // 10])
    res = study([cut, "--checkpoint", ckpt, "--out", tmp_path / "out", "--chunk-frames", 8])
    assert res.exit_code == 1
    text = "".join(res.output.split())  # rich wraps long paths anywhere
    assert text.count("error:") == 1 and re.search(r"error:\S+cut\.mkv:truncated:.*thelastgoodone", text)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 0 < summary["frames"] < 40 and not summary["complete"] and "truncated" in summary["error"]
    assert len(pd.read_csv(tmp_path / "out" / "frames.csv")) == summary["frames"]


def test_a_frame_folder_with_an_unreadable_frame_rejects_it_and_goes_on(ckpt: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        scene(i, (80, 80)).save(folder / f"img_{i:04d}.jpg")
    (folder / "img_0005.jpg").write_bytes(b"\xff\xd8\xff broken")
    res = study([folder, "--checkpoint", ckpt, "--out", tmp_path / "out", "--fps", 4])
    assert res.exit_code == 0, res.output
    assert "12 frames = predicted 11 + reused 0 + rejected 1" in res.output
    frames = pd.read_csv(tmp_path / "out" / "frames.csv")
    assert 5 not in frames["frame"].tolist() and frames["file"].iloc[0] == "img_0000.jpg"
    assert frames["time"].iloc[-1] == 11 / 4
    rejected = pd.read_csv(tmp_path / "out" / "rejected.csv")
    assert rejected["path"].tolist() == ["img_0005.jpg"]


def test_a_frame_folder_needs_a_positive_fps(ckpt: Path, tmp_path: Path) -> None:
    """Frame times are numbers / fps (a video carries its own times and ignores --fps)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    scene(0, (80, 80)).save(folder / "img_0000.jpg")
    res = study([folder, "--checkpoint", ckpt, "--out", tmp_path / "out", "--fps", 0])
    assert res.exit_code == 2 and "--fps must be > 0" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--reuse-distance", "-2"], "--reuse-distance must be >= 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--smooth", "0"], "--smooth must be >= 1"),
    ],
)
def test_bad_settings_are_one_line(ckpt: Path, video: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    res = study([video, "--checkpoint", ckpt, "--out", tmp_path / "out", *extra])
    assert res.exit_code == 2 and message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_timeline_page_renders_in_headless_chromium(ckpt: Path, video: Path, browser, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = study([video, "--checkpoint", ckpt, "--out", out, "--min-frames", 1])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    page = (out / "timeline.html").as_uri()
    problems = load_page(browser, page)
    tracks = browser.find_elements("css selector", ".tracks svg")
    if len(tracks) != len(CE24.class_mapping()):
        problems.append(f"{len(tracks)} tracks")
    if any(t.size["width"] < 600 or t.size["height"] < 30 for t in tracks):
        problems.append(f"tracks too small: {[t.size for t in tracks]}")
    spans = len(browser.find_elements("css selector", "rect.seg"))
    if spans != summary["segments"] or not spans:
        problems.append(f"{spans} segment spans for {summary['segments']} segments")
    lines = browser.execute_script(
        "return Array.from(document.querySelectorAll('path.line')).map(p => p.getBBox().width)"
    )
    if len(lines) != len(tracks) or min(lines) < 900:  # of the viewBox's 1000: each line spans the study
        problems.append(f"probability lines of widths {lines}")
    pictures = browser.find_elements("css selector", "figure.thumb img")
    if not pictures:
        problems.append("no pictures")
    if browser.execute_script("return document.body.scrollWidth > window.innerWidth"):
        problems.append("the page is wider than the window")
    shot = full_page(browser)
    shot.save(tmp_path / "timeline.png")
    assert problems + blank(shot) == [], problems


def test_predict_points_a_video_to_study(ckpt: Path, video: Path, tmp_path: Path) -> None:
    """predict reads images: a video given to it, or lying among the images, is named, not passed over."""
    res = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--images", str(video), "--out", "p/p.csv"])
    assert res.exit_code == 2 and "is a video: `endoctl study` reads" in " ".join(res.output.split()), res.output
    folder = tmp_path / "mixed"
    folder.mkdir()
    scene(0, (64, 64)).save(folder / "frame_1.jpg")
    (folder / "study.mp4").write_bytes(video.read_bytes())
    out = tmp_path / "pred" / "p.csv"
    res = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--images", str(folder), "--out", str(out)])
    assert res.exit_code == 0 and "1 video file(s) left out" in " ".join(res.output.split()), res.output

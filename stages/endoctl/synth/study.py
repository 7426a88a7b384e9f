"""The demo's ``study/``: one whole (short) capsule study as an H.264 video, for ``endoctl study``."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from endoctl.synth.ce24 import CE24_CLASS_OF
from endoctl.synth.common import _PLAN_STUDY, _RENDER_STUDY, _rng, _table
from endoctl.synth.kvasir_capsule import KC_SIZE, _plan_videos, _render_video, _Video

if TYPE_CHECKING:
    from endoctl.synth import _Writer

STUDY = "study"  # ... and a whole (short) capsule study as a video, for `endoctl study`
STUDY_VIDEO = f"{STUDY}/capsule_study.mp4"
STUDY_DISTINCT, STUDY_RESTS, STUDY_FPS = 120, 4, 2  # moving frames; times the capsule rests; frames per second


def _study_frames(seed: int) -> tuple[_Video, list[tuple[str, np.ndarray]]]:
    """A Kvasir-Capsule-like video of its own (findings in runs) in which the capsule rests now and
    then: a frame repeated 8-20 times, as a capsule lying still films one scene. (finding, RGB) per frame."""
    rng = _rng(seed, _PLAN_STUDY)
    video = _plan_videos(rng, 1, STUDY_DISTINCT, set())[0]
    rests = dict(zip(rng.choice(STUDY_DISTINCT, STUDY_RESTS, replace=False).tolist(), rng.integers(8, 21, STUDY_RESTS)))
    frames = []
    for i, (_, finding, data) in enumerate(_render_video(video, _rng(seed, _RENDER_STUDY))):
        pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        frames += [(finding, pixels)] * int(rests.get(i, 1))
    return video, frames


def _h264(frames: list[np.ndarray], fps: int) -> bytes:
    """An H.264 MP4 (libx264 in PyAV's FFmpeg, one thread: the same frames give the same bytes)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "medium", "threads": "1"}
        for pixels in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _write_study(out: _Writer, seed: int) -> None:
    """study/: the capsule study video and a README saying what is in it, second by second."""
    video, frames = _study_frames(seed)
    out.file(STUDY_VIDEO, _h264([pixels for _, pixels in frames], STUDY_FPS))
    runs, start = [], 0
    findings = [finding for finding, _ in frames]
    for k in range(1, len(findings) + 1):
        if k == len(findings) or findings[k] != findings[start]:
            runs.append(
                [CE24_CLASS_OF[findings[start]], start, k - 1, f"{start / STUDY_FPS:g}-{(k - 1) / STUDY_FPS:g} s"]
            )
            start = k
    out.text(
        f"{STUDY}/README.md",
        "# study/ (synthetic demo data)\n\n"
        f"`{STUDY_VIDEO.split('/')[1]}`: one Kvasir-Capsule-like capsule study written by `endoctl synth` as an "
        f"H.264 MP4 ({KC_SIZE}x{KC_SIZE}, {STUDY_FPS} frames per second, {len(frames)} frames) for `endoctl study`. "
        f"The capsule drifts over the mucosa ({STUDY_DISTINCT} distinct frames) and rests {STUDY_RESTS} times "
        "(one frame repeated 8-20 times: still stretches). Its findings, in CE24 classes:\n\n"
        + _table(["class", "first frame", "last frame", "time"], runs),
    )

"""The demo's ``see_ai/``: consecutive capsule frames in one flat folder, YOLO box files beside them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from endoctl.sources.see_ai import BOXES as SEE_AI_TXT
from endoctl.sources.see_ai import CLASSES as SEE_AI_CLASSES
from endoctl.sources.see_ai import IMAGES as SEE_AI_IMAGES
from endoctl.synth.common import _PLAN_SEE_AI, _RENDER_SEE_AI, _config_block, _rng, _table
from endoctl.synth.render import DRIFT_PAD, _drift, _fov, _jpeg, _kid_tone, _paint_at, _texture

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig, _Writer

SEE_AI_SIZE, SEE_AI_QUALITY = 576, 90
SEE_AI_FRAMES = 10  # consecutive frames per SEE-AI-like video
# SEE-AI YOLO class ids (0 angiodysplasia ... 11 vein, as the adapter reads them) of the lesions the demo paints.
SEE_AI_IDS = {
    "Angiectasia": 0,
    "Erosion": 1,
    "Lymphangiectasia": 3,
    "Polyp": 6,
    "Blood - fresh": 7,
    "Erythema": 9,
    "Foreign body": 10,
}
SEE_AI_CASES: list[tuple[str, ...]] = [
    ("Erosion", "Erythema"),
    ("Blood - fresh",),
    ("Blood - fresh", "Polyp"),
    ("Angiectasia",),
    ("Polyp",),
    ("Lymphangiectasia",),
    ("Foreign body",),
    ("Erosion",),
]
SEE_AI_FOV = _fov(SEE_AI_SIZE, 0.98, 0.35)


@dataclass(frozen=True)
class _SeeAiRun:
    case: tuple[str, ...]  # findings drawn (and boxed); () = normal
    start: int
    length: int


@dataclass(frozen=True)
class _SeeAiVideo:
    index: int
    first: int  # number of its first image (imageNNNNN)
    runs: tuple[_SeeAiRun, ...]


def _plan_see_ai(rng: np.random.Generator, config: SynthConfig) -> list[_SeeAiVideo]:
    """Videos of SEE_AI_FRAMES consecutive numbers: normal, a lesion run, normal, a lesion run, normal."""
    cases = iter(SEE_AI_CASES * (2 * config.see_ai_videos // len(SEE_AI_CASES) + 1))
    videos, number = [], 1
    for index in range(config.see_ai_videos):
        lengths = [int(rng.integers(1, 3)), int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(2, 4))]
        lengths.append(SEE_AI_FRAMES - sum(lengths))
        runs, start = [], 0
        for k, length in enumerate(lengths):
            if length:
                runs.append(_SeeAiRun(next(cases) if k % 2 else (), start, length))
                start += length
        videos.append(_SeeAiVideo(index, number, tuple(runs)))
        number += SEE_AI_FRAMES + int(rng.integers(0, 6))
    return videos


def _render_see_ai(video: _SeeAiVideo, rng: np.random.Generator) -> Iterator[tuple[int, bytes, list[str]]]:
    """(image number, JPEG, YOLO lines) per frame: lesions painted once per run, boxes follow the drift."""
    n = SEE_AI_SIZE
    size = n + 2 * DRIFT_PAD
    texture = _texture(rng, size, _kid_tone(rng))
    origins = _drift(rng, sum(run.length for run in video.runs), size - n)
    for run in video.runs:
        canvas, centres = texture, []
        if run.case:
            x, y = origins[run.start + run.length // 2]
            canvas = texture.copy()
            centres = _paint_at(canvas, run.case, x + n // 2, y + n // 2, rng)
        for i in range(run.start, run.start + run.length):
            x, y = origins[i]
            lines = []
            for finding, (cx, cy) in zip(run.case, centres):
                bx, by = np.clip([(cx - x) / n, (cy - y) / n], 0.0, 1.0)
                lines.append(f"{SEE_AI_IDS[finding]} {bx:.6f} {by:.6f} {140 / n:.6f} {140 / n:.6f}")
            light = SEE_AI_FOV * rng.normal(1, 0.03)
            yield video.first + i, _jpeg(canvas[y : y + n, x : x + n] * light[..., None], SEE_AI_QUALITY), lines


def _write_see_ai(out: _Writer, see_ai: list[_SeeAiVideo], config: SynthConfig) -> tuple[list[int], str]:
    """SEE-AI: a flat image folder, YOLO boxes in a parallel txt folder (none or empty for normal frames)
    and the planted truncated frame; returns the numbers without a box file and that frame's path."""
    seed = config.seed
    see_ai_rng = _rng(seed, _PLAN_SEE_AI, 1)
    no_txt: list[int] = []
    for video in see_ai:
        for number, data, lines in _render_see_ai(video, _rng(seed, _RENDER_SEE_AI, video.index)):
            out.image(f"see_ai/{SEE_AI_IMAGES}/image{number:05d}.jpg", data)
            if lines or see_ai_rng.random() < 0.5:
                out.file(f"see_ai/{SEE_AI_TXT}/image{number:05d}.txt", "".join(f"{line}\n" for line in lines).encode())
            else:
                no_txt.append(number)
    truncated = ""
    if config.corrupt:
        last = see_ai[-1].first + SEE_AI_FRAMES
        truncated = f"{SEE_AI_IMAGES}/image{last:05d}.jpg"
        data = next(_render_see_ai(see_ai[-1], _rng(seed, _RENDER_SEE_AI, len(see_ai))))[1]
        out.image(f"see_ai/{truncated}", data[: len(data) * 6 // 10])
    return no_txt, truncated


def _see_ai_readme(config: SynthConfig, videos: list[_SeeAiVideo], no_txt: list[int], truncated: str) -> str:
    rows = []
    for video in videos:
        for run in video.runs:
            first = video.first + run.start
            names = ", ".join(f"{SEE_AI_CLASSES[SEE_AI_IDS[f]]} ({SEE_AI_IDS[f]})" for f in run.case) or "normal"
            rows.append([video.index, f"image{first:05d}-image{first + run.length - 1:05d}", names])
    corrupt = (
        f"- `{truncated}`: cut to 60% of its bytes (a truncated JPEG).\n" if truncated else "- none (corrupt=False)\n"
    )
    return (
        "# see_ai/ (synthetic demo data)\n\n"
        f"SEE-AI-like capsule frames written by `endoctl synth`, in the real layout `{SEE_AI_IMAGES}/imageNNNNN.jpg` "
        f"(576x576 JPEG) with YOLO boxes in `{SEE_AI_TXT}/imageNNNNN.txt` (one `class cx cy w h` line per box, "
        "normalised; class ids "
        + ", ".join(f"{i} {name}" for i, name in enumerate(SEE_AI_CLASSES))
        + "). Several classes "
        "may box one frame. Normal frames have an empty box file or none at all "
        f"({len(no_txt)} without: {', '.join(f'image{n:05d}' for n in no_txt) or '-'}). Numbers run consecutively "
        "along each video (near-duplicate neighbours); SEE-AI publishes no procedure ids.\n\n## Videos\n\n"
        + _table(["video", "images", "boxes (class id)"], rows)
        + f"\n## Corrupt files\n\n{corrupt}"
        + "\n## Config\n\n"
        + _config_block(config)
    )

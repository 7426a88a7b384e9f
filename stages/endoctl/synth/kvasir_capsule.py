"""The demo's ``kvasir_capsule/``: videos (one per patient) of near-duplicate frames, metadata.csv, README.

Its video planner and renderer also make CE24's test videos and the study video.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from endoctl.synth.common import _RENDER_KC, NORMAL, _config_block, _deck, _Item, _rng, _table
from endoctl.synth.render import DRIFT_PAD, _drift, _fov, _jpeg, _kc_tone, _lesion, _texture

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig, _Writer

KC_SIZE, KC_QUALITY = 336, 90
# Kvasir-Capsule folder name -> (metadata finding_category, metadata finding_class). The real
# metadata.csv spells one class differently from its folder ('Foreign Body' vs 'Foreign body').
KC_FINDINGS: dict[str, tuple[str, str]] = {
    NORMAL: ("Luminal", NORMAL),
    "Angiectasia": ("Luminal", "Angiectasia"),
    "Blood - fresh": ("Luminal", "Blood - fresh"),
    "Erosion": ("Luminal", "Erosion"),
    "Erythema": ("Luminal", "Erythema"),
    "Foreign body": ("Luminal", "Foreign Body"),
    "Lymphangiectasia": ("Luminal", "Lymphangiectasia"),
    "Polyp": ("Luminal", "Polyp"),
    "Ulcer": ("Luminal", "Ulcer"),
    "Ileocecal valve": ("Anatomy", "Ileocecal valve"),
}
KC_LESIONS = [name for name in KC_FINDINGS if name != NORMAL]
KC_FOV = _fov(KC_SIZE, 1.12, 0.45)  # circle wider than the frame: flat sides, black cut corners


@dataclass(frozen=True)
class _Run:
    finding: str
    start: int  # frame index within the video
    length: int


@dataclass(frozen=True)
class _Video:
    index: int
    vid: str  # 16 lower-case hex chars
    first_frame: int
    runs: tuple[_Run, ...]
    truncated_extra: bool  # one more frame follows, written truncated (the planted corrupt JPEG)

    @property
    def frames(self) -> int:
        return sum(run.length for run in self.runs)


def _plan_videos(rng: np.random.Generator, count: int, frames: int, taken: set[str]) -> list[_Video]:
    """Mostly normal mucosa with 1-3 lesion runs, each run a few consecutive frames of one finding."""
    deck = _deck(rng, KC_LESIONS)
    lo = max(2, frames // 10)
    hi = min(12, max(lo, frames // 5))  # <= 12 frames x 4 px drift keeps the lesion in view
    n_runs = rng.integers(1, 4, size=count)
    while n_runs.sum() < min(len(KC_LESIONS), 3 * count):  # room permitting, every finding appears
        n_runs[rng.choice(np.flatnonzero(n_runs < 3))] += 1
    videos = []
    for index in range(count):
        vid = rng.bytes(8).hex()
        while vid in taken:
            vid = rng.bytes(8).hex()
        taken.add(vid)
        first = int(rng.integers(100, 60000))
        lengths = [int(n) for n in rng.integers(lo, hi + 1, size=int(n_runs[index]))]
        while sum(lengths) > frames // 2 and len(lengths) > 1:
            lengths.pop()
        gaps = rng.multinomial(frames - sum(lengths), [1 / (len(lengths) + 1)] * (len(lengths) + 1))
        runs, start = [], 0
        for gap, length in zip(gaps, [*lengths, 0]):
            if gap:
                runs.append(_Run(NORMAL, start, int(gap)))
                start += int(gap)
            if length:
                runs.append(_Run(next(deck), start, length))
                start += length
        videos.append(_Video(index, vid, first, tuple(runs), False))
    return videos


def _render_video(video: _Video, rng: np.random.Generator) -> Iterator[tuple[int, str, bytes]]:
    """(frame number, finding, JPEG) per frame. Lesions sit on the mucosa, so they drift along."""
    n = KC_SIZE
    size = n + 2 * DRIFT_PAD
    texture = _texture(rng, size, _kc_tone(rng))
    runs = list(video.runs)
    if video.truncated_extra:
        last = runs[-1]
        runs[-1] = _Run(last.finding, last.start, last.length + 1)
    origins = _drift(rng, sum(run.length for run in runs), size - n)
    for run in runs:
        canvas = texture
        if run.finding != NORMAL:
            x, y = origins[run.start + run.length // 2]
            cx, cy = (int(c + n // 2 + rng.uniform(-20, 20)) for c in (x, y))
            canvas = texture.copy()
            _lesion(canvas, run.finding, cx, cy, rng)
        for i in range(run.start, run.start + run.length):
            x, y = origins[i]
            light = KC_FOV * rng.normal(1, 0.03)
            yield video.first_frame + i, run.finding, _jpeg(canvas[y : y + n, x : x + n] * light[..., None], KC_QUALITY)


def _write_kvasir_capsule(out: _Writer, videos: list[_Video], seed: int) -> tuple[list[_Item], str]:
    """``labelled_images/<finding>/`` and ``metadata.csv``; returns the valid frames (CE24 copies from
    them) and the truncated frame's path below the source ('' without one)."""
    items: list[_Item] = []
    meta = ["filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4"]
    truncated = ""
    for video in videos:
        for frame, finding, data in _render_video(video, _rng(seed, _RENDER_KC, video.index)):
            name = f"{video.vid}_{frame}.jpg"
            rel = f"labelled_images/{finding}/{name}"
            category, meta_class = KC_FINDINGS[finding]
            meta.append(f"{name};{video.vid};{frame};{category};{meta_class};;;;;;;")
            if video.truncated_extra and frame == video.first_frame + video.frames:
                truncated = rel
                out.image(f"kvasir_capsule/{rel}", data[: len(data) * 6 // 10])
            else:
                out.image(f"kvasir_capsule/{rel}", data)
                items.append(_Item("KVASIR", rel, name, finding, data))
    out.text("kvasir_capsule/metadata.csv", "\n".join(meta) + "\n")
    return items, truncated


def _frame_ranges(video: _Video) -> str:
    return "; ".join(
        f"{run.finding} {video.first_frame + run.start}-{video.first_frame + run.start + run.length - 1}"
        for run in video.runs
    )


def _class_counts(folder: Path) -> list[list[object]]:
    return [[p.name, sum(1 for _ in p.glob("*.jpg"))] for p in sorted(folder.iterdir()) if p.is_dir()]


def _kc_readme(
    config: SynthConfig,
    videos: list[_Video],
    counts: Counter[str],
    copied: dict[tuple[str, str], int],
    truncated: str,
    root: Path,
) -> str:
    rows = [[v.vid, v.first_frame, v.first_frame + v.frames - 1, _frame_ranges(v)] for v in videos]
    corrupt = (
        f"- `labelled_images/{truncated.split('/', 1)[1]}`: a real frame (the frame after its video's last one) "
        "cut to 60% of its bytes, i.e. a truncated JPEG that must be rejected. It is listed in metadata.csv "
        "and never copied into CE24.\n"
        if truncated
        else "- none (corrupt=False)\n"
    )
    return (
        "# kvasir_capsule/ (synthetic demo data)\n\n"
        "Kvasir-Capsule-like capsule-endoscopy frames written by `endoctl synth`, in the real layout "
        "`labelled_images/<Finding>/<videoid>_<frame>.jpg` (336x336 JPEG, quality 90) plus a `;`-separated "
        "`metadata.csv` with the real header. One video = one patient. Consecutive frames of a video are "
        "near-duplicates: the camera drifts 1-4 px per frame over one mucosa texture, so a random per-image "
        "split leaks patients. As in the real files, metadata.csv spells 'Foreign Body' where the folder is "
        "'Foreign body', and rows without a bounding box have one ';' fewer than the header.\n\n"
        f"{counts['kvasir_capsule']} image files.\n\n## Images per finding folder\n\n"
        + _table(["finding", "files"], _class_counts(root / "kvasir_capsule/labelled_images"))
        + "\n## Videos (frame ranges per run of one finding)\n\n"
        + _table(["video_id", "first frame", "last frame", "runs"], rows)
        + f"\n## Corrupt files\n\n{corrupt}"
        + "\n## Copies in ce24/\n\n"
        f"{copied['training', 'KVASIR'] + copied['validation', 'KVASIR']} of these frames are copied (resized to "
        f"224x224, re-encoded) into `ce24/training/*/KVASIR/` ({copied['training', 'KVASIR']}) and "
        f"`ce24/validation/*/KVASIR/` ({copied['validation', 'KVASIR']}) under their original file names; "
        "see ce24/README.md.\n\n## Config\n\n" + _config_block(config)
    )

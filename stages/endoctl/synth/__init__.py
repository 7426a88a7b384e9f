"""Embedded demo data: small, deterministic raw datasets in the native layouts of five real sources.

Everything downstream (ingest -> near-duplicate dedupe -> patient-grouped splits -> training)
needs data with the same traps as the real thing, and must run offline. So this writes:

* ``kvasir_capsule/``: Kvasir-Capsule-like videos (one video = one patient) whose consecutive
  frames are near-duplicates (the camera drifts a few pixels per frame over one mucosa texture);
* ``kid/``: KID-like images with coarser label names and the patient number in the file name;
* ``ce24/``: Capsule-Vision-2024-like training/validation folders that are resized, re-encoded
  *copies* of a random subset of the two sources above, assigned to training/validation per
  image (so videos straddle the split, as in the real CE24), plus a test set from videos that
  exist nowhere else, a truth xlsx, one image filed under two classes, and corrupt files;
* ``ers/``: ERS-like multi-label PNG frames per patient (``samples/`` and ``seq_NN/`` with
  consecutive frame numbers), labelled only by the code tokens in the names of their mask files
  (several per frame, 0-byte masks, several codes in one name, a frame without any mask);
* ``see_ai/``: SEE-AI-like capsule frames (``SEE_AI_project_all_images/imageNNNNN.jpg``) with
  YOLO box files (``SEE_AI_project_all_txt/``; several classes in one file; normal frames have
  no or an empty file), numbered consecutively along each video.
* ``study/``: one whole (short) capsule study as a video, for ``endoctl study``.

One module per folder plans, renders and writes it with its README (``kvasir_capsule``, ``kid``,
``ce24``, ``ers``, ``see_ai``, ``study``); ``render`` paints the pixels they share and ``common``
holds their shared names and random streams. This module plans them all, counts the images, and
writes every file through one writer into a folder swapped into place at the end.

Every class has a distinct, learnable visual pattern on a capsule-endoscopy-like background, so
a small model trained on the demo data learns something. Output is byte-identical for the same
config: all randomness comes from ``numpy.random.default_rng`` streams keyed by (seed, purpose,
index), Pillow's JPEG encoder is deterministic, and the xlsx timestamps are pinned.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from endoctl.io import atomic_dir
from endoctl.synth.ce24 import (
    CE24_AIIMS_WORMS,
    CE24_CLASS_OF,
    CE24_WORMS,
    _ce24_readme,
    _n_copies,
    _pick_ce24_copies,
    _write_ce24_test,
    _write_ce24_text_jpg,
    _write_ce24_train_val,
)
from endoctl.synth.common import _CE24, _PLAN_ERS, _PLAN_KC, _PLAN_KID, _PLAN_SEE_AI, _PLAN_TEST, NORMAL, _rng
from endoctl.synth.ers import ERS_CASES, _ers_readme, _ErsFrame, _plan_ers, _write_ers
from endoctl.synth.kid import KID_CLASSES, _kid_readme, _KidImage, _plan_kid, _write_kid
from endoctl.synth.kvasir_capsule import KC_FINDINGS, _kc_readme, _plan_videos, _Video, _write_kvasir_capsule
from endoctl.synth.see_ai import SEE_AI_FRAMES, _plan_see_ai, _see_ai_readme, _SeeAiVideo, _write_see_ai
from endoctl.synth.study import STUDY, STUDY_FPS, STUDY_VIDEO, _study_frames, _write_study

# The names the CLI, tests and benchmarks import from ``endoctl.synth``.
__all__ = [
    "CE24_CLASS_OF",
    "CE24_WORMS",
    "ERS_CASES",
    "KC_FINDINGS",
    "KID_CLASSES",
    "NORMAL",
    "SOURCES",
    "STUDY",
    "STUDY_FPS",
    "STUDY_VIDEO",
    "SynthConfig",
    "_study_frames",
    "_write_file",
    "synth",
]

SOURCES = ("kvasir_capsule", "kid", "ce24", "ers", "see_ai")  # the source folders written into DEST


@dataclass(frozen=True)
class SynthConfig:
    seed: int = 0
    videos: int = 6  # Kvasir-Capsule-like videos (= patients)
    frames_per_video: int = 40
    kid_patients: int = 8
    kid_images_per_patient: int = 10
    ce24_copy_fraction: float = 0.6  # share of KC/KID images copied into CE24 training/validation
    ce24_test_videos: int = 2  # extra KC-like videos whose frames are copied ONLY into CE24 testing
    corrupt: bool = True  # plant a truncated JPEG, an empty file and a text file named .jpg
    ers_patients: int = 3  # ERS-like patients (samples/ + seq_01/ each)
    see_ai_videos: int = 3  # SEE-AI-like videos of consecutive frames

    def validate(self) -> None:
        """Reject sizes the layouts cannot represent, before anything is written."""
        checks = {
            "videos >= 1": self.videos >= 1,
            "frames_per_video >= 2": self.frames_per_video >= 2,
            "1 <= kid_patients <= 98 (P99 is the planted empty file)": 1 <= self.kid_patients <= 98,
            "kid_images_per_patient >= 1": self.kid_images_per_patient >= 1,
            "0 < ce24_copy_fraction <= 1": 0 < self.ce24_copy_fraction <= 1,
            "ce24_test_videos >= 0": self.ce24_test_videos >= 0,
            "1 <= ers_patients <= 9999": 1 <= self.ers_patients <= 9999,
            "see_ai_videos >= 1": self.see_ai_videos >= 1,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid SynthConfig: need {', '.join(failed)}")


def _write_file(path: Path, data: bytes) -> None:
    """The single point every file goes through (tests inject failures here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@dataclass
class _Writer:
    root: Path
    total: int
    on_progress: Callable[[int, int], None] | None
    counts: Counter[str] = field(default_factory=Counter)

    def image(self, rel: str, data: bytes) -> None:
        """Write one .jpg (corrupt ones included) and report progress."""
        _write_file(self.root / rel, data)
        self.counts[rel.split("/", 1)[0]] += 1
        if self.on_progress is not None:
            self.on_progress(sum(self.counts.values()), self.total)

    def text(self, rel: str, text: str) -> None:
        _write_file(self.root / rel, text.encode("utf-8"))

    def file(self, rel: str, data: bytes) -> None:
        """A file ingest does not take as an image (ERS masks)."""
        _write_file(self.root / rel, data)


def synth(
    dest: Path,
    config: SynthConfig = SynthConfig(),
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Write dest/kvasir_capsule, kid, ce24, ers and see_ai (replacing dest); return image counts per folder.

    Counts include the planted corrupt files, i.e. what an ingest of each folder will find (ERS: the
    frames, not the masks).
    Everything is built in a hidden sibling folder and swapped into place at the end
    (:func:`endoctl.io.atomic_dir`), so an interrupted run leaves ``dest`` as it was.
    """
    config.validate()
    with atomic_dir(dest, (*SOURCES, STUDY), "DEST", "demo datasets") as tmp:
        return _write_demo(tmp, config, on_progress)


@dataclass(frozen=True)
class _Plan:
    """Every demo image decided before any pixel is drawn, and how many image files that makes."""

    videos: list[_Video]  # Kvasir-Capsule-like
    test_videos: list[_Video]  # only in CE24 testing
    kid: list[_KidImage]
    ers: list[list[_ErsFrame]]  # per patient
    see_ai: list[_SeeAiVideo]
    total: int  # image files written, corrupt ones included: the progress total


def _image_total(config: SynthConfig, n_kid: int, ers: list[list[_ErsFrame]]) -> int:
    """Image files a plan writes: sources, CE24 copies (+ the conflict's second file), AIIMS worms, CE24
    testing, the corrupt files (KC truncated, KID empty, CE24 text, SEE-AI truncated), ERS, SEE-AI."""
    n_kc = config.videos * config.frames_per_video
    n_copies = _n_copies(config, n_kc) + _n_copies(config, n_kid)
    n_test = config.ce24_test_videos * config.frames_per_video + CE24_WORMS
    n_ers, n_see_ai = sum(len(frames) for frames in ers), config.see_ai_videos * SEE_AI_FRAMES
    return (
        n_kc + n_kid + n_copies + 1 + CE24_AIIMS_WORMS + n_test + 3 * config.corrupt + n_ers + n_see_ai + config.corrupt
    )


def _plan(config: SynthConfig, ce24_rng: np.random.Generator) -> _Plan:
    """Plan every source; ``ce24_rng`` picks the video that gets the truncated extra frame."""
    seed = config.seed
    taken: set[str] = set()
    videos = _plan_videos(_rng(seed, _PLAN_KC), config.videos, config.frames_per_video, taken)
    test_videos = _plan_videos(_rng(seed, _PLAN_TEST), config.ce24_test_videos, config.frames_per_video, taken)
    kid = _plan_kid(_rng(seed, _PLAN_KID), config)
    if config.corrupt:
        host = int(ce24_rng.integers(len(videos)))
        videos[host] = dataclasses.replace(videos[host], truncated_extra=True)
    ers = _plan_ers(_rng(seed, _PLAN_ERS), config)
    see_ai = _plan_see_ai(_rng(seed, _PLAN_SEE_AI), config)
    return _Plan(videos, test_videos, kid, ers, see_ai, _image_total(config, len(kid), ers))


def _write_demo(root: Path, config: SynthConfig, on_progress: Callable[[int, int], None] | None) -> dict[str, int]:
    """Plan, render and write every source and its README into ``root``; image files per folder."""
    ce24_rng = _rng(config.seed, _CE24)  # CE24's choices, in this order: corrupt host, copies, test names, text
    plan = _plan(config, ce24_rng)
    out = _Writer(root, plan.total, on_progress)
    kc_items, truncated = _write_kvasir_capsule(out, plan.videos, config.seed)
    kid_items = _write_kid(out, plan.kid, config)
    copies, conflict_at, conflict = _pick_ce24_copies((kc_items, kid_items), config, ce24_rng)
    copied = _write_ce24_train_val(out, copies, conflict_at, conflict, config.seed)
    truth = _write_ce24_test(out, plan.test_videos, config.seed, ce24_rng)
    text_jpg = _write_ce24_text_jpg(out, ce24_rng) if config.corrupt else ""
    _write_ers(out, plan.ers, config.seed)
    no_txt, see_ai_truncated = _write_see_ai(out, plan.see_ai, config)
    assert sum(out.counts.values()) == plan.total, (out.counts, plan.total)
    readmes = {
        "kvasir_capsule": _kc_readme(config, plan.videos, out.counts, copied, truncated, root),
        "kid": _kid_readme(config, plan.kid, copied),
        "ce24": _ce24_readme(config, copies, conflict, plan.test_videos, truth, text_jpg),
        "ers": _ers_readme(config, plan.ers),
        "see_ai": _see_ai_readme(config, plan.see_ai, no_txt, see_ai_truncated),
    }
    for folder, text in readmes.items():
        out.text(f"{folder}/README.md", text)
    _write_study(out, config.seed)
    return dict(sorted(out.counts.items()))

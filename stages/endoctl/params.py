"""Every data stage's parameters and their defaults, in one place.

The stages take these typed objects; the command line takes its option defaults from the same
instances, and params.yaml gives a DVC run's values section by section. This module imports
nothing heavy, so ``endoctl --help`` can show the defaults without loading pandas or numpy.
Training's defaults are :class:`endoctl.train.TrainConfig`'s; predict's and evaluate's are here
too. params.yaml holds only the pipeline's own choices that differ from these defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit
# Video frames, searched in the image path without its extension: Kvasir-Capsule
# ``<16 hex video id>_<frame>`` and SEE-AI ``image<NNNNN>`` (file name only), ERS
# ``<patient>/seq_NN/frames/<NNNNNN>`` (the sequence folders key the frames).
SEQUENCE_PATTERN = r"(?:^|/)(?P<prefix>[0-9a-fA-F]{16}_|image|[0-9]{4}/seq_[0-9]+/frames/)(?P<frame>[0-9]+)$"


def resolve_workers(workers: int) -> int:
    """``0`` (the options' default) means every core; a negative count means nothing, so it is refused."""
    if workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 = all cores), got {workers}")
    return workers or os.cpu_count() or 1


@dataclass(frozen=True)
class IngestParams:
    max_pixels: int = MAX_PIXELS  # larger images are rejected as decompression bombs
    workers: int = 0  # hashing processes (0: all cores)


@dataclass(frozen=True)
class DedupeParams:
    max_distance: int = 10  # near duplicate: pHash Hamming distance at most this ...
    dhash_distance: int = 16  # ... confirmed by a dHash distance at most this ...
    min_similarity: float = 0.91  # ... and by the pixels: 8x8 grid correlation at least this (0: off)
    sequence_gap: int = 5  # link frames of one video numbered at most this far apart (0: off) ...
    sequence_distance: int = 24  # ... whose pHash distance is at most this
    sequence_pattern: str = SEQUENCE_PATTERN
    workers: int = 0  # search threads (0: all cores)


@dataclass(frozen=True)
class SplitParams:
    test_fraction: float = 0.2  # share of labelled images in test (pinned groups count towards it)
    folds: int = 5  # cross-validation folds of train_val
    seed: int = 0
    max_group_share: float = 0.25  # warn when the largest group holds more than this share


@dataclass(frozen=True)
class CacheParams:
    size: int = 256  # shorter side of the cached JPEGs (never enlarged)
    quality: int = 95  # JPEG quality
    workers: int = 0  # processes (0: all cores)
    max_pixels: int = MAX_PIXELS  # ingest's decompression-bomb limit: what ingest admitted, cache reads


@dataclass(frozen=True)
class ReportParams:
    """Gallery sizes and thumbnails; the full lists are in the CSVs."""

    clusters: int = 20  # duplicate clusters shown
    members: int = 8  # images shown per cluster
    sequences: int = 6  # frame sequences shown as film strips
    frames: int = 10  # frames per film strip (evenly spaced along the sequence)
    conflicts: int = 12  # label conflicts shown
    leaks: int = 12  # leaking groups and pairs shown per check
    quality: int = 12  # images shown per quality flag (a seeded sample)
    thumb_size: int = 120  # longer side of a thumbnail in pixels
    seed: int = 0
    max_pixels: int = MAX_PIXELS  # ingest's decompression-bomb limit: what ingest admitted, the report opens


@dataclass(frozen=True)
class QualityParams:
    """Image-quality flag thresholds (README "Image quality" says why these values)."""

    dark: float = 40.0  # brightness below: dark
    overexposed: float = 200.0  # brightness above: overexposed
    low_information: float = 6.0  # contrast below: near-uniform
    blurry: float = 0.9  # sharpness below: blurry
    min_side: int = 128  # shorter side below: odd size
    size_factor: float = 3.0  # size this far from the source's median: odd size
    max_aspect: float = 2.0  # longer / shorter side above: odd aspect


@dataclass(frozen=True)
class PredictParams:
    batch_size: int = 64  # images per forward pass
    device: str = "auto"  # cpu, cuda[:N] or auto (cuda when available)
    fast: bool = True  # inference_mode + channels-last + bf16 autocast where supported (False: fp32 eager)
    workers: int | None = None  # image-decoding processes (None: by device, endoctl.predict.default_workers)
    max_pixels: int = MAX_PIXELS  # ingest's decompression-bomb limit: what ingest admitted, predict opens


@dataclass(frozen=True)
class EvaluateParams:
    """The full report's bootstrap (``frame_gap`` defaults to dedupe's ``sequence_gap``)."""

    bootstrap: int = 1000  # resamples for the 95% CIs (0: none); whole groups when the truth has them
    seed: int = 0  # bootstrap seed: same inputs and seed give identical reports


@dataclass(frozen=True)
class StudyParams:
    """How ``endoctl study`` reads a whole capsule study (docs/study.md says why these values)."""

    batch_size: int = 64  # frames per forward pass
    device: str = "auto"  # cpu, cuda[:N] or auto (cuda when available)
    fast: bool = True  # inference_mode + channels-last + bf16 autocast where supported (False: fp32 eager)
    reuse_distance: int = -1  # a frame within this many pHash bits of the last predicted one takes its result (-1: off)
    smooth: int = 5  # frames in the centred moving average before segments are found
    min_frames: int = 3  # shortest segment kept, in frames
    background: str = "Normal"  # the class that is no finding: no segments, no pictures
    top: int = 6  # pictures per finding on the timeline page
    fps: float = 2.0  # frame folders: frames per second (capsule cameras film at 2 fps); videos carry their times
    chunk_frames: int = 512  # frames per resumable chunk
    max_pixels: int = MAX_PIXELS  # ingest's decompression-bomb limit, for frame folders


INGEST, DEDUPE, SPLIT, CACHE, REPORT, QUALITY, PREDICT, EVALUATE, STUDY = (
    IngestParams(),
    DedupeParams(),
    SplitParams(),
    CacheParams(),
    ReportParams(),
    QualityParams(),
    PredictParams(),
    EvaluateParams(),
    StudyParams(),
)

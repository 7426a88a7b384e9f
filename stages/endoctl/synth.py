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

Every class has a distinct, learnable visual pattern on a capsule-endoscopy-like background, so
a small model trained on the demo data learns something. Output is byte-identical for the same
config: all randomness comes from ``numpy.random.default_rng`` streams keyed by (seed, purpose,
index), Pillow's JPEG encoder is deterministic, and the xlsx timestamps are pinned.
"""

from __future__ import annotations

import dataclasses
import io
import string
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter
from PIL import Image, ImageDraw, ImageFilter

from endoctl.io import atomic_dir
from endoctl.sources.see_ai import BOXES as SEE_AI_TXT
from endoctl.sources.see_ai import CLASSES as SEE_AI_CLASSES
from endoctl.sources.see_ai import IMAGES as SEE_AI_IMAGES

KC_SIZE, KID_SIZE, CE24_SIZE = 336, 360, 224
KC_QUALITY, KID_QUALITY, CE24_QUALITY = 90, 90, 85
PATCH = 288  # lesions are painted into a PATCH x PATCH window centred on their position
DRIFT_PAD = 96  # a video's texture is this much larger than a frame on each side: room to drift
CE24_TRAIN_SHARE = 0.7  # real CE24: 37,607 training vs 16,132 validation images
CE24_WORMS = 4  # 'Worms' exists only in CE24; a few such images go into its test set
CE24_AIIMS_WORMS = 8  # ... and, as in the real CE24, AIIMS worms frames into training/validation
KID_NORMAL_SHARE = 0.4
KID_EMPTY = "normal-small-bowel/normal-small-bowel-P99-1.jpg"  # hence at most 98 KID patients
CE24_TEST_PREFIX = "Test set for us, with excel sheet and seperated/"  # sic, as in the real file
XLSX_TIME = datetime(2024, 1, 1)
ERS_SIZE, SEE_AI_SIZE, SEE_AI_QUALITY = 320, 576, 90
ERS_SAMPLES, ERS_SEQ_FRAMES = 5, 6  # per patient: precise samples, then one sequence of consecutive frames
SEE_AI_FRAMES = 10  # consecutive frames per SEE-AI-like video
SOURCES = ("kvasir_capsule", "kid", "ce24", "ers", "see_ai")  # the source folders written into DEST
STUDY = "study"  # ... and a whole (short) capsule study as a video, for `endoctl study`
STUDY_VIDEO = f"{STUDY}/capsule_study.mp4"
STUDY_DISTINCT, STUDY_RESTS, STUDY_FPS = 120, 4, 2  # moving frames; times the capsule rests; frames per second

NORMAL = "Normal clean mucosa"
WORMS = "Worms"
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
# KID's coarser folders, by the true (Kvasir-Capsule-named) finding drawn in the image.
KID_CLASSES: dict[str, str] = {
    NORMAL: "normal-small-bowel",
    "Angiectasia": "vascular",
    "Blood - fresh": "vascular",
    "Erosion": "inflammatory",
    "Ulcer": "inflammatory",
    "Erythema": "inflammatory",
    "Polyp": "polypoid",
    "Lymphangiectasia": "lymphangiectasia",
}
KID_LESIONS = [name for name in KID_CLASSES if name != NORMAL]
CE24_CLASS_OF: dict[str, str] = {
    NORMAL: "Normal",
    "Angiectasia": "Angioectasia",
    "Blood - fresh": "Bleeding",
    "Erosion": "Erosion",
    "Erythema": "Erythema",
    "Foreign body": "Foreign Body",
    "Lymphangiectasia": "Lymphangiectasia",
    "Polyp": "Polyp",
    "Ulcer": "Ulcer",
    "Ileocecal valve": "Normal",
    WORMS: "Worms",
}

# ERS frame contents: (mask files as code tuples, findings painted; "blur" blurs the frame). Codes
# are those of the taxonomy's ers vocabulary: c22 polyp, b01 blood, c26 ulcer, c20 the (assumed)
# worms code, g19 ulcer with bleeding, h01/h02 healthy, q02/q05 blur, c01 an unnamed code.
ERS_CASES: list[tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]] = [
    ((("h01",),), ()),
    ((("c22", "h01"),), ("Polyp",)),
    ((("b01",), ("c22",)), ("Polyp", "Blood - fresh")),
    ((("c26",),), ("Ulcer",)),
    ((("c20",),), (WORMS,)),
    ((("q02",),), ("blur",)),
    ((("c01",),), ("Erythema",)),
    ((("g19",),), ("Ulcer", "Blood - fresh")),
    ((("c22",), ("q05",)), ("Polyp", "blur")),
]
ERS_EMPTY_MASK = {"h01", "h02", "q02", "q05", "b01"}  # written as 0-byte masks: "label present, no mask"
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

# Independent random streams, so e.g. changing the KID size never changes a Kvasir-Capsule pixel.
_PLAN_KC, _PLAN_TEST, _PLAN_KID, _RENDER_KC, _RENDER_TEST, _RENDER_KID, _RENDER_WORMS, _CE24, _RENDER_AIIMS = range(9)
_PLAN_ERS, _RENDER_ERS, _PLAN_SEE_AI, _RENDER_SEE_AI = range(9, 13)
_PLAN_STUDY, _RENDER_STUDY = range(13, 15)


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


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _deck(rng: np.random.Generator, items: list[str]) -> Iterator[str]:
    """Shuffled passes over ``items``: every finding appears once before any repeats."""
    while True:
        for i in rng.permutation(len(items)):
            yield items[i]


# ---------------------------------------------------------------------------------------------
# Pixels: mucosa texture, field of view, lesion painters


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise: a cells x cells Gaussian grid upscaled bicubically (cheap low frequencies)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))


def _texture(rng: np.random.Generator, size: int, tone: np.ndarray) -> np.ndarray:
    """Mucosa: large soft folds, mid-scale blotches, fine villous grain; float32 (size, size, 3)."""
    folds = _noise(rng, size, max(3, size // 64))
    blotch = _noise(rng, size, max(4, size // 20))
    grain = _noise(rng, size, size // 3)
    shade = 1 + 0.18 * folds + 0.05 * blotch + 0.04 * grain
    redder = np.array([10, -2, -6], np.float32)
    return tone * shade[..., None] + redder * blotch[..., None]


def _fov(size: int, radius: float, falloff: float) -> np.ndarray:
    """Lens field of view: lighting falls off from the centre, black outside the circle."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    half = (size - 1) / 2
    d = np.hypot(x - half, y - half) / half
    edge = np.clip((radius - d) * half / 2, 0, 1)  # ~2 px soft rim
    return ((1 - falloff * d**2) * edge).astype(np.float32)


KC_FOV = _fov(KC_SIZE, 1.12, 0.45)  # circle wider than the frame: flat sides, black cut corners
KID_FOV = _fov(KID_SIZE, 0.98, 0.35)  # inscribed circle, as on KID's capsule images


def _mask(draw: Callable[[ImageDraw.ImageDraw], None], blur: float = 0.0) -> np.ndarray:
    """Rasterise shapes into a PATCH-sized float mask in [0, 1], optionally softened."""
    img = Image.new("L", (PATCH, PATCH), 0)
    draw(ImageDraw.Draw(img))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(img, np.float32) / 255


def _paint(patch: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = 1.0) -> None:
    patch += (np.array(color, np.float32) - patch) * (alpha * mask)[..., None]


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, points: int = 14) -> list[tuple[float, float]]:
    """An irregular closed outline around (cx, cy), radius varying +-25%."""
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False) + rng.uniform(0, 2 * np.pi)
    radii = r * rng.uniform(0.75, 1.25, points)
    return [(cx + rr * np.cos(a), cy + rr * np.sin(a)) for a, rr in zip(angles, radii)]


def _discs(spots: list[tuple[float, float, float]], grow: float = 0.0) -> Callable[[ImageDraw.ImageDraw], None]:
    """Draw filled circles (x, y, radius + grow)."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        for x, y, r in spots:
            d.ellipse((x - r - grow, y - r - grow, x + r + grow, y + r + grow), fill=255)

    return draw


def _centre(rng: np.random.Generator, spread: float) -> tuple[float, float]:
    cx, cy = PATCH / 2 + rng.uniform(-spread, spread, 2)
    return float(cx), float(cy)


def _angiectasia(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A few small bright-red spidery blobs."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        for _ in range(rng.integers(2, 6)):
            cx, cy = _centre(rng, 55)
            r = rng.uniform(4, 8)
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
            for a in rng.uniform(0, 2 * np.pi, rng.integers(4, 8)):
                length = r + rng.uniform(4, 14)
                d.line((cx, cy, cx + length * np.cos(a), cy + length * np.sin(a)), fill=255, width=2)

    _paint(patch, _mask(draw, 0.8), (235, 25, 35))


def _blood(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A large dark-red pool."""
    cx, cy = _centre(rng, 25)
    outline = _blob(rng, cx, cy, rng.uniform(70, 105))
    _paint(patch, _mask(lambda d: d.polygon(outline, fill=255), 5), (110, 8, 12), 0.9)


def _erosion(patch: np.ndarray, rng: np.random.Generator) -> None:
    """Small white spots, each with a red rim."""
    spots = [(*_centre(rng, 55), rng.uniform(4, 8)) for _ in range(rng.integers(2, 7))]
    _paint(patch, _mask(_discs(spots, grow=4), 1.5), (200, 30, 35))
    _paint(patch, _mask(_discs(spots), 1.0), (245, 240, 230))


def _ulcer(patch: np.ndarray, rng: np.random.Generator) -> None:
    """One large yellow-white fibrin patch with a red halo."""
    cx, cy = _centre(rng, 30)
    r = rng.uniform(26, 48)
    halo = _blob(rng, cx, cy, r * 1.4)
    core = _blob(rng, cx, cy, r)
    _paint(patch, _mask(lambda d: d.polygon(halo, fill=255), 6), (205, 40, 40), 0.85)
    _paint(patch, _mask(lambda d: d.polygon(core, fill=255), 2), (240, 228, 175))


def _erythema(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A diffuse, soft-edged red area."""
    cx, cy = _centre(rng, 30)
    rx, ry = rng.uniform(45, 90, 2)
    _paint(patch, _mask(lambda d: d.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255), 14), (230, 40, 45), 0.8)


def _lymphangiectasia(patch: np.ndarray, rng: np.random.Generator) -> None:
    """Many scattered small white dots in one region."""
    cx, cy = _centre(rng, 25)
    spread = rng.uniform(55, 95)
    n = int(rng.integers(25, 61))
    ang, rad = rng.uniform(0, 2 * np.pi, n), spread * np.sqrt(rng.uniform(0, 1, n))
    dots = [(cx + d * np.cos(a), cy + d * np.sin(a), rng.uniform(1.5, 3.5)) for a, d in zip(ang, rad)]
    _paint(patch, _mask(_discs(dots), 0.6), (250, 245, 225))


def _polyp(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A round bulge: lit from the upper left, shadowed along its rim, slightly redder."""
    cx, cy = _centre(rng, 30)
    r = rng.uniform(26, 55)
    y, x = np.mgrid[0:PATCH, 0:PATCH].astype(np.float32)
    d = np.hypot(x - cx, y - cy) / r
    inside = np.clip((1 - d) * r / 2, 0, 1)
    highlight = np.exp(-((np.hypot(x - cx + 0.35 * r, y - cy + 0.35 * r) / (0.5 * r)) ** 2))
    lower_right = np.clip((x - cx + y - cy) / (1.4 * r * np.maximum(d, 0.1)), 0, 1)  # cos to the shadow side
    rim = np.exp(-(((d - 1) * r / 9) ** 2))
    shade = 1 + inside * (0.4 * highlight - 0.2 * d**2) - 0.4 * rim * lower_right
    patch *= shade[..., None]
    patch += np.array([18, -6, -6], np.float32) * inside[..., None]


def _foreign_body(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A straight grey-green bar (e.g. a capsule fragment or plant stalk) with a glossy ridge."""
    cx, cy = _centre(rng, 30)
    half, angle = rng.uniform(45, 85), rng.uniform(0, np.pi)
    ends = (cx - half * np.cos(angle), cy - half * np.sin(angle), cx + half * np.cos(angle), cy + half * np.sin(angle))
    width = int(rng.integers(12, 22))
    _paint(patch, _mask(lambda d: d.line(ends, fill=255, width=width), 1), (110, 140, 95))
    _paint(patch, _mask(lambda d: d.line(ends, fill=255, width=width // 3), 1), (185, 200, 170), 0.8)


def _worms(patch: np.ndarray, rng: np.random.Generator) -> None:
    """One or two long, curvy, pale threads."""

    def draw(d: ImageDraw.ImageDraw) -> None:
        for _ in range(rng.integers(1, 3)):
            cx, cy = _centre(rng, 20)
            length, amp, freq = rng.uniform(150, 220), rng.uniform(8, 20), rng.uniform(1, 2.5)
            angle, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            t = np.linspace(-0.5, 0.5, 40)
            along, across = length * t, amp * np.sin(2 * np.pi * freq * t + phase)
            xs = cx + along * np.cos(angle) - across * np.sin(angle)
            ys = cy + along * np.sin(angle) + across * np.cos(angle)
            d.line(list(zip(xs.tolist(), ys.tolist())), fill=255, width=int(rng.integers(6, 11)), joint="curve")

    _paint(patch, _mask(draw, 1), (238, 228, 200))


def _ileocecal_valve(patch: np.ndarray, rng: np.random.Generator) -> None:
    """A dark curved fold (the valve's lip), with a lighter edge beside it."""
    cx, cy = _centre(rng, 20)
    r, start = rng.uniform(60, 105), rng.uniform(0, 360)
    end, width = start + rng.uniform(120, 220), int(rng.integers(14, 23))
    box = (cx - r, cy - r, cx + r, cy + r)
    inner = (cx - r + width, cy - r + width, cx + r - width, cy + r - width)
    dark = _mask(lambda d: d.arc(box, start, end, fill=255, width=width), 4)
    lip = _mask(lambda d: d.arc(inner, start, end, fill=255, width=width // 2), 3)
    patch *= (1 - 0.6 * dark + 0.15 * lip)[..., None]


PAINTERS: dict[str, Callable[[np.ndarray, np.random.Generator], None]] = {
    "Angiectasia": _angiectasia,
    "Blood - fresh": _blood,
    "Erosion": _erosion,
    "Erythema": _erythema,
    "Foreign body": _foreign_body,
    "Lymphangiectasia": _lymphangiectasia,
    "Polyp": _polyp,
    "Ulcer": _ulcer,
    "Ileocecal valve": _ileocecal_valve,
    WORMS: _worms,
}


def _lesion(canvas: np.ndarray, finding: str, cx: int, cy: int, rng: np.random.Generator) -> None:
    """Paint ``finding`` around (cx, cy) of ``canvas`` in place; 'Normal clean mucosa' is texture only.

    (cx, cy) must be at least PATCH/2 from every canvas edge.
    """
    if finding != NORMAL:
        h = PATCH // 2
        PAINTERS[finding](canvas[cy - h : cy + h, cx - h : cx + h], rng)


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _reencode(data: bytes) -> bytes:
    """CE24 shipped its copies resized to 224 x 224 and re-compressed."""
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((CE24_SIZE, CE24_SIZE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=CE24_QUALITY)
    return buf.getvalue()


def _kc_tone(rng: np.random.Generator) -> np.ndarray:
    return (np.array([205, 120, 85]) + rng.normal(0, [12, 10, 8])).astype(np.float32)


def _kid_tone(rng: np.random.Generator) -> np.ndarray:
    return (np.array([220, 145, 75]) + rng.normal(0, [10, 10, 8])).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Plans: who, what and where, decided before any pixel is drawn (so the progress total is known)


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


@dataclass(frozen=True)
class _Item:
    """One written source image, kept in memory so CE24 can copy it."""

    source: str  # the CE24 sub-source folder: KVASIR or KID
    rel: str  # path below the source root
    name: str
    finding: str
    data: bytes


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


@dataclass(frozen=True)
class _KidImage:
    patient: int
    k: int  # 1-based image index within the patient
    finding: str

    @property
    def rel(self) -> str:
        cls = KID_CLASSES[self.finding]
        return f"{cls}/{cls}-P{self.patient}-{self.k}.jpg"


def _plan_kid(rng: np.random.Generator, config: SynthConfig) -> list[_KidImage]:
    deck = _deck(rng, KID_LESIONS)
    return [
        _KidImage(p, k, NORMAL if rng.random() < KID_NORMAL_SHARE else next(deck))
        for p in range(1, config.kid_patients + 1)
        for k in range(1, config.kid_images_per_patient + 1)
    ]


@dataclass(frozen=True)
class _ErsFrame:
    folder: str  # <patient>/samples or <patient>/seq_NN
    number: int
    masks: tuple[tuple[str, ...], ...]  # the code tokens of each mask file; () = no mask at all (planted)
    paint: tuple[str, ...]  # findings drawn; "blur" blurs the frame

    @property
    def name(self) -> str:
        return f"{self.number:06d}"

    @property
    def label(self) -> str:
        """What the frame's labels are, read from its mask names (sorted codes joined with '|')."""
        return "|".join(sorted({code for codes in self.masks for code in codes}))


def _plan_ers(rng: np.random.Generator, config: SynthConfig) -> list[list[_ErsFrame]]:
    """Per patient: precise samples (each frame one of ERS_CASES, every case before any repeats)
    and one sequence of consecutive frames (healthy, then a polyp coming into view)."""
    deck = _deck(rng, [str(i) for i in range(len(ERS_CASES))])
    patients = []
    for p in range(1, config.ers_patients + 1):
        pid = f"{p:04d}"
        frames = []
        for number in sorted(int(n) for n in rng.choice(np.arange(1, 400), ERS_SAMPLES, replace=False)):
            masks, paint = ERS_CASES[int(next(deck))]
            frames.append(_ErsFrame(f"{pid}/samples", number, masks, paint))
        if p == 1 and config.corrupt:  # a frame whose labels/ folder has no mask: nothing says what it shows
            frames.append(_ErsFrame(f"{pid}/samples", 400, (), ()))
        start = int(rng.integers(500, 5000))
        for i in range(ERS_SEQ_FRAMES):
            polyp = i >= ERS_SEQ_FRAMES // 2
            frames.append(
                _ErsFrame(
                    f"{pid}/seq_01", start + i, (("c22",),) if polyp else (("h02",),), ("Polyp",) if polyp else ()
                )
            )
        patients.append(frames)
    return patients


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


# ---------------------------------------------------------------------------------------------
# Rendering


def _drift(rng: np.random.Generator, count: int, room: int) -> list[tuple[int, int]]:
    """Crop origins of a slowly drifting camera: 1-4 px per frame, heading wanders, walls reflect."""
    pos, heading, out = rng.uniform(0, room, 2), rng.uniform(0, 2 * np.pi), []
    for _ in range(count):
        out.append((int(round(pos[0])), int(round(pos[1]))))
        heading += rng.normal(0, 0.35)
        pos = pos + rng.uniform(1, 4) * np.array([np.cos(heading), np.sin(heading)])
        if not 0 <= pos[0] <= room:
            pos[0], heading = np.clip(pos[0], 0, room) * 2 - pos[0], np.pi - heading
        if not 0 <= pos[1] <= room:
            pos[1], heading = np.clip(pos[1], 0, room) * 2 - pos[1], -heading
    return out


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


def _render_kid(patient: list[_KidImage], rng: np.random.Generator) -> Iterator[bytes]:
    """One shared texture per patient; each image a different view of it, with its own lesion."""
    n = KID_SIZE
    texture = _texture(rng, n + 160, _kid_tone(rng))
    for img in patient:
        x, y = (int(v) for v in rng.integers(0, 161, 2))
        canvas = np.rot90(texture[y : y + n, x : x + n], int(rng.integers(0, 4))).copy()
        cx, cy = (int(n // 2 + rng.uniform(-36, 36)) for _ in range(2))
        _lesion(canvas, img.finding, cx, cy, rng)
        yield _jpeg(canvas * (KID_FOV * rng.normal(1, 0.03))[..., None], KID_QUALITY)


def _render_worms(rng: np.random.Generator) -> bytes:
    """A Kvasir-Capsule-looking frame with worms: a class only CE24 has."""
    n = KC_SIZE
    canvas = _texture(rng, n, _kc_tone(rng))
    _lesion(canvas, WORMS, n // 2, n // 2, rng)
    return _jpeg(canvas * KC_FOV[..., None], KC_QUALITY)


ERS_FOV = _fov(ERS_SIZE, 1.25, 0.4)  # a colonoscope's wide view: only the corners are cut
SEE_AI_FOV = _fov(SEE_AI_SIZE, 0.98, 0.35)


def _paint_at(
    canvas: np.ndarray, findings: tuple[str, ...], cx: int, cy: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Paint each finding (two side by side) around (cx, cy), kept PATCH/2 inside the canvas; their centres."""
    h, size = PATCH // 2, canvas.shape[0]
    lesions = [f for f in findings if f != "blur"]
    centres = []
    for j, finding in enumerate(lesions):
        dx = (j - (len(lesions) - 1) / 2) * 120 + rng.uniform(-15, 15)
        x, y = (int(np.clip(c, h, size - h)) for c in (cx + dx, cy + rng.uniform(-15, 15)))
        _lesion(canvas, finding, x, y, rng)
        centres.append((x, y))
    return centres


def _png(pixels: np.ndarray, blur: bool = False) -> bytes:
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(4))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=1)  # level 6 (the default) took 45 ms a frame on the noisy mucosa
    return buf.getvalue()


def _ers_mask() -> bytes:
    """A binary mask PNG: an ellipse round the frame centre, where the demo draws its lesions."""
    img = Image.new("1", (ERS_SIZE, ERS_SIZE), 0)
    ImageDraw.Draw(img).ellipse(
        (ERS_SIZE // 2 - 110, ERS_SIZE // 2 - 80, ERS_SIZE // 2 + 110, ERS_SIZE // 2 + 80), fill=1
    )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _render_ers(frames: list[_ErsFrame], rng: np.random.Generator) -> Iterator[bytes]:
    """PNG per frame of one patient: samples are independent views of the patient's mucosa; a
    sequence drifts like a video, its polyp painted once so it moves with the mucosa."""
    n = ERS_SIZE
    size = n + 2 * DRIFT_PAD
    texture = _texture(rng, size, (np.array([200, 112, 105]) + rng.normal(0, [10, 8, 8])).astype(np.float32))
    seq = [f for f in frames if "/seq_" in f.folder]
    origins = dict(zip((f.number for f in seq), _drift(rng, len(seq), size - n)))
    polyp = texture.copy()
    if seq:
        x, y = origins[seq[len(seq) * 3 // 4].number]
        _paint_at(polyp, ("Polyp",), x + n // 2, y + n // 2, rng)
    for frame in frames:
        if frame.number in origins and "/seq_" in frame.folder:
            x, y = origins[frame.number]
            canvas = polyp if frame.paint else texture
        else:
            x, y = (int(v) for v in rng.integers(0, size - n + 1, 2))
            canvas = texture.copy()
            _paint_at(canvas, frame.paint, x + n // 2, y + n // 2, rng)
        light = ERS_FOV * rng.normal(1, 0.03)
        yield _png(canvas[y : y + n, x : x + n] * light[..., None], blur="blur" in frame.paint)


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


# ---------------------------------------------------------------------------------------------
# Writing


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


def _xlsx(rows: list[tuple[str, str]]) -> bytes:
    """The truth workbook, byte-reproducible: openpyxl stamps core.xml and every zip member with the
    wall clock (the worksheet even with its temp file's mtime), so both are pinned."""
    wb = Workbook()
    ws = wb.active
    ws.title = "Sheet1"
    ws.append(["image_path", "class_label"])
    for row in rows:
        ws.append(list(row))
    wb.properties.created = wb.properties.modified = XLSX_TIME
    raw, out = io.BytesIO(), io.BytesIO()
    ExcelWriter(wb, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED)).save()  # save() closes the zip
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            pinned = zipfile.ZipInfo(info.filename, date_time=XLSX_TIME.timetuple()[:6])
            pinned.external_attr = 0o600 << 16  # not the temp file's umask-dependent mode
            dst.writestr(pinned, src.read(info), zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _config_block(config: SynthConfig) -> str:
    return "```\n" + "\n".join(f"{k} = {v!r}" for k, v in dataclasses.asdict(config).items()) + "\n```\n"


def _frame_ranges(video: _Video) -> str:
    return "; ".join(
        f"{run.finding} {video.first_frame + run.start}-{video.first_frame + run.start + run.length - 1}"
        for run in video.runs
    )


# ---------------------------------------------------------------------------------------------
# The generator


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


def _n_copies(config: SynthConfig, pool: int) -> int:
    """Images of one source copied into CE24; at least one, so the planted label conflict has a host."""
    return max(1, round(config.ce24_copy_fraction * pool))


def _aiims_split(k: int) -> str:
    """CE24-only AIIMS frames: 3 of 4 to training, like the copies."""
    return "validation" if k % 4 == 3 else "training"


def _aiims_name(k: int) -> str:
    """AIIMS frame k as the real CE24 names them, ``worm<video>_<frame>.jpg``: two frames per video, so
    videos 2 and 4 have a frame in training and one in validation (the real CE24's six all straddle)."""
    return f"worm{k // 2 + 1}_{100 + 3 * (k % 2)}.jpg"


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


def _write_kid(out: _Writer, kid: list[_KidImage], config: SynthConfig) -> list[_Item]:
    """``<class>/<class>-P<n>-<k>.jpg`` per patient (and the planted empty file); returns the images."""
    items: list[_Item] = []
    for p in range(1, config.kid_patients + 1):
        patient = [img for img in kid if img.patient == p]
        for img, data in zip(patient, _render_kid(patient, _rng(config.seed, _RENDER_KID, p))):
            out.image(f"kid/{img.rel}", data)
            items.append(_Item("KID", img.rel, img.rel.rsplit("/", 1)[1], img.finding, data))
    if config.corrupt:
        out.image(f"kid/{KID_EMPTY}", b"")
    return items


def _pick_ce24_copies(
    pools: tuple[list[_Item], list[_Item]], config: SynthConfig, rng: np.random.Generator
) -> tuple[list[tuple[str, str, _Item]], int, tuple[str, str, str]]:
    """The (split, class, image) CE24 training/validation copies of each source pool, split per image;
    the index of the copy also filed under a second class; and that conflict as (filed as, also filed
    as, copy of)."""
    copies: list[tuple[str, str, _Item]] = []
    for pool in pools:
        picked = sorted(rng.choice(len(pool), _n_copies(config, len(pool)), replace=False))
        for i in picked:
            split = "training" if rng.random() < CE24_TRAIN_SHARE else "validation"
            copies.append((split, CE24_CLASS_OF[pool[i].finding], pool[i]))
    if not any(split == "training" for split, _, _ in copies):
        copies[0] = ("training", *copies[0][1:])
    conflict_at = int(rng.choice([i for i, c in enumerate(copies) if c[0] == "training"]))
    _, first_class, twin = copies[conflict_at]
    others = sorted({c for c in CE24_CLASS_OF.values() if c not in (first_class, WORMS)})
    second_class = others[int(rng.integers(len(others)))]
    conflict = (
        f"training/{first_class}/{twin.source}/{twin.name}",
        f"training/{second_class}/{twin.source}/{twin.name}",
        twin.rel,
    )
    return copies, conflict_at, conflict


def _write_ce24_train_val(
    out: _Writer, copies: list[tuple[str, str, _Item]], conflict_at: int, conflict: tuple[str, str, str], seed: int
) -> Counter[tuple[str, str]]:
    """The re-encoded copies (the conflicting one twice) and the CE24-only AIIMS worms frames; returns
    the files per (split, source)."""
    copied: Counter[tuple[str, str]] = Counter()
    for i, (split, cls, item) in enumerate(copies):
        data = _reencode(item.data)
        out.image(f"ce24/{split}/{cls}/{item.source}/{item.name}", data)
        copied[split, item.source] += 1
        if i == conflict_at:
            out.image(f"ce24/{conflict[1]}", data)
    for k in range(CE24_AIIMS_WORMS):
        split = _aiims_split(k)
        data = _reencode(_render_worms(_rng(seed, _RENDER_AIIMS, k)))
        out.image(f"ce24/{split}/{WORMS}/AIIMS/{_aiims_name(k)}", data)
        copied[split, "AIIMS"] += 1
    return copied


def _write_ce24_test(
    out: _Writer, test_videos: list[_Video], seed: int, rng: np.random.Generator
) -> list[tuple[str, str]]:
    """CE24 testing: frames of videos that exist nowhere else plus worms, renamed to random ids by
    ``rng``, and the truth workbook; returns its (image_path, class_label) rows."""
    test: list[tuple[str, bytes]] = []
    for video in test_videos:
        test += [(f, d) for _, f, d in _render_video(video, _rng(seed, _RENDER_TEST, video.index))]
    test += [(WORMS, _render_worms(_rng(seed, _RENDER_WORMS, i))) for i in range(CE24_WORMS)]
    alphabet = np.array(list(string.ascii_letters + string.digits))
    names: set[str] = set()
    truth = []
    for finding, data in test:
        name = "".join(rng.choice(alphabet, 10)) + ".jpg"
        while name in names:
            name = "".join(rng.choice(alphabet, 10)) + ".jpg"
        names.add(name)
        out.image(f"ce24/testing/Images/{name}", _reencode(data))
        truth.append((f"{CE24_TEST_PREFIX}{CE24_CLASS_OF[finding]}\\{name}", CE24_CLASS_OF[finding]))
    truth.sort(key=lambda row: (row[1], row[0]))
    out.file("ce24/testing/test_data.xlsx", _xlsx(truth))
    return truth


def _write_ce24_text_jpg(out: _Writer, rng: np.random.Generator) -> str:
    """The planted text file with a CE24 training image's name; returns its path below ce24/."""
    text_jpg = f"training/Normal/KVASIR/{rng.bytes(8).hex()}_{int(rng.integers(100, 60000))}.jpg"
    out.image(f"ce24/{text_jpg}", b"This is not a JPEG: the download was interrupted and the server sent this note.\n")
    return text_jpg


def _write_ers(out: _Writer, ers: list[list[_ErsFrame]], seed: int) -> None:
    """ERS: PNG frames, labelled only by the names of the mask files beside them."""
    for p, frames in enumerate(ers, start=1):
        for frame, data in zip(frames, _render_ers(frames, _rng(seed, _RENDER_ERS, p))):
            out.image(f"ers/{frame.folder}/frames/{frame.name}.png", data)
            for codes in frame.masks:
                mask = b"" if set(codes) <= ERS_EMPTY_MASK else _ers_mask()
                out.file(f"ers/{frame.folder}/labels/{frame.name}_{'_'.join(codes)}.png", mask)


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


def _ers_readme(config: SynthConfig, ers: list[list[_ErsFrame]]) -> str:
    rows = [
        [
            f"{frame.folder}/frames/{frame.name}.png",
            ", ".join(
                f"`{frame.name}_{'_'.join(codes)}.png`" + (" (0 bytes)" if set(codes) <= ERS_EMPTY_MASK else "")
                for codes in frame.masks
            )
            or "**none** (planted: a frame nothing labels)",
            frame.label.replace("|", ", ") or "-",
        ]
        for frames in ers
        for frame in frames
    ]
    return (
        "# ers/ (synthetic demo data)\n\n"
        "ERS-like colonoscopy frames written by `endoctl synth`, in the real layout "
        "`<patient 4 digits>/{samples,seq_NN}/frames/<6-digit frame>.png` with the masks beside them in "
        "`.../labels/<frame>_<code>[_<code>...].png` (320x320 PNG). A frame's labels are the 3-character code "
        "tokens of the names of all its mask files; a 0-byte mask means 'label present, no mask'. Codes used: "
        "c22 polyp, b01 blood, c26 ulcer, g19 ulcer with bleeding, c20 (the taxonomy's assumed worms code), "
        "h01/h02 healthy, q02/q05 blur (the frame is blurred), c01 (a code without a confirmed name). Each "
        "`seq_01` holds consecutive frame numbers of a drifting camera (near-duplicates): healthy, then a polyp. "
        "The patient id is the 4-digit folder.\n\n## Frames\n\n"
        + _table(["frame", "mask files", "labels"], rows)
        + "\n## Config\n\n"
        + _config_block(config)
    )


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


def _kid_readme(config: SynthConfig, kid: list[_KidImage], copied: dict[tuple[str, str], int]) -> str:
    per_class = Counter(KID_CLASSES[img.finding] for img in kid)
    class_rows = [[cls, per_class[cls]] for cls in sorted(per_class)]
    patients = []
    for p in range(1, config.kid_patients + 1):
        own = Counter(img.finding for img in kid if img.patient == p)
        findings = ", ".join(f"{f} {n}" for f, n in sorted(own.items()))
        patients.append([f"P{p}", f"1-{config.kid_images_per_patient}", findings])
    corrupt = (
        f"- `{KID_EMPTY}`: a zero-byte file (patient P99 does not otherwise exist).\n"
        if config.corrupt
        else "- none (corrupt=False)\n"
    )
    return (
        "# kid/ (synthetic demo data)\n\n"
        "KID-like capsule images written by `endoctl synth`, in the layout `<class>/<class>-P<n>-<k>.jpg` "
        "(360x360 JPEG, quality 90, a yellower tone than kvasir_capsule/). The patient number is only in the "
        "file name. KID's labels are coarser than the others': 'vascular' holds angiectasia and fresh blood, "
        "'inflammatory' holds erosion, ulcer and erythema, 'polypoid' holds polyps. Images of one patient are "
        "different views of one mucosa texture (similar, not near-duplicates).\n\n"
        f"{len(kid) + config.corrupt} image files.\n\n## Images per class folder (valid images)\n\n"
        + _table(["class", "files"], class_rows)
        + "\n## Patients (k = image index; true findings drawn)\n\n"
        + _table(["patient", "k", "findings"], patients)
        + f"\n## Corrupt files\n\n{corrupt}"
        + "\n## Copies in ce24/\n\n"
        f"{copied['training', 'KID'] + copied['validation', 'KID']} of these images are copied (resized to "
        f"224x224, re-encoded) into `ce24/training/*/KID/` ({copied['training', 'KID']}) and "
        f"`ce24/validation/*/KID/` ({copied['validation', 'KID']}) under their original file names, filed by "
        "their true finding (vascular -> Angioectasia or Bleeding, inflammatory -> Erosion, Ulcer or Erythema).\n"
        "\n## Config\n\n" + _config_block(config)
    )


def _ce24_readme(
    config: SynthConfig,
    copies: list[tuple[str, str, _Item]],
    conflict: tuple[str, str, str],
    test_videos: list[_Video],
    truth: list[tuple[str, str]],
    text_jpg: str,
) -> str:
    per = Counter((split, cls, item.source) for split, cls, item in copies)
    rows = [[split, cls, src, n] for (split, cls, src), n in sorted(per.items())]
    test_counts = Counter(label for _, label in truth)
    aiims = Counter(_aiims_split(k) for k in range(CE24_AIIMS_WORMS))
    video_rows = [[v.vid, f"{v.first_frame}-{v.first_frame + v.frames - 1}", _frame_ranges(v)] for v in test_videos]
    videos = _table(["video_id", "frames", "runs"], video_rows)
    corrupt = (
        f"- `{text_jpg}`: a text file with a .jpg name (not an image).\n" if text_jpg else "- none (corrupt=False)\n"
    )
    return (
        "# ce24/ (synthetic demo data)\n\n"
        "Capsule-Vision-2024-like data written by `endoctl synth`, in the real layout "
        "`training|validation/<Class>/<Source>/<file>.jpg` and `testing/Images/<10 chars>.jpg` with the truth "
        "in `testing/test_data.xlsx` (columns image_path, class_label). All images are 224x224 JPEG "
        "(quality 85).\n\n"
        f"## Training and validation: {len(copies) + 1} images, all copies (plus any corrupt file below)\n\n"
        f"Every one is a resized, re-encoded copy of a file in ../kvasir_capsule (Source KVASIR, "
        f"{sum(1 for c in copies if c[2].source == 'KVASIR')} copies) or ../kid (Source KID, "
        f"{sum(1 for c in copies if c[2].source == 'KID')} copies) with the original file name, i.e. "
        f"{config.ce24_copy_fraction:.0%} of each source's valid images. Training or validation was drawn per "
        f"image ({CE24_TRAIN_SHARE:.0%} training), as in the real CE24, so videos and patients straddle the "
        "split. 'Ileocecal valve' frames are filed under Normal. The table counts each copy once; the "
        "conflict below adds one more file.\n\n"
        + _table(["split", "class", "source", "files"], rows)
        + f"\nPlus {CE24_AIIMS_WORMS} 'Worms' frames of a CE24-only source, `*/Worms/AIIMS/worm<video>_<frame>.jpg` "
        f"({CE24_AIIMS_WORMS // 2} videos of 2 frames; {aiims['training']} training, {aiims['validation']} "
        "validation), "
        "as in the real CE24, whose Worms all come from AIIMS videos that straddle its split.\n"
        + f"\n### Planted label conflict\n\n`{conflict[0]}` (a copy of `{conflict[2]}`) is also filed, with the "
        f"same bytes, as `{conflict[1]}`: one image under two classes.\n\n"
        f"## Testing: {len(truth)} images\n\n"
        "Frames of these videos, which are in no other folder, renamed to random ids, plus "
        f"{CE24_WORMS} 'Worms' images (a class only CE24 has):\n\n"
        + videos
        + "\n"
        + _table(["class_label", "images"], [[c, n] for c, n in sorted(test_counts.items())])
        + f"\n## Corrupt files\n\n{corrupt}"
        + "\n## Config\n\n"
        + _config_block(config)
    )

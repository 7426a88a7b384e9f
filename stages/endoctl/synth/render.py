"""Pixels every demo source paints with: mucosa texture, field of view, lesion painters, camera drift.

One painter per finding, shared by all sources, so a finding looks alike whichever source shows it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from endoctl.synth.common import NORMAL, WORMS

PATCH = 288  # lesions are painted into a PATCH x PATCH window centred on their position
DRIFT_PAD = 96  # a video's texture is this much larger than a frame on each side: room to drift


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


def _kc_tone(rng: np.random.Generator) -> np.ndarray:
    return (np.array([205, 120, 85]) + rng.normal(0, [12, 10, 8])).astype(np.float32)


def _kid_tone(rng: np.random.Generator) -> np.ndarray:
    return (np.array([220, 145, 75]) + rng.normal(0, [10, 10, 8])).astype(np.float32)


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

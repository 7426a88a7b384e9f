"""The demo's ``ers/``: multi-label PNG frames per patient, labelled only by the names of their mask files."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from endoctl.synth.common import _RENDER_ERS, WORMS, _config_block, _deck, _rng, _table
from endoctl.synth.render import DRIFT_PAD, _drift, _fov, _paint_at, _texture

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig, _Writer

ERS_SIZE = 320
ERS_SAMPLES, ERS_SEQ_FRAMES = 5, 6  # per patient: precise samples, then one sequence of consecutive frames
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
ERS_FOV = _fov(ERS_SIZE, 1.25, 0.4)  # a colonoscope's wide view: only the corners are cut


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


def _write_ers(out: _Writer, ers: list[list[_ErsFrame]], seed: int) -> None:
    """ERS: PNG frames, labelled only by the names of the mask files beside them."""
    for p, frames in enumerate(ers, start=1):
        for frame, data in zip(frames, _render_ers(frames, _rng(seed, _RENDER_ERS, p))):
            out.image(f"ers/{frame.folder}/frames/{frame.name}.png", data)
            for codes in frame.masks:
                mask = b"" if set(codes) <= ERS_EMPTY_MASK else _ers_mask()
                out.file(f"ers/{frame.folder}/labels/{frame.name}_{'_'.join(codes)}.png", mask)


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

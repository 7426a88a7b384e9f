"""The demo's ``kid/``: KID-like images with coarser class folders and the patient in the file name."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from endoctl.synth.common import _RENDER_KID, NORMAL, _config_block, _deck, _Item, _rng, _table
from endoctl.synth.render import _fov, _jpeg, _kid_tone, _lesion, _texture

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig, _Writer

KID_SIZE, KID_QUALITY = 360, 90
KID_NORMAL_SHARE = 0.4
KID_EMPTY = "normal-small-bowel/normal-small-bowel-P99-1.jpg"  # hence at most 98 KID patients
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
KID_FOV = _fov(KID_SIZE, 0.98, 0.35)  # inscribed circle, as on KID's capsule images


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

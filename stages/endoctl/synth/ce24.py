"""The demo's ``ce24/``: re-encoded copies of kvasir_capsule/ and kid/ split per image, CE24-only worms,
a test set from videos nowhere else with its truth workbook, a label conflict and a text file named .jpg."""

from __future__ import annotations

import io
import string
import zipfile
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
from openpyxl import Workbook
from openpyxl.writer.excel import ExcelWriter
from PIL import Image

from endoctl.synth.common import (
    _RENDER_AIIMS,
    _RENDER_TEST,
    _RENDER_WORMS,
    NORMAL,
    WORMS,
    _config_block,
    _Item,
    _rng,
    _table,
)
from endoctl.synth.kvasir_capsule import KC_FOV, KC_QUALITY, KC_SIZE, _frame_ranges, _render_video, _Video
from endoctl.synth.render import _jpeg, _kc_tone, _lesion, _texture

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig, _Writer

CE24_SIZE, CE24_QUALITY = 224, 85
CE24_TRAIN_SHARE = 0.7  # real CE24: 37,607 training vs 16,132 validation images
CE24_WORMS = 4  # 'Worms' exists only in CE24; a few such images go into its test set
CE24_AIIMS_WORMS = 8  # ... and, as in the real CE24, AIIMS worms frames into training/validation
CE24_TEST_PREFIX = "Test set for us, with excel sheet and seperated/"  # sic, as in the real file
XLSX_TIME = datetime(2024, 1, 1)
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


def _reencode(data: bytes) -> bytes:
    """CE24 shipped its copies resized to 224 x 224 and re-compressed."""
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((CE24_SIZE, CE24_SIZE), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=CE24_QUALITY)
    return buf.getvalue()


def _render_worms(rng: np.random.Generator) -> bytes:
    """A Kvasir-Capsule-looking frame with worms: a class only CE24 has."""
    n = KC_SIZE
    canvas = _texture(rng, n, _kc_tone(rng))
    _lesion(canvas, WORMS, n // 2, n // 2, rng)
    return _jpeg(canvas * KC_FOV[..., None], KC_QUALITY)


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

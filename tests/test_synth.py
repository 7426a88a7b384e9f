"""The demo-data generator: native layouts, determinism, near-duplicate chains, CE24 copies, traps;
ERS-like multi-label frames (labels in mask names) and SEE-AI-like YOLO boxes whose labels the
taxonomy maps."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import imagehash
import numpy as np
import openpyxl
import pandas as pd
import pytest
from PIL import Image

import endoctl.synth as synth_mod
from endoctl.io import OutputError
from endoctl.sources.see_ai import CLASSES as SEE_AI_CLASSES
from endoctl.synth import CE24_CLASS_OF, ERS_CASES, KC_FINDINGS, KID_CLASSES, STUDY, SynthConfig, synth
from endoctl.taxonomy import load_taxonomy, map_labels

CONFIG = SynthConfig(
    seed=7,
    videos=3,
    frames_per_video=12,
    kid_patients=3,
    kid_images_per_patient=6,
    ce24_copy_fraction=0.6,
    ce24_test_videos=1,
    ers_patients=2,
    see_ai_videos=2,
)
FOLDERS = ["kvasir_capsule", "kid", "ce24", "ers", "see_ai"]


def alt(names) -> str:
    """A regex alternation of literal names."""
    return "|".join(re.escape(n) for n in sorted(set(names)))


KC_NAME = r"[0-9a-f]{16}_\d+\.jpg"
KID_NAME = r"(?P<kcls>[a-z-]+)-P\d+-\d+\.jpg"
LAYOUT = [
    re.compile(rf"kvasir_capsule/labelled_images/({alt(KC_FINDINGS)})/{KC_NAME}"),
    re.compile(r"kvasir_capsule/(metadata\.csv|README\.md)"),
    re.compile(rf"kid/(?P<folder>{alt(KID_CLASSES.values())})/{KID_NAME}"),
    re.compile(r"kid/README\.md"),
    re.compile(rf"ce24/(training|validation)/({alt(CE24_CLASS_OF.values())})/(KVASIR/{KC_NAME}|KID/{KID_NAME})"),
    re.compile(r"ce24/(training|validation)/Worms/AIIMS/worm[1-4]_\d+\.jpg"),
    re.compile(r"ce24/testing/Images/[A-Za-z0-9]{10}\.jpg"),
    re.compile(r"ce24/(testing/test_data\.xlsx|README\.md)"),
    re.compile(r"ers/\d{4}/(samples|seq_\d{2})/frames/\d{6}\.png"),
    re.compile(r"ers/\d{4}/(samples|seq_\d{2})/labels/\d{6}(_[chgbq]\d{2})+\.png"),
    re.compile(r"(ers|see_ai)/README\.md"),
    re.compile(r"see_ai/SEE_AI_project_all_images/image\d{5}\.jpg"),
    re.compile(r"see_ai/SEE_AI_project_all_txt/image\d{5}\.txt"),
    re.compile(r"study/(capsule_study\.mp4|README\.md)"),
]
TRUTH_PATH = re.compile(  # sic: the real CE24 truth file's folder name and Windows separator
    r"Test set for us, with excel sheet and seperated/"
    rf"(?P<cls>{alt(CE24_CLASS_OF.values())})\\(?P<name>[A-Za-z0-9]{{10}}\.jpg)"
)


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def is_image(rel: str) -> bool:
    """What ingest takes as an image: every .jpg and the ERS frames (not their masks)."""
    return rel.endswith(".jpg") or (rel.endswith(".png") and "/frames/" in rel)


def decodes(path: Path) -> bool:
    try:
        with Image.open(path) as img:
            img.load()
        return True
    except OSError:
        return False


def phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as img:
        return imagehash.phash(img)


def rgb(path: Path) -> np.ndarray:
    """Pixels inside the field of view (the black corners would dilute every statistic)."""
    with Image.open(path) as img:
        px = np.asarray(img.convert("RGB"), np.float32).reshape(-1, 3)
    return px[px.sum(axis=1) > 60]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], list[tuple[int, int]]]:
    root = tmp_path_factory.mktemp("synth") / "demo"
    progress: list[tuple[int, int]] = []
    counts = synth(root, CONFIG, lambda done, total: progress.append((done, total)))
    return root, counts, progress


def test_every_path_follows_its_native_layout(demo) -> None:
    root, counts, _ = demo
    found = files(root)
    for rel in found:
        match = next((m for rx in LAYOUT if (m := rx.fullmatch(rel))), None)
        assert match is not None, f"{rel} is in no native layout"
        if "folder" in match.groupdict():  # KID: the file name starts with its class folder
            assert match["folder"] == match["kcls"], rel
    images = defaultdict(int)
    for rel in found:
        if is_image(rel):
            images[rel.split("/")[0]] += 1
    assert counts == dict(images) and set(counts) == set(FOLDERS)
    # Room permitting (videos x 3 lesion runs >= 9), every Kvasir-Capsule finding appears.
    assert {p.name for p in (root / "kvasir_capsule/labelled_images").iterdir()} == set(KC_FINDINGS)
    assert {p.name for p in (root / "kid").iterdir() if p.is_dir()} <= set(KID_CLASSES.values())


def test_progress_reports_every_image_up_to_the_total(demo) -> None:
    _, counts, progress = demo
    total = sum(counts.values())
    assert [done for done, _ in progress] == list(range(1, total + 1))
    assert {t for _, t in progress} == {total}


def test_kvasir_capsule_videos_metadata_and_frame_numbers(demo) -> None:
    root, _, _ = demo
    kc = root / "kvasir_capsule"
    lines = (kc / "metadata.csv").read_text().splitlines()
    assert lines[0] == "filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4"
    on_disk = {p.name: p.parent.name for p in (kc / "labelled_images").rglob("*.jpg")}
    rows = [line.split(";") for line in lines[1:]]
    assert sorted(r[0] for r in rows) == sorted(on_disk)
    frames = defaultdict(list)
    for name, video, frame, category, finding, *box in rows:
        assert name == f"{video}_{frame}.jpg" and box == [""] * 7  # sic: real box-less rows are one field short
        assert (category, finding) == KC_FINDINGS[on_disk[name]]
        frames[video].append(int(frame))
    assert len(frames) == CONFIG.videos
    extra = 0
    for numbers in frames.values():
        numbers.sort()
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "frames must be consecutive"
        extra += len(numbers) - CONFIG.frames_per_video
    assert extra == 1  # the truncated frame follows one video's last frame


def test_image_sizes(demo) -> None:
    root, _, _ = demo
    sizes = {"kvasir_capsule": 336, "kid": 360, "ce24": 224, "ers": 320, "see_ai": 576}
    for rel, path in files(root).items():
        if is_image(rel) and decodes(path):
            with Image.open(path) as img:
                assert img.size == (sizes[rel.split("/")[0]],) * 2 and img.mode == "RGB", rel


def test_same_config_gives_identical_bytes(demo, tmp_path: Path) -> None:
    root, counts, _ = demo
    again = tmp_path / "again"
    assert synth(again, CONFIG) == counts
    first, second = files(root), files(again)
    assert first.keys() == second.keys()
    different = [rel for rel in first if first[rel].read_bytes() != second[rel].read_bytes()]
    assert different == []
    other = synth(tmp_path / "other", dataclasses.replace(CONFIG, seed=8))
    assert sum(other.values()) == sum(counts.values())
    assert files(tmp_path / "other").keys() != first.keys()


def test_consecutive_frames_are_near_duplicates_and_videos_are_not(demo) -> None:
    root, _, _ = demo
    hashes: dict[str, dict[int, imagehash.ImageHash]] = defaultdict(dict)
    for path in (root / "kvasir_capsule/labelled_images").rglob("*.jpg"):
        if decodes(path):
            video, frame = path.stem.split("_")
            hashes[video][int(frame)] = phash(path)
    consecutive = [chain[f] - chain[f + 1] for chain in hashes.values() for f in chain if f + 1 in chain]
    videos = list(hashes.values())
    across = [a - b for i, va in enumerate(videos) for vb in videos[i + 1 :] for a in va.values() for b in vb.values()]
    assert len(consecutive) >= CONFIG.videos * (CONFIG.frames_per_video - 1) - 1
    assert np.median(consecutive) <= 12
    assert np.median(across) >= 20


def test_ce24_training_validation_are_reencoded_copies(demo) -> None:
    root, _, _ = demo
    sources = {
        p.name: (p, p.parent.name)
        for p in [*(root / "kvasir_capsule").rglob("*.jpg"), *(root / "kid").rglob("*.jpg")]
        if decodes(p)
    }
    copies: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # name -> (split, class, sha256)
    for path in sorted((root / "ce24").glob("*/*/*/*.jpg")):
        split, cls, sub, name = path.relative_to(root / "ce24").parts
        if not decodes(path) or sub == "AIIMS":  # AIIMS: CE24's own Worms frames, copies of nothing
            assert not decodes(path) or cls == "Worms"
            continue
        source, _ = sources[name]
        data = path.read_bytes()
        assert data != source.read_bytes()
        with Image.open(path) as img:
            assert img.size == (224, 224)
        assert phash(path) - phash(source) <= 8, name
        assert sub == ("KID" if "-P" in name else "KVASIR")
        copies[name].append((split, cls, hashlib.sha256(data).hexdigest()))
    twins = {name: rows for name, rows in copies.items() if len(rows) > 1}
    assert len(twins) == 1, "exactly one image is filed under two classes"
    (((split_a, cls_a, sha_a), (split_b, cls_b, sha_b)),) = twins.values()
    assert split_a == split_b == "training" and cls_a != cls_b and sha_a == sha_b
    # Classes follow the source's finding; KID's coarse folders ('vascular') map to a specific class.
    allowed = {(f, CE24_CLASS_OF[f]) for f in KC_FINDINGS} | {(KID_CLASSES[f], CE24_CLASS_OF[f]) for f in KID_CLASSES}
    for name, rows in copies.items():
        assert any((sources[name][1], cls) in allowed for _, cls, _ in rows), name
    n_kc = CONFIG.videos * CONFIG.frames_per_video
    n_kid = CONFIG.kid_patients * CONFIG.kid_images_per_patient
    assert len(copies) == round(0.6 * n_kc) + round(0.6 * n_kid)
    # The point of the demo: per-image splitting puts frames of one video in both splits.
    splits = defaultdict(set)
    for name, rows in copies.items():
        if "-P" not in name:
            splits[name.split("_")[0]] |= {split for split, _, _ in rows}
    assert any(s == {"training", "validation"} for s in splits.values())


def test_corrupt_files_are_planted(demo) -> None:
    root, _, _ = demo
    broken = [rel for rel, p in files(root).items() if is_image(rel) and not decodes(p)]
    assert len(broken) == 4
    kc, kid, ce24, see_ai = sorted(broken, key=lambda rel: FOLDERS.index(rel.split("/")[0]))
    assert see_ai.startswith("see_ai/SEE_AI_project_all_images/") and (root / see_ai).read_bytes()[:2] == b"\xff\xd8"
    assert not (root / see_ai.replace("images", "txt").replace(".jpg", ".txt")).exists()
    truncated = (root / kc).read_bytes()
    assert kc.startswith("kvasir_capsule/labelled_images/") and re.fullmatch(KC_NAME, kc.rsplit("/", 1)[1])
    assert truncated[:2] == b"\xff\xd8" and not truncated.endswith(b"\xff\xd9")
    neighbours = [len(p.read_bytes()) for p in (root / kc).parent.glob(kc.rsplit("/", 1)[1].split("_")[0] + "_*.jpg")]
    assert 0.4 < len(truncated) / np.median(neighbours) < 0.8
    assert kid == "kid/normal-small-bowel/normal-small-bowel-P99-1.jpg" and (root / kid).stat().st_size == 0
    assert ce24.startswith("ce24/training/Normal/KVASIR/")
    (root / ce24).read_bytes().decode("ascii")  # plain text


def test_corrupt_false_plants_nothing(tmp_path: Path) -> None:
    counts = synth(tmp_path / "clean", dataclasses.replace(CONFIG, corrupt=False, ce24_test_videos=0))
    images = [p for rel, p in files(tmp_path / "clean").items() if is_image(rel)]
    assert len(images) == sum(counts.values()) and all(decodes(p) for p in images)
    frames = list((tmp_path / "clean/ers").rglob("frames/*.png"))
    assert all(list(f.parent.parent.glob(f"labels/{f.stem}_*.png")) for f in frames), "every ERS frame has a mask"
    assert len(list((tmp_path / "clean/ce24/testing/Images").iterdir())) == synth_mod.CE24_WORMS


def test_xlsx_truth_lists_exactly_the_test_images(demo) -> None:
    root, _, _ = demo
    ws = openpyxl.load_workbook(root / "ce24/testing/test_data.xlsx").active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("image_path", "class_label")
    names = []
    for path, label in rows[1:]:
        match = TRUTH_PATH.fullmatch(path)
        assert match and match["cls"] == label, path
        names.append(match["name"])
    images = sorted(p.name for p in (root / "ce24/testing/Images").iterdir())
    assert sorted(names) == images
    assert len(images) == CONFIG.ce24_test_videos * CONFIG.frames_per_video + synth_mod.CE24_WORMS
    assert sum(label == "Worms" for _, label in rows[1:]) == synth_mod.CE24_WORMS
    # Test frames come from videos that are nowhere else: no test file is a training file.
    train = {hashlib.sha256(p.read_bytes()).digest() for p in (root / "ce24").glob("*/*/*/*.jpg")}
    assert not train & {hashlib.sha256(p.read_bytes()).digest() for p in (root / "ce24/testing/Images").iterdir()}


def test_interrupted_run_leaves_dest_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "demo"
    (dest / "kid").mkdir(parents=True)
    (dest / "kid" / "old.txt").write_text("previous run")
    real, calls = synth_mod._write_file, []

    def failing(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 25:
            raise RuntimeError("disk full")
        real(path, data)

    monkeypatch.setattr(synth_mod, "_write_file", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        synth(dest, CONFIG)
    assert all(dest not in p.parents for p in calls), "nothing is written into dest itself"
    assert [p.name for p in tmp_path.iterdir()] == ["demo"], "the temp folder is removed"
    assert [p.name for p in dest.rglob("*")] == ["kid", "old.txt"]

    monkeypatch.setattr(synth_mod, "_write_file", real)
    synth(dest, CONFIG)
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    assert sorted(p.name for p in dest.iterdir()) == sorted([*FOLDERS, STUDY])
    (dest / "notes.txt").write_text("someone else's file")  # the swap would delete it: refused
    with pytest.raises(OutputError, match="holds 'notes.txt'"):
        synth(dest, CONFIG)
    assert (dest / "notes.txt").is_file()


def test_invalid_config_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ce24_copy_fraction"):
        synth(tmp_path / "demo", SynthConfig(ce24_copy_fraction=0))
    assert list(tmp_path.iterdir()) == []


def test_classes_differ_measurably(demo) -> None:
    """Each lesion's frames against the normal frames of the same videos (videos differ in tone)."""
    root, _, _ = demo
    folder = root / "kvasir_capsule/labelled_images"

    def stats(finding: str, videos: set[str]) -> tuple[float, float, float]:
        paths = [p for p in (folder / finding).glob("*.jpg") if p.stem.split("_")[0] in videos and decodes(p)]
        px = np.concatenate([rgb(p) for p in paths])
        redness = px[:, 0] / px.sum(axis=1)
        whitish = np.mean(px.min(axis=1) > 170)  # fibrin, white spots
        return float(redness.mean()), float(np.mean(redness > 0.65)), float(whitish)

    def versus_normal(finding: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        videos = {p.stem.split("_")[0] for p in (folder / finding).glob("*.jpg")}
        return stats(finding, videos), stats("Normal clean mucosa", videos)

    (blood_red, blood_share, _), (normal_red, normal_share, _) = versus_normal("Blood - fresh")
    assert blood_red > normal_red + 0.02
    assert blood_share > normal_share + 0.08  # a large region of blood-red pixels
    (erythema_red, _, _), (normal_red, _, _) = versus_normal("Erythema")
    assert erythema_red > normal_red + 0.01
    for pale in ("Ulcer", "Lymphangiectasia", "Erosion"):
        (_, _, white), (_, _, normal_white) = versus_normal(pale)
        assert white > normal_white + 0.002, pale


def test_readmes_describe_what_was_planted(demo) -> None:
    root, _, _ = demo
    kc, kid, ce24, ers, see_ai = ((root / f / "README.md").read_text() for f in FOLDERS)
    assert all("seed = 7" in text and "## Corrupt files" in text for text in (kc, kid, ce24, see_ai))
    assert "seed = 7" in ers and "**none** (planted: a frame nothing labels)" in ers and "(0 bytes)" in ers
    assert "erosion (1), erythema (9)" in see_ai
    for video in {p.stem.split("_")[0] for p in (root / "kvasir_capsule").rglob("*.jpg")}:
        assert video in kc
    assert "normal-small-bowel-P99-1.jpg" in kid
    assert "Planted label conflict" in ce24 and "Worms" in ce24


# ----------------------------------------------------------------------------- ERS and SEE-AI


def ers_labels(root: Path) -> dict[str, str]:
    """frame rel -> its labels as the ers format reads them: the code tokens of its mask names."""
    out = {}
    for frame in sorted((root / "ers").rglob("frames/*.png")):
        masks = frame.parent.parent.glob(f"labels/{frame.stem}_*.png")
        codes = {code for m in masks for code in m.stem.split("_")[1:]}
        out[frame.relative_to(root).as_posix()] = "|".join(sorted(codes))
    return out


def see_ai_labels(root: Path) -> dict[int, str]:
    """image number -> its labels as the see-ai format reads them: box class names, or 'normal'."""
    out = {}
    for image in sorted((root / "see_ai/SEE_AI_project_all_images").glob("*.jpg")):
        if not decodes(image):
            continue
        txt = root / "see_ai/SEE_AI_project_all_txt" / f"{image.stem}.txt"
        lines = txt.read_text().splitlines() if txt.is_file() else []
        names = {SEE_AI_CLASSES[int(line.split()[0])] for line in lines}
        out[int(image.stem[5:])] = "|".join(sorted(names)) or "normal"
    return out


def test_ers_layout_masks_and_labels(demo) -> None:
    root, _, _ = demo
    labels = ers_labels(root)
    patients = {rel.split("/")[1] for rel in labels}
    assert patients == {f"{p:04d}" for p in range(1, CONFIG.ers_patients + 1)}
    for p in patients:  # each sequence: consecutive frame numbers
        seq = sorted(int(Path(rel).stem) for rel in labels if rel.startswith(f"ers/{p}/seq_01/"))
        assert len(seq) >= 2 and seq == list(range(seq[0], seq[0] + len(seq)))
        assert any(rel.startswith(f"ers/{p}/samples/") for rel in labels)
    assert [rel for rel, lab in labels.items() if lab == ""] == ["ers/0001/samples/frames/000400.png"]
    masks = sorted((root / "ers").rglob("labels/*.png"))
    empty = [m for m in masks if m.stat().st_size == 0]
    drawn = [m for m in masks if m.stat().st_size > 0]
    assert empty and drawn and {m.stem.split("_")[1] for m in empty} <= {"h01", "h02", "q02", "q05", "b01"}
    with Image.open(drawn[0]) as mask:
        assert mask.size == (320, 320) and mask.mode == "1"
    assert any(len(m.stem.split("_")) > 2 for m in masks), "one mask name with several codes"
    per_frame = defaultdict(int)
    for m in masks:
        per_frame[(m.parent.parent, m.stem.split("_")[0])] += 1
    assert max(per_frame.values()) >= 2, "one frame with several mask files"
    # every case is drawn; the labels map as the ee24-ce24 target intends
    cases = {"|".join(sorted({c for codes in masks_ for c in codes})) for masks_, _ in ERS_CASES}
    assert cases <= set(labels.values())
    tax = load_taxonomy()
    manifest = pd.DataFrame({"source": "ers", "label": sorted(set(labels.values()) - {""})})
    out = map_labels(manifest, tax, "ee24-ce24").set_index("label")
    assert out.loc["b01|c22", "target_class"] == "bleeding" and out.loc["c22|h01", "target_class"] == "polyp"
    assert out.loc["c20", "target_class"] == "worms" and out.loc["g19", "target_class"] == "bleeding"
    assert out.loc["q02", "excluded"] == "quality flag only: blur" and out.loc["c22|q05", "target_class"] == "polyp"
    assert out.loc["c01", "excluded"].startswith("no finding maps")

    # a blurred frame is blurred: less fine detail than a sharp healthy one
    def detail(rel: str) -> float:
        with Image.open(root / rel) as img:
            return float(np.abs(np.diff(np.asarray(img.convert("L"), np.float32), axis=1)).mean())

    blurred = [rel for rel, lab in labels.items() if lab == "q02"]
    sharp = [rel for rel, lab in labels.items() if lab == "h01"]
    assert max(map(detail, blurred)) < 0.5 * min(map(detail, sharp))


def test_see_ai_layout_boxes_and_labels(demo) -> None:
    root, _, _ = demo
    images = sorted((root / "see_ai/SEE_AI_project_all_images").glob("*.jpg"))
    txts = sorted((root / "see_ai/SEE_AI_project_all_txt").glob("*.txt"))
    assert {t.stem for t in txts} <= {i.stem for i in images}
    multi = 0
    for txt in txts:
        lines = [line.split() for line in txt.read_text().splitlines()]
        assert all(len(f) == 5 and 0 <= int(f[0]) < 12 and all(0 <= float(v) <= 1 for v in f[1:]) for f in lines), txt
        multi += len({f[0] for f in lines}) > 1
    assert multi >= 1, "a box file with several classes"
    assert any(t.stat().st_size == 0 for t in txts), "a normal frame with an empty box file"
    labels = see_ai_labels(root)
    assert set(labels) - {int(t.stem[5:]) for t in txts}, "a normal frame without a box file"
    numbers = sorted(labels)
    runs = np.split(numbers, np.flatnonzero(np.diff(numbers) > 1) + 1)
    assert len(runs) == CONFIG.see_ai_videos and all(len(r) == 10 for r in runs)  # one run of numbers per video
    for run in runs:  # consecutive numbers are near-duplicates
        assert (
            np.median(
                [
                    phash(images[0].parent / f"image{a:05d}.jpg") - phash(images[0].parent / f"image{b:05d}.jpg")
                    for a, b in zip(run, run[1:])
                ]
            )
            <= 12
        )
    out = map_labels(
        pd.DataFrame({"source": "see-ai", "label": sorted(set(labels.values()))}), load_taxonomy(), "ee24-ce24"
    ).set_index("label")
    assert out.loc["erosion|erythema", "target_class"] == "erosion" and out.loc["normal", "target_class"] == "normal"
    assert (out["target_class"] != "").all()


def test_the_study_video_holds_the_planned_frames_and_still_stretches(demo) -> None:
    """An H.264 MP4 of every planned frame in order at 2 fps; where the capsule rests, consecutive
    frames decode to (nearly) the same picture."""
    import av

    from endoctl.synth import STUDY_FPS, STUDY_VIDEO, _study_frames

    root, _, _ = demo
    _, planned = _study_frames(CONFIG.seed)
    with av.open(str(root / STUDY_VIDEO)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == STUDY_FPS
        decoded = [f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(stream)]
    assert len(decoded) == len(planned)
    same = [np.array_equal(a, b) for (_, a), (_, b) in zip(planned, planned[1:])]
    still = np.array([np.abs(a - b).mean() for a, b in zip(decoded, decoded[1:])])
    assert sum(same) >= 4 * 7 and still[same].max() < 1.0 < still[~np.array(same)].min()
    assert np.abs(decoded[0] - planned[0][1]).mean() < 4  # the encoder's loss only

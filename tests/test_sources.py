"""Source adapters: every registered layout on a tiny fixture tree (the real downloads' names, from
``source_trees``), ``--format auto`` detection, the shared walker's edge cases, the file-name rules
(property tests) and, when ``../shared`` is present, real Kvasir-Capsule and CE24 names."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from source_trees import JPEG, PNG, TREES, Tree, ers_tree, kid_flat_tree, misplaced, put, see_ai_tree

from endoctl.sources import DETECTION_ORDER, REGISTRY, ImageRecord, Rejection, Skipped, detect_format, get_adapter
from endoctl.sources.base import MARKS, OUTSIDE, PATH_MAX, RULES, compact, walk
from endoctl.sources.ce24 import aiims_video
from endoctl.sources.kid import is_kid_name
from endoctl.sources.kvasir_capsule import video_id

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def scan(name: str, root: Path, labels: Path | None = None):
    """(records as (rel, label, patient, split), rejections as (path below root, reason), skipped rels)."""
    records, rejections, skipped = [], [], []
    for entry in get_adapter(name, root, labels).scan():
        if isinstance(entry, ImageRecord):
            assert entry.file == root / entry.rel
            assert entry.file.is_file()
            records.append((entry.rel, entry.label, entry.patient_id, entry.official_split))
        elif isinstance(entry, Rejection):
            rejections.append((os.path.relpath(entry.file, root), entry.reason))
        else:
            assert isinstance(entry, Skipped)
            skipped.append(entry.rel)
    return records, rejections, skipped


def skipped_kinds(name: str, root: Path) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for entry in get_adapter(name, root).scan():
        if isinstance(entry, Skipped):
            kinds[entry.why] = kinds.get(entry.why, 0) + 1
    return kinds


def assert_tree(root: Path, tree: Tree) -> None:
    records, rejections, _ = scan(tree.fmt, root)
    assert sorted(records) == sorted(tree.records)
    assert sorted(rejections) == sorted(tree.rejected)
    assert skipped_kinds(tree.fmt, root) == tree.skipped


# ----------------------------------------------------------------------------- registry


def test_registry_has_every_adapter_with_its_rules():
    assert sorted(REGISTRY) == [
        "ce24",
        "crohnipi",
        "csv",
        "ers",
        "folder",
        "gastrovision",
        "hyperkvasir",
        "kid",
        "kvasir-capsule",
        "kvasir-v2",
        "limuc",
        "medfmc-endo",
        "see-ai",
    ]
    for name, cls in REGISTRY.items():
        assert cls.name == name
        for attr in ("layout", "label_rule", "patient_rule", "split_rule"):
            assert isinstance(getattr(cls, attr), str) and getattr(cls, attr)
        assert set(cls.evidence) <= set(RULES)
        assert all(set(mark.split("/")) <= set(MARKS) for mark in cls.evidence.values()), name
        assert isinstance(cls.labels, tuple) and all(isinstance(x, str) and x and "|" not in x for x in cls.labels)
        assert len(set(cls.labels)) == len(cls.labels), name
        text = cls.describe()
        assert text.startswith(f"{name}: {cls.layout}")
        assert cls.label_rule in text and cls.split_rule in text
        assert (name in DETECTION_ORDER) == bool(cls.signature) == (name not in ("folder", "csv"))
    # every adapter of a real dataset marks how its layout is known
    assert all("layout" in cls.evidence for name, cls in REGISTRY.items() if name not in ("folder", "csv"))


def test_label_vocabularies_are_the_contract():
    """The exact label strings the taxonomy must map (one per label a multi-label image joins with '|')."""
    assert REGISTRY["ers"].labels == tuple(
        f"{letter}{k:02d}"
        for letter, n in (("b", 2), ("c", 34), ("g", 70), ("h", 7), ("q", 10))
        for k in range(1, n + 1)
    )
    assert len(REGISTRY["ers"].labels) == 123  # the ERS paper's 123 labels
    assert compact(REGISTRY["ers"].labels) == "b01-b02, c01-c34, g01-g70, h01-h07, q01-q10"
    assert REGISTRY["limuc"].labels == ("Mayo 0", "Mayo 1", "Mayo 2", "Mayo 3")
    assert REGISTRY["medfmc-endo"].labels == ("erosion", "normal", "polyp", "tumor", "ulcer")
    assert REGISTRY["crohnipi"].labels == ("N", "E", "O", "AU", "U3-10", "U>10", "S")
    assert REGISTRY["see-ai"].labels == (
        "angiodysplasia",
        "erosion",
        "stenosis",
        "lymphangiectasia",
        "lymph follicle",
        "SMT",
        "polyp-like",
        "bleeding",
        "diverticulum",
        "erythema",
        "foreign body",
        "vein",
        "normal",
    )
    assert set(REGISTRY["kid"].labels) >= {
        "vascular",
        "inflammatory",
        "polypoid",
        "normal-esophagus",
        "normal-small-bowel",
        "normal-colon",
        "normal-stomach",
        "Angioectasias",
        "active bleeding",
        "angioectasia",
        "normaleso",
        "normalcolon",
        "bleeding",
        "lymphangiectasia",
    }


def test_every_emitted_label_is_declared(tmp_path):
    """What the adapters emit on the fixture trees is in their declared vocabularies."""
    for name, build in TREES.items():
        tree = build(tmp_path / name)
        vocabulary = set(REGISTRY[name].labels)
        for _, label, _, _ in tree.records:
            if label and vocabulary:
                assert set(label.split("|")) <= vocabulary, (name, label)


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(ValueError) as err:
        get_adapter("kvasir-capsul", tmp_path)
    msg = str(err.value)
    assert "'kvasir-capsul'" in msg
    for name in REGISTRY:
        assert name in msg


def test_csv_without_labels_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--format csv needs --labels"):
        get_adapter("csv", tmp_path)


# ----------------------------------------------------------------------------- ce24


def _ce24_tree(root: Path) -> None:
    put(
        root,
        "training/Angioectasia/KID/angioectasia-P0-1.jpg",
        "training/Angioectasia/KID/angioectasia-P12-7.jpg",
        "training/Normal/KID/normaleso53.jpg",
        "training/Normal/KVASIR/3ada4222967f421d_30.jpg",
        "training/Normal/Kvasir/8a00709108cd4e2b_8660.jpg",
        "training/Normal/SEE-AI/image04290.jpg",
        "training/Worms/AIIMS/worm1_1425.jpg",
        "validation/Erosion/KVASIR/dac1e27f7e4d4ef5_9897.jpg",
        "testing/Images/283qQRGfoB.jpg",
        "testing/Images/3aHa9yEpJU.jpg",
        "testing/Images/zzNotInTruth.jpg",
        # misplaced: too shallow, too deep, wrong top folder, test image outside Images/
        "training/Normal/stray.jpg",
        "training/Normal/KVASIR/extra/3ada4222967f421d_31.jpg",
        "train/Normal/KVASIR/3ada4222967f421d_32.jpg",
        "testing/loose.jpg",
    )


def _truth_xlsx(path: Path) -> None:
    prefix = "Test set for us, with excel sheet and seperated/"
    pd.DataFrame(
        {
            "image_path": [prefix + "Angioectasia\\283qQRGfoB.jpg", prefix + "Normal\\3aHa9yEpJU.jpg"],
            "class_label": ["Angioectasia", "Normal"],
        }
    ).to_excel(path, index=False)


CE24_TRAIN_VAL = [  # KID's -P<n>- is a bleeding-potential grade, not a patient; AIIMS names carry the video
    ("training/Angioectasia/KID/angioectasia-P0-1.jpg", "Angioectasia", "", "training"),
    ("training/Angioectasia/KID/angioectasia-P12-7.jpg", "Angioectasia", "", "training"),
    ("training/Normal/KID/normaleso53.jpg", "Normal", "", "training"),
    ("training/Normal/KVASIR/3ada4222967f421d_30.jpg", "Normal", "KVASIR/3ada4222967f421d", "training"),
    ("training/Normal/Kvasir/8a00709108cd4e2b_8660.jpg", "Normal", "KVASIR/8a00709108cd4e2b", "training"),
    ("training/Normal/SEE-AI/image04290.jpg", "Normal", "", "training"),
    ("training/Worms/AIIMS/worm1_1425.jpg", "Worms", "AIIMS/worm1", "training"),
    ("validation/Erosion/KVASIR/dac1e27f7e4d4ef5_9897.jpg", "Erosion", "KVASIR/dac1e27f7e4d4ef5", "validation"),
]
CE24_MISPLACED = [
    "testing/loose.jpg",
    "train/Normal/KVASIR/3ada4222967f421d_32.jpg",
    "training/Normal/KVASIR/extra/3ada4222967f421d_31.jpg",
    "training/Normal/stray.jpg",
]


@pytest.mark.parametrize("where", ["root", "testing"])
def test_ce24_finds_truth_xlsx_in_root_or_testing(tmp_path, where):
    _ce24_tree(tmp_path)
    truth = (tmp_path if where == "root" else tmp_path / "testing") / "test_data.xlsx"
    _truth_xlsx(truth)
    pd.DataFrame({"image_path": ["x"], "Dataset": ["KID"]}).to_excel(tmp_path / "training_data.xlsx", index=False)
    records, rejections, skipped = scan("ce24", tmp_path)
    test = [
        ("testing/Images/283qQRGfoB.jpg", "Angioectasia", "", "test"),
        ("testing/Images/3aHa9yEpJU.jpg", "Normal", "", "test"),
        ("testing/Images/zzNotInTruth.jpg", "", "", "test"),
    ]
    assert sorted(records) == sorted(CE24_TRAIN_VAL + test)
    assert sorted(rejections) == [(rel, misplaced("ce24")) for rel in CE24_MISPLACED]
    assert sorted(skipped) == sorted([truth.relative_to(tmp_path).as_posix(), "training_data.xlsx"])


def test_ce24_without_truth_leaves_test_labels_empty(tmp_path):
    _ce24_tree(tmp_path)
    records, _, _ = scan("ce24", tmp_path)
    assert [r for r in records if r[3] == "test"] == [
        ("testing/Images/283qQRGfoB.jpg", "", "", "test"),
        ("testing/Images/3aHa9yEpJU.jpg", "", "", "test"),
        ("testing/Images/zzNotInTruth.jpg", "", "", "test"),
    ]
    assert [r for r in records if r[3] != "test"] == CE24_TRAIN_VAL


def test_ce24_explicit_labels_beat_discovery(tmp_path):
    _ce24_tree(tmp_path)
    _truth_xlsx(tmp_path / "test_data.xlsx")  # would be found, but --labels wins
    explicit = tmp_path.parent / f"{tmp_path.name}-truth.csv"
    explicit.write_text("image_path,class_label\nsomewhere\\283qQRGfoB.jpg,Bleeding\n")
    records, _, _ = scan("ce24", tmp_path, explicit)
    labels = {rel: label for rel, label, _, split in records if split == "test"}
    assert labels == {
        "testing/Images/283qQRGfoB.jpg": "Bleeding",
        "testing/Images/3aHa9yEpJU.jpg": "",
        "testing/Images/zzNotInTruth.jpg": "",
    }


# ----------------------------------------------------------------------------- kvasir-capsule

KC_META = (
    "filename;video_id;frame_number;finding_category;finding_class;x1;y1;x2;y2;x3;y3;x4;y4\n"
    "0728084c8da942d9_22803.jpg;0728084c8da942d9;22803;Luminal;Normal clean mucosa;;;;;;;\n"
    # metadata's video id wins over the file-name prefix
    "renamed.jpg;feedfacefeedface;7;Luminal;Blood - fresh;1;2;3;4;5;6;7;8\n"
)


def _kc_tree(root: Path) -> None:
    put(
        root,
        "labelled_images/Normal clean mucosa/0728084c8da942d9_22803.jpg",
        "labelled_images/Normal clean mucosa/0728084c8da942d9_22804.jpg",
        "labelled_images/Blood - fresh/renamed.jpg",
        "labelled_images/Blood - fresh/not-a-frame-name.jpg",
        "unlabelled_images/b1c2d3e4f5a6b7c8_15.jpg",
        "labelled_images/stray.jpg",
        "labelled_images/Ulcer/sub/0728084c8da942d9_1.jpg",
        "other/0728084c8da942d9_2.jpg",
        "0728084c8da942d9_3.jpg",
    )


NCM = "labelled_images/Normal clean mucosa/0728084c8da942d9"
KC_MISPLACED = [
    "0728084c8da942d9_3.jpg",
    "labelled_images/Ulcer/sub/0728084c8da942d9_1.jpg",
    "labelled_images/stray.jpg",
    "other/0728084c8da942d9_2.jpg",
]


def test_kvasir_capsule_from_file_names_only(tmp_path):
    _kc_tree(tmp_path)
    records, rejections, skipped = scan("kvasir-capsule", tmp_path)
    assert records == [
        ("labelled_images/Blood - fresh/not-a-frame-name.jpg", "Blood - fresh", "", ""),
        ("labelled_images/Blood - fresh/renamed.jpg", "Blood - fresh", "", ""),
        (f"{NCM}_22803.jpg", "Normal clean mucosa", "0728084c8da942d9", ""),
        (f"{NCM}_22804.jpg", "Normal clean mucosa", "0728084c8da942d9", ""),
        ("unlabelled_images/b1c2d3e4f5a6b7c8_15.jpg", "", "b1c2d3e4f5a6b7c8", ""),
    ]
    assert sorted(rejections) == [(rel, misplaced("kvasir-capsule")) for rel in KC_MISPLACED]
    assert skipped == []


def test_kvasir_capsule_uses_metadata_and_official_splits(tmp_path):
    _kc_tree(tmp_path)
    (tmp_path / "metadata.csv").write_text(KC_META)
    (tmp_path / "official_split_0.csv").write_text("filename,label\n0728084c8da942d9_22803.jpg,Normal\n")
    (tmp_path / "official_split_1.csv").write_text(
        "filename,label\n0728084c8da942d9_22804.jpg,Normal\nrenamed.jpg,Blood\n"
    )
    records, rejections, skipped = scan("kvasir-capsule", tmp_path)
    assert records == [
        ("labelled_images/Blood - fresh/not-a-frame-name.jpg", "Blood - fresh", "", ""),
        ("labelled_images/Blood - fresh/renamed.jpg", "Blood - fresh", "feedfacefeedface", "split_1"),
        (f"{NCM}_22803.jpg", "Normal clean mucosa", "0728084c8da942d9", "split_0"),
        (f"{NCM}_22804.jpg", "Normal clean mucosa", "0728084c8da942d9", "split_1"),
        ("unlabelled_images/b1c2d3e4f5a6b7c8_15.jpg", "", "b1c2d3e4f5a6b7c8", ""),
    ]
    assert len(rejections) == 4
    assert skipped == ["metadata.csv", "official_split_0.csv", "official_split_1.csv"]


def test_kvasir_capsule_labels_elsewhere_and_split_files_beside_them(tmp_path):
    root, meta_dir = tmp_path / "src", tmp_path / "meta"
    _kc_tree(root)
    meta_dir.mkdir()
    (meta_dir / "metadata.csv").write_text(KC_META)
    (meta_dir / "official_split_0.csv").write_text("filename,label\nrenamed.jpg,Blood\n")
    records, _, skipped = scan("kvasir-capsule", root, meta_dir / "metadata.csv")
    assert ("labelled_images/Blood - fresh/renamed.jpg", "Blood - fresh", "feedfacefeedface", "split_0") in records
    assert skipped == []


def test_kvasir_capsule_bad_labels_are_refused(tmp_path):
    _kc_tree(tmp_path)
    with pytest.raises(FileNotFoundError, match="metadata"):
        get_adapter("kvasir-capsule", tmp_path, tmp_path / "no-such-metadata.csv")
    comma = tmp_path / "comma.csv"
    comma.write_text("filename,video_id\na.jpg,abc\n")
    with pytest.raises(ValueError, match="missing column"):
        get_adapter("kvasir-capsule", tmp_path, comma)


# ----------------------------------------------------------------------------- the real layouts


@pytest.mark.parametrize("name", sorted(TREES))
def test_real_layout_names_labels_patients_splits_and_rejections(tmp_path, name):
    assert_tree(tmp_path, TREES[name](tmp_path))


def test_ers_patients_one_level_down(tmp_path):
    """A published file list shows the patients under precise-samples/: the same records, prefixed."""
    assert_tree(tmp_path, ers_tree(tmp_path, prefix="precise-samples/"))


def test_see_ai_release_nested_as_the_archive_unpacks(tmp_path):
    assert_tree(tmp_path, see_ai_tree(tmp_path, nested=True))


def test_kid_flat_names_as_ce24_ships_them(tmp_path):
    assert_tree(tmp_path, kid_flat_tree(tmp_path))


def test_kid_grade_is_never_a_patient(tmp_path):
    put(tmp_path, "Angioectasias/angioectasia-P0-2.png", "Angioectasias/angioectasia-P2-9.png", data=PNG)
    records, _, _ = scan("kid", tmp_path)
    assert [patient for _, _, patient, _ in records] == ["", ""]
    assert "patient" not in REGISTRY["kid"].label_rule and "grade" in REGISTRY["kid"].patient_rule


def test_medfmc_labels_folder_and_bad_tables(tmp_path):
    root, labels = tmp_path / "src", tmp_path / "labels"
    put(root, "images/13333_2021.11_0003_55200215.png", "images/13333_2021.09_0001_51688669.png", data=PNG)
    labels.mkdir()
    (labels / "endo_val.csv").write_text("img_id,ulcer,erosion,polyp,tumor\n13333_2021.11_0003_55200215.png,1,1,0,0\n")
    records, rejections, _ = scan("medfmc-endo", root, labels / "endo_val.csv")  # a file means its folder
    assert records == [("images/13333_2021.11_0003_55200215.png", "erosion|ulcer", "13333_2021.11_0003", "val")]
    assert rejections == [("images/13333_2021.09_0001_51688669.png", "not listed in endo_val.csv")]
    (labels / "endo_val.csv").write_text("img_id,ulcer,erosion,polyp\nx.png,1,1,0\n")
    with pytest.raises(
        ValueError,
        match=r"endo_val.csv: expected columns img_id and ulcer, erosion, polyp, tumor; "
        r"missing \['tumor'\]",
    ):
        get_adapter("medfmc-endo", root, labels)
    (labels / "endo_val.csv").unlink()
    with pytest.raises(FileNotFoundError, match="no endo_train.csv"):
        get_adapter("medfmc-endo", root, labels)
    records, rejections, _ = scan("medfmc-endo", root)  # no label file anywhere: every image says so
    assert records == [] and {r for _, r in rejections} == {
        "no endo_train.csv, endo_val.csv, trainval.txt or test_WithLabel.txt beside this images folder"
    }


def test_medfmc_image_in_two_split_files_is_rejected(tmp_path):
    put(tmp_path, "csvs/images/13333_2021.11_0003_1.png", "lists/images/13333_2021.11_0003_2.png", data=PNG)
    for name in ("endo_train.csv", "endo_val.csv"):
        (tmp_path / "csvs" / name).write_text("img_id,ulcer,erosion,polyp,tumor\n13333_2021.11_0003_1.png,0,0,0,0\n")
    for name in ("trainval.txt", "test_WithLabel.txt"):
        (tmp_path / "lists" / name).write_text("13333_2021.11_0003_2.png 0 0 1 0\n")
    assert sorted(scan("medfmc-endo", tmp_path)[1]) == [
        ("csvs/images/13333_2021.11_0003_1.png", "listed in both endo_train.csv and endo_val.csv"),
        ("lists/images/13333_2021.11_0003_2.png", "listed in both trainval.txt and test_WithLabel.txt"),
    ]


def test_crohnipi_description_elsewhere_missing_or_wrong(tmp_path):
    root = tmp_path / "DataCrohnIPI_2021_03"
    from source_trees import crohnipi_tree

    tree = crohnipi_tree(root / "DataCrohnIPI")  # one folder below SRC, as the archive unpacks
    records, _, _ = scan("crohnipi", root)
    assert sorted(records) == sorted((f"DataCrohnIPI/{rel}", *rest) for rel, *rest in tree.records)
    with pytest.raises(FileNotFoundError, match="CrohnIPI_description.csv not found"):
        get_adapter("crohnipi", tmp_path / "nowhere")
    bad = tmp_path / "bad.csv"
    bad.write_bytes("Frame name;Étiquette\n00001.jpg;N\n".encode("iso-8859-1"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['label', 'fold'\]"):
        get_adapter("crohnipi", root / "DataCrohnIPI", bad)


def test_see_ai_release_refuses_a_label_csv_and_reads_a_box_folder(tmp_path):
    root = tmp_path / "src"
    see_ai_tree(root)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nimage00001.jpg,erosion\n")
    with pytest.raises(ValueError, match="--labels must be a folder of box files"):
        get_adapter("see-ai", root, labels)
    boxes = tmp_path / "boxes"
    put(boxes, "image00002.txt", data=b"7 0.5 0.5 0.1 0.1\n")
    records, _, _ = scan("see-ai", root, boxes)
    labels_of = {rel.rsplit("/", 1)[-1]: label for rel, label, _, _ in records}
    assert labels_of["image00002.jpg"] == "bleeding" and labels_of["image00001.jpg"] == "normal"
    with pytest.raises(ValueError, match="has no SEE_AI_project_all_images"):
        get_adapter("see-ai", tmp_path / "empty", boxes)
    for txt in (root / "SEE_AI_project_all_txt").iterdir():
        txt.unlink()
    (root / "SEE_AI_project_all_txt").rmdir()  # without box files every image would read as normal: refused
    with pytest.raises(FileNotFoundError, match="no SEE_AI_project_all_txt/ folder of box files"):
        get_adapter("see-ai", root)


def test_hyperkvasir_split_files_five_fold_and_labels_folder(tmp_path):
    from source_trees import HK_POLYP, HK_ZLINE, hyperkvasir_tree

    hyperkvasir_tree(tmp_path)
    (tmp_path / "official_splits" / "2_fold_split.csv").rename(tmp_path / "elsewhere.csv")
    put(
        tmp_path,
        "official_splits/5_fold_split.csv",
        data=(b"file-name;class-name;split-index\n4bf58f1c-8233-41fc-9614-344e6d0fc351.jpg;polyp;4\n"),
    )
    splits = {rel: split for rel, _, _, split in scan("hyperkvasir", tmp_path)[0]}
    assert splits[HK_POLYP] == "fold_4" and splits[HK_ZLINE] == ""
    folder = tmp_path / "splits"
    folder.mkdir()
    (tmp_path / "elsewhere.csv").rename(folder / "2_fold_split.csv")
    splits = {rel: split for rel, _, _, split in scan("hyperkvasir", tmp_path, folder)[0]}
    assert splits[HK_POLYP] == "split_1" and splits[HK_ZLINE] == "split_0"
    (folder / "2_fold_split.csv").write_text("file;split\nx.jpg;0\n")
    with pytest.raises(ValueError, match="missing column"):
        get_adapter("hyperkvasir", tmp_path, folder)


# ----------------------------------------------------------------------------- --format auto


@pytest.mark.parametrize("name", sorted(TREES))
def test_auto_detects_every_real_layout(tmp_path, name):
    TREES[name](tmp_path)
    assert detect_format(tmp_path)[0] == name


def test_auto_detects_the_other_layouts(tmp_path):
    cases = {
        "ers-precise": (lambda r: ers_tree(r, "precise-samples/"), "ers"),
        "see-ai-nested": (lambda r: see_ai_tree(r, nested=True), "see-ai"),
        "kid-flat": (kid_flat_tree, "kid"),
        "kid-2-in-a-folder": (lambda r: put(r, "kid-dataset-2/vascular/vascular001.png", data=PNG), "kid"),
        "see-ai-classes": (lambda r: put(r, "polyp-like/image00001.jpg", "erosion/image00002.jpg"), "see-ai"),
        "limuc-patient-tree": (lambda r: put(r, "17/Mayo 1/UC_patient_17_1.bmp"), "limuc"),
        "ce24-test-only": (lambda r: put(r, "testing/Images/283qQRGfoB.jpg"), "ce24"),
        "gastrovision": (lambda r: put(r, "Colon polyps/a.jpg", "Esophagitis/b.jpg"), "gastrovision"),
        "kvasir-v2": (lambda r: put(r, "dyed-lifted-polyps/a.jpg", "normal-z-line/b.jpg"), "kvasir-v2"),
    }
    for case, (build, name) in cases.items():
        build(tmp_path / case)
        found, evidence = detect_format(tmp_path / case)
        assert (found, bool(evidence)) == (name, True), case


def test_auto_refuses_an_unknown_folder_listing_what_it_looked_for(tmp_path):
    put(tmp_path, "photos/a.jpg", "b.jpg")
    with pytest.raises(ValueError) as err:
        detect_format(tmp_path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--format auto: no known layout in {tmp_path}")
    for name in DETECTION_ORDER:
        assert f"{name}: {REGISTRY[name].signature}" in message


# ----------------------------------------------------------------------------- see-ai: the other layouts


def test_see_ai_class_folders(tmp_path):
    put(tmp_path, "erosion/image00001.jpg", "normal/image00002.jpg", "image00003.jpg", "a/b/image00004.jpg")
    records, rejections, _ = scan("see-ai", tmp_path)
    assert records == [
        ("erosion/image00001.jpg", "erosion", "", ""),
        ("normal/image00002.jpg", "normal", "", ""),
    ]
    assert sorted(rejections) == [
        ("a/b/image00004.jpg", misplaced("see-ai")),
        ("image00003.jpg", misplaced("see-ai")),
    ]


def test_see_ai_flat_with_multi_label_csv(tmp_path):
    root = tmp_path / "src"
    put(root, "image00001.jpg", "image00002.jpg", "image00003.jpg", "image00009.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "file,label\nimage00001.jpg,erosion\nimage00001.jpg,angiodysplasia\nimage00001.jpg,erosion\n"
        "image00002.jpg,normal\nimage00003.jpg,\nimage00004.jpg,ulcer\n"
    )
    records, rejections, _ = scan("see-ai", root, labels)
    assert records == [
        ("image00001.jpg", "angiodysplasia|erosion", "", ""),
        ("image00002.jpg", "normal", "", ""),
        ("image00003.jpg", "", "", ""),
    ]
    assert rejections == [
        ("image00009.jpg", "not listed in label file labels.csv"),
        ("image00004.jpg", "listed in labels.csv but not found"),
    ]


# ----------------------------------------------------------------------------- hyperkvasir


def test_hyperkvasir(tmp_path):
    put(
        tmp_path,
        "labeled-images/lower-gi-tract/pathological-findings/polyps/0a1b.jpg",
        "labeled-images/upper-gi-tract/anatomical-landmarks/z-line/0c2d.jpg",
        "labeled-images/lower-gi-tract/quality-of-mucosal-views/bbps-2-3/0e3f.jpg",
        "unlabeled-images/images/1f4a.jpg",
        "labeled-images/lower-gi-tract/pathological-findings/9999.jpg",
        "labeled-images/lower-gi-tract/pathological-findings/polyps/extra/8888.jpg",
        "segmented-images/images/7777.jpg",
    )
    put(tmp_path, "labeled-images/image-labels.csv", data=b"Video file,Finding\n")
    records, rejections, skipped = scan("hyperkvasir", tmp_path)
    assert records == [
        ("labeled-images/lower-gi-tract/pathological-findings/polyps/0a1b.jpg", "polyps", "", ""),
        ("labeled-images/lower-gi-tract/quality-of-mucosal-views/bbps-2-3/0e3f.jpg", "bbps-2-3", "", ""),
        ("labeled-images/upper-gi-tract/anatomical-landmarks/z-line/0c2d.jpg", "z-line", "", ""),
        ("unlabeled-images/images/1f4a.jpg", "", "", ""),
    ]
    assert sorted(rejections) == [
        ("labeled-images/lower-gi-tract/pathological-findings/9999.jpg", misplaced("hyperkvasir")),
        ("labeled-images/lower-gi-tract/pathological-findings/polyps/extra/8888.jpg", misplaced("hyperkvasir")),
        ("segmented-images/images/7777.jpg", misplaced("hyperkvasir")),
    ]
    assert skipped == ["labeled-images/image-labels.csv"]


# ----------------------------------------------------------------------------- folder, kvasir-v2


@pytest.mark.parametrize("name", ["folder", "kvasir-v2"])
def test_class_folder_layouts(tmp_path, name):
    put(
        tmp_path,
        "dyed-lifted-polyps/0a1b2c3d-uuid.jpg",
        "normal-cecum/0e4f.JPG",
        "esophagitis/x.jpeg",
        "top.jpg",
        "esophagitis/deep/y.jpg",
    )
    records, rejections, _ = scan(name, tmp_path)
    assert records == [
        ("dyed-lifted-polyps/0a1b2c3d-uuid.jpg", "dyed-lifted-polyps", "", ""),
        ("esophagitis/x.jpeg", "esophagitis", "", ""),
        ("normal-cecum/0e4f.JPG", "normal-cecum", "", ""),
    ]
    assert sorted(rejections) == [("esophagitis/deep/y.jpg", misplaced(name)), ("top.jpg", misplaced(name))]


# ----------------------------------------------------------------------------- gastrovision

GV_IMAGES = (
    "Colon polyps/0f886d51-8576-4208-a850-98aefb696241.jpg",
    "Small bowel_terminal ileum/142df188-9742-4bce-a38a-792d312c65bf.jpg",
    "Normal mucosa and vascular pattern in the large bowel/2b3c.jpg",
    "Esophagitis/3c4d.jpg",
)


def _gv_splits(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.csv").write_text("Filename,Class\n0f886d51-8576-4208-a850-98aefb696241.jpg,Colon polyps\n")
    (folder / "validate.csv").write_text(
        "Filename,Class\n142df188-9742-4bce-a38a-792d312c65bf.jpg,Small bowel_terminal ileum\n"
    )
    (folder / "test.csv").write_text("Filename,Class\n2b3c.jpg,Normal mucosa and vascular pattern in the large bowel\n")


GV_RECORDS = [
    ("Colon polyps/0f886d51-8576-4208-a850-98aefb696241.jpg", "Colon polyps", "", "train"),
    ("Esophagitis/3c4d.jpg", "Esophagitis", "", ""),
    (
        "Normal mucosa and vascular pattern in the large bowel/2b3c.jpg",
        "Normal mucosa and vascular pattern in the large bowel",
        "",
        "test",
    ),
    (
        "Small bowel_terminal ileum/142df188-9742-4bce-a38a-792d312c65bf.jpg",
        "Small bowel_terminal ileum",
        "",
        "validate",
    ),
]


def test_gastrovision_split_csvs_in_root(tmp_path):
    put(tmp_path, *GV_IMAGES, "stray.jpg")
    _gv_splits(tmp_path)
    records, rejections, skipped = scan("gastrovision", tmp_path)
    assert records == GV_RECORDS
    assert rejections == [("stray.jpg", misplaced("gastrovision"))]
    assert skipped == ["test.csv", "train.csv", "validate.csv"]


def test_gastrovision_without_split_csvs(tmp_path):
    put(tmp_path, *GV_IMAGES)
    records, _, _ = scan("gastrovision", tmp_path)
    assert records == [(rel, label, "", "") for rel, label, _, _ in GV_RECORDS]


def test_gastrovision_split_csvs_from_labels(tmp_path):
    root = tmp_path / "src"
    put(root, *GV_IMAGES)
    _gv_splits(tmp_path / "splits")
    assert scan("gastrovision", root, tmp_path / "splits")[0] == GV_RECORDS
    # pointing at one of the split files means "the folder it is in"
    assert scan("gastrovision", root, tmp_path / "splits" / "train.csv")[0] == GV_RECORDS
    with pytest.raises(FileNotFoundError):
        get_adapter("gastrovision", root, tmp_path / "no-such-folder")


# ----------------------------------------------------------------------------- csv


def test_csv_labels(tmp_path):
    root = tmp_path / "src"
    put(root, "a/one.jpg", "a/two.png", "b/three.jpg", "unlisted.jpg", "by-name/four.jpg")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "path,label,patient_id\n"
        "a/one.jpg,polyp,p1\n"
        "./a/one.jpg,ulcer,\n"  # same image again, other label: both kept, sorted
        "a\\two.png,normal,p2\n"  # Windows separators are normalised
        "b/three.jpg,normal,\n"
        "four.jpg,erosion,p4\n"  # matched by file name
        "missing/five.jpg,polyp,p5\n"
    )
    records, rejections, _ = scan("csv", root, labels)
    assert records == [
        ("a/one.jpg", "polyp|ulcer", "p1", ""),
        ("a/two.png", "normal", "p2", ""),
        ("b/three.jpg", "normal", "", ""),
        ("by-name/four.jpg", "erosion", "p4", ""),
    ]
    assert rejections == [
        ("unlisted.jpg", "not listed in label file labels.csv"),
        ("missing/five.jpg", "listed in labels.csv but not found"),
    ]


def test_csv_labels_semicolon_xlsx_and_missing_column(tmp_path):
    root = tmp_path / "src"
    put(root, "x.jpg", "y.jpg")
    semi = tmp_path / "labels.csv"
    semi.write_text("filename;class;video_id\nx.jpg;Erosion;v1\ny.jpg;Normal;v2\n")
    assert scan("csv", root, semi)[0] == [("x.jpg", "Erosion", "v1", ""), ("y.jpg", "Normal", "v2", "")]
    xlsx = tmp_path / "labels.xlsx"
    pd.DataFrame({"image_path": ["x.jpg", "y.jpg"], "class_label": ["Ulcer", "Worms"]}).to_excel(xlsx, index=False)
    assert scan("csv", root, xlsx)[0] == [("x.jpg", "Ulcer", "", ""), ("y.jpg", "Worms", "", "")]
    bad = tmp_path / "bad.csv"
    bad.write_text("name,label\nx.jpg,Ulcer\n")
    with pytest.raises(ValueError, match="no column named any of"):
        get_adapter("csv", root, bad)


# ----------------------------------------------------------------------------- walker


def _walk(root: Path):
    out = []
    for item in walk(root):
        if isinstance(item, Rejection):
            out.append(("rejected", os.path.relpath(item.file, root), item.reason))
        elif isinstance(item, Skipped):
            out.append(("skipped", item.rel))
        else:
            assert item.parts == tuple(item.rel.split("/")) and item.file == root / item.rel
            out.append(("file", item.rel))
    return out


def test_walker_sorts_skips_metadata_and_rejects_other_types(tmp_path):
    put(tmp_path, "b/2.jpg", "b/1.PNG", "a/z.tiff", "c.webp")
    for rel in (".DS_Store", "b/.hidden.jpg", "README", "readme.txt", "notes.md", "meta.json", "t.xlsx", "s.tsv"):
        put(tmp_path, rel, data=b"x")
    put(tmp_path, ".git/objects/ab", data=b"x")
    put(tmp_path, "b/movie.mp4", "b/archive.ZIP", "LICENSE", data=b"x")
    assert _walk(tmp_path) == [
        ("skipped", ".DS_Store"),
        ("skipped", ".git"),
        ("rejected", "LICENSE", "unsupported file type 'LICENSE'"),
        ("skipped", "README"),
        ("file", "a/z.tiff"),
        ("skipped", "b/.hidden.jpg"),
        ("file", "b/1.PNG"),
        ("file", "b/2.jpg"),
        ("rejected", "b/archive.ZIP", "unsupported file type '.zip'"),
        ("rejected", "b/movie.mp4", "unsupported file type '.mp4'"),
        ("file", "c.webp"),
        ("skipped", "meta.json"),
        ("skipped", "notes.md"),
        ("skipped", "readme.txt"),
        ("skipped", "s.tsv"),
        ("skipped", "t.xlsx"),
    ]


def test_walker_rejects_non_utf8_names(tmp_path):
    put(tmp_path, "good/ok.jpg")
    fd = os.open(os.fsencode(str(tmp_path)) + b"/bad\xff.jpg", os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, JPEG)
    os.close(fd)
    os.mkdir(os.fsencode(str(tmp_path)) + b"/dir\xfe")
    items = list(walk(tmp_path))
    rejected = [i for i in items if isinstance(i, Rejection)]
    assert [(Path(r.file).name, r.reason) for r in rejected] == [
        ("bad\\xff.jpg", "file name is not valid UTF-8"),
        ("dir\\xfe", "file name is not valid UTF-8"),
    ]
    for r in rejected:
        r.file.encode("utf-8")  # printable: no surrogates left
    # every adapter passes the rejection through and still finds the good image
    records, rejections, _ = scan("folder", tmp_path)
    assert records == [("good/ok.jpg", "good", "", "")]
    assert [reason for _, reason in rejections] == ["file name is not valid UTF-8"] * 2


def test_walker_symlinks(tmp_path):
    put(tmp_path, "real/a.jpg")
    os.symlink(tmp_path / "real" / "a.jpg", tmp_path / "real" / "b.jpg")  # file link: followed
    os.symlink(tmp_path, tmp_path / "real" / "loop")  # folder link back to an ancestor
    os.symlink(tmp_path / "real" / "self.jpg", tmp_path / "real" / "self.jpg")  # link to itself
    os.symlink(tmp_path / "real" / "ping.jpg", tmp_path / "real" / "pong.jpg")
    os.symlink(tmp_path / "real" / "pong.jpg", tmp_path / "real" / "ping.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "real" / "broken.jpg")
    out = _walk(tmp_path)
    assert out == [
        ("file", "real/a.jpg"),
        ("file", "real/b.jpg"),
        ("rejected", "real/broken.jpg", "broken symlink"),
        ("rejected", "real/loop", "symlink loop: folder already visited (a link back to it)"),
        ("rejected", "real/ping.jpg", "symlink loop"),
        ("rejected", "real/pong.jpg", "symlink loop"),
        ("rejected", "real/self.jpg", "symlink loop"),
    ]


def test_walker_does_not_leave_the_root_through_symlinks(tmp_path):
    """A folder link out of the root is not entered (skipped, counted); a file link out is rejected, unread."""
    outside, root = tmp_path / "elsewhere", tmp_path / "src"
    put(outside, "x.jpg", "sub/y.jpg")
    put(root, "Polyp/a.jpg")
    os.symlink(outside, root / "Normal")
    os.symlink(outside / "x.jpg", root / "Polyp" / "x.jpg")
    os.symlink("../../elsewhere/sub", root / "Polyp" / "sub")  # relative, still out
    os.symlink(root, outside / "back")
    os.symlink(root / "Polyp", tmp_path / "linked_root")  # the root itself a link: its real path is what counts
    records, rejections, skipped = scan("folder", root)
    assert records == [("Polyp/a.jpg", "Polyp", "", "")]
    assert rejections == [("Polyp/x.jpg", "symlink to a file outside the source folder: not followed")]
    assert skipped == ["Normal", "Polyp/sub"]
    assert [e.why for e in walk(root) if isinstance(e, Skipped)] == [OUTSIDE, OUTSIDE]
    assert _walk(tmp_path / "linked_root") == [
        ("file", "a.jpg"),
        ("skipped", "sub"),
        ("rejected", "x.jpg", "symlink to a file outside the source folder: not followed"),
    ]


def test_walker_rejects_a_path_longer_than_the_system_takes(tmp_path):
    """Folders nested past PATH_MAX (made relative to open folders): the first entry too long to stat is
    rejected with its length, the rest of the walk goes on."""
    put(tmp_path, "a/ok.jpg")
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(PATH_MAX // 200 + 1):
        os.mkdir("d" * 200, dir_fd=fd)
        fd, parent = os.open("d" * 200, os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    image = os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(image, JPEG)
    os.close(image)
    os.close(fd)
    out = _walk(tmp_path)
    assert out[0] == ("file", "a/ok.jpg") and len(out) == 2
    kind, rel, reason = out[1]
    assert kind == "rejected" and len(os.fsencode(str(tmp_path / rel))) > PATH_MAX
    assert reason.startswith("path too long (") and "the system reads at most 4096): not read" in reason


def test_walker_rejects_special_files_and_missing_root(tmp_path):
    os.mkfifo(tmp_path / "pipe.jpg")
    assert _walk(tmp_path) == [("rejected", "pipe.jpg", "not a regular file")]
    gone = tmp_path / "gone"
    [rej] = list(walk(gone))
    assert rej.reason.startswith("unreadable folder")


def test_walker_rejects_unreadable_folder(tmp_path, monkeypatch):
    put(tmp_path, "locked/a.jpg", "open/b.jpg")
    real_listdir = os.listdir

    def listdir(path):  # chmod 0 does not stop root, so refuse the folder the way the kernel would
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_listdir(path)

    monkeypatch.setattr("endoctl.sources.base.os.listdir", listdir)
    assert _walk(tmp_path) == [
        ("rejected", "locked", "unreadable folder: Permission denied"),
        ("file", "open/b.jpg"),
    ]


# ----------------------------------------------------------------------------- file-name rules (hypothesis)

HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=32)
FRAME = st.integers(min_value=0, max_value=10**9)
VALID_FRAME_NAME = re.compile(r"[0-9a-fA-F]+_[0-9]+")


@given(video=HEX, frame=FRAME)
def test_video_id_parses_every_valid_frame_name(video, frame):
    assert video_id(f"{video}_{frame}") == video


@given(st.text(max_size=40))
@settings(max_examples=300)
def test_video_id_is_empty_for_other_names(stem):
    if VALID_FRAME_NAME.fullmatch(stem):
        assert video_id(stem) == stem.split("_")[0]
    else:
        assert video_id(stem) == ""


@given(st.text(alphabet="ghijklmnopqrstuvwxyz_- .0123456789", max_size=20).filter(lambda s: "_" in s or "\n" not in s))
def test_video_id_rejects_non_hex_prefixes_and_trailing_newline(stem):
    assert video_id(stem + "\n") == ""
    assert video_id(f"{stem}x_12") == ""


@given(kind=st.sampled_from(["ulcer", "worm"]), video=st.integers(0, 10**3), frame=st.integers(0, 10**6))
def test_aiims_video_parses_every_frame_name(kind, video, frame):
    assert aiims_video(f"{kind}{video}_{frame}") == f"{kind}{video}"


AIIMS_RULE = re.compile(r"(?:ulcer|worm)[0-9]+_[0-9]+")


@given(st.text(max_size=30))
@settings(max_examples=300)
def test_aiims_video_is_empty_for_other_names(stem):
    assert aiims_video(stem) == (stem.rsplit("_", 1)[0] if AIIMS_RULE.fullmatch(stem) else "")


@given(
    grade=st.integers(0, 2),
    k=st.integers(1, 99),
    stem=st.sampled_from(["normaleso", "normalcolon", "polypoid"]),
    n=st.integers(1, 999),
)
def test_kid_names_are_recognised(grade, k, stem, n):
    assert is_kid_name(f"angioectasia-P{grade}-{k}") and is_kid_name(f"{stem}{n}") and is_kid_name(f"polypoid{n}~0")
    for other in (f"{stem}", f"image{n:05d}", f"{n}", f"{stem}-{n}", f"UC_patient_{n}_{k}", f"ulcer{grade}_{n}"):
        assert not is_kid_name(other)


# ----------------------------------------------------------------------------- real Kvasir-Capsule names


@pytest.mark.skipif(
    not (SHARED / "kvasir_capsule" / "official_split_0.csv").is_file(),
    reason=f"real reference data not present: {SHARED / 'kvasir_capsule'} (see shared/README.md)",
)
def test_kvasir_capsule_real_names_metadata_and_official_split(tmp_path):
    kc = SHARED / "kvasir_capsule"
    meta = pd.read_csv(kc / "metadata.csv", sep=";", dtype=str, keep_default_na=False)
    folds = {f"split_{i}": set(pd.read_csv(kc / f"official_split_{i}.csv", dtype=str)["filename"]) for i in (0, 1)}
    # the first 20 rows (one video, fold 0), plus the first frames of split_1 and of frames in no fold
    rows = pd.concat(
        [
            meta.head(20),
            meta[meta["filename"].isin(folds["split_1"])].head(5),
            meta[~meta["filename"].isin(folds["split_0"] | folds["split_1"])].head(3),
        ]
    ).drop_duplicates("filename")
    for filename, finding in zip(rows["filename"], rows["finding_class"]):
        put(tmp_path, f"labelled_images/{finding}/{filename}")

    official = {name: next((fold for fold, names in folds.items() if name in names), "") for name in rows["filename"]}
    assert set(official.values()) == {"split_0", "split_1", ""}
    # with --labels the real metadata.csv (split files beside it); without, only the file names
    for labels in (kc / "metadata.csv", None):
        expected_split = official if labels is not None else dict.fromkeys(official, "")
        records, rejections, skipped = scan("kvasir-capsule", tmp_path, labels)
        assert rejections == [] and skipped == []
        assert len(records) == len(rows)
        want = {
            f"labelled_images/{finding}/{name}": (finding, video, expected_split[name])
            for name, video, finding in zip(rows["filename"], rows["video_id"], rows["finding_class"])
        }
        assert {rel: (label, patient, split) for rel, label, patient, split in records} == want

"""``endoctl audit``: leak report for existing split files, on the real official splits and small files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.io import read_csv, write_csv
from endoctl.leaks import audit, frame_adjacency, hash_images, read_split_file
from endoctl.testing import scene

runner = CliRunner()


def run_audit(*args: str | Path):
    return runner.invoke(app, ["audit", *map(str, args)])


def splits_args(**files: Path) -> list[str]:
    return [arg for name, file in files.items() for arg in ("--split", f"{name}={file}")]


# ---------------------------------------------------------------- the real official splits


def test_ce24_official_train_val_leaks(tmp_path: Path) -> None:
    train = shared_path("ce24", "training_data.xlsx")
    val = shared_path("ce24", "validation_data.xlsx")
    out = tmp_path / "report" / "audit.json"
    res = run_audit(*splits_args(train=train, val=val), "--json", out, "--fail-on-leak")
    assert res.exit_code == 1, res.output  # --fail-on-leak, after writing the report
    report = json.loads(out.read_text())
    assert out.read_text().endswith("}\n")
    # CE24 names its Kvasir-Capsule images "KVASIR" (its Dataset column); every one of the 41 videos
    # is in both training and validation ...
    assert report["straddling"]["KVASIR"] == 41
    assert report["groups"]["KVASIR"] == 41
    # ... so all 11,581 KVASIR frames of the 16,132 validation rows come from training videos
    val_report = report["splits"]["val"]
    assert val_report["rows"] == 16132
    assert val_report["by_source"]["KVASIR"]["straddling_images"] == 11581
    assert report["splits"]["train"]["rows"] == 37607
    # the same SEE-AI file (CE24 keeps the original names) in both splits: 171 names
    assert report["straddling"]["SEE-AI"] == 171
    # AIIMS names its six videos (ulcer1_<frame> ... worm3_<frame>): every one is in both splits
    assert report["straddling"]["AIIMS"] == report["groups"]["AIIMS"] == 6
    assert report["straddling_images"]["AIIMS"] == 321 == 224 + 97
    aiims = sorted(g["patients"][0] for g in report["straddling_groups"] if g["sources"] == ["AIIMS"])
    assert aiims == [f"AIIMS|AIIMS/{video}{n}" for video in ("ulcer", "worm") for n in (1, 2, 3)]
    # KID publishes no patients (-P<n>- is a grade): only a KID file listed in both splits could leak, and none is
    assert report["straddling"]["KID"] == 0 and report["groups"]["KID"] == report["images"]["KID"] == 541
    assert report["leak"] is True and report["hashed"] is False and report["cross_split_pairs"] == {}
    kvasir = [g for g in report["straddling_groups"] if g["sources"] == ["KVASIR"]]
    assert len(kvasir) == 41 and all(g["patients"][0].startswith("KVASIR|KVASIR/") for g in kvasir)
    line = res.stdout.strip()
    assert "\n" not in line and "KVASIR 41" in line and "LEAK" in line
    assert "KVASIR" in res.stderr and "leaking" in res.stderr  # the table
    # frame adjacency (default ±5, dedupe's sequence gap): nearly every validation frame of KVASIR and
    # SEE-AI (numbered imageNNNNN, no video id, so no group can tell) has a training frame next to it
    adjacency = report["frame_adjacency"]
    assert adjacency["frame_gap"] == 5
    val_adj = adjacency["splits"]["val"]
    assert {s: (v["adjacent"], v["images"]) for s, v in val_adj.items()} == {
        "AIIMS": (12, 97),
        "KID": (0, 165),
        "KVASIR": (11559, 11581),
        "SEE-AI": (4218, 4244),
    }
    assert val_adj["KID"]["numbered"] == 0 and val_adj["AIIMS"]["numbered"] == 97  # ulcer1_<frame>, worm2_<frame>
    assert adjacency["adjacent_images"] == {"AIIMS": 23, "KID": 0, "KVASIR": 37635, "SEE-AI": 13295}
    assert report["totals"]["frame_adjacent_images"] == 50953
    assert "50,953 images within ±5 frames of another split's" in line and "±5 frames" in res.stderr


def test_kvasir_capsule_official_folds_and_a_leak_free_refold(tmp_path: Path) -> None:
    fold0 = shared_path("kvasir_capsule", "official_split_0.csv")
    fold1 = shared_path("kvasir_capsule", "official_split_1.csv")
    out = tmp_path / "official.json"
    res = run_audit(*splits_args(split_0=fold0, split_1=fold1), "--json", out, "--fail-on-leak")
    assert res.exit_code == 1, res.output
    report = json.loads(out.read_text())
    assert report["straddling"] == {"kvasir-capsule": 7}
    assert report["groups"] == {"kvasir-capsule": 43}
    assert "kvasir-capsule 7" in res.stdout
    # the official folds cut each of the 7 straddling videos far from the cut: no frame of one fold
    # within ±100 frames of the other's; only at ±500 do some appear
    assert report["frame_adjacency"]["adjacent_images"] == {"kvasir-capsule": 0}
    frames = {name: read_split_file(f, name) for name, f in (("split_0", fold0), ("split_1", fold1))}
    assert audit(frames, frame_gap=100).adjacent_images() == {"kvasir-capsule": 0}
    assert audit(frames, frame_gap=500).adjacent_images() == {"kvasir-capsule": 227}

    # the same frames re-folded by video (each straddling video goes wholly to fold 0): leak-free
    both = pd.concat([read_csv(fold0), read_csv(fold1)], ignore_index=True)
    video = both["filename"].str.split("_").str[0]
    moved = set(video[both.index < len(read_csv(fold0))]) & set(video[both.index >= len(read_csv(fold0))])
    in0 = video.isin(moved) | (both.index < len(read_csv(fold0)))
    write_csv(tmp_path / "a.csv", both[in0].drop_duplicates())
    write_csv(tmp_path / "b.csv", both[~in0].drop_duplicates())
    res = run_audit(*splits_args(a=tmp_path / "a.csv", b=tmp_path / "b.csv"), "--json", out, "--fail-on-leak")
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    assert report["straddling"] == {"kvasir-capsule": 0} and report["leak"] is False
    assert report["images"] == {"kvasir-capsule": 47153}
    assert "leak-free" in res.stdout


# ---------------------------------------------------------------- formats


def endoctl_split(rows: list[tuple[str, str, str]], fold: str) -> pd.DataFrame:
    """(image_id, source, group) rows as an endoctl split CSV."""
    return pd.DataFrame(
        [(i, s, f"raw/{i}.jpg", "Normal", "normal", g, fold) for i, s, g in rows],
        columns=["image_id", "source", "path", "label", "target_class", "group", "fold"],
    )


def test_endoctl_split_csvs_use_their_groups_across_sources(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "train_val.csv",
        endoctl_split(
            [
                ("kvasir-capsule/v1_1", "kvasir-capsule", "g1"),
                ("kvasir-capsule/v1_2", "kvasir-capsule", "g1"),
                ("kid/k1", "kid", "g2"),
            ],
            "0",
        ),
    )
    write_csv(tmp_path / "test.csv", endoctl_split([("ce24/KVASIR/v1_9", "ce24", "g1"), ("kid/k2", "kid", "g3")], ""))
    out = tmp_path / "r.json"
    res = run_audit(
        *splits_args(train_val=tmp_path / "train_val.csv", test=tmp_path / "test.csv"), "--json", out, "--fail-on-leak"
    )
    assert res.exit_code == 1, res.output
    report = json.loads(out.read_text())
    # group g1 holds a Kvasir-Capsule frame and its CE24 copy: it straddles for both sources
    assert report["straddling"] == {"ce24": 1, "kid": 0, "kvasir-capsule": 1}
    assert report["straddling_images"] == {"ce24": 1, "kid": 0, "kvasir-capsule": 2}
    assert report["groups"] == {"ce24": 1, "kid": 2, "kvasir-capsule": 1}
    assert report["splits"]["test"]["straddling_images"] == 1

    write_csv(tmp_path / "test.csv", endoctl_split([("kid/k2", "kid", "g3")], ""))
    res = run_audit(*splits_args(train_val=tmp_path / "train_val.csv", test=tmp_path / "test.csv"), "--fail-on-leak")
    assert res.exit_code == 0 and "0 groups straddle" in res.stdout


def test_plain_csv_sources_and_patients_from_file_names(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text(
        "path,label\n"
        "labelled_images/Erosion/0728084c8da942d9_5302.jpg,Erosion\n"  # Kvasir-Capsule video
        "kid/angioectasia-P3-12.jpg,angioectasia\n"  # KID: P3 is a grade, not a patient
        "training/Normal/KVASIR/fb86bc87d3874cd7_10578.jpg,Normal\n"  # CE24 layout
        "colon/polyp_001.jpg,polyp\n"  # no rule: unknown, no patient
        "raw/ers/0001/seq_01/frames/000120.png,c01\n"  # ERS patient folder
        "patient_based_classified_images/11/Mayo 2/UC_patient_11_2.bmp,Mayo 2\n"  # LIMUC patient
        "images/13333_2021.11_0003_55200215.png,polyp\n"  # MedFMC study
        "training/Worms/AIIMS/worm1_1425.jpg,Worms\n"  # CE24's AIIMS video
        "normaleso12.jpg,normaleso\n"  # KID as CE24 names it
    )
    (tmp_path / "test.csv").write_text(
        "filename;video_id\n"  # ';'-separated, with a patient column that wins over the name rule
        "0728084c8da942d9_7000.jpg;\n"
        "angioectasia-P4-1.jpg;\n"
        "other.jpg;0728084c8da942d9\n"
        "ers/0001/samples/frames/000002.png;\n"
        "test_set/Mayo 0/UC_patient_11_1.bmp;\n"
        "validation/Worms/AIIMS/worm1_1500.jpg;\n"
    )
    train = read_split_file(tmp_path / "train.csv", "train")
    assert list(train.columns[:5]) == ["image_id", "source", "patient_id", "path", "split"]
    assert train[["source", "patient_id"]].values.tolist() == [
        ["kvasir-capsule", "0728084c8da942d9"],
        ["kid", ""],
        ["KVASIR", "KVASIR/fb86bc87d3874cd7"],
        ["unknown", ""],
        ["ers", "0001"],
        ["limuc", "11"],
        ["medfmc-endo", "13333_2021.11_0003"],
        ["AIIMS", "AIIMS/worm1"],
        ["kid", ""],
    ]
    assert train["image_id"].tolist()[:5] == [
        "kvasir-capsule/0728084c8da942d9_5302.jpg",
        "kid/angioectasia-P3-12.jpg",
        "KVASIR/fb86bc87d3874cd7_10578.jpg",
        "colon/polyp_001.jpg",
        "ers/0001/seq_01/frames/000120.png",
    ]
    assert (train["split"] == "train").all()
    test = read_split_file(tmp_path / "test.csv")
    assert test["split"].tolist() == ["test"] * 6  # default split name: the file's stem
    assert test["patient_id"].tolist() == ["0728084c8da942d9", "", "0728084c8da942d9", "0001", "11", "AIIMS/worm1"]
    report = audit({"train": train, "test": test}).to_dict()
    assert report["straddling"] == {
        "AIIMS": 1,
        "KVASIR": 0,
        "ers": 1,
        "kid": 0,
        "kvasir-capsule": 1,
        "limuc": 1,
        "medfmc-endo": 0,
        "unknown": 0,
    }
    assert report["straddling_images"]["kvasir-capsule"] == 2  # both listed frames of that video
    # patients are per source (as in build_groups): "other.jpg" (source unknown) is not that video
    assert report["groups"] == {
        "AIIMS": 1,
        "KVASIR": 1,
        "ers": 1,
        "kid": 3,
        "kvasir-capsule": 1,
        "limuc": 1,
        "medfmc-endo": 1,
        "unknown": 2,
    }


def test_same_image_listed_in_two_splits_straddles_on_its_own(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("filename,label\n0728084c8da942d9_1.jpg,Normal\n")
    (tmp_path / "b.csv").write_text("path\nlabelled_images/Normal/0728084c8da942d9_1.jpg\nx/1.jpg\n")
    (tmp_path / "c.csv").write_text("path\ny/1.jpg\nx/1.jpg\n")
    frames = {name: read_split_file(tmp_path / f"{name}.csv") for name in "abc"}
    report = audit(frames)
    assert report.per_source.set_index("source")["straddling"].to_dict() == {"kvasir-capsule": 1, "unknown": 1}
    assert report.to_dict()["images"] == {"kvasir-capsule": 1, "unknown": 2}  # x/1.jpg != y/1.jpg


def test_a_layout_without_a_naming_rule_is_said_to_match_only_identical_paths(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("path\ncolon/polyp_001.jpg\ncolon/polyp_002.jpg\nkid/angioectasia-P3-1.jpg\n")
    (tmp_path / "b.csv").write_text("path\ncolon/polyp_003.jpg\nkid/angioectasia-P4-1.jpg\n")
    res = runner.invoke(
        app,
        [
            "audit",
            "--split",
            f"a={tmp_path / 'a.csv'}",
            "--split",
            f"b={tmp_path / 'b.csv'}",
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    note = (
        "unknown: 3 images: no file-name rule recognises these paths (no patient/video id), so only the same path "
        "listed in two splits can be matched, and nothing else; add --images-root to match copies by their pixels"
    )
    kid = (
        "kid: 2 images: its file names carry no patient/video id, so only the same file name listed in two splits "
        "can be matched, and nothing else; add --images-root to match copies by their pixels"
    )
    assert f"note: {note}" in " ".join(res.stderr.split()) and f"note: {kid}" in " ".join(res.stderr.split())
    assert json.loads((tmp_path / "r.json").read_text())["notes"] == [kid, note]  # KID publishes no patient ids


def test_unknown_format_and_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "weird.csv").write_text("subject,score\n1,0.5\n")
    (tmp_path / "ok.csv").write_text("path\na.jpg\n")
    res = run_audit(*splits_args(train=tmp_path / "ok.csv", test=tmp_path / "weird.csv"))
    assert res.exit_code == 2
    error = res.stderr.strip()
    assert "\n" not in error and "weird.csv" in error and "['subject', 'score']" in error
    with pytest.raises(ValueError, match=r"weird\.csv.*found columns \['subject', 'score'\]"):
        read_split_file(tmp_path / "weird.csv")

    res = run_audit(*splits_args(train=tmp_path / "ok.csv", test=tmp_path / "missing.csv"))
    assert res.exit_code == 2 and "missing.csv" in res.stderr
    res = run_audit("--split", f"train={tmp_path / 'ok.csv'}", "--split", "oops")
    assert res.exit_code == 2 and "NAME=FILE" in res.stderr
    res = run_audit(*splits_args(train=tmp_path / "ok.csv"))
    assert res.exit_code == 2 and "two split names" in res.stderr
    res = run_audit(*splits_args(a=tmp_path / "ok.csv", b=tmp_path / "ok.csv"), "--images-root", tmp_path / "nope")
    assert res.exit_code == 2 and "--images-root" in res.stderr


def test_frame_adjacency_known_cases(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        [  # source, path, split
            ("KVASIR", "a/0728084c8da942d9_100.jpg", "train"),
            ("KVASIR", "b/0728084c8da942d9_105.jpg", "val"),  # 5 from a training frame: adjacent (gap 5)
            ("KVASIR", "b/0728084c8da942d9_106.jpg", "val"),  # 6: not
            ("KVASIR", "b/1111111111111111_101.jpg", "val"),  # another video: not
            ("SEE-AI", "x/image00100.jpg", "val"),  # another source, same number: not
            ("SEE-AI", "x/image00097.jpg", "test"),  # 3 from the val SEE-AI image: adjacent (any other split)
            ("AIIMS", "t/ulcer1_1024.jpg", "train"),
            ("AIIMS", "v/ulcer1_1029.jpg", "val"),  # AIIMS frames parse too
            ("AIIMS", "v/worm1_1029.jpg", "val"),  # another prefix: not
            ("KID", "k/angioectasia-P0-3.jpg", "val"),  # no frame number: NaN
            ("SEE-AI", "x/image00500.jpg", "val"),
            ("SEE-AI", "y/image00500.jpg", "train"),  # the same number listed in two splits: adjacent (0)
        ],
        columns=["source", "path", "split"],
    )
    got = frame_adjacency(rows, 5)
    assert pd.isna(got.iloc[9])
    assert got.drop(9).tolist() == [True, True, False, False, True, True, True, True, False, True, True]
    assert frame_adjacency(rows.assign(split="one"), 5).dropna().eq(False).all()  # a single split: nothing
    # through the report and the CLI
    rows["image_id"] = rows["path"]
    rows["patient_id"] = rows["group"] = ""
    splits = {name: df for name, df in rows.groupby("split")}
    rep = audit(splits, frame_gap=5)
    assert rep.adjacent_images() == {"AIIMS": 2, "KID": 0, "KVASIR": 2, "SEE-AI": 4}
    assert rep.to_dict()["frame_adjacency"]["splits"]["val"]["SEE-AI"] == {
        "images": 2,
        "numbered": 2,
        "adjacent": 2,
        "share": 1.0,
    }
    assert audit(splits).to_dict()["frame_adjacency"] == {
        "frame_gap": 0,
        "adjacent_images": {"AIIMS": 0, "KID": 0, "KVASIR": 0, "SEE-AI": 0},
        "share": {"AIIMS": 0.0, "KID": 0.0, "KVASIR": 0.0, "SEE-AI": 0.0},
        "splits": {"test": {}, "train": {}, "val": {}},
    }
    for name, df in splits.items():
        write_csv(tmp_path / f"{name}.csv", df[["path"]])
    args = splits_args(**{name: tmp_path / f"{name}.csv" for name in splits})
    res = run_audit(*args, "--frame-gap", "5")
    assert res.exit_code == 0 and "images within ±5 frames of another split's" in res.stdout
    assert "within ±" not in run_audit(*args, "--frame-gap", "0").stdout
    res = run_audit(*args, "--frame-gap", "-1")
    assert res.exit_code == 2 and "--frame-gap must be >= 0" in res.stderr


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["s", "t"]),
            st.sampled_from(["image", "ulcer1_", "nonum"]),
            st.integers(0, 40),
            st.sampled_from(["a", "b", "c"]),
        ),
        max_size=40,
    ),
    st.integers(1, 6),
)
def test_frame_adjacency_equals_brute_force(rows, gap) -> None:
    df = pd.DataFrame(
        [
            (src, f"d/{prefix}{frame:05d}.jpg" if prefix != "nonum" else f"d/x{frame}.jpg", split)
            for src, prefix, frame, split in rows
        ],
        columns=["source", "path", "split"],
    )
    got = frame_adjacency(df, gap)
    for i, (src, prefix, frame, split) in enumerate(rows):
        if prefix == "nonum":
            assert pd.isna(got.iloc[i])
            continue
        want = any(s2 == src and p2 == prefix and abs(f2 - frame) <= gap and sp2 != split for s2, p2, f2, sp2 in rows)
        assert got.iloc[i] == want, (i, rows[i])


def test_core_audit_pairs_join_groups_and_cross_split_pairs() -> None:
    def frame(ids: list[str], source: str, patients: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"image_id": ids, "source": source, "patient_id": patients, "path": ids})

    train = frame(["s/a", "s/b", "s/c"], "s", ["p1", "p1", ""])
    test = frame(["s/d", "s/e"], "s", ["p2", ""])
    clean = audit({"train": train, "test": test})
    assert not clean.leaks and clean.totals()["groups"] == 4
    pairs = pd.DataFrame(
        {
            "image_id_a": ["s/b", "s/c", "s/x"],
            "image_id_b": ["s/d", "s/a", "s/e"],
            "distance": [3, 0, 1],
            "kind": ["near", "exact", "near"],
        }
    )
    report = audit({"train": train, "test": test}, pairs)
    assert report.leaks
    d = report.to_dict()
    # b~d joins patient p1 (a, b) + c (exact copy of a) + patient p2 (d): one group in both splits
    assert d["straddling"] == {"s": 1} and d["straddling_images"] == {"s": 4} and d["groups"] == {"s": 2}
    assert [(p["a"], p["b"], p["splits_a"], p["splits_b"]) for p in d["cross_split_pair_list"]] == [
        ("s/b", "s/d", ["train"], ["test"])
    ]  # s/x is not listed: its pair is ignored
    assert d["straddling_groups"][0]["splits"] == {"test": 1, "train": 3}


# ---------------------------------------------------------------- with images


def real_jpegs(tmp_path: Path, n: int) -> list[Path]:
    """n real Kvasir-SEG JPEGs copied below tmp_path/images (or drawn scenes when ../shared is absent),
    named without frame numbers so that dedupe's sequence rule cannot link them."""
    folder = tmp_path / "images"
    folder.mkdir()
    source = shared_path("real_images", "kvasir_seg") if (Path(__file__).parents[2] / "shared").exists() else None
    files = sorted(source.glob("*.jpg"))[:n] if source else []
    out = []
    for i in range(n):
        target = folder / f"scene_{'abcdefgh'[i]}.jpg"
        if files:
            shutil.copy(files[i], target)
        else:
            scene(i, (320, 280)).save(target, quality=90)
        out.append(target)
    return out


def recompress(src: Path, dst: Path) -> None:
    """A resized, re-encoded copy: different bytes, same picture."""
    with Image.open(src) as im:
        im.convert("RGB").resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS).save(dst, quality=70)


def test_hash_images_lists_unreadable_files(tmp_path: Path) -> None:
    files = real_jpegs(tmp_path, 2)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not a jpeg")
    nodes = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "d"],
            "source": "s",
            "patient_id": "",
            "split": "train",
            "path": [files[0].name, f"elsewhere/{files[1].name}", "broken.jpg", "gone.jpg"],
        }
    )
    manifest, unreadable = hash_images(nodes, tmp_path / "images", workers=2)
    assert manifest["image_id"].tolist() == ["a", "b"]  # b found by its unique file name
    assert manifest["phash"].str.fullmatch("[0-9a-f]{16}").all() and manifest["sha256"].str.len().eq(64).all()
    assert unreadable["path"].tolist() == ["broken.jpg", "gone.jpg"]
    assert "not found" in unreadable["reason"].iloc[1]


def test_cli_with_images_reports_a_cross_split_near_duplicate(tmp_path: Path) -> None:
    pytest.importorskip("endoctl.dedupe", reason="endoctl.dedupe (find_pairs) is not in this tree yet")
    files = real_jpegs(tmp_path, 4)
    recompress(files[0], tmp_path / "images" / "copy_of_a.jpg")
    (tmp_path / "train.csv").write_text("path\n" + "".join(f"{f.name}\n" for f in files[:3]))
    (tmp_path / "test.csv").write_text(f"path\n{files[3].name}\ncopy_of_a.jpg\nmissing.jpg\n")
    out = tmp_path / "r.json"
    res = run_audit(
        *splits_args(train=tmp_path / "train.csv", test=tmp_path / "test.csv"),
        "--images-root",
        tmp_path / "images",
        "--json",
        out,
        "--fail-on-leak",
        "--workers",
        "1",
    )
    assert res.exit_code == 1, res.output
    report = json.loads(out.read_text())
    assert report["hashed"] is True and report["max_distance"] == 10
    pairs = report["cross_split_pair_list"]
    assert [(p["a"], p["b"], p["kind"]) for p in pairs] == [("copy_of_a.jpg", "scene_a.jpg", "near")]
    assert pairs[0]["splits_a"] == ["test"] and pairs[0]["splits_b"] == ["train"] and pairs[0]["distance"] <= 10
    assert report["cross_split_pair_kinds"] == {"near": 1}
    assert report["cross_split_pairs"] == {"unknown": 1}
    assert report["straddling"] == {"unknown": 1} and report["straddling_images"] == {"unknown": 2}
    assert report["unreadable"]["count"] == 1 and "missing.jpg" in report["unreadable"]["files"][0]
    assert "1 cross-split duplicate pairs" in res.stdout and "1 unreadable" in res.stdout

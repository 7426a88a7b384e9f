"""Bad and awkward inputs to every command: exit 2 and one line on stderr naming the file, column or
value, never a traceback, never a silent success.

One table: each case is a command line over a small workspace of valid and broken files (built
once), plus the fragments its one error line must contain. Image files are a few tiny JPEGs;
predict and train fail on their inputs before any model is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import special_files, workbook
from test_split import TAXONOMY_YAML
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.sources.ce24 import CLASSES as CE24_CLASS_ORDER
from endoctl.testing import scene

runner = CliRunner()
CLASSES = ["Normal", "A", "B", "C"]
CE24_CLASSES = list(CE24_CLASS_ORDER)


def csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """Valid inputs made by the real commands (ingest -> dedupe -> split) and broken variants of them."""
    root = tmp_path_factory.mktemp("bad")
    for i in range(16):
        folder = root / "raw" / CLASSES[i % 4]
        folder.mkdir(parents=True, exist_ok=True)
        scene(i, (48, 40)).save(folder / f"p{i // 4}_{i}.jpg", quality=85)
    (root / "taxonomy.yaml").write_text(TAXONOMY_YAML)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for args in (
            ["ingest", "raw", "-f", "folder", "--source", "alpha", "--out", "m/alpha", "--workers", "1"],
            ["dedupe", "m", "--out", "dups", "--workers", "1"],
            [
                "split",
                "--manifest",
                "m",
                "--duplicates",
                "dups",
                "--target",
                "abc",
                "--taxonomy",
                "taxonomy.yaml",
                "--out",
                "split",
                "--folds",
                "2",
                "--test-fraction",
                "0.25",
            ],
        ):
            res = runner.invoke(app, args)
            assert res.exit_code == 0, res.output
    finally:
        os.chdir(cwd)
    manifest = (root / "m" / "alpha" / "manifest.csv").read_text()
    header = manifest.splitlines()[0] + "\n"
    csv(root / "empty.csv", "")
    csv(root / "header_only" / "manifest.csv", header)
    csv(root / "no_hash.csv", "image_id,source,path,label\nalpha/a.jpg,alpha,raw/a.jpg,A\n")
    rows = manifest.splitlines()
    bad_hash = rows[1].split(",")
    bad_hash[10] = "zz"  # phash
    csv(root / "bad_hash.csv", "\n".join([rows[0], ",".join(bad_hash), *rows[2:]]) + "\n")
    csv(root / "beta.csv", "image_id,source,path,label\nbeta/x.jpg,beta,raw/x.jpg,a\n")
    (root / "nothing").mkdir()
    (root / "file.txt").write_text("not a folder\n")
    for name in ("notes.xyz", "data.bin"):
        csv(root / "nonimages" / "c" / name, "not an image\n")
    (root / "busy").mkdir()
    (root / "busy" / "mine.txt").write_text("someone's notes\n")
    # split files for audit and cache
    csv(root / "hdr_split.csv", "image_id,source,path,group\n")
    csv(root / "weird.csv", "foo,bar\n1,2\n")
    csv(root / "nopath.csv", "path,label\n,A\nraw/A/p0_0.jpg,A\n")
    (root / "nocsv").mkdir()
    csv(root / "hdr_cache" / "test.csv", (root / "split" / "test.csv").read_text().splitlines()[0] + "\n")
    csv(root / "nopathcol" / "test.csv", "image_id,label\nalpha/x.jpg,A\n")
    # evaluate: truth = the split's test.csv (+ class_mapping.json beside it)
    test = pd.read_csv(root / "split" / "test.csv")
    paths = test["path"].tolist()

    def predictions(name: str, values: list[list[float]]) -> Path:
        df = pd.DataFrame(values, columns=CLASSES)
        df.insert(0, "image_path", paths[: len(df)])
        df.to_csv(root / name, index=False)
        return root / name

    n = len(paths)
    predictions("pred_range.csv", [[0.25] * 4] * n).write_text(  # the first row: -3, 7, 0, 0
        (root / "pred_range.csv").read_text().replace("0.25,0.25,0.25,0.25", "-3,7,0,0", 1)
    )
    predictions("pred_percent.csv", [[70, 10, 10, 10]] * n)
    predictions("pred_text.csv", [[0.25] * 4] * n).write_text(
        (root / "pred_text.csv").read_text().replace("0.25", "high", 1)
    )
    dup = pd.read_csv(predictions("pred_dup.csv", [[0.25] * 4] * n))
    pd.concat([dup, dup.iloc[:1]]).to_csv(root / "pred_dup.csv", index=False)
    csv(root / "pred_header.csv", "image_path," + ",".join(CLASSES) + "\n")
    workbook(root / "empty.xlsx", {"Sheet1": [], "Sheet2": []})
    workbook(root / "nocol.xlsx", {"Sheet1": [], "Notes": [["comment"], ["made by hand"]]})
    workbook(
        root / "ce24_truth.xlsx", {"Sheet1": [["image_path", "class_label"], ["a.jpg", "Polyp"], ["b.jpg", "Tumour"]]}
    )
    workbook(
        root / "ce24_pred.xlsx",
        {"Sheet1": [["image_path", *CE24_CLASSES], *([name, *[0.1] * 10] for name in ("a.jpg", "b.jpg"))]},
    )
    columns, good = ["image_path", *CLASSES], [[p, 0.7, 0.1, 0.1, 0.1] for p in paths]
    workbook(root / "two_sheets.xlsx", {"stale": [columns, *([p, 0, 0, 0, 1] for p in paths)], "new": [columns, *good]})
    workbook(root / "one_filled.xlsx", {"template": [columns], "Notes": [["made by hand"]], "run 2": [columns, *good]})
    repeated = [["image_path", *CLASSES, "Normal"], *([p, 0.7, 0.1, 0.1, 0.1, 0.2] for p in paths)]
    workbook(root / "pred_repeated.xlsx", {"Sheet1": repeated})
    workbook(root / "pred_formula.xlsx", {"Sheet1": [columns, *good[:-1], [paths[-1], "=0.5+0.2", 0.1, 0.1, 0.1]]})
    csv(root / "repeated.csv", f"path,path,label\n{paths[0]},raw/x.jpg,A\n")
    csv(root / "repeated_m" / "manifest.csv", header.replace("source", "path"))
    # predict
    csv(root / "images_nopath.csv", "file_name\na.jpg\n")
    csv(root / "images_blank.csv", "path\nraw/A/p0_1.jpg\n\n \nraw/B/p0_2.jpg\n")
    (root / "images_blank.csv").write_text("path,note\nraw/A/p0_1.jpg,x\n,missing\n")
    csv(root / "images_header.csv", "path\n")
    (root / "zero.pt").write_bytes(b"")
    # train
    (root / "params.yaml").write_text("pretrain:\n  learning_rate: 0.1\n")
    csv(root / "hdr_train" / "train_val.csv", "path,target_class,fold\n")
    (root / "hdr_train" / "class_mapping.json").write_text(json.dumps({"a": 0, "b": 1}))
    csv(root / "alien_train" / "train_val.csv", "path,target_class,fold\nraw/A/p0_1.jpg,Tumour,0\nraw/B/p0_2.jpg,a,1\n")
    (root / "alien_train" / "class_mapping.json").write_text(json.dumps({"a": 0, "b": 1}))
    csv(root / "one_fold" / "train_val.csv", "path,target_class,fold\nraw/A/p0_1.jpg,a,0\nraw/B/p0_2.jpg,b,0\n")
    (root / "one_fold" / "class_mapping.json").write_text(json.dumps({"a": 0, "b": 1}))
    return root


TRAIN = [
    "train",
    "pretrain",
    "--params",
    "none.yaml",
    "--model-name",
    "resnet10t",
    "--img-size",
    "32",
    "--pretrained-file",
    "",
    "--epochs",
    "1",
]

CASES = {
    # ingest
    "ingest: SRC is a file": (
        ["ingest", "file.txt", "-f", "folder", "--source", "s", "--out", "o/s"],
        ["file.txt is a file, not a folder"],
    ),
    "ingest: SRC missing": (
        ["ingest", "gone", "-f", "folder", "--source", "s", "--out", "o/s"],
        ["source folder not found: gone"],
    ),
    "ingest: empty folder": (
        ["ingest", "nothing", "-f", "folder", "--source", "s", "--out", "o/s"],
        ["no images found in nothing"],
    ),
    "ingest: only non-images": (
        ["ingest", "nonimages", "-f", "folder", "--source", "s", "--out", "o/s"],
        ["no image accepted from nonimages", "2 file(s) found, all rejected", "data.bin: unsupported file type '.bin'"],
    ),
    "ingest: --out is a file": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "file.txt"],
        ["--out file.txt is a file"],
    ),
    "ingest: --out holds other files": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "busy"],
        ["--out busy holds 'mine.txt'", "not among ingest outputs"],
    ),
    "ingest: --out a CSV name": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "m/s.csv"],
        ["ingest writes a folder", "--out m/s"],
    ),
    "ingest: --out name over 255 bytes": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "o/" + "n" * 256],
        [f"--out o/{'n' * 256}: name too long (256 bytes; at most 2"],
    ),
    "ingest: --out name without room for its temporary": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "n" * 250],
        [f"--out {'n' * 250}: name too long (250 bytes; at most 2", "first written under the hidden name"],
    ),
    "dedupe: --out folder name over 255 bytes": (
        ["dedupe", "m", "--out", f"{'n' * 300}/d"],
        [f"--out {'n' * 300}/d: name too long (300 bytes; at most 255)"],
    ),
    "ingest: empty --source": (
        ["ingest", "raw", "-f", "folder", "--source", "", "--out", "o/s"],
        ["--source '': a source name begins every image id", "must not be empty"],
    ),
    "ingest: --source with a slash": (
        ["ingest", "raw", "-f", "folder", "--source", "a/b", "--out", "o/s"],
        ["--source 'a/b': a source name", "nor hold '/'"],
    ),
    "ingest: --source ..": (["ingest", "raw", "-f", "folder", "--source", "..", "--out", "o/s"], ["--source '..'"]),
    "ingest: --workers -1": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "o/s", "--workers", "-1"],
        ["--workers must be >= 0 (0 = all cores), got -1"],
    ),
    "build-splits: source name with a slash": (
        ["build-splits", "--source", "a/b=folder:raw", "--target", "abc", "--out", "b"],
        ["--source 'a/b': a source name"],
    ),
    "dedupe: --workers -1": (["dedupe", "m", "--out", "d", "--workers", "-1"], ["--workers must be >= 0"]),
    "audit: --workers -1": (
        ["audit", "--split", "a=split/test.csv", "--split", "b=split/train_val.csv", "--workers", "-1"],
        ["--workers must be >= 0"],
    ),
    "evaluate: --workers -1": (
        [
            "evaluate",
            "--truth",
            "split/test.csv",
            "--predictions",
            "pred_range.csv",
            "--out",
            "r.json",
            "--workers",
            "-2",
        ],
        ["--workers must be >= 0 (0 = all cores), got -2"],
    ),
    "cache: --workers -1": (["cache", "split", "--out", "c", "--workers", "-1"], ["--workers must be >= 0"]),
    "report: --workers -1": (
        ["report", "--manifests", "m", "--out", "x", "--workers", "-1"],
        ["--workers must be >= 0"],
    ),
    "ingest: unknown format": (
        ["ingest", "raw", "-f", "nonsense", "--source", "s", "--out", "o/s"],
        ["unknown --format 'nonsense'"],
    ),
    "ingest: --max-pixels 0": (
        ["ingest", "raw", "-f", "folder", "--source", "s", "--out", "o/s", "--max-pixels", "0"],
        ["--max-pixels must be >= 1, got 0"],
    ),
    "ingest: csv layout without labels": (
        ["ingest", "raw", "-f", "csv", "--source", "s", "--out", "o/s"],
        ["--labels"],
    ),
    # dedupe
    "dedupe: 0-byte manifest": (["dedupe", "empty.csv", "--out", "d"], ["empty.csv: empty file (0 bytes)"]),
    "dedupe: header-only manifest": (
        ["dedupe", "header_only", "--out", "d"],
        ["header_only/manifest.csv: no rows (header only)"],
    ),
    "dedupe: no hash columns": (
        ["dedupe", "no_hash.csv", "--out", "d"],
        ["no_hash.csv: missing column(s) ['dhash', 'phash', 'sha256']"],
    ),
    "dedupe: bad hash value": (
        ["dedupe", "bad_hash.csv", "--out", "d"],
        ["bad_hash.csv: row 2 column phash: 'zz'", "16 hex digits"],
    ),
    "dedupe: repeated column": (
        ["dedupe", "repeated_m", "--out", "d"],
        ["repeated_m/manifest.csv: repeated column(s) in the header: 'path' (2 times)"],
    ),
    "dedupe: empty folder": (["dedupe", "nothing", "--out", "d"], ["no manifests in folder nothing"]),
    "dedupe: missing manifest": (["dedupe", "gone.csv", "--out", "d"], ["manifest not found: gone.csv"]),
    "dedupe: --out a CSV name": (["dedupe", "m", "--out", "dups.csv"], ["dedupe writes a folder"]),
    "dedupe: --out holds other files": (["dedupe", "m", "--out", "busy"], ["--out busy holds 'mine.txt'"]),
    # split
    "split: 0-byte manifest": (
        ["split", "--manifest", "empty.csv", "--target", "abc", "--taxonomy", "taxonomy.yaml", "--out", "s"],
        ["empty.csv: empty file (0 bytes)"],
    ),
    "split: header-only manifest": (
        ["split", "--manifest", "header_only", "--target", "abc", "--taxonomy", "taxonomy.yaml", "--out", "s"],
        ["header_only/manifest.csv: no rows (header only)"],
    ),
    "split: missing columns": (
        ["split", "--manifest", "weird.csv", "--target", "abc", "--taxonomy", "taxonomy.yaml", "--out", "s"],
        ["weird.csv: missing column(s)"],
    ),
    "split: duplicates not found": (
        [
            "split",
            "--manifest",
            "m",
            "--duplicates",
            "gone",
            "--target",
            "abc",
            "--taxonomy",
            "taxonomy.yaml",
            "--out",
            "s",
        ],
        ["--duplicates file not found: gone"],
    ),
    "split: unknown target": (
        ["split", "--manifest", "m", "--target", "nope", "--taxonomy", "taxonomy.yaml", "--out", "s"],
        ["unknown target 'nope'"],
    ),
    "split: bad pin": (
        [
            "split",
            "--manifest",
            "m",
            "--target",
            "abc",
            "--taxonomy",
            "taxonomy.yaml",
            "--out",
            "s",
            "--pin",
            "train=alpha",
        ],
        ["--pin 'train=alpha'"],
    ),
    "split: nothing maps to the target": (
        ["split", "--manifest", "beta.csv", "--target", "alpha-only", "--taxonomy", "taxonomy.yaml", "--out", "s"],
        ["no image maps to a class of target 'alpha-only'", "all 1 excluded"],
    ),
    "split: --out holds other files": (
        ["split", "--manifest", "m", "--target", "abc", "--taxonomy", "taxonomy.yaml", "--out", "busy"],
        ["--out busy holds 'mine.txt'", "split outputs"],
    ),
    "split: --out is the current folder": (
        ["split", "--manifest", "m", "--target", "abc", "--taxonomy", "taxonomy.yaml", "--out", "."],
        ["--out .", "that is the current folder"],
    ),
    "split: one source given twice": (
        [
            "split",
            "--manifest",
            "m",
            "--manifest",
            "m/alpha/manifest.csv",
            "--target",
            "abc",
            "--taxonomy",
            "taxonomy.yaml",
            "--out",
            "s",
        ],
        ["occurs 2 times"],
    ),
    # audit
    "audit: header-only split file": (
        ["audit", "--split", "a=hdr_split.csv", "--split", "b=split/test.csv"],
        ["hdr_split.csv: no rows (header only)"],
    ),
    "audit: unknown format": (
        ["audit", "--split", "a=weird.csv", "--split", "b=split/test.csv"],
        ["weird.csv: unknown split file format", "['foo', 'bar']"],
    ),
    "audit: repeated column": (
        ["audit", "--split", "a=repeated.csv", "--split", "b=split/test.csv"],
        ["repeated.csv: repeated column(s) in the header: 'path' (2 times)"],
    ),
    "audit: one split name": (["audit", "--split", "a=split/test.csv"], ["at least two split names"]),
    "audit: missing file": (
        ["audit", "--split", "a=gone.csv", "--split", "b=split/test.csv"],
        ["split file not found: gone.csv"],
    ),
    "audit: no NAME=": (
        ["audit", "--split", "split/test.csv", "--split", "b=split/test.csv"],
        ["--split expects NAME=FILE, got 'split/test.csv'"],
    ),
    "audit: row without a path": (
        ["audit", "--split", "a=nopath.csv", "--split", "b=split/test.csv"],
        ["nopath.csv: 1 row(s) without an image path"],
    ),
    # evaluate
    "evaluate: header-only predictions": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_header.csv", "--out", "r.json"],
        ["pred_header.csv: no prediction rows (header only)"],
    ),
    "evaluate: workbook of empty sheets": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "empty.xlsx", "--out", "r.json"],
        ["empty.xlsx: every sheet is empty ('Sheet1', 'Sheet2')"],
    ),
    "evaluate: no sheet has image_path": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "nocol.xlsx", "--out", "r.json"],
        ["nocol.xlsx: no sheet has an image_path column (sheet 'Notes' has columns ['comment']"],
    ),
    "evaluate: probabilities outside [0, 1]": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_range.csv", "--out", "r.json"],
        ["pred_range.csv: 2 outside [0, 1] probability value(s)", "row 2", "column 'Normal': '-3'", "column 'A': '7'"],
    ),
    "evaluate: percentages": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_percent.csv", "--out", "r.json"],
        ["outside [0, 1]", "column 'Normal': '70'", "percentages?"],
    ),
    "evaluate: non-numeric probability": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_text.csv", "--out", "r.json"],
        ["1 empty or non-numeric", "column 'Normal': 'high'"],
    ),
    "evaluate: image predicted twice": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_dup.csv", "--out", "r.json"],
        ["predicted more than once"],
    ),
    "evaluate: two sheets of predictions": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "two_sheets.xlsx", "--out", "r.json"],
        ["two_sheets.xlsx: sheets 'stale', 'new' all hold image_path rows"],
    ),
    "evaluate: repeated class column": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_repeated.xlsx", "--out", "r.json"],
        ["pred_repeated.xlsx sheet 'Sheet1': repeated column(s) in the header: 'Normal' (2 times)"],
    ),
    "evaluate: formula without a saved result": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_formula.xlsx", "--out", "r.json"],
        ["pred_formula.xlsx sheet 'Sheet1': cell B", "holds the formula =0.5+0.2 without a saved result"],
    ),
    "evaluate: repeated truth column": (
        ["evaluate", "--truth", "repeated.csv", "--predictions", "pred_range.csv", "--out", "r.json"],
        ["repeated.csv: repeated column(s) in the header: 'path' (2 times)"],
    ),
    "evaluate: unknown truth class": (
        ["evaluate", "--truth", "ce24_truth.xlsx", "--predictions", "ce24_pred.xlsx", "--out", "r.json"],
        ["truth ce24_truth.xlsx: unknown class 'Tumour' in column class_label (rows 3)"],
    ),
    "evaluate: --plots empty": (
        ["evaluate", "--truth", "split/test.csv", "--predictions", "pred_range.csv", "--out", "r.json", "--plots", ""],
        ["--plots .", "that is the current folder"],
    ),
    "evaluate: --metrics outside the plots folder": (
        [
            "evaluate",
            "--truth",
            "split/test.csv",
            "--predictions",
            "pred_range.csv",
            "--out",
            "ev/r.json",
            "--metrics",
            "m.json",
            "--plots",
            "ev",
        ],
        ["m.json is outside ev"],
    ),
    "evaluate: truth missing": (
        ["evaluate", "--truth", "gone.csv", "--predictions", "pred_range.csv", "--out", "r.json"],
        ["--truth file not found: gone.csv"],
    ),
    # predict (fails on its inputs before a model is loaded)
    "predict: images CSV without a path column": (
        ["predict", "--checkpoint", "zero.pt", "--images", "images_nopath.csv", "--out", "p/p.csv"],
        ["images_nopath.csv has no path column"],
    ),
    "predict: images CSV row without a path": (
        ["predict", "--checkpoint", "zero.pt", "--images", "images_blank.csv", "--out", "p/p.csv"],
        ["images_blank.csv: 1 row(s) without a path, first: row 3"],
    ),
    "predict: repeated column": (
        ["predict", "--checkpoint", "zero.pt", "--images", "repeated.csv", "--out", "p/p.csv"],
        ["repeated.csv: repeated column(s) in the header: 'path' (2 times)"],
    ),
    "predict: header-only images CSV": (
        ["predict", "--checkpoint", "zero.pt", "--images", "images_header.csv", "--out", "p/p.csv"],
        ["no images in images_header.csv"],
    ),
    "predict: --out suffix": (
        ["predict", "--checkpoint", "zero.pt", "--images", "raw", "--out", "p/p.json"],
        [".csv or .xlsx"],
    ),
    "predict: --out folder holds other files": (
        ["predict", "--checkpoint", "zero.pt", "--images", "raw", "--out", "busy/p.csv"],
        ["the folder of --out busy holds 'mine.txt'"],
    ),
    "predict: 0-byte checkpoint": (
        ["predict", "--checkpoint", "zero.pt", "--images", "raw", "--out", "p/p.csv"],
        ["cannot read zero.pt as a PyTorch checkpoint: EOFError (empty file)"],
    ),
    "predict: checkpoint missing": (
        ["predict", "--checkpoint", "gone.pt", "--images", "raw", "--out", "p/p.csv"],
        ["checkpoint not found: gone.pt"],
    ),
    "predict: --batch-size 0": (
        ["predict", "--checkpoint", "zero.pt", "--images", "raw", "--out", "p/p.csv", "--batch-size", "0"],
        ["--batch-size must be >= 1"],
    ),
    # cache
    "cache: split folder missing": (["cache", "gone", "--out", "c"], ["split folder not found: gone"]),
    "cache: no split CSVs": (["cache", "nocsv", "--out", "c"], ["no train_val.csv or test.csv in nocsv"]),
    "cache: header-only split CSV": (
        ["cache", "hdr_cache", "--out", "c"],
        ["hdr_cache: test.csv has no rows (header only)"],
    ),
    "cache: no path column": (["cache", "nopathcol", "--out", "c"], ["nopathcol/test.csv: missing column(s) ['path']"]),
    "cache: --out is the split folder": (
        ["cache", "split", "--out", "split"],
        ["--out must differ from the split folder"],
    ),
    "cache: --size 2": (["cache", "split", "--out", "c", "--size", "2"], ["size must be >= 8"]),
    "cache: --out holds other files": (["cache", "split", "--out", "busy"], ["--out busy holds 'mine.txt'"]),
    # report
    "report: --out holds other files": (
        ["report", "--manifests", "m", "--duplicates", "dups", "--out", "busy"],
        ["--out busy holds 'mine.txt'", "not among report files"],
    ),
    "report: repeated column": (
        ["report", "--manifests", "repeated_m", "--out", "x"],
        ["repeated_m/manifest.csv: repeated column(s) in the header: 'path' (2 times)"],
    ),
    "report: --out is a file": (["report", "--manifests", "m", "--out", "file.txt"], ["--out file.txt is a file"]),
    # build-splits
    "build-splits: bad --source": (
        ["build-splits", "--source", "kid", "--target", "abc", "--out", "b"],
        ["--source 'kid': expected NAME=FORMAT:PATH"],
    ),
    "build-splits: source is a file": (
        ["build-splits", "--source", "s=folder:file.txt", "--target", "abc", "--out", "b"],
        ["file.txt is a file, not a folder"],
    ),
    "build-splits: unknown format": (
        ["build-splits", "--source", "s=nonsense:raw", "--target", "abc", "--out", "b"],
        ["unknown --format 'nonsense'"],
    ),
    # train (fails on its inputs before a model is built)
    "train: unknown params key": (["train", "pretrain", "--params", "params.yaml"], ["params.yaml", "learning_rate"]),
    "train: split folder missing": ([*TRAIN, "--split-dir", "gone"], ["split file not found: gone/train_val.csv"]),
    "train: header-only train_val.csv": (
        [*TRAIN, "--split-dir", "hdr_train"],
        ["hdr_train/train_val.csv: no rows (header only)"],
    ),
    "train: class not in class_mapping": (
        [*TRAIN, "--split-dir", "alien_train"],
        ["alien_train/train_val.csv: target_class value(s) not in class_mapping.json", "tumour"],
    ),
    "train: every row in the validation fold": (
        [*TRAIN, "--split-dir", "one_fold", "--val-fold", "0"],
        ["one_fold/train_val.csv: every row is in val_fold 0: no training rows"],
    ),
    "train: --num-workers -1": ([*TRAIN, "--split-dir", "split", "--num-workers", "-1"], ["num_workers must be >= 0"]),
    "train: --balance unknown": (
        [*TRAIN, "--split-dir", "split", "--balance", "oversample"],
        ["balance must be one of"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(ws: Path, case: str, monkeypatch) -> None:
    args, fragments = CASES[case]
    monkeypatch.chdir(ws)
    before = sorted(str(p.relative_to(ws)) for p in ws.rglob("*"))
    res = runner.invoke(app, args)
    error = res.stderr.strip()
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), (res.exit_code, res.exception, res.output)
    assert error.startswith("error: ") and "\n" not in error and "Traceback" not in res.output, error
    for fragment in fragments:
        assert fragment in error, (fragment, error)
    assert sorted(str(p.relative_to(ws)) for p in ws.rglob("*")) == before  # nothing written, nothing left


def test_every_command_has_bad_input_cases() -> None:
    commands = {args[0] for args, _ in CASES.values()}
    assert commands == {
        "ingest",
        "dedupe",
        "split",
        "audit",
        "evaluate",
        "predict",
        "cache",
        "report",
        "build-splits",
        "train",
    }


def test_report_checks_its_output_before_the_work(ws: Path, monkeypatch) -> None:
    """An unusable --out ends report before any image is read, not after all the work (issue 25)."""
    import endoctl.report

    def work(*_args, **_kwargs):
        raise AssertionError("the report was built before --out was checked")

    monkeypatch.setattr(endoctl.report, "load_inputs", work)
    monkeypatch.chdir(ws)
    for out in ("busy", "file.txt", "."):
        res = runner.invoke(app, ["report", "--manifests", "m", "--duplicates", "dups", "--out", out])
        assert res.exit_code == 2 and res.stderr.startswith("error: --out "), (out, res.output)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) for a read-only mount")
def test_read_only_output_is_one_line(ws: Path, tmp_path: Path) -> None:
    """ingest, split, report and evaluate writing onto a read-only file system (a read-only bind mount of
    a folder holding a previous split, in a private mount namespace): one line, old files intact."""
    ro = tmp_path / "ro"
    shutil.copytree(ws / "split", ro / "split")
    commands = {
        "ingest": ["ingest", "raw", "-f", "folder", "--source", "alpha", "--out", f"{ro}/alpha", "--workers", "1"],
        "split": [
            "split",
            "--manifest",
            "m",
            "--target",
            "abc",
            "--taxonomy",
            "taxonomy.yaml",
            "--out",
            f"{ro}/split",
            "--folds",
            "2",
        ],
        "report": ["report", "--manifests", "m", "--out", f"{ro}/report", "--workers", "1"],
        "evaluate": [
            "evaluate",
            "--truth",
            "split/test.csv",
            "--predictions",
            "pred_percent.csv",
            "--out",
            f"{ro}/ev/r.json",
            "--metrics",
            f"{ro}/ev/m.json",
            "--bootstrap",
            "0",
        ],
    }
    (ws / "pred_ok.csv").write_text((ws / "pred_percent.csv").read_text().replace("70", "0.7").replace("10", "0.1"))
    commands["evaluate"][4] = "pred_ok.csv"
    script = [f"mount --bind {ro} {ro} && mount -o remount,ro,bind {ro} || exit 90"]
    for name, argv in commands.items():
        line = " ".join(f"'{a}'" for a in argv)
        script.append(
            f"{sys.executable} -m endoctl {line} > {tmp_path}/{name}.out 2> {tmp_path}/{name}.err; "
            f"echo $? > {tmp_path}/{name}.rc"
        )
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", "\n".join(script)], cwd=ws, capture_output=True, text=True)
    if proc.returncode == 90 or "unshare" in proc.stderr:
        pytest.skip(f"no private read-only mount here: {proc.stderr.strip()[:200]}")
    for name in commands:
        error = (tmp_path / f"{name}.err").read_text().strip()
        assert (tmp_path / f"{name}.rc").read_text().strip() == "2", (name, error)
        assert error.startswith("error: cannot write") and "Read-only file system" in error and "\n" not in error, error
        assert str(ro) in error, error
    assert (ro / "split" / "test.csv").read_bytes() == (ws / "split" / "test.csv").read_bytes()
    (ws / "pred_ok.csv").unlink()


def test_evaluate_uses_the_one_sheet_holding_predictions(ws: Path, tmp_path: Path) -> None:
    """A workbook whose only filled prediction sheet is not the first: that sheet is used and named."""
    out = tmp_path / "r.json"
    args = ["--truth", str(ws / "split/test.csv"), "--predictions", str(ws / "one_filled.xlsx"), "--out", str(out)]
    res = runner.invoke(app, ["evaluate", *args, "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert "one_filled.xlsx: predictions read from sheet 'run 2'" in " ".join(res.stderr.split())
    assert sum(map(sum, json.loads(out.read_text())["confusion_matrix"]["matrix"])) == len(
        pd.read_csv(ws / "split" / "test.csv")
    )


def test_split_report_markdown_escapes_names_from_the_data(ws: Path, tmp_path: Path, monkeypatch) -> None:
    """A class named ``<script>...`` (from a taxonomy or labels someone else wrote) lands in split_report.md
    as text, not as raw HTML a Markdown viewer would run (issue 25)."""
    evil = "<script>alert(1)</script>"
    taxonomy = TAXONOMY_YAML.replace(
        "classes: [Normal, A, B, C]\n    map: {normal: Normal, lesion-a: A,",
        f'classes: [Normal, "{evil}", B, "C&D"]\n    map: {{normal: Normal, lesion-a: "{evil}",',
        1,
    ).replace("lesion-c: C}", 'lesion-c: "C&D"}', 1)
    (tmp_path / "taxonomy.yaml").write_text(taxonomy)
    monkeypatch.chdir(ws)
    out = tmp_path / "split"
    args = ["--manifest", "m", "--duplicates", "dups", "--target", "abc", "--taxonomy", str(tmp_path / "taxonomy.yaml")]
    res = runner.invoke(app, ["split", *args, "--out", str(out), "--folds", "2", "--test-fraction", "0.25"])
    assert res.exit_code == 0, res.output
    md = (out / "split_report.md").read_text()
    assert "<script" not in md and "| &lt;script>alert(1)&lt;/script> |" in md and "| c&amp;d |" in md
    assert evil in (out / "class_mapping.json").read_text()  # the data itself is unchanged


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs FIFOs and /dev/zero")
def test_audit_images_root_rejects_fifos_and_devices(tmp_path: Path) -> None:
    """A FIFO and a link to /dev/zero under audit's --images-root are unreadable rows, "not a regular
    file", instead of a hang or an endless read (issue 25, case 6); the real CLI in a child process."""
    names = special_files(tmp_path / "imgs")
    csv(tmp_path / "train.csv", "path\n" + "".join(f"{n}\n" for n in names[:2]))
    csv(tmp_path / "test.csv", "path\n" + "".join(f"{n}\n" for n in names[2:]))
    args = ["audit", "--split", "train=train.csv", "--split", "test=test.csv", "--images-root", "imgs"]
    res = subprocess.run(
        [sys.executable, "-m", "endoctl", *args, "--json", "r.json", "--workers", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "2 unreadable" in res.stdout, res.stdout
    unreadable = json.loads((tmp_path / "r.json").read_text())["unreadable"]
    assert unreadable["files"] == ["fifo.jpg: not a regular file", "zero.jpg: not a regular file"]


def test_report_with_no_readable_image_is_an_error(ws: Path, tmp_path: Path, monkeypatch) -> None:
    """report run from a folder its manifest paths do not resolve from: exit 2 and one line naming
    --data-root and the folder used, no report written, instead of "unreadable 16, 0 thumbnails" and
    exit 0 (issue 25, case 9); --data-root then makes the report."""
    monkeypatch.chdir(tmp_path)
    args = ["report", "--manifests", str(ws / "m"), "--out", "r", "--workers", "1"]
    res = runner.invoke(app, args)
    error = " ".join(res.stderr.split())
    assert res.exit_code == 2 and error.startswith("error: report: none of the 16 images could be read"), res.output
    assert f"--data-root, here {tmp_path}" in error and "file not found" in error and "\n" not in res.stderr.strip()
    assert not Path("r").exists()
    res = runner.invoke(app, [*args, "--data-root", str(ws)])
    assert res.exit_code == 0 and "report: 16 images" in res.stdout, res.output


def test_report_applies_ingests_pixel_limit(ws: Path, tmp_path: Path, monkeypatch) -> None:
    """report's ``--max-pixels`` (ingest's limit, passed on by dvc.yaml) decides for the quality
    measures and thumbnails as in ingest: below every image's size nothing can be read (one line,
    naming the reason); the default reads them all."""
    monkeypatch.chdir(ws)
    args = ["report", "--manifests", "m", "--workers", "1"]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "low"), "--max-pixels", "100"])
    error = " ".join(res.stderr.split())
    assert res.exit_code == 2 and "could be read" in error and "decompression bomb" in error, res.output
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "default")])
    assert res.exit_code == 0 and "report: 16 images" in res.stdout, res.output


def test_an_error_naming_brackets_prints_them_as_they_are(tmp_path: Path) -> None:
    """A file name like ``lab[x].csv`` looks like rich markup: the error line shows it verbatim (escaped once)."""
    src = tmp_path / "src"
    src.mkdir()
    scene(0, (64, 64)).save(src / "a.jpg")
    labels = tmp_path / "lab[x].csv"
    res = runner.invoke(
        app,
        [
            "ingest",
            str(src),
            "--format",
            "csv",
            "--labels",
            str(labels),
            "--source",
            "x",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert res.exit_code == 2
    text = "".join(res.output.split())
    assert "lab[x].csv" in text and "\\[" not in text, res.output

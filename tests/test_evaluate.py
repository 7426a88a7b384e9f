"""``endoctl evaluate``: the CE24 organisers' reports reproduced exactly, the full report, CIs, plots."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path, workbook
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score
from typer.testing import CliRunner

from endoctl.alignment import EvaluationError, load_truth
from endoctl.cli import app
from endoctl.io import read_table, write_csv, write_text
from endoctl.metrics import (
    EvalData,
    _metric_rows,
    _ranking,
    bootstrap,
    ce24_report,
    dumps,
    full_report,
)
from endoctl.plots import roc_table
from endoctl.sources.ce24 import CLASSES as CE24_CLASS_ORDER

runner = CliRunner()
SPLITS = {"validation": "validation_data.xlsx", "testing": "test_data.xlsx"}


def run_eval(*args: str | Path):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def max_abs_error(ours: object, official: object, where: str = "") -> float:
    """Largest |difference| over every number; keys (and nulls) must agree exactly."""
    if isinstance(official, dict):
        assert isinstance(ours, dict) and set(ours) == set(official), f"{where}: keys {set(ours) ^ set(official)}"
        return max([max_abs_error(ours[k], official[k], f"{where}/{k}") for k in official] or [0.0])
    assert isinstance(ours, (int, float)) and isinstance(official, (int, float)), where
    return abs(ours - official)


# ---------------------------------------------------------------- conformance with the organisers


@pytest.fixture(scope="module")
def ce24_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every shared CE24 xlsx read once per session and written as CSV (cells as text, so exact)."""
    root = shared_path("ce24")
    out = tmp_path_factory.mktemp("ce24_csv")
    for split, truth in SPLITS.items():
        write_csv(out / split / "truth.csv", read_table(root / truth))
        for file in sorted((root / "submissions" / split).glob("*.xlsx")):
            write_csv(out / split / "predictions" / f"{file.stem}.csv", read_table(file))
    return out


def official(split: str, stem: str) -> dict:
    path = shared_path("ce24", "submissions", "official_metrics", split, f"{stem}_metrics.json")
    return json.loads(path.read_text())


@pytest.mark.parametrize("split", list(SPLITS))
def test_ce24_report_equals_the_official_reports_in_folder_mode(ce24_csv: Path, tmp_path: Path, split: str) -> None:
    preds = ce24_csv / split / "predictions"
    res = run_eval(
        "--truth",
        ce24_csv / split / "truth.csv",
        "--predictions",
        preds,
        "--out",
        tmp_path / "reports",
        "--report",
        "ce24",
    )
    assert res.exit_code == 0, res.output
    stems = sorted(p.stem for p in preds.glob("*.csv"))
    assert len(stems) == 3 and sorted(p.name for p in (tmp_path / "reports").iterdir()) == [
        f"{s}_metrics.json" for s in stems
    ]
    convention = "threshold" if split == "testing" else "argmax"
    assert f"ce24 report, {convention}" in res.stdout and res.stdout.count("\n") == 1
    for stem in stems:
        ours = json.loads((tmp_path / "reports" / f"{stem}_metrics.json").read_text())
        assert max_abs_error(ours, official(split, stem)) < 1e-9, stem


def test_ce24_report_equals_the_official_reports_file_by_file(ce24_csv: Path, tmp_path: Path) -> None:
    worst = 0.0
    for split in SPLITS:
        for pred in sorted((ce24_csv / split / "predictions").glob("*.csv")):
            out = tmp_path / f"{pred.stem}.json"
            res = run_eval(
                "--truth", ce24_csv / split / "truth.csv", "--predictions", pred, "--out", out, "--report", "ce24"
            )
            assert res.exit_code == 0, res.output
            text = out.read_text()
            assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
            worst = max(worst, max_abs_error(json.loads(text), official(split, pred.stem)))
    assert worst < 1e-9  # measured: 2.2e-16


def test_ce24_report_from_the_real_xlsx_files(tmp_path: Path) -> None:
    root = shared_path("ce24")
    res = run_eval(
        "--truth",
        root / "test_data.xlsx",
        "--predictions",
        root / "submissions" / "testing",
        "--out",
        tmp_path,
        "--report",
        "ce24",
    )
    assert res.exit_code == 0, res.output
    assert "matched by file name" in res.stdout  # test predictions give bare file names
    for file in sorted((root / "submissions" / "testing").glob("*.xlsx")):
        ours = json.loads((tmp_path / f"{file.stem}_metrics.json").read_text())
        assert max_abs_error(ours, official("testing", file.stem)) < 1e-9


def test_convention_follows_the_truth_format_and_can_be_overridden(ce24_csv: Path, tmp_path: Path) -> None:
    stem = "WueVision_predicted_test_dataset"
    args = [
        "--truth",
        ce24_csv / "testing" / "truth.csv",
        "--predictions",
        ce24_csv / "testing" / "predictions" / f"{stem}.csv",
        "--report",
        "ce24",
    ]
    assert run_eval(*args, "--out", tmp_path / "a.json", "--convention", "argmax").exit_code == 0
    argmax = json.loads((tmp_path / "a.json").read_text())
    reference = official("testing", stem)
    for key in ("mean_auc", "balanced_accuracy", "avg_f1", "avg_specificity"):  # never thresholded
        assert argmax[key] == pytest.approx(reference[key], abs=1e-12)
    differs = [
        c
        for c in reference["class_wise_metrics"]
        if abs(argmax["class_wise_metrics"][c]["precision"] - reference["class_wise_metrics"][c]["precision"]) > 1e-9
    ]
    assert differs  # class-wise numbers depend on the convention


def test_full_report_on_the_paper_team_submissions(ce24_csv: Path, tmp_path: Path) -> None:
    """WueVision (EndoExtend24): balanced accuracy 0.916 on validation, 0.371 on test, as published."""
    expected = {
        "validation": ("WueVision_predicted_val_dataset", 0.916),
        "testing": ("WueVision_predicted_test_dataset", 0.371),
    }
    for split, (stem, bacc) in expected.items():
        out = tmp_path / f"{split}.json"
        res = run_eval(
            "--truth",
            ce24_csv / split / "truth.csv",
            "--predictions",
            ce24_csv / split / "predictions" / f"{stem}.csv",
            "--out",
            out,
            "--bootstrap",
            200,
        )
        assert res.exit_code == 0, res.output
        report = json.loads(out.read_text())
        assert round(report["balanced_accuracy"], 3) == bacc
        assert max_abs_error(report["ce24"], official(split, stem)) < 1e-9  # the full report embeds the official one
        ci = report["bootstrap"]["ci"]["balanced_accuracy"]
        assert ci["low"] < report["balanced_accuracy"] < ci["high"] and report["bootstrap"]["unit"] == "image"
    assert set(report) >= {"auc_macro", "auc_weighted", "auc_micro", "f1_macro", "map_macro", "confusion_matrix"}
    validation = json.loads((tmp_path / "validation.json").read_text())
    sources = validation["per_source"]
    assert sorted(sources) == ["AIIMS", "KID", "KVASIR", "SEE-AI"]  # from the truth's Dataset column
    assert sum(s["n_images"] for s in sources.values()) == validation["n_images"] == 16132


# ---------------------------------------------------------------- small synthetic data, known answers

CLASSES = ["A", "B", "C", "D"]  # D has no images: null AUC/AP, excluded from macro means
# fmt: off
ROWS = [  # image, truth, source, P(A), P(B), P(C), P(D)
    ("x/1.jpg", "a", "s1", .70, .20, .10, 0.0),
    ("x/2.jpg", "a", "s1", .60, .30, .10, 0.0),
    ("x/3.jpg", "a", "s1", .20, .50, .30, 0.0),   # -> B
    ("x/4.jpg", "b", "s1", .10, .80, .10, 0.0),
    ("x/5.jpg", "b", "s2", .45, .10, .45, 0.0),   # tie A/C -> A (first maximum, as np.argmax)
    ("x/6.jpg", "c", "s2", .10, .10, .80, 0.0),
    ("x/7.jpg", "c", "s2", .20, .20, .60, 0.0),
    ("x/8.jpg", "c", "s2", .30, .30, .40, 0.0),
]
# fmt: on


def write_case(
    folder: Path, rows: list[tuple] = ROWS, classes: list[str] = CLASSES, mapping: bool = True
) -> tuple[Path, pd.DataFrame]:
    """An endoctl split CSV (+ class_mapping.json) and the matching prediction frame."""
    truth = pd.DataFrame(
        {
            "image_id": [f"demo/{r[0]}" for r in rows],
            "source": [r[2] for r in rows],
            "path": [f"raw/{r[0]}" for r in rows],
            "label": [r[1] for r in rows],
            "target_class": [r[1] for r in rows],
            "group": [f"g{i}" for i in range(len(rows))],
            "fold": "",
        }
    )
    write_csv(folder / "test.csv", truth)
    if mapping:
        write_text(folder / "class_mapping.json", json.dumps({c.lower(): i for i, c in enumerate(classes)}))
    proba = np.array([r[3:] for r in rows], dtype=float)
    pred = pd.DataFrame(
        {
            "image_path": [f"raw/{r[0]}" for r in rows],
            **{c: proba[:, i] for i, c in enumerate(classes)},
            "predicted_class": [classes[i] for i in proba.argmax(axis=1)],
        }
    )
    return folder / "test.csv", pred


def test_full_report_known_answers(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "pred.csv", pred)
    res = run_eval(
        "--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json", "--bootstrap", 0
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "r.json").read_text())
    # confusion (rows truth A,B,C): A [2,1,0], B [1,1,0], C [0,0,3]; D never true, never predicted
    assert r["confusion_matrix"]["matrix"] == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 3, 0], [0, 0, 0, 0]]
    assert r["confusion_matrix"]["labels"] == CLASSES
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)  # 13/18
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # one-vs-rest AUC by hand (Mann-Whitney, ties 1/2): A 12.5/15, B 6.5/12, C 14/15
    auc = {"A": 5 / 6, "B": 13 / 24, "C": 14 / 15}
    ap = {"A": 5 / 6, "B": 5 / 8, "C": 11 / 12}
    for name in "ABC":
        assert r["per_class"][name]["auc"] == pytest.approx(auc[name])
        assert r["per_class"][name]["average_precision"] == pytest.approx(ap[name])
    assert r["auc_macro"] == pytest.approx(277 / 360)
    assert r["auc_weighted"] == pytest.approx(383 / 480)  # weights = support 3, 2, 3
    assert r["map_macro"] == pytest.approx(19 / 24)
    d = r["per_class"]["D"]
    assert d["support"] == 0 and d["auc"] is None and d["average_precision"] is None and d["recall"] is None
    assert any("D" in note and "excluded" in note for note in r["notes"])
    # the same numbers as sklearn on classes A-C
    y, proba = np.array([0, 0, 0, 1, 1, 2, 2, 2]), np.array([row[3:6] for row in ROWS])
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, proba.argmax(axis=1)))
    assert r["auc_macro"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    # per source: s1 = A,A,A,B -> A,A,B,B ; s2 = B,C,C,C -> A,C,C,C
    assert r["per_source"]["s1"]["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["per_source"]["s2"]["balanced_accuracy"] == pytest.approx((0 + 1) / 2)
    assert r["per_source"]["s2"]["n_images"] == 4 and r["per_source"]["s1"]["classes_present"] == ["A", "B"]
    # the organisers' report of the same data: absent D counts 0.0 in mean_auc; specificity over all 4
    ce24 = r["ce24"]
    assert ce24["mean_auc"] == pytest.approx((5 / 6 + 13 / 24 + 14 / 15 + 0) / 4)
    assert ce24["avg_specificity"] == pytest.approx((4 / 5 + 5 / 6 + 1 + 1) / 4)
    assert ce24["class_wise_metrics"]["D"]["auc"] is None
    assert r["bootstrap"] is None


def test_metrics_file_holds_the_headline_of_the_full_report(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "pred.csv", pred)
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        tmp_path / "pred.csv",
        "--out",
        tmp_path / "r.json",
        "--metrics",
        tmp_path / "m.json",
        "--bootstrap",
        50,
    )
    assert (
        res.exit_code == 2 and "holds 'class_mapping.json', 'pred.csv', 'test.csv'" in res.stderr
    )  # not a folder of its own
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        tmp_path / "pred.csv",
        "--out",
        tmp_path / "eval" / "r.json",
        "--metrics",
        tmp_path / "eval" / "m.json",
        "--bootstrap",
        50,
    )
    assert res.exit_code == 0, res.output
    r, m = (json.loads((tmp_path / "eval" / f).read_text()) for f in ("r.json", "m.json"))
    for key in ("balanced_accuracy", "auc_macro", "f1_macro", "map_macro", "accuracy", "n_images"):
        assert m[key] == r[key]
    ci = r["bootstrap"]["ci"]["balanced_accuracy"]
    assert (m["balanced_accuracy_ci_low"], m["balanced_accuracy_ci_high"]) == (ci["low"], ci["high"])
    assert m["ce24"]["mean_auc"] == r["ce24"]["mean_auc"] and "class_wise_metrics" not in m["ce24"]
    assert m["per_source"]["s2"] == {
        k: r["per_source"]["s2"][k] for k in ("balanced_accuracy", "auc_macro", "n_images")
    }
    assert "per_class" not in m and "confusion_matrix" not in m  # small enough for `dvc metrics show`
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        tmp_path / "pred.csv",
        "--out",
        tmp_path / "c.json",
        "--report",
        "ce24",
        "--metrics",
        tmp_path / "m2.json",
    )
    assert res.exit_code == 2 and "--metrics needs --report full" in res.stderr
    assert not (tmp_path / "m2.json").exists()


def test_rows_in_any_order_give_the_same_report(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "pred.csv", pred)
    write_csv(tmp_path / "shuffled.csv", pred.iloc[[5, 2, 7, 0, 3, 1, 6, 4]])
    for name in ("pred", "shuffled"):
        assert (
            run_eval(
                "--truth",
                truth,
                "--predictions",
                tmp_path / f"{name}.csv",
                "--out",
                tmp_path / f"{name}.json",
                "--bootstrap",
                50,
            ).exit_code
            == 0
        )
    assert (tmp_path / "pred.json").read_bytes() == (tmp_path / "shuffled.json").read_bytes()


def test_classes_match_case_insensitively_and_without_mapping(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path, mapping=False)
    pred = pred.drop(columns="D").rename(columns={"A": "a", "C": " c "})
    pred["predicted_class"] = pred["predicted_class"].str.lower()
    write_csv(tmp_path / "pred.csv", pred)
    assert (
        run_eval(
            "--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json", "--bootstrap", 0
        ).exit_code
        == 0
    )
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["classes"] == ["a", "B", "c"] and r["balanced_accuracy"] == pytest.approx(13 / 18)


# ---------------------------------------------------------------- sanity checks: one-line errors


def failing(tmp_path: Path, pred: pd.DataFrame, truth: Path) -> str:
    write_csv(tmp_path / "bad.csv", pred)
    res = run_eval("--truth", truth, "--predictions", tmp_path / "bad.csv", "--out", tmp_path / "failed.json")
    assert res.exit_code == 2, res.output
    error = res.stderr.strip()
    assert "\n" not in error and "bad.csv" in error and not (tmp_path / "failed.json").exists()
    return error


def test_sanity_check_failures_name_the_rows(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    error = failing(tmp_path, pred.drop(index=3), truth)
    assert "1 truth image(s) have no prediction" in error and "raw/x/4.jpg (truth row 5)" in error
    extra = pd.concat([pred, pred.iloc[[0]].assign(image_path="raw/x/99.jpg")], ignore_index=True)
    error = failing(tmp_path, extra, truth)
    assert "not in the truth" in error and "raw/x/99.jpg (row 10)" in error
    error = failing(tmp_path, pd.concat([pred, pred.iloc[[1]]], ignore_index=True), truth)
    assert "predicted more than once" in error and "raw/x/2.jpg (rows 3, 10)" in error
    nan = pred.astype(object)
    nan.loc[4, "B"] = ""
    error = failing(tmp_path, nan, truth)
    assert "empty or non-numeric" in error and "row 6 (raw/x/5.jpg) column 'B'" in error
    inf = pred.copy()
    inf.loc[6, "C"] = np.inf
    assert "non-finite" in (error := failing(tmp_path, inf, truth)) and "row 8" in error
    error = failing(tmp_path, pred.assign(Tumor=0.1), truth)
    assert "unknown class column(s) 'Tumor'" in error
    error = failing(tmp_path, pred.drop(columns="C"), truth)
    assert "no probability column for class(es) 'c'" in error
    bad_class = pred.copy()
    bad_class.loc[2, "predicted_class"] = "Tumor"
    error = failing(tmp_path, bad_class, truth)
    assert "invalid predicted_class" in error and "row 4 (raw/x/3.jpg): 'Tumor'" in error
    error = failing(tmp_path, pred.drop(columns="image_path"), truth)
    assert "no image_path column" in error


def test_workbook_sheet_with_the_predictions_is_found_and_truth_typos_blame_the_truth(tmp_path: Path) -> None:
    classes = ["Erosion", "Normal", "Polyp"]
    names = [f"{k}.jpg" for k in range(6)]
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(3), size=6).round(6)
    labels = ["Erosion", "Normal", "Polyp", "Normal", "Polyp", "Erosion"]
    truth = workbook(tmp_path / "truth.xlsx", {"Sheet1": [["image_path", "class_label"], *zip(names, labels)]})
    rows = [["image_path", *classes], *([n, *p] for n, p in zip(names, proba.tolist()))]
    workbook(tmp_path / "first_empty.xlsx", {"Sheet1": [], "predictions": rows})  # the first sheet is empty
    workbook(tmp_path / "plain.xlsx", {"Sheet1": rows})
    for name in ("first_empty", "plain"):
        res = run_eval(
            "--truth",
            truth,
            "--predictions",
            tmp_path / f"{name}.xlsx",
            "--out",
            tmp_path / f"{name}.json",
            "--bootstrap",
            0,
        )
        assert res.exit_code == 0, res.output
    assert (tmp_path / "first_empty.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    # a class the truth names but the predictions lack: a known class blames the predictions ...
    workbook(tmp_path / "no_polyp.xlsx", {"Sheet1": [[c for c in row if c != "Polyp"][:3] for row in rows]})
    res = run_eval("--truth", truth, "--predictions", tmp_path / "no_polyp.xlsx", "--out", tmp_path / "x.json")
    assert res.exit_code == 2 and "no_polyp.xlsx: no probability column for truth class(es) 'Polyp'" in res.stderr
    # ... a label that is no class anywhere blames the truth, naming its row
    workbook(
        tmp_path / "typo.xlsx",
        {"Sheet1": [["image_path", "class_label"], *zip(names, [*labels[:4], "Tumour", "Erosion"])]},
    )
    res = run_eval(
        "--truth", tmp_path / "typo.xlsx", "--predictions", tmp_path / "plain.xlsx", "--out", tmp_path / "x.json"
    )
    assert res.exit_code == 2
    assert f"truth {tmp_path / 'typo.xlsx'}: unknown class 'Tumour' in column class_label (rows 6)" in " ".join(
        res.stderr.split()
    )


def test_file_names_are_matched_unless_they_repeat_then_full_paths_are_needed(tmp_path: Path) -> None:
    rows = [
        (f"{folder}/{i}.jpg", cls, "s", 0.8, 0.1, 0.1, 0.0)
        if cls == "a"
        else (f"{folder}/{i}.jpg", cls, "s", 0.1, 0.8, 0.1, 0.0)
        for folder, cls in (("f1", "a"), ("f2", "b"))
        for i in range(3)
    ]
    truth, pred = write_case(tmp_path, rows)
    write_csv(tmp_path / "full.csv", pred)
    res = run_eval(
        "--truth", truth, "--predictions", tmp_path / "full.csv", "--out", tmp_path / "r.json", "--bootstrap", 0
    )
    assert res.exit_code == 0 and "matched by path (path)" in res.stdout  # same names in two folders: fine by path
    error = failing(
        tmp_path, pred.assign(image_path=pred["image_path"].str.replace("raw/", "elsewhere\\", regex=False)), truth
    )
    assert "truth file names repeat" in error and "'0.jpg' in truth rows 2, 5" in error

    unique_truth, unique_pred = write_case(tmp_path / "u")
    write_csv(
        tmp_path / "names.csv", unique_pred.assign(image_path=unique_pred["image_path"].str.rsplit("/", n=1).str[-1])
    )
    res = run_eval(
        "--truth", unique_truth, "--predictions", tmp_path / "names.csv", "--out", tmp_path / "n.json", "--bootstrap", 0
    )
    assert res.exit_code == 0 and "matched by file name" in res.stdout


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "pred.csv", pred)
    base = ["--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json"]
    for extra, expected in (
        (["--report", "short"], "--report"),
        (["--convention", "vote"], "--convention"),
        (["--bootstrap", "-1"], "--bootstrap"),
    ):
        res = run_eval(*base, *extra)
        assert res.exit_code == 2 and expected in res.stderr and "\n" not in res.stderr.strip()
    res = run_eval(
        "--truth", tmp_path / "nope.csv", "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json"
    )
    assert res.exit_code == 2 and "nope.csv" in res.stderr
    (tmp_path / "empty").mkdir()
    res = run_eval("--truth", truth, "--predictions", tmp_path / "empty", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "no prediction files" in res.stderr
    write_csv(tmp_path / "weird.csv", pd.DataFrame({"image_path": ["a.jpg"], "width": ["3"]}))
    with pytest.raises(EvaluationError, match=r"no class information.*\['image_path', 'width'\]"):
        load_truth(tmp_path / "weird.csv")


# ---------------------------------------------------------------- the metric cores against sklearn


def test_weighted_ranking_and_confusion_metrics_equal_sklearn_with_sample_weights() -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):  # ties (rounded scores), zero weights, tiny sets
        n = int(rng.integers(3, 80))
        score = np.round(rng.random(n), int(rng.integers(0, 3)))
        positive = rng.random(n) < 0.4
        weight = rng.integers(0, 4, n).astype(float)
        if weight[positive].sum() == 0 or weight[~positive].sum() == 0:
            continue
        auc, ap = _ranking(score, positive, weight[:, None])
        assert auc[0] == pytest.approx(roc_auc_score(positive, score, sample_weight=weight), abs=1e-12), trial
        assert ap[0] == pytest.approx(average_precision_score(positive, score, sample_weight=weight), abs=1e-12), trial
    y = rng.integers(0, 5, 400)
    proba = rng.dirichlet(np.ones(5), 400) + 0.3 * np.eye(5)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    weight = rng.integers(0, 3, 400).astype(float)
    rows = _metric_rows(y, proba, weight[:, None])
    pred = proba.argmax(axis=1)
    assert rows["balanced_accuracy"][0] == pytest.approx(balanced_accuracy_score(y, pred, sample_weight=weight))
    assert rows["f1_macro"][0] == pytest.approx(f1_score(y, pred, average="macro", sample_weight=weight))
    assert rows["auc_macro"][0] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr", sample_weight=weight))


def test_ce24_report_handles_a_class_absent_from_truth_and_predictions() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0]])
    r = ce24_report(y, proba, ["a", "b", "c"])
    assert r["balanced_accuracy"] == 1.0 and r["avg_precision"] == 1.0  # macro over classes seen (sklearn labels)
    assert r["mean_auc"] == pytest.approx(2 / 3)  # c: undefined AUC counted 0.0, as the organisers do
    assert r["class_wise_metrics"]["c"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1_score": 0.0,
        "specificity": 1.0,
        "accuracy": 1.0,
        "auc": None,
    }


# ---------------------------------------------------------------- bootstrap confidence intervals


def synthetic(
    n_groups: int = 40, per_group: int = 25, classes: int = 4, seed: int = 0, shared: bool = True
) -> EvalData:
    """Images in groups; with ``shared`` every image of a group is right or wrong together (like video frames)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(rng.integers(0, classes, n_groups), per_group)
    n = len(y)
    right = np.repeat(rng.random(n_groups) < 0.7, per_group) if shared else rng.random(n) < 0.7
    noise = rng.dirichlet(np.ones(classes), n)
    target = np.where(right, y, (y + 1) % classes)
    proba = 0.5 * noise + 0.5 * np.eye(classes)[target]
    group = np.repeat([f"g{i}" for i in range(n_groups)], per_group)
    return EvalData(
        classes=[f"k{i}" for i in range(classes)], y=y, proba=proba, image=np.arange(n).astype(str), group=group
    )


def test_bootstrap_cis_contain_the_estimate_and_are_seeded() -> None:
    data = synthetic(n_groups=300, per_group=2, shared=False)
    report = full_report(data, n_bootstrap=300, seed=1)
    for key, ci in report["bootstrap"]["ci"].items():
        assert ci["low"] <= report[key] <= ci["high"], key
        assert ci["valid"] == 300 and ci["high"] - ci["low"] > 0
    again = full_report(data, n_bootstrap=300, seed=1)
    assert dumps(again) == dumps(report)
    assert full_report(data, n_bootstrap=300, seed=2)["bootstrap"] != report["bootstrap"]
    assert report["bootstrap"]["unit"] == "group" and report["bootstrap"]["units"] == 300


def test_group_resampling_is_wider_than_image_resampling_when_groups_are_large() -> None:
    data = synthetic(n_groups=40, per_group=25, shared=True)
    by_group = bootstrap(data.y, data.proba, data.classes, 400, 0, data.group)["ci"]
    by_image = bootstrap(data.y, data.proba, data.classes, 400, 0, None)["ci"]
    for key in ("accuracy", "balanced_accuracy", "f1_macro"):
        width_group = by_group[key]["high"] - by_group[key]["low"]
        width_image = by_image[key]["high"] - by_image[key]["low"]
        assert width_group > 2.5 * width_image, key  # 25 correlated frames per group: ~5x wider


def test_bootstrap_of_16k_images_takes_seconds() -> None:
    import time

    data = synthetic(n_groups=400, per_group=40, classes=10)
    started = time.perf_counter()
    result = bootstrap(data.y, data.proba, data.classes, 1000, 0, data.group)
    assert time.perf_counter() - started < 20  # ~2 s on the 2-core reference machine
    assert result["ci"]["auc_macro"]["valid"] == 1000


# ---------------------------------------------------------------- plots and DVC plot data


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plots_and_dvc_plot_files(tmp_path: Path) -> None:
    data = synthetic(n_groups=60, per_group=5, classes=4, shared=False)
    truth = pd.DataFrame(
        {
            "image_id": data.image,
            "source": "demo",
            "path": [f"i/{k}.jpg" for k in data.image],
            "label": "",
            "target_class": [data.classes[k] for k in data.y],
            "group": data.group,
            "fold": "",
        }
    )
    write_csv(tmp_path / "truth" / "test.csv", truth)
    pred = pd.DataFrame({"image_path": truth["path"], **{c: data.proba[:, i] for i, c in enumerate(data.classes)}})
    write_csv(tmp_path / "preds" / "model.csv", pred)
    outputs = []
    for run in ("one", "two"):
        res = run_eval(
            "--truth",
            tmp_path / "truth" / "test.csv",
            "--predictions",
            tmp_path / "preds",
            "--out",
            tmp_path / run,
            "--plots",
            tmp_path / run / "plots",
            "--bootstrap",
            100,
        )
        assert res.exit_code == 0, res.output
        outputs.append(tmp_path / run / "plots" / "model")
    assert "bootstrap resamples of groups" in res.stdout
    first, second = outputs
    assert sorted(p.name for p in first.iterdir()) == [
        "confusion.csv",
        "confusion_matrix.png",
        "roc.csv",
        "roc.png",
        "roc_micro.csv",
    ]
    for name in ("confusion_matrix.png", "roc.png"):
        width, height = png_size(first / name)
        assert width >= 800 and height >= 500 and (first / name).stat().st_size > 30_000
    for name in ("confusion_matrix.png", "roc.png", "roc.csv", "roc_micro.csv", "confusion.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name  # deterministic
    assert (tmp_path / "one" / "model_metrics.json").read_bytes() == (
        tmp_path / "two" / "model_metrics.json"
    ).read_bytes()
    roc = pd.read_csv(first / "roc.csv")
    assert list(roc.columns) == ["fpr", "tpr", "class"]
    assert set(roc["class"]) == {*data.classes, "micro", "macro"}
    assert roc["fpr"].between(0, 1).all() and roc["tpr"].between(0, 1).all()
    micro = pd.read_csv(first / "roc_micro.csv")  # the one curve DVC plots per revision
    expected = roc.loc[roc["class"] == "micro", ["fpr", "tpr"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(micro, expected)
    assert micro["fpr"].is_monotonic_increasing and micro["tpr"].is_monotonic_increasing
    confusion = pd.read_csv(first / "confusion.csv")
    assert list(confusion.columns) == ["actual", "predicted"] and len(confusion) == len(data.y)
    assert set(confusion["actual"]) <= set(data.classes)


def test_roc_table_skips_classes_without_images() -> None:
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0]])
    table = roc_table(y, proba, ["a", "b", "c"])
    assert set(table["class"]) == {"a", "b", "micro", "macro"}


def test_split_truth_problems_and_taxonomy_display_names(tmp_path: Path) -> None:
    ce24 = list(CE24_CLASS_ORDER)
    rows = [(f"x/{i}.jpg", ce24[i].lower(), "s", *np.eye(10)[i]) for i in range(10)]
    truth, pred = write_case(tmp_path, rows, ce24)
    pred.columns = [c.lower() if c in ce24 else c for c in pred.columns]  # class columns in any case
    write_csv(tmp_path / "pred.csv", pred)
    assert (
        run_eval(
            "--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json", "--bootstrap", 0
        ).exit_code
        == 0
    )
    assert json.loads((tmp_path / "r.json").read_text())["classes"] == ce24  # display names from the taxonomy
    frame = read_table(truth)
    write_csv(truth, pd.concat([frame, frame.iloc[[0]]], ignore_index=True))
    res = run_eval("--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json")
    assert res.exit_code == 2 and "listed more than once" in res.stderr and "rows 2, 12" in res.stderr
    write_csv(truth, frame.assign(target_class=["tumour"] + list(frame["target_class"][1:])))
    res = run_eval("--truth", truth, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "r.json")
    assert res.exit_code == 2 and "'tumour' are not among the classes" in res.stderr


# ---------------------------------------------------------------- leak-free evaluation (--train)


def leak_case(folder: Path) -> tuple[Path, Path, Path]:
    """ROWS as truth (each image its own group), the last one renamed to a numbered frame, and a
    training file sharing: group g1 (row 2), the image of row 3 itself, group g5 (row 6), and a frame
    3 numbers from row 8's."""
    rows = [r if i != 7 else ("x/image00100.jpg", *r[1:]) for i, r in enumerate(ROWS)]
    truth, pred = write_case(folder, rows)
    write_csv(folder / "pred.csv", pred)
    train = pd.DataFrame(
        {
            "image_id": ["other/1.jpg", "demo/x/3.jpg", "other/2.jpg", "other/image00103.jpg"],
            "source": ["s1", "s1", "s2", "s2"],
            "path": ["raw/o/1.jpg", "raw/x/3.jpg", "raw/o/2.jpg", "raw/o/image00103.jpg"],
            "label": "a",
            "target_class": "a",
            "group": ["g1", "g99", "g5", "g98"],
            "fold": "0",
        }
    )
    write_csv(folder / "train_val.csv", train)
    return truth, folder / "pred.csv", folder / "train_val.csv"


def test_leak_free_metrics_on_the_images_no_training_group_holds(tmp_path: Path) -> None:
    truth, pred, train = leak_case(tmp_path)
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        pred,
        "--out",
        tmp_path / "out" / "r.json",
        "--bootstrap",
        20,
        "--train",
        train,
        "--metrics",
        tmp_path / "out" / "m.json",
    )
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "out" / "r.json").read_text())
    free = r["leak_free"]
    # left: rows 1 (a -> A), 4 (b -> B), 5 (b -> A on the A/C tie), 7 (c -> C)
    assert free["n_images"] == 4 and free["of_images"] == 8 and r["n_images"] == 8
    assert free["group_trained"] == 3 and free["frame_adjacent_only"] == 1 and free["frame_gap"] == 5
    assert free["balanced_accuracy"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    assert free["balanced_accuracy"] == pytest.approx(balanced_accuracy_score([0, 1, 1, 2], [0, 1, 0, 2]))
    assert free["confusion_matrix"]["matrix"][:3] == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]]
    assert free["train"] == [str(train)] and free["bootstrap"]["n"] == 20
    listed = read_table(tmp_path / "out" / "leak_free_images.csv")
    assert list(listed.columns) == ["image_id", "source", "path", "group", "label"]
    assert listed["image_id"].tolist() == ["demo/x/1.jpg", "demo/x/4.jpg", "demo/x/5.jpg", "demo/x/7.jpg"]
    m = json.loads((tmp_path / "out" / "m.json").read_text())
    assert m["leak_free"] == {
        k: free[k] for k in ("balanced_accuracy", "auc_macro", "f1_macro", "map_macro", "n_images")
    }
    assert "(leak-free 4 of 8 images: balanced accuracy 0.8333" in res.stdout
    # groups only; a smaller gap; the organisers' report
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        pred,
        "--out",
        tmp_path / "g" / "r.json",
        "--bootstrap",
        0,
        "--train",
        train,
        "--frame-gap",
        "0",
    )
    assert json.loads((tmp_path / "g" / "r.json").read_text())["leak_free"]["n_images"] == 5
    assert len(read_table(tmp_path / "g" / "leak_free_images.csv")) == 5  # beside the report
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        pred,
        "--out",
        tmp_path / "c" / "r.json",
        "--report",
        "ce24",
        "--train",
        train,
        "--frame-gap",
        "2",
    )
    ce24 = json.loads((tmp_path / "c" / "r.json").read_text())
    assert ce24["leak_free"]["n_images"] == 5 and set(ce24["leak_free"]) >= {
        "mean_auc",
        "balanced_accuracy",
        "class_wise_metrics",
    }
    # nothing leak-free: counts, no metrics
    write_csv(tmp_path / "all.csv", read_table(truth))
    res = run_eval(
        "--truth", truth, "--predictions", pred, "--out", tmp_path / "n" / "r.json", "--train", tmp_path / "all.csv"
    )
    assert res.exit_code == 0 and "(leak-free 0 of 8 images: none)" in res.stdout
    assert json.loads((tmp_path / "n" / "r.json").read_text())["leak_free"]["n_images"] == 0
    for extra, expected in (
        (["--train", tmp_path / "nope.csv"], "--train file not found"),
        (["--images-root", tmp_path], "--images-root needs --train"),
        (["--train", train, "--frame-gap", "-1"], "--frame-gap must be >= 0"),
    ):
        res = run_eval("--truth", truth, "--predictions", pred, "--out", tmp_path / "e" / "r.json", *extra)
        assert res.exit_code == 2 and expected in res.stderr and "\n" not in res.stderr.strip()


def test_leak_free_with_images_counts_near_duplicates(tmp_path: Path) -> None:
    from PIL import Image

    from endoctl.testing import scene

    rows = [(f"x/{k}.jpg", "a" if k % 2 else "b", "s", 0.7, 0.3) for k in range(4)]
    truth, pred = write_case(tmp_path, rows, ["A", "B"])
    write_csv(tmp_path / "pred.csv", pred)
    (tmp_path / "raw" / "x").mkdir(parents=True)
    for k in range(4):
        scene(k, (320, 280)).save(tmp_path / "raw" / "x" / f"{k}.jpg", quality=90)
    with Image.open(tmp_path / "raw" / "x" / "2.jpg") as im:  # a resized, re-encoded copy in training
        im.resize((240, 210), Image.LANCZOS).save(tmp_path / "raw" / "copy.jpg", quality=70)
    (tmp_path / "train.csv").write_text("path\nraw/copy.jpg\n")
    args = [
        "--truth",
        truth,
        "--predictions",
        tmp_path / "pred.csv",
        "--bootstrap",
        0,
        "--train",
        tmp_path / "train.csv",
    ]
    assert run_eval(*args, "--out", tmp_path / "names" / "r.json").exit_code == 0
    assert (
        json.loads((tmp_path / "names" / "r.json").read_text())["leak_free"]["n_images"] == 4
    )  # names alone: unrelated
    res = run_eval(*args, "--out", tmp_path / "hashed" / "r.json", "--images-root", tmp_path, "--workers", 1)
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "hashed" / "r.json").read_text())["leak_free"]["n_images"] == 3
    assert "demo/x/2.jpg" not in set(read_table(tmp_path / "hashed" / "leak_free_images.csv")["image_id"])


# On CE24's official validation, with training_data.xlsx as the training file: how much of each team's
# score survives on the images no training video or file name holds (groups, --frame-gap 0), and on those
# with no training frame within ±5 numbers either (the default). (balanced accuracy, macro AUC, macro F1,
# mAP) on all 16,132 images, then leak-free.
CE24_LEAK_FREE = {
    "PuppyOps": (
        (0.785, 0.9915, 0.8149, 0.8772),
        {0: (0.7131, 0.9641, 0.6558, 0.8089), 5: (0.6304, 0.9745, 0.6129, 0.7654)},
    ),
    "Seq2Cure": (
        (0.8634, 0.9896, 0.8645, 0.9038),
        {0: (0.8059, 0.9685, 0.718, 0.8674), 5: (0.74, 0.9642, 0.6457, 0.7584)},
    ),
    "WueVision": (
        (0.9159, 0.9918, 0.9061, 0.9305),
        {0: (0.8776, 0.9826, 0.7693, 0.9187), 5: (0.7451, 0.9484, 0.7423, 0.7883)},
    ),
}
CE24_LEAK_FREE_IMAGES = {0: {"KID": 165, "SEE-AI": 4115}, 5: {"KID": 165, "SEE-AI": 26}}


@pytest.fixture(scope="module")
def ce24_training_csv(ce24_csv: Path) -> Path:
    """CE24's training_data.xlsx as CSV, beside the other CSV copies."""
    write_csv(ce24_csv / "training.csv", read_table(shared_path("ce24", "training_data.xlsx")))
    return ce24_csv / "training.csv"


@pytest.mark.parametrize("gap", [0, 5])
def test_leak_free_scores_of_the_ce24_validation_submissions(
    ce24_csv: Path, ce24_training_csv: Path, tmp_path: Path, gap: int
) -> None:
    training = read_table(ce24_training_csv)
    res = run_eval(
        "--truth",
        ce24_csv / "validation" / "truth.csv",
        "--predictions",
        ce24_csv / "validation" / "predictions",
        "--out",
        tmp_path / "reports",
        "--bootstrap",
        0,
        "--train",
        ce24_training_csv,
        "--frame-gap",
        gap,
    )
    assert res.exit_code == 0, res.output
    free = read_table(tmp_path / "reports" / "leak_free_images.csv")
    # facts from the files alone: no leak-free image shares a Kvasir-Capsule or AIIMS video or a file
    # with a training image, or (gap 5) lies within 5 frame numbers of one of the same prefix
    name = lambda paths: paths.str.replace("\\", "/", regex=False).str.rsplit("/", n=1).str[-1]  # noqa: E731
    assert not set(free["source"] + "/" + name(free["path"])) & set(
        training["Dataset"] + "/" + name(training["image_path"])
    )
    video = r"^((?:[0-9a-f]{16}|ulcer[0-9]+|worm[0-9]+))_[0-9]+\.jpg$"
    train_videos = set(name(training["image_path"]).str.extract(video)[0].dropna())
    assert len(train_videos) == 41 + 6 and not set(name(free["path"]).str.extract(video)[0].dropna()) & train_videos
    if gap:
        numbered = r"^(image|[0-9a-f]{16}_|(?:ulcer|worm)[0-9]+_)([0-9]+)\.jpg$"
        t = name(training["image_path"]).str.extract(numbered).dropna()
        taken = {(p, int(f) + d) for p, f in t.itertuples(index=False) for d in range(-gap, gap + 1)}
        f = name(free["path"]).str.extract(numbered).dropna()
        assert len(f) and not any((p, int(n)) in taken for p, n in f.itertuples(index=False))
    # the numbers, at the time
    assert free.groupby("source").size().to_dict() == CE24_LEAK_FREE_IMAGES[gap]
    for team, (full, leak_free) in CE24_LEAK_FREE.items():
        r = json.loads((tmp_path / "reports" / f"{team}_predicted_val_dataset_metrics.json").read_text())
        keys = ("balanced_accuracy", "auc_macro", "f1_macro", "map_macro")
        assert tuple(round(r[k], 4) for k in keys) == full
        assert tuple(round(r["leak_free"][k], 4) for k in keys) == leak_free[gap], team
        assert r["leak_free"]["n_images"] == len(free) and r["leak_free"]["group_trained"] == 16132 - 4280


# ---------------------------------------------------------------- the stage without the command line


def test_output_plan_puts_every_output_in_one_folder(tmp_path: Path) -> None:
    from endoctl.evaluate import EvaluateRequest, plan_outputs
    from endoctl.plots import PLOT_FILES

    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "preds" / "m1.csv", pred)
    write_csv(tmp_path / "preds" / "m2.csv", pred)
    one, train = tmp_path / "preds" / "m1.csv", (tmp_path / "train.csv",)
    alone = plan_outputs(EvaluateRequest(truth, one, tmp_path / "r.json"), [one])
    assert alone.home is None and alone.reports == {one: tmp_path / "r.json"}
    d = tmp_path / "d"  # the dvc.yaml form: report, --metrics, --plots and the leak-free list in one folder
    dvc = plan_outputs(
        EvaluateRequest(truth, one, d / "report.json", plots=d, metrics_out=d / "metrics.json", train=train), [one]
    )
    assert (dvc.home, dvc.option, dvc.leak_free) == (d, "--plots", d / "leak_free_images.csv")
    assert dvc.owned == tuple(sorted({"leak_free_images.csv", "metrics.json", "report.json", *PLOT_FILES}))
    files = [one, tmp_path / "preds" / "m2.csv"]
    folder = plan_outputs(
        EvaluateRequest(truth, tmp_path / "preds", tmp_path / "o", plots=tmp_path / "o" / "plots"), files
    )
    assert folder.home == tmp_path / "o" and folder.owned == (
        "m1_metrics.json",
        "m2_metrics.json",
        "plots",
        "*_metrics.json",
    )
    assert folder.plot_dirs[files[1]] == tmp_path / "o" / "plots" / "m2"
    with pytest.raises(ValueError, match=r"m.json is outside .*ev: .*\(--plots .*ev\)"):
        plan_outputs(
            EvaluateRequest(
                truth, one, tmp_path / "ev" / "r.json", plots=tmp_path / "ev", metrics_out=tmp_path / "m.json"
            ),
            [one],
        )


def test_evaluate_stage_scores_a_folder_and_the_command_only_prints_it(tmp_path: Path) -> None:
    import contextlib
    import re

    from endoctl.evaluate import EvaluateRequest, evaluate, input_files

    truth, pred, train = leak_case(tmp_path)
    (tmp_path / "preds").mkdir()
    pred.rename(tmp_path / "preds" / "b.csv")
    write_csv(tmp_path / "preds" / "a.csv", read_table(tmp_path / "preds" / "b.csv").iloc[::-1])
    opened = []

    @contextlib.contextmanager
    def hashing():
        opened.append(True)
        yield None

    request = EvaluateRequest(truth, tmp_path / "preds", tmp_path / "out", bootstrap=10, train=(train,), frame_gap=5)
    result = evaluate(request, hashing)
    assert opened == [True] and [s.file.name for s in result.scored] == ["a.csv", "b.csv"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_metrics.json",
        "b_metrics.json",
        "leak_free_images.csv",
    ]
    a, b = (json.loads((tmp_path / "out" / f"{s}_metrics.json").read_text()) for s in "ab")
    assert a == b == json.loads(dumps(result.scored[0].report))  # row order never matters
    assert {
        k: a["leak_free"][k] for k in ("train", "frame_gap", "group_trained", "frame_adjacent_only", "n_images")
    } == {"train": [str(train)], "frame_gap": 5, "group_trained": 3, "frame_adjacent_only": 1, "n_images": 4}
    assert result.notes() == [f"{f}: {n}" for f in ("a.csv", "b.csv") for n in a["notes"]]
    # the command: the same request parsed from its options, the same summary line
    res = run_eval(
        "--truth",
        truth,
        "--predictions",
        tmp_path / "preds",
        "--out",
        tmp_path / "out",
        "--bootstrap",
        10,
        "--train",
        train,
        "--frame-gap",
        5,
    )
    assert res.exit_code == 0, res.output
    timing = re.compile(r" in \d+\.\d s ->")
    assert timing.sub(" in T s ->", res.stdout) == timing.sub(" in T s ->", result.summary()) + "\n"
    assert json.loads((tmp_path / "out" / "a_metrics.json").read_text()) == a
    with pytest.raises(ValueError, match="--metrics needs --report full and a single predictions file"):
        input_files(EvaluateRequest(truth, tmp_path / "preds", tmp_path / "o2", metrics_out=tmp_path / "o2" / "m.json"))


def test_frame_gap_default_is_dedupes_sequence_gap() -> None:
    import typer.main

    from endoctl.cli.common import resolve_frame_gap
    from endoctl.params import DedupeParams

    gap = DedupeParams().sequence_gap
    commands = typer.main.get_command(app).commands
    for command in ("evaluate", "audit"):
        (help_text,) = [p.help for p in commands[command].params if p.name == "frame_gap"]
        assert help_text.endswith(f"Default: dedupe's sequence gap ({gap})."), command
    assert resolve_frame_gap(None) == gap


# ---------------------------------------------------------------- scores instead of probabilities


def organisers_report(onehot: np.ndarray, values: np.ndarray, classes: list[str], threshold: bool) -> dict:
    """The CE24 organisers' metric script (Results/gen_metrics_test.py with ``threshold``, else
    gen_metrics_report_val_train.py), re-stated with sklearn: it takes the submitted values as they
    are, so scores are ranked for AUC, argmax'ed, and (test) compared with 0.5 as they stand."""
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    def specificity(t: np.ndarray, p: np.ndarray) -> float:
        tn, fp, _, _ = confusion_matrix(t, p, labels=[0, 1]).ravel()
        return tn / (tn + fp) if tn + fp > 0 else 0

    yt, yp = onehot.argmax(axis=1), values.argmax(axis=1)
    aucs = []
    for i in range(len(classes)):
        try:
            aucs.append(roc_auc_score(onehot[:, i], values[:, i]))
        except ValueError:
            aucs.append(0.0)
    class_wise = {}
    for i, name in enumerate(classes):
        t = (onehot[:, i] >= 0.5 if threshold else yt == i).astype(int)
        p = (values[:, i] >= 0.5 if threshold else yp == i).astype(int)
        class_wise[name] = {
            "precision": precision_score(t, p, zero_division=0),
            "recall": recall_score(t, p, zero_division=0),
            "f1_score": f1_score(t, p, zero_division=0),
            "specificity": specificity(t, p),
            "accuracy": float((t == p).mean()),
            "auc": roc_auc_score(onehot[:, i], values[:, i]),
        }
    return {
        "mean_auc": float(np.mean(aucs)),
        "balanced_accuracy": balanced_accuracy_score(yt, yp),
        "avg_precision": precision_score(yt, yp, average="macro", zero_division=0),
        "avg_sensitivity": recall_score(yt, yp, average="macro", zero_division=0),
        "avg_f1": f1_score(yt, yp, average="macro", zero_division=0),
        "avg_specificity": float(np.mean([specificity(yt == i, yp == i) for i in range(len(classes))])),
        "class_wise_metrics": class_wise,
    }


CE24_CLASSES = list(CE24_CLASS_ORDER)  # the challenge's classes, in its column order


def logit_submission(ce24_csv: Path, split: str, stem: str, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """A shared probability submission turned into logits (as 4 of the 45 real CE24 submissions hold
    raw scores), written to ``out``; returns the truth one-hot and the logits, aligned by file name."""
    pred = pd.read_csv(ce24_csv / split / "predictions" / f"{stem}.csv")
    truth = pd.read_csv(ce24_csv / split / "truth.csv")
    p = np.clip(pred[CE24_CLASSES].to_numpy(dtype=np.float64), 1e-9, 1 - 1e-9)
    pred[CE24_CLASSES] = np.log(p) - np.log1p(-p)
    pred.to_csv(out, index=False, float_format="%.17g")

    pkeys, tkeys = (t["image_path"].str.replace("\\", "/") for t in (pred, truth))
    if set(pkeys) != set(tkeys):  # test predictions give bare file names (unique there)
        pkeys, tkeys = (k.str.rsplit("/", n=1).str[-1] for k in (pkeys, tkeys))
    values = pred.set_index(pkeys).loc[tkeys, CE24_CLASSES].to_numpy()
    if "class_label" in truth:
        onehot = (truth["class_label"].to_numpy()[:, None] == np.array(CE24_CLASSES)[None, :]).astype(float)
    else:
        onehot = truth[CE24_CLASSES].to_numpy(dtype=float)
    return onehot, values


@pytest.mark.parametrize(
    "split, stem", [("testing", "WueVision_predicted_test_dataset"), ("validation", "PuppyOps_predicted_val_dataset")]
)
def test_ce24_report_scores_score_valued_submissions_as_the_organisers(
    ce24_csv: Path, tmp_path: Path, split: str, stem: str
) -> None:
    scores = tmp_path / f"{stem}_logits.csv"
    onehot, values = logit_submission(ce24_csv, split, stem, scores)
    assert values.min() < -5 and values.max() > 1  # raw scores, as e.g. -10.08, 1.07 in the real ones
    truth = ce24_csv / split / "truth.csv"
    out = tmp_path / "r.json"
    res = run_eval("--truth", truth, "--predictions", scores, "--out", out, "--report", "ce24")
    assert res.exit_code == 0, res.output
    assert "outside [0, 1]: scores, not probabilities; scored as given" in res.output
    ours = json.loads(out.read_text())
    expected = organisers_report(onehot, values, CE24_CLASSES, threshold=split == "testing")
    assert max_abs_error(ours, expected) < 1e-12
    # logits keep the ranks and the argmax: the headline equals the organisers' report of the probabilities
    reference = official(split, stem)
    for key in ("mean_auc", "balanced_accuracy", "avg_precision", "avg_f1", "avg_specificity"):
        assert ours[key] == pytest.approx(reference[key], abs=1e-12), key
    if split == "testing":  # but thresholding a logit at 0.5 is not thresholding its probability at 0.5
        assert max_abs_error(ours["class_wise_metrics"], reference["class_wise_metrics"]) > 1e-3


def test_scores_outside_the_ce24_report_need_the_scores_option(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    write_csv(tmp_path / "pred.csv", pred)
    logits = pred.copy()
    p = np.clip(pred[CLASSES].to_numpy(), 1e-6, 1 - 1e-6)
    logits[CLASSES] = np.log(p) - np.log1p(-p)
    write_csv(tmp_path / "logits.csv", logits)
    args = ["--truth", truth, "--bootstrap", 0]
    res = run_eval(*args, "--predictions", tmp_path / "logits.csv", "--out", tmp_path / "bad.json")
    assert res.exit_code == 2 and not (tmp_path / "bad.json").exists()
    message = " ".join(res.output.split())
    assert "outside [0, 1] probability value(s)" in message and "--scores" in message and "--report ce24" in message
    assert res.output.count("error:") == 1
    assert run_eval(*args, "--predictions", tmp_path / "pred.csv", "--out", tmp_path / "p.json").exit_code == 0
    res = run_eval(*args, "--predictions", tmp_path / "logits.csv", "--out", tmp_path / "s.json", "--scores")
    assert res.exit_code == 0, res.output
    probs, scores = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("p", "s"))
    for key in ("balanced_accuracy", "accuracy", "f1_macro", "precision_macro", "auc_macro", "map_macro"):
        assert scores[key] == pytest.approx(probs[key], abs=1e-12), key  # argmax and ranks: unchanged
    assert scores["per_class"] == probs["per_class"] and scores["confusion_matrix"] == probs["confusion_matrix"]
    assert scores["auc_micro"] is None and scores["ce24"] is None and scores["values"] == "scores"
    assert probs["values"] == "probabilities" and probs["ce24"] is not None
    assert any("--scores" in note for note in scores["notes"])


def test_folder_run_scores_every_readable_file_and_counts_the_broken_ones(tmp_path: Path) -> None:
    truth, pred = write_case(tmp_path)
    preds = tmp_path / "preds"
    write_csv(preds / "a_good.csv", pred)
    bad = pred.copy()
    bad.loc[0, "A"] = -10.08
    write_csv(preds / "b_scores.csv", bad)
    (preds / "c_broken.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    write_csv(preds / "d_good.csv", pred.iloc[::-1])
    out = tmp_path / "reports"
    out.mkdir()
    write_text(out / "b_scores_metrics.json", "{}\n")  # a stale report of a file that is now broken
    res = run_eval("--truth", truth, "--predictions", preds, "--out", out, "--bootstrap", 0)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3, res.stderr
    assert errors[0].startswith("error: b_scores.csv: 1 outside [0, 1] probability value(s)")
    assert errors[1].startswith("error: c_broken.xlsx: ")
    assert "2 of 4 prediction file(s) could not be scored" in errors[2]
    assert sorted(p.name for p in out.iterdir()) == ["a_good_metrics.json", "d_good_metrics.json"]
    assert (out / "a_good_metrics.json").read_text() == (out / "d_good_metrics.json").read_text()
    assert "a_good" in res.stdout and "d_good" in res.stdout
    # every file broken: one error, nothing written
    for name in ("a_good.csv", "d_good.csv"):
        (preds / name).unlink()
    res = run_eval("--truth", truth, "--predictions", preds, "--out", out, "--bootstrap", 0)
    assert res.exit_code == 2 and "none of the 2 prediction file(s)" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["a_good_metrics.json", "d_good_metrics.json"]

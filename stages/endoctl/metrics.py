"""Evaluation: align predictions to ground truth as the CE24 organisers do, then score them.

Two reports, both pure functions of ``(y, proba, classes)``:

* :func:`ce24_report` re-computes the Capsule Vision 2024 organisers' JSON exactly (same keys,
  same averaging and zero-division rules; see its docstring), so an endoctl number can be compared
  with the official leaderboard to the last digit.
* :func:`full_report` adds what the EndoExtend24 paper reports and what a researcher needs:
  balanced accuracy, macro/weighted/micro AUC, macro F1, macro mAP, per-class values, the
  confusion matrix, per-source metrics and bootstrap confidence intervals (resampling whole
  groups, i.e. patients/videos, when the truth has them: frames of one video are not independent).

Every ranking and confusion metric, point estimate and bootstrap alike, goes through the same
weighted, vectorised code (:func:`_ranking`, :func:`_confusion_stats`): a point estimate is the
all-ones weight row, a bootstrap replicate is a row of resampling counts. So the CIs are computed
by exactly the formulas of the point estimates, and 1,000 replicates of 16k images take seconds.

Row alignment never guesses (:func:`align`): every truth image must be predicted exactly once,
by full path when the prediction paths are the truth's paths, else by file name; any mismatch is
a one-line :class:`EvaluationError` naming the first offending rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.io import MAPPING_FILE
from endoctl.io import read_table as io_read_table
from endoctl.params import EVALUATE

# Columns that are never class columns (lower-case), in truth and prediction files alike.
METADATA_COLUMNS = frozenset(
    {
        "image_path",
        "predicted_class",
        "dataset",
        "source",
        "image_id",
        "path",
        "label",
        "target_class",
        "class_label",
        "group",
        "fold",
        "patient_id",
        "official_split",
        "split",
        "width",
        "height",
        "bytes",
        "sha256",
        "phash",
        "dhash",
    }
)
KEY_COLUMNS = ("path", "image_path", "image_id")  # truth columns a prediction may quote in full
CONVENTIONS = ("argmax", "threshold")
REPORTS = ("full", "ce24")
VALUES = ("probabilities", "scores", "ce24")  # what align accepts in the class columns
SCORES_HINT = (
    " (scores, not probabilities? --scores scores them by argmax and ranks only; --report ce24 scores them "
    "as the CE24 organisers did)"
)
CI_LEVEL = 0.95
SHOWN = 3  # offending rows named in one error message
PROBA_SLACK = 1e-6  # float32 rounding may put a softmax output a hair outside [0, 1]
BOOTSTRAP_CELLS = 2_000_000  # replicate rows x images per chunk: bounds memory, not results

_CE24_KEYS = ("precision", "recall", "f1_score", "specificity", "accuracy", "auc")


class EvaluationError(ValueError):
    """A truth/prediction pair that cannot be scored; the message is one line naming the rows."""


# ------------------------------------------------------------------------------- reading tables


def _read_table(path: str | Path, key_columns: tuple[str, ...] = KEY_COLUMNS, one_sheet: bool = False) -> pd.DataFrame:
    """:func:`endoctl.io.read_table`, its unreadable-file errors as :class:`EvaluationError`."""
    try:
        return io_read_table(path, key_columns=key_columns, one_sheet=one_sheet)
    except FileNotFoundError:
        raise
    except ValueError as exc:
        raise EvaluationError(str(exc)) from None


def _posix(values: pd.Series) -> pd.Series:
    return values.str.replace("\\", "/", regex=False)


def _basename(values: pd.Series) -> pd.Series:
    return _posix(values).str.rsplit("/", n=1).str[-1]


def _numeric(values: pd.Series) -> np.ndarray:
    """Floats; unparsable or empty cells become NaN (reported by the caller)."""
    return pd.to_numeric(values.where(values != "", None), errors="coerce").to_numpy(dtype=np.float64)


def _looks_numeric(values: pd.Series) -> bool:
    """Some cell parses as a number: a score column (its bad cells are then reported by row)."""
    filled = values[values != ""]
    return len(filled) > 0 and not np.isnan(_numeric(filled)).all()


def _rows(index: Sequence[int] | np.ndarray) -> list[int]:
    return [int(i) + 2 for i in index]


def _first(items: Sequence[str], total: int | None = None) -> str:
    """The first few offending items, and how many there are when not all are shown."""
    total = len(items) if total is None else total
    more = f", ... ({total} in all)" if total > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


# ----------------------------------------------------------------------------------- truth


@dataclass(frozen=True)
class Truth:
    """A ground-truth table, whatever its format, reduced to what alignment needs."""

    path: Path
    format: str  # "split" (endoctl target_class), "onehot" (CE24 validation), "class_label" (CE24 test)
    frame: pd.DataFrame  # text cells, original index (row = index + 2)
    labels: pd.Series  # truth class per row, as spelled in the file
    classes: list[str] | None  # the declared class list (order), or None: take the prediction's columns
    display: dict[str, str]  # lower-case class -> display name, where the truth knows one
    source: pd.Series | None
    group: pd.Series | None

    @property
    def default_convention(self) -> str:
        """The organisers thresholded at 0.5 on test (``class_label`` truth), took argmax elsewhere."""
        return "threshold" if self.format == "class_label" else "argmax"


def _column(df: pd.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    return next((lower[n] for n in names if n in lower), None)


def _known_classes() -> frozenset[str]:
    """Every class name (lower-case) of the packaged taxonomy's targets: a truth label outside it
    is a misspelling in the truth rather than a class the predictions forgot."""
    try:
        from endoctl.taxonomy import load_taxonomy

        return frozenset(c.lower() for target in load_taxonomy().targets.values() for c in target.classes)
    except (ValueError, OSError):
        return frozenset()


def _display_from_taxonomy(keys: list[str]) -> dict[str, str]:
    """Display names of a taxonomy target with exactly these class keys (e.g. 'foreign body' -> 'Foreign Body')."""
    try:
        from endoctl.taxonomy import load_taxonomy

        for target in load_taxonomy().targets.values():
            if [c.lower() for c in target.classes] == keys:
                return {c.lower(): c for c in target.classes}
    except (ValueError, OSError):  # a broken taxonomy must not block evaluation
        pass
    return {}


def load_truth(path: str | Path) -> Truth:
    """Read an endoctl split CSV, a CE24 one-hot truth (validation) or a ``class_label`` truth (test).

    The format is recognised by columns, not by file extension, so a CSV export of a CE24 xlsx
    behaves like the xlsx. For a split CSV the class list (with absent classes) comes from the
    ``class_mapping.json`` beside it when present.
    """
    path = Path(path)
    df = _read_table(path)
    if not len(df):
        raise EvaluationError(f"truth {path}: no rows")
    if not any(_column(df, k) for k in KEY_COLUMNS):
        raise EvaluationError(
            f"truth {path}: no image column (path, image_path or image_id); found columns {list(df.columns)}"
        )
    classes: list[str] | None = None
    display: dict[str, str] = {}
    if (col := _column(df, "target_class")) is not None:
        fmt, labels = "split", df[col]
        mapping_file = path.parent / MAPPING_FILE
        if mapping_file.is_file():
            mapping = json.loads(mapping_file.read_text(encoding="utf-8"))
            classes = [k for k, _ in sorted(mapping.items(), key=lambda kv: kv[1])]
            display = _display_from_taxonomy([c.lower() for c in classes])
    elif (col := _column(df, "class_label")) is not None:
        fmt, labels = "class_label", df[col]
    else:
        onehot = [
            c
            for c in df.columns
            if c.lower() not in METADATA_COLUMNS
            and _looks_numeric(df[c])
            and set(np.unique(_numeric(df[c]))) <= {0.0, 1.0}
        ]
        if len(onehot) < 2:
            raise EvaluationError(
                f"truth {path}: no class information: expected target_class (endoctl split), class_label "
                f"(CE24 test) or one-hot class columns (CE24 validation); found columns {list(df.columns)}"
            )
        values = np.nan_to_num(np.column_stack([_numeric(df[c]) for c in onehot]), nan=0.0)
        bad = np.flatnonzero(values.sum(axis=1) != 1)
        if len(bad):
            raise EvaluationError(
                f"truth {path}: {len(bad)} row(s) without exactly one class set to 1, "
                f"first: rows {_first([str(r) for r in _rows(df.index[bad])])}"
            )
        fmt, classes = "onehot", onehot
        labels = pd.Series(np.asarray(onehot, dtype=object)[values.argmax(axis=1)], index=df.index)
        display = {c.lower(): c for c in onehot}
    empty = np.flatnonzero(labels.to_numpy() == "")
    if len(empty):
        raise EvaluationError(
            f"truth {path}: {len(empty)} row(s) without a class, first: rows "
            f"{_first([str(r) for r in _rows(df.index[empty])])}"
        )
    source_col, group_col = _column(df, "source", "dataset"), _column(df, "group")
    return Truth(
        path,
        fmt,
        df,
        labels,
        classes,
        display,
        df[source_col] if source_col else None,
        df[group_col] if group_col else None,
    )


# ---------------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class EvalData:
    """Truth and predictions aligned row by row (truth order): the input of every report."""

    classes: list[str]  # display names, in probability-column order
    y: np.ndarray  # (n,) truth class index
    proba: np.ndarray  # (n, C) float64 scores
    image: np.ndarray  # (n,) the truth image key used for matching
    source: np.ndarray | None = None
    group: np.ndarray | None = None
    truth_format: str = "split"
    match: str = "path"  # "path" (full path in truth column ...) or "file name"
    notes: list[str] = field(default_factory=list)
    scores: bool = False  # the values are scores, not probabilities: only argmax and rank metrics (--scores)

    @property
    def pred(self) -> np.ndarray:
        """Predicted class = first maximal probability (``np.argmax``, as the organisers)."""
        return self.proba.argmax(axis=1)


def align(truth: Truth, pred: pd.DataFrame, name: str, values: str = "probabilities") -> EvalData:
    """Match prediction rows to truth rows as the organisers do, checking everything they check.

    Keys: the full path (``\\`` read as ``/``) when the prediction quotes the paths of a truth key
    column (``path``, ``image_path``, ``image_id``): every prediction that matches by file name
    also matches by full path there (so file names may repeat across folders, and a stray extra
    image is reported as extra, not as a reason to fall back). Otherwise the file name, which must
    then be unique in the truth (the organisers' test set: bare names). Fails with a
    one-line :class:`EvaluationError` on: missing/unknown class columns, truth images without a
    prediction, predicted images not in the truth, duplicates, empty or non-numeric probabilities,
    non-finite probabilities, and ``predicted_class`` values that are no class.

    ``values`` (:data:`VALUES`): ``probabilities`` must lie in [0, 1]; ``scores`` (``--scores``) may be
    any finite number and mark the data as scores, so reports keep to argmax and rank metrics;
    ``ce24`` accepts any finite number as the organisers' script does (a note counts those outside
    [0, 1]), for their report, which takes the values as given.
    """
    if values not in VALUES:
        raise ValueError(f"unknown values {values!r}; choose one of {', '.join(VALUES)}")
    path_col = _image_path_column(pred, name)
    columns = _class_columns(truth, pred, name)
    keys_c = [c.lower() for c in columns]
    classes = _class_names(truth, columns)
    match, pkeys, tkeys = _match_keys(truth, pred[path_col], name)
    tk, pk = tkeys.to_numpy(), pkeys.to_numpy()
    _check_one_prediction_per_image(truth, pkeys, tk, pk, name)
    proba = _probabilities(pred, columns, pk, name, values)
    predicted = _predicted_classes(pred, keys_c, classes, pk, name)
    order = pd.Series(np.arange(len(pk)), index=pk).loc[tk].to_numpy()
    proba = proba[order]
    notes = [] if predicted is None else _argmax_notes(predicted[order], proba, keys_c)
    notes += _score_notes(proba, values)
    if skipped := pred.attrs.get("passed_over"):
        notes.append(
            f"{name}: predictions read from sheet {pred.attrs['sheet']!r}; {', '.join(map(repr, skipped))} "
            "hold(s) only the header"
        )
    index_of = {k: i for i, k in enumerate(keys_c)}
    y = np.array([index_of[v] for v in truth.labels.str.lower().to_numpy()])
    return EvalData(
        classes=classes,
        y=y,
        proba=proba,
        image=tk,
        source=None if truth.source is None else truth.source.to_numpy(),
        group=None if truth.group is None else truth.group.to_numpy(),
        truth_format=truth.format,
        match=match,
        notes=notes,
        scores=values == "scores",
    )


def _image_path_column(pred: pd.DataFrame, name: str) -> str:
    """The prediction's ``image_path`` column; a table without it, or without rows, cannot be matched."""
    sheet = pred.attrs.get("sheet")
    path_col = _column(pred, "image_path")
    if path_col is None:
        where = (
            f"no sheet has an image_path column (sheet {sheet!r}" if sheet is not None else "no image_path column (file"
        )
        raise EvaluationError(f"{name}: {where} has columns {list(pred.columns)})")
    if not len(pred):
        raise EvaluationError(
            f"{name}: no prediction rows (header only{f', sheet {sheet!r}' if sheet is not None else ''})"
        )
    return path_col


def _class_columns(truth: Truth, pred: pd.DataFrame, name: str) -> list[str]:
    """The prediction's probability columns, in class order: the truth's classes where it declares
    them, else the prediction's own score columns (which must cover every truth label)."""
    candidates = [c for c in pred.columns if c.lower() not in METADATA_COLUMNS]
    if truth.classes is not None:
        return _declared_class_columns(truth.classes, pred, candidates, name)
    return _offered_class_columns(truth, pred, candidates, name)


def _declared_class_columns(declared: list[str], pred: pd.DataFrame, candidates: list[str], name: str) -> list[str]:
    """One column per declared truth class (any case); a score column for another class is an error."""
    by_lower = {c.lower(): c for c in pred.columns}
    missing = [c for c in declared if c.lower() not in by_lower]
    if missing:
        raise EvaluationError(
            f"{name}: no probability column for class(es) {_first([repr(c) for c in missing])} "
            f"(truth classes: {', '.join(declared)})"
        )
    wanted = {c.lower() for c in declared}
    unknown = [c for c in candidates if c.lower() not in wanted and _looks_numeric(pred[c])]
    if unknown:
        raise EvaluationError(
            f"{name}: unknown class column(s) {_first([repr(c) for c in unknown])} "
            f"(truth classes: {', '.join(declared)})"
        )
    return [by_lower[c.lower()] for c in declared]


def _offered_class_columns(truth: Truth, pred: pd.DataFrame, candidates: list[str], name: str) -> list[str]:
    """The score columns of a prediction for a truth without a class list (``class_label`` truth, or a
    split CSV without class_mapping.json); a truth label lacking one blames the truth when it is
    no class of any taxonomy target (a typo there), else the predictions."""
    columns = [c for c in candidates if _looks_numeric(pred[c])]
    have = {c.lower() for c in columns}
    lacking = sorted({lab for lab in truth.labels if lab.lower() not in have})
    known = _known_classes()
    strangers = [c for c in lacking if known and c.lower() not in known]
    if strangers and columns:
        rows = _rows(truth.labels.index[truth.labels == strangers[0]])
        col = _column(truth.frame, "class_label") or "class"
        raise EvaluationError(
            f"truth {truth.path}: unknown class {strangers[0]!r} in column {col} (rows "
            f"{_first([str(r) for r in rows])})"
            + (f" and {len(strangers) - 1} more unknown class(es)" if len(strangers) > 1 else "")
            + f": not a class of the predictions ({', '.join(columns)}) nor of any taxonomy target"
        )
    if lacking:
        raise EvaluationError(
            f"{name}: no probability column for truth class(es) {_first([repr(c) for c in lacking])} "
            f"(probability columns: {', '.join(columns) or 'none'})"
        )
    return columns


def _class_names(truth: Truth, columns: list[str]) -> list[str]:
    """Display names of the class columns (the truth's spelling where it knows one); every truth
    label must be one of them."""
    keys_c = [c.lower() for c in columns]
    classes = [truth.display.get(k) or c for k, c in zip(keys_c, columns)]
    unknown = sorted(set(truth.labels.str.lower().to_numpy()) - set(keys_c))
    if unknown:
        raise EvaluationError(
            f"truth {truth.path}: class(es) {_first([repr(u) for u in unknown])} are not among "
            f"the classes {', '.join(classes)}"
        )
    return classes


def _match_keys(truth: Truth, paths: pd.Series, name: str) -> tuple[str, pd.Series, pd.Series]:
    """``(match, prediction keys, truth keys)``: full paths where the prediction quotes the paths of a
    truth key column, else file names (also when they match more rows: the prediction's folders
    differ); the truth keys must be unique."""
    pkeys = _posix(paths)
    empty = np.flatnonzero(pkeys.to_numpy() == "")
    if len(empty):
        raise EvaluationError(
            f"{name}: {len(empty)} row(s) without image_path, first: rows "
            f"{_first([str(r) for r in _rows(paths.index[empty])])}"
        )
    match, tkeys, best = "file name", None, 0
    for col in KEY_COLUMNS:
        if (tcol := _column(truth.frame, col)) is not None:
            candidate = _posix(truth.frame[tcol])
            hits = int(pkeys.isin(set(candidate)).sum())
            if hits > best:
                match, tkeys, best = f"path ({tcol})", candidate, hits
    tcol = _column(truth.frame, "image_path") or _column(truth.frame, "path") or _column(truth.frame, "image_id")
    by_name = int(_basename(paths).isin(set(_basename(truth.frame[tcol]))).sum())
    if tkeys is None or by_name > best:
        match, pkeys, tkeys = "file name", _basename(paths), _basename(truth.frame[tcol])
    _check_unique_truth_keys(truth, tkeys, match, tcol, name)
    return match, pkeys, tkeys


def _check_unique_truth_keys(truth: Truth, tkeys: pd.Series, match: str, tcol: str, name: str) -> None:
    """A repeated key would match one prediction to several truth rows: by file name the prediction
    must then quote the full paths, by path the truth lists an image twice."""
    repeated = tkeys[tkeys.duplicated(keep=False)]
    if not len(repeated):
        return
    first = repeated.iloc[0]
    rows = ", ".join(map(str, _rows(repeated.index[repeated == first])))
    if match == "file name":
        raise EvaluationError(
            f"{name}: prediction paths are not the truth's paths and truth file names repeat "
            f"({repeated.nunique()} names, first {first!r} in truth rows {rows}): "
            f"give image_path as in the truth's {tcol} column"
        )
    raise EvaluationError(
        f"truth {truth.path}: {repeated.nunique()} image(s) listed more than once, first {first!r} in rows {rows}"
    )


def _check_one_prediction_per_image(truth: Truth, pkeys: pd.Series, tk: np.ndarray, pk: np.ndarray, name: str) -> None:
    """Every truth image predicted, no other image predicted, none predicted twice."""
    tset, pset = set(tk), set(pk)
    miss = [i for i, k in enumerate(tk) if k not in pset]
    if miss:
        raise EvaluationError(
            f"{name}: {len(miss)} truth image(s) have no prediction, first: "
            + _first([f"{tk[i]} (truth row {r})" for i, r in zip(miss, _rows(truth.frame.index[miss]))])
        )
    extra = [i for i, k in enumerate(pk) if k not in tset]
    if extra:
        raise EvaluationError(
            f"{name}: {len(extra)} predicted image(s) are not in the truth, first: "
            + _first([f"{pk[i]} (row {r})" for i, r in zip(extra, _rows(pkeys.index[extra]))])
        )
    dup = pkeys[pkeys.duplicated(keep=False)]
    if len(dup):
        shown = []
        for key in dict.fromkeys(dup.to_numpy()):
            shown.append(f"{key} (rows {', '.join(map(str, _rows(dup.index[dup == key])))})")
        raise EvaluationError(f"{name}: {len(shown)} image(s) predicted more than once, first: {_first(shown)}")


def _outside(proba: np.ndarray) -> np.ndarray:
    """Cells outside [0, 1] (beyond float32 rounding); NaN is not outside."""
    with np.errstate(invalid="ignore"):
        return (proba < -PROBA_SLACK) | (proba > 1 + PROBA_SLACK)


def _probabilities(
    pred: pd.DataFrame, columns: list[str], pk: np.ndarray, name: str, values: str = "probabilities"
) -> np.ndarray:
    """The class columns as floats (prediction row order); every cell a finite number, in [0, 1]
    unless ``values`` accepts scores (see :func:`align`)."""
    proba = np.column_stack([_numeric(pred[c]) for c in columns]) if columns else np.zeros((len(pred), 0))
    outside = _outside(proba) if values == "probabilities" else np.zeros(proba.shape, dtype=bool)
    for problem, bad in (
        ("empty or non-numeric", np.isnan(proba)),
        ("non-finite", np.isinf(proba)),
        ("outside [0, 1]", outside),
    ):
        cells = np.argwhere(bad)
        if len(cells):
            shown = [
                f"row {_rows([pred.index[r]])[0]} ({pk[r]}) column {columns[c]!r}: {pred[columns[c]].iloc[r]!r}"
                for r, c in cells[:SHOWN]
            ]
            hint = ""
            if problem.startswith("outside"):
                hint = SCORES_HINT
                if proba.min() >= 0 and np.allclose(proba.sum(axis=1), 100, rtol=1e-3):
                    hint = " (every row sums to 100: percentages? give probabilities, i.e. divide by 100)"
            raise EvaluationError(
                f"{name}: {len(cells)} {problem} probability value(s), first: {_first(shown, len(cells))}{hint}"
            )
    return proba


def _score_notes(proba: np.ndarray, values: str) -> list[str]:
    """Under ``values="ce24"``, a note counting the values that are no probability (scored as given)."""
    n = int(_outside(proba).sum()) if values == "ce24" else 0
    if not n:
        return []
    return [
        f"{n} value(s) outside [0, 1]: scores, not probabilities; scored as given, as the CE24 organisers' "
        "script does (argmax, AUC from ranks; a threshold convention compares the raw values with 0.5)"
    ]


def _predicted_classes(
    pred: pd.DataFrame, keys_c: list[str], classes: list[str], pk: np.ndarray, name: str
) -> np.ndarray | None:
    """The ``predicted_class`` column lower-cased (prediction row order), None without one; each a class."""
    pc_col = _column(pred, "predicted_class")
    if pc_col is None:
        return None
    pc = pred[pc_col].str.lower().to_numpy()
    bad = np.flatnonzero(~np.isin(pc, keys_c))
    if len(bad):
        shown = [f"row {r} ({pk[i]}): {pred[pc_col].iloc[i]!r}" for i, r in zip(bad, _rows(pred.index[bad]))]
        raise EvaluationError(
            f"{name}: {len(bad)} invalid predicted_class value(s), first: {_first(shown)} "
            f"(classes: {', '.join(classes)})"
        )
    return pc


def _argmax_notes(predicted: np.ndarray, proba: np.ndarray, keys_c: list[str]) -> list[str]:
    """A note when ``predicted_class`` (truth order) disagrees with the probabilities, which the metrics use."""
    index_of = {k: i for i, k in enumerate(keys_c)}
    differs = np.flatnonzero(np.array([index_of[v] for v in predicted]) != proba.argmax(axis=1))
    if not len(differs):
        return []
    return [f"predicted_class differs from the probabilities' argmax on {len(differs)} row(s); metrics use the argmax"]


def load_predictions(path: str | Path) -> pd.DataFrame:
    """A prediction table (CE24 submission xlsx/CSV or endoctl predict CSV), as text.

    From a workbook, the one sheet with an ``image_path`` column and rows (a header-only sheet, a
    template, is passed over, and :func:`align` notes the sheet used). Two such
    sheets are refused, naming them: scoring the first could score a stale run.
    """
    return _read_table(path, ("image_path",), one_sheet=True)


PREDICTION_SUFFIXES = (".csv", ".xlsx", ".xlsm", ".xls")


def prediction_files(folder: str | Path, exclude: Sequence[str | Path] = ()) -> list[Path]:
    """Prediction tables in ``folder``, sorted by name (hidden and Excel lock files skipped)."""
    skip = {Path(p).resolve() for p in exclude}
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file()
        and p.suffix.lower() in PREDICTION_SUFFIXES
        and not p.name.startswith((".", "~$"))
        and p.resolve() not in skip
    )


# ------------------------------------------------------------------------ vectorised metric cores


def _ranking(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ROC AUC and average precision of one class for every weight column at once.

    ``weights`` (n, B) are sample counts (a ones column = the plain estimate). Equal scores form
    one threshold: AUC is the Mann-Whitney statistic with ties counted 1/2 (= sklearn's
    trapezoidal ``roc_auc_score``); AP = sum over thresholds, descending, of the recall increase
    times the precision (= sklearn's ``average_precision_score``). NaN where a column has no
    positives (AUC: or no negatives). Only the cumulative weight needs a pass over all images;
    everything else is evaluated at the (few) score values that hold a positive.
    """
    positive = positive.astype(bool)
    order = np.argsort(score, kind="mergesort")
    s, pos = score[order], positive[order]
    w = weights[order]
    cum_w = np.cumsum(w, axis=0)  # weight scored <= each image's score (within ties: up to it)
    pos_rows = np.flatnonzero(pos)
    if not len(pos_rows):
        nan = np.full(weights.shape[1], np.nan)
        return nan, nan.copy()
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first image of each distinct score
    ends = np.r_[starts[1:] - 1, len(s) - 1]
    run_of = np.searchsorted(starts, pos_rows, side="right") - 1
    first = np.r_[True, run_of[1:] != run_of[:-1]]
    runs = run_of[first]  # thresholds holding a positive
    p = w[pos_rows] if first.all() else np.add.reduceat(w[pos_rows], np.flatnonzero(first), axis=0)
    cum_p = np.cumsum(p, axis=0)  # positive weight scored <= each such threshold
    ptot = cum_p[-1]
    ntot = cum_w[-1] - ptot
    through = cum_w[ends[runs]]
    before = cum_w[np.maximum(starts[runs] - 1, 0)] * (starts[runs] > 0)[:, None]
    total = through - before  # all weight at exactly this score
    n_at = total - p
    n_below = through - cum_p - n_at
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (p * (n_below + 0.5 * n_at)).sum(axis=0) / (ptot * ntot)
        tp = ptot - cum_p + p  # positives scored >= this threshold
        fp = ntot - n_below  # negatives scored >= this threshold
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=(tp + fp) > 0)
        ap = (p * precision).sum(axis=0) / ptot
    auc[(ptot == 0) | (ntot == 0)] = np.nan
    ap[ptot == 0] = np.nan
    return auc, ap


def _confusions(y: np.ndarray, pred: np.ndarray, n_classes: int, weights: np.ndarray) -> np.ndarray:
    """Weighted confusion matrices (B, C, C) for weight columns (n, B); rows = truth, columns = prediction."""
    cell = y * n_classes + pred
    order = np.argsort(cell, kind="mergesort")
    sorted_cell = cell[order]
    starts = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]])
    out = np.zeros((n_classes * n_classes, weights.shape[1]))
    out[sorted_cell[starts]] = np.add.reduceat(weights[order], starts, axis=0)
    return out.T.reshape(-1, n_classes, n_classes)


def _confusion_stats(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class counts and rates of (B, C, C) confusion matrices; NaN where a rate is undefined.

    Undefined: recall of a class absent from the truth (excluded from macro means), precision and
    F1 of a class neither present nor predicted. A present class never predicted has precision 0
    (as sklearn's ``zero_division=0``), so it lowers the macro means instead of vanishing. F1 is
    defined for every class in the truth *or* the predictions, as scikit-learn's
    ``f1_score(average="macro")``: predicting a class the truth lacks is an error that a macro F1
    over the truth's classes alone would hide (a predicted-but-absent class has F1 0).
    """
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    total = cm.sum(axis=(1, 2))[:, None]
    fp, fn = predicted - tp, support - tp
    tn = total - tp - fp - fn
    present = support > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(present, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, np.where(present, 0.0, np.nan))
        f1 = np.where(present | (predicted > 0), 2 * tp / (support + predicted), np.nan)
        specificity = np.where(tn + fp > 0, tn / (tn + fp), np.nan)
    return {
        "tp": tp,
        "support": support,
        "predicted": predicted,
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "specificity": specificity,
        "accuracy": np.trace(cm, axis1=1, axis2=2) / total[:, 0],
    }


def f1_macro(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Macro F1 over the classes in the truth or the predictions (scikit-learn's ``average="macro"``).

    The one definition of macro F1: the evaluation report and training's validation metrics both use it.
    """
    stats = _confusion_stats(_confusions(np.asarray(y), np.asarray(pred), n_classes, np.ones((len(y), 1))))
    return float(_nanmean(stats["f1"])[0])


def _nanmean(values: np.ndarray, axis: int = -1) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        count = (~np.isnan(values)).sum(axis=axis)
        return np.where(count > 0, np.nansum(values, axis=axis) / np.maximum(count, 1), np.nan)


def _metric_rows(y: np.ndarray, proba: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every full-report metric for every weight row: the one formula for point and bootstrap."""
    n_classes = proba.shape[1]
    stats = _confusion_stats(_confusions(y, proba.argmax(axis=1), n_classes, weights))
    auc = np.empty((weights.shape[1], n_classes))
    ap = np.empty_like(auc)
    for c in range(n_classes):
        auc[:, c], ap[:, c] = _ranking(proba[:, c], (y == c).astype(np.float64), weights)
    support = stats["support"]
    auc_defined = ~np.isnan(auc)
    with np.errstate(invalid="ignore", divide="ignore"):
        weighted = np.where(auc_defined, auc * support, 0).sum(axis=1) / np.where(auc_defined, support, 0).sum(axis=1)
    present = support > 0
    return {
        "balanced_accuracy": _nanmean(stats["recall"]),
        "accuracy": stats["accuracy"],
        "precision_macro": _nanmean(np.where(present, stats["precision"], np.nan)),
        "f1_macro": _nanmean(stats["f1"]),
        "auc_macro": _nanmean(auc),
        "auc_weighted": weighted,
        "map_macro": _nanmean(ap),
        "class_precision": stats["precision"],
        "class_recall": stats["recall"],
        "class_f1": stats["f1"],
        "class_specificity": stats["specificity"],
        "class_auc": auc,
        "class_average_precision": ap,
        "class_support": support,
        "class_predicted": stats["predicted"],
    }


# ------------------------------------------------------------------------------ the CE24 report


def ce24_report(y: np.ndarray, proba: np.ndarray, classes: Sequence[str], convention: str = "argmax") -> dict:
    """The CE24 organisers' metrics report, number for number.

    Conventions (misahub2023/Capsule-Vision-2024-Challenge, ``Results/gen_metrics_*.py``; verified
    to 1e-12 against their JSONs): predicted class = argmax of the probabilities (first maximum);

    * ``mean_auc``: plain mean over all classes of one-vs-rest ROC AUC (sklearn ``roc_auc_score``
      of the 0/1 truth column vs the probability column); a class absent from the truth counts 0.0.
    * ``balanced_accuracy``: sklearn ``balanced_accuracy_score`` = mean recall over the classes
      present in the truth.
    * ``avg_precision`` / ``avg_sensitivity`` / ``avg_f1``: sklearn macro averages with
      ``zero_division=0`` over the classes present in the truth *or* the predictions (sklearn's
      default labels), so ``avg_sensitivity`` equals ``balanced_accuracy`` unless a class is
      predicted that the truth lacks.
    * ``avg_specificity``: mean over all classes of TN / (TN + FP) of argmax predictions (0 if
      TN + FP = 0).
    * ``class_wise_metrics``: per class, binary precision, recall, F1 (zero division -> 0),
      specificity, accuracy = (TP + TN) / n and the AUC above (null if undefined). Binary
      predictions come from ``convention``: ``argmax`` (validation reports) or ``threshold``:
      probability >= 0.5 per column, independently (test reports).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    n_classes = len(classes)
    pred = proba.argmax(axis=1)
    ones = np.ones((len(y), 1))
    auc = np.array([_ranking(proba[:, c], (y == c).astype(np.float64), ones)[0][0] for c in range(n_classes)])
    cm = _confusions(y, pred, n_classes, ones)[0]
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    labels = (support > 0) | (predicted > 0)  # sklearn's default label set
    present = support > 0

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(len(num)), where=den > 0)

    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * tp, support + predicted)
    fp = predicted - tp
    tn = len(y) - support - fp
    specificity = ratio(tn, tn + fp)

    truth_bin = y[:, None] == np.arange(n_classes)[None, :]
    pred_bin = proba >= 0.5 if convention == "threshold" else pred[:, None] == np.arange(n_classes)[None, :]
    b_tp = (truth_bin & pred_bin).sum(axis=0).astype(np.float64)
    b_fp = (~truth_bin & pred_bin).sum(axis=0).astype(np.float64)
    b_fn = (truth_bin & ~pred_bin).sum(axis=0).astype(np.float64)
    b_tn = len(y) - b_tp - b_fp - b_fn
    class_wise = {}
    for c, name in enumerate(classes):
        values = (
            ratio(b_tp[c : c + 1], b_tp[c : c + 1] + b_fp[c : c + 1])[0],
            ratio(b_tp[c : c + 1], b_tp[c : c + 1] + b_fn[c : c + 1])[0],
            ratio(2 * b_tp[c : c + 1], 2 * b_tp[c : c + 1] + b_fp[c : c + 1] + b_fn[c : c + 1])[0],
            ratio(b_tn[c : c + 1], b_tn[c : c + 1] + b_fp[c : c + 1])[0],
            (b_tp[c] + b_tn[c]) / len(y),
            None if np.isnan(auc[c]) else auc[c],
        )
        class_wise[name] = dict(zip(_CE24_KEYS, values))
    return {
        "mean_auc": float(np.nan_to_num(auc, nan=0.0).mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "avg_precision": float(precision[labels].mean()),
        "avg_sensitivity": float(recall[labels].mean()),
        "avg_f1": float(f1[labels].mean()),
        "avg_specificity": float(specificity.mean()),
        "class_wise_metrics": class_wise,
    }


# ------------------------------------------------------------------------------ the full report


def micro_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """AUC of all (image, class) pairs pooled: one-hot truth vs probability."""
    truth = (y[:, None] == np.arange(proba.shape[1])[None, :]).ravel().astype(np.float64)
    auc, _ = _ranking(proba.ravel(), truth, np.ones((truth.size, 1)))
    return float(auc[0])


def class_auc(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC per class (NaN for a class without positives or negatives)."""
    ones = np.ones((len(y), 1))
    return np.array([_ranking(proba[:, c], y == c, ones)[0][0] for c in range(proba.shape[1])])


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = truth, columns = prediction."""
    return _confusions(y, pred, n_classes, np.ones((len(y), 1)))[0].astype(np.int64)


def _headline(rows: Mapping[str, np.ndarray], i: int = 0) -> dict[str, float]:
    keys = ("balanced_accuracy", "accuracy", "precision_macro", "f1_macro", "auc_macro", "auc_weighted", "map_macro")
    return {k: float(rows[k][i]) for k in keys}


def _resample_weights(units: np.ndarray, n_units: int, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` bootstrap weight columns (n, count): each unit (image or group) drawn with replacement."""
    draws = rng.integers(0, n_units, size=(count, n_units))
    flat = (draws * count + np.arange(count)[:, None]).ravel()  # unit-major: row = unit, column = replicate
    per_unit = np.bincount(flat, minlength=n_units * count).reshape(n_units, count)
    return per_unit[units].astype(np.float64)


def bootstrap(
    y: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    n: int = EVALUATE.bootstrap,
    seed: int = EVALUATE.seed,
    groups: np.ndarray | None = None,
) -> dict:
    """Percentile 95% CIs of every full-report metric from ``n`` seeded resamples.

    With ``groups`` whole groups (patients/videos and their duplicates) are resampled, since
    frames of one video are correlated and resampling them one by one understates the
    uncertainty; otherwise images. Replicates are computed in chunks by the point-estimate
    formulas (``_metric_rows``); the chunking never changes the numbers.
    """
    if groups is not None:
        unit_names, units = np.unique(groups.astype(str), return_inverse=True)
        unit = "group"
    else:
        units = np.arange(len(y))
        unit_names, unit = units, "image"
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n, BOOTSTRAP_CELLS // max(len(y), 1)))
    parts: list[dict[str, np.ndarray]] = []
    done = 0
    while done < n:
        count = min(chunk, n - done)
        parts.append(_metric_rows(y, proba, _resample_weights(units, len(unit_names), rng, count)))
        done += count
    rows = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    lo, hi = 50 * (1 - CI_LEVEL), 50 * (1 + CI_LEVEL)

    def ci(values: np.ndarray) -> dict[str, float | int | None]:
        valid = values[~np.isnan(values)]
        if not len(valid):
            return {"low": None, "high": None, "std": None, "valid": 0}
        low, high = np.percentile(valid, [lo, hi])
        return {
            "low": float(low),
            "high": float(high),
            "std": float(valid.std(ddof=1)) if len(valid) > 1 else 0.0,
            "valid": int(len(valid)),
        }

    headline = (
        "balanced_accuracy",
        "accuracy",
        "precision_macro",
        "f1_macro",
        "auc_macro",
        "auc_weighted",
        "map_macro",
    )
    per_class = {
        name: {k: ci(rows[f"class_{k}"][:, c]) for k in ("precision", "recall", "f1", "auc", "average_precision")}
        for c, name in enumerate(classes)
    }
    return {
        "n": n,
        "seed": seed,
        "unit": unit,
        "units": int(len(unit_names)),
        "level": CI_LEVEL,
        "method": "percentile",
        "ci": {k: ci(rows[k]) for k in headline},
        "per_class": per_class,
    }


def _absent_note(classes: Sequence[str], support: np.ndarray, where: str = "the truth") -> list[str]:
    absent = [c for c, s in zip(classes, support) if s == 0]
    if not absent:
        return []
    return [
        f"class(es) {', '.join(absent)} have no images in {where}: their recall, AUC and AP are null "
        f"and excluded from the macro means (F1 too, unless predicted: then 0, as in scikit-learn)"
    ]


def full_report(
    data: EvalData, n_bootstrap: int = EVALUATE.bootstrap, seed: int = EVALUATE.seed, convention: str | None = None
) -> dict:
    """Paper metrics + per-class values + confusion matrix + per-source metrics + bootstrap CIs.

    Predicted class = argmax. Macro means are over the classes present in the truth (absent
    classes are null, with a note); macro F1 also counts classes predicted but absent (F1 0), as
    scikit-learn's ``f1_score(average="macro")`` (:func:`f1_macro`). ``auc_weighted`` weights class
    AUCs by support; ``auc_micro`` pools every (image, class) score. ``ce24`` holds the organisers'
    report of the same data.

    Scores (``data.scores``, ``--scores``): only what argmax and per-class ranks define; ``auc_micro``
    (it pools values across classes) and ``ce24`` (its test convention thresholds at 0.5) are null.
    """
    y, proba, classes = data.y, data.proba, data.classes
    ones = np.ones((len(y), 1))
    rows = _metric_rows(y, proba, ones)
    notes = list(data.notes) + _absent_note(classes, rows["class_support"][0])
    per_class = {}
    for c, name in enumerate(classes):
        per_class[name] = {
            "support": int(rows["class_support"][0, c]),
            "predicted": int(rows["class_predicted"][0, c]),
            **{
                k: float(rows[f"class_{k}"][0, c])
                for k in ("precision", "recall", "f1", "specificity", "auc", "average_precision")
            },
        }
    cm = confusion_matrix(y, data.pred, len(classes))
    ce24_convention = None if data.scores else convention or _default_convention(data)
    if data.scores:
        notes.append(
            "scores, not probabilities (--scores): class metrics from the argmax, AUC and AP from ranks; "
            "auc_micro and ce24 are null (--report ce24 scores them as the CE24 organisers did)"
        )
    report = {
        **_headline(rows),
        "auc_micro": None if data.scores else micro_auc(y, proba),
        "n_images": int(len(y)),
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(classes), "rows": "truth", "columns": "prediction", "matrix": cm.tolist()},
        "match": data.match,
        "ce24": None if ce24_convention is None else ce24_report(y, proba, classes, ce24_convention),
        "ce24_convention": ce24_convention,
        "values": "scores" if data.scores else "probabilities",
    }
    if data.source is not None:
        per_source = {}
        for name in sorted({str(v) for v in data.source}):
            mask = data.source.astype(str) == name
            sub = _metric_rows(y[mask], proba[mask], np.ones((int(mask.sum()), 1)))
            present = [classes[c] for c in np.flatnonzero(sub["class_support"][0] > 0)]
            per_source[name] = {
                **_headline(sub),
                "n_images": int(mask.sum()),
                "classes_present": present,
                "recall": {classes[c]: float(sub["class_recall"][0, c]) for c in range(len(classes))},
            }
        report["per_source"] = per_source
    report["bootstrap"] = bootstrap(y, proba, classes, n_bootstrap, seed, data.group) if n_bootstrap > 0 else None
    report["notes"] = notes
    return report


def _default_convention(data: EvalData) -> str:
    return "threshold" if data.truth_format == "class_label" else "argmax"


def compute_report(
    data: EvalData,
    report: str = "full",
    n_bootstrap: int = EVALUATE.bootstrap,
    seed: int = EVALUATE.seed,
    convention: str | None = None,
) -> dict:
    """The report named ``report`` (``full`` or ``ce24``) of aligned data."""
    if report not in REPORTS:
        raise ValueError(f"unknown report {report!r}; choose one of {', '.join(REPORTS)}")
    if convention is not None and convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
    if report == "ce24":
        return ce24_report(data.y, data.proba, data.classes, convention or _default_convention(data))
    return full_report(data, n_bootstrap, seed, convention)


LEAK_FREE_FILE = "leak_free_images.csv"  # beside the report: the truth images leak_free scores


def subset(data: EvalData, keep: np.ndarray) -> EvalData:
    """The rows of ``data`` where ``keep`` (a bool per row, truth order)."""
    pick = np.asarray(keep, dtype=bool)
    return replace(
        data,
        y=data.y[pick],
        proba=data.proba[pick],
        image=data.image[pick],
        source=None if data.source is None else data.source[pick],
        group=None if data.group is None else data.group[pick],
    )


def leak_free_report(
    data: EvalData,
    keep: np.ndarray,
    report: str = "full",
    n_bootstrap: int = EVALUATE.bootstrap,
    seed: int = EVALUATE.seed,
    convention: str | None = None,
) -> dict:
    """The same report on the leak-free rows only (``keep``: no group member in the training files),
    with their count; no metrics when there are none."""
    n = int(np.count_nonzero(keep))
    out: dict = compute_report(subset(data, keep), report, n_bootstrap, seed, convention) if n else {}
    return {**out, "n_images": n, "of_images": int(len(keep))}


def _plain_summary(name: str, report: Mapping) -> str:
    if "class_wise_metrics" in report:
        return (
            f"{name} balanced accuracy {report['balanced_accuracy']:.4f}, mean AUC {report['mean_auc']:.4f}, "
            f"avg F1 {report['avg_f1']:.4f}"
        )
    ci = (report.get("bootstrap") or {}).get("ci", {}).get("balanced_accuracy")
    interval = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if ci and ci["low"] is not None else ""
    return (
        f"{name} balanced accuracy {report['balanced_accuracy']:.4f}{interval}, macro AUC {report['auc_macro']:.4f}, "
        f"macro F1 {report['f1_macro']:.4f}, mAP {report['map_macro']:.4f}"
    )


def summary(name: str, report: Mapping) -> str:
    """The headline numbers of one report (and of its leak-free part), for the command's one-line summary."""
    text = _plain_summary(name, report)
    free = report.get("leak_free")
    if free is not None:
        text += (
            f" (leak-free {free['n_images']} of {free['of_images']} images: "
            + (_plain_summary("", free).strip() if free["n_images"] else "none")
            + ")"
        )
    return text


HEADLINE = ("balanced_accuracy", "auc_macro", "f1_macro", "map_macro")


def headline(report: Mapping) -> dict:
    """The few numbers worth a column in ``dvc metrics show/diff`` and ``dvc exp show``.

    A full report has hundreds of leaves (per class, per source, CIs of each); DVC would show every
    one. This keeps the paper's four metrics with their CI bounds, accuracy, the other AUCs, the
    CE24 organisers' headline numbers and each source's balanced accuracy and macro AUC.
    """
    ci = (report.get("bootstrap") or {}).get("ci", {})
    out: dict = {k: report[k] for k in (*HEADLINE, "accuracy", "auc_micro", "auc_weighted", "n_images")}
    for k in HEADLINE:
        if k in ci:
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = ci[k]["low"], ci[k]["high"]
    ce24 = report.get("ce24")
    out["ce24"] = None if ce24 is None else {k: v for k, v in ce24.items() if k != "class_wise_metrics"}
    if "per_source" in report:
        out["per_source"] = {
            name: {k: src[k] for k in ("balanced_accuracy", "auc_macro", "n_images")}
            for name, src in report["per_source"].items()
        }
    if "leak_free" in report:
        free = report["leak_free"]
        out["leak_free"] = {**{k: free.get(k) for k in HEADLINE}, "n_images": free["n_images"]}
    return out


def report_notes(data: EvalData) -> list[str]:
    """Notes worth printing for a ce24 report, which has no room for them."""
    support = np.bincount(data.y, minlength=len(data.classes))
    notes = list(data.notes)
    absent = [c for c, s in zip(data.classes, support) if s == 0]
    if absent:
        notes.append(
            f"class(es) {', '.join(absent)} have no images in the truth: class-wise auc null, "
            f"counted as 0.0 in mean_auc (as the organisers' script does)"
        )
    return notes


# ------------------------------------------------------------------------------------- output


def to_jsonable(value: object) -> object:
    """Plain JSON types: numpy scalars to Python, NaN/inf to null (never invalid JSON)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(report: Mapping) -> str:
    """Deterministic JSON text: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(to_jsonable(report), indent=2, sort_keys=True, allow_nan=False) + "\n"

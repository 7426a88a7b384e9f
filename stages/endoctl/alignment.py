"""Reading truth and prediction tables and aligning them row by row, as the CE24 organisers do.

Its output, :class:`endoctl.metrics.EvalData`, is the input of every report in :mod:`endoctl.metrics`;
kept apart from the maths so that reading, format recognition and matching rules live in one place.

Row alignment never guesses (:func:`align`): every truth image must be predicted exactly once,
by full path when the prediction paths are the truth's paths, else by file name; any mismatch is
a one-line :class:`EvaluationError` naming the first offending rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.io import MANIFEST_COLUMNS, MAPPING_FILE
from endoctl.io import read_table as io_read_table
from endoctl.metrics import EvalData

# Columns that are never class columns (lower-case), in truth and prediction files alike: a manifest's,
# a split's, a prediction file's and the CE24 files'.
METADATA_COLUMNS = frozenset(
    {c.lower() for c in MANIFEST_COLUMNS}
    | {"image_path", "predicted_class", "dataset", "target_class", "class_label", "group", "fold", "split"}
)
KEY_COLUMNS = ("path", "image_path", "image_id")  # truth columns a prediction may quote in full
VALUES = ("probabilities", "scores", "ce24")  # what align accepts in the class columns
SCORES_HINT = (
    " (scores, not probabilities? --scores scores them by argmax and ranks only; --report ce24 scores them "
    "as the CE24 organisers did)"
)
SHOWN = 3  # offending rows named in one error message
PROBA_SLACK = 1e-6  # float32 rounding may put a softmax output a hair outside [0, 1]


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

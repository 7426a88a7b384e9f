"""Evaluation maths: score predictions aligned to the truth (:func:`endoctl.alignment.align`).

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
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from endoctl.params import EVALUATE

CONVENTIONS = ("argmax", "threshold")
REPORTS = ("full", "ce24")
CI_LEVEL = 0.95
BOOTSTRAP_CELLS = 2_000_000  # replicate rows x images per chunk: bounds memory, not results

_CE24_KEYS = ("precision", "recall", "f1_score", "specificity", "accuracy", "auc")


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

"""Evaluation plots: confusion matrix and ROC curves as PNGs, plus the data files DVC plots read.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot, so no global state and no
display backend), at a fixed DPI and without the version stamp in the PNG metadata, so the same
data give the same bytes. The CSVs: ``roc.csv`` (``fpr,tpr,class``; per class plus ``micro`` and
``macro``) for people and notebooks; ``roc_micro.csv`` (``fpr,tpr``, the micro-average curve alone)
for DVC's ``template: simple`` with ``x: fpr``, ``y: tpr`` (DVC templates cannot split one file
into curves by a column, and one curve per revision is what ``dvc plots diff`` compares); and
``confusion.csv`` (one ``actual,predicted`` row per image) for ``template: confusion``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.io import atomic_open, write_csv

DPI = 120
PLOT_FILES = ("confusion_matrix.png", "roc.png", "roc.csv", "roc_micro.csv", "confusion.csv")
DECIMALS = 6  # roc.csv precision: plenty for a curve, keeps the file small and stable


def _roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, score, drop_intermediate=True)
    return fpr, tpr


def roc_table(y: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """ROC points per class (one-vs-rest), ``micro`` (all image-class pairs pooled) and ``macro``.

    Classes without positives or negatives in the truth have no curve. ``macro`` is the mean of
    the per-class TPRs interpolated on the union of their FPRs.
    """
    parts, curves = [], []
    for c, name in enumerate(classes):
        positive = y == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr = _roc_points(positive, proba[:, c])
        curves.append((fpr, tpr))
        parts.append(pd.DataFrame({"fpr": fpr, "tpr": tpr, "class": name}))
    if curves:
        onehot = y[:, None] == np.arange(proba.shape[1])[None, :]
        fpr, tpr = _roc_points(onehot.ravel(), proba.ravel())
        parts.append(pd.DataFrame({"fpr": fpr, "tpr": tpr, "class": "micro"}))
        grid = np.unique(np.concatenate([f for f, _ in curves]))
        mean_tpr = np.mean([np.interp(grid, f, t) for f, t in curves], axis=0)
        parts.append(pd.DataFrame({"fpr": grid, "tpr": mean_tpr, "class": "macro"}))
    if not parts:
        return pd.DataFrame({"fpr": [], "tpr": [], "class": []})
    table = pd.concat(parts, ignore_index=True)
    table[["fpr", "tpr"]] = table[["fpr", "tpr"]].round(DECIMALS)
    return table.drop_duplicates(ignore_index=True)  # rounding can merge neighbouring points


def confusion_table(y: np.ndarray, pred: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """One ``actual,predicted`` row per image (class names), in truth order: DVC's confusion input."""
    names = np.asarray(classes, dtype=object)
    return pd.DataFrame({"actual": names[y], "predicted": names[pred]})


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def confusion_figure(cm: np.ndarray, classes: Sequence[str], title: str = ""):
    """Counts beside the row-normalised matrix; counts use a log colour scale when they span
    orders of magnitude (one dominant Normal class), so rare classes stay visible."""
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    k = len(classes)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(support[:, None] > 0, cm / support[:, None], np.nan)
    side = max(3.5, 0.55 * k + 1.5)
    fig = _figure(2 * side + 3.0, side + 1.6)
    fig.set_layout_engine("constrained", w_pad=0.1, wspace=0.05)
    left, right = fig.subplots(1, 2)
    font = max(6.0, min(10.0, 95.0 / k))
    top = max(int(cm.max()), 1)
    log = top > 100
    norm = LogNorm(vmin=1, vmax=top) if log else Normalize(vmin=0, vmax=top)
    counts_img = left.imshow(np.ma.masked_equal(cm, 0) if log else cm, cmap="Blues", norm=norm, aspect="equal")
    rates_img = right.imshow(np.ma.masked_invalid(rates), cmap="Blues", vmin=0, vmax=1, aspect="equal")
    for ax in (left, right):
        ax.set_facecolor("white")
        ax.set_xticks(range(k), classes, rotation=45, ha="right", rotation_mode="anchor", fontsize=font + 1)
        ax.set_yticks(range(k))
        ax.set_xlabel("predicted class", fontsize=font + 2)
        ax.set_xticks(np.arange(-0.5, k), minor=True)
        ax.set_yticks(np.arange(-0.5, k), minor=True)
        ax.grid(which="minor", color="#dddddd", linewidth=0.6)
        ax.tick_params(which="minor", length=0)
    left.set_yticklabels([f"{name}  (n={n:,})" for name, n in zip(classes, support)], fontsize=font + 1)
    left.set_ylabel("true class", fontsize=font + 2)
    right.set_yticklabels([])
    left.set_title("counts", fontsize=font + 3)
    right.set_title("row-normalised (recall on the diagonal)", fontsize=font + 3)
    for i in range(k):
        for j in range(k):
            count = int(cm[i, j])
            dark = count > 0 and float(norm(count)) > 0.6
            left.text(
                j,
                i,
                f"{count:,}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if dark else ("#aaaaaa" if count == 0 else "black"),
            )
            rate = rates[i, j]
            if np.isnan(rate):
                continue
            label = "0" if rate == 0 else ("<1%" if rate < 0.005 else f"{rate:.0%}")
            right.text(
                j,
                i,
                label,
                ha="center",
                va="center",
                fontsize=font,
                color="white" if rate > 0.6 else ("#aaaaaa" if rate == 0 else "black"),
            )
    plain = FuncFormatter(lambda v, _: f"{v:,.0f}")
    bar = fig.colorbar(counts_img, ax=left, fraction=0.046, pad=0.02, format=plain)
    bar.ax.tick_params(labelsize=font)
    if log:
        bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    else:
        bar.locator = MaxNLocator(integer=True)
        bar.update_ticks()
    fig.colorbar(
        rates_img, ax=right, fraction=0.046, pad=0.02, format=FuncFormatter(lambda v, _: f"{v:.0%}")
    ).ax.tick_params(labelsize=font)
    if title:
        fig.suptitle(title, fontsize=font + 4)
    return fig


def roc_figure(table: pd.DataFrame, aucs: dict[str, float | None], title: str = ""):
    """Per-class ROC curves plus micro/macro averages; each legend entry carries its AUC."""
    fig = _figure(10.5, 7.0)
    ax = fig.add_axes((0.08, 0.09, 0.55, 0.82))
    ax.plot([0, 1], [0, 1], color="#bbbbbb", linewidth=1, linestyle=":", label="chance (AUC 0.500)")
    names = [n for n in dict.fromkeys(table["class"]) if n not in ("micro", "macro")]
    palette = "tab10" if len(names) <= 10 else "tab20"
    from matplotlib import colormaps

    colours = colormaps[palette]
    for i, name in enumerate(names):
        part = table[table["class"] == name]
        auc = aucs.get(name)
        ax.plot(
            part["fpr"],
            part["tpr"],
            color=colours(i % colours.N),
            linewidth=1.5,
            label=f"{name} (AUC {auc:.3f})" if auc is not None else name,
        )
    styles = {"micro": ("black", "--", "micro average"), "macro": ("#555555", "-.", "macro average")}
    for name, (colour, style, text) in styles.items():
        part = table[table["class"] == name]
        if len(part):
            auc = aucs.get(name)
            ax.plot(
                part["fpr"],
                part["tpr"],
                color=colour,
                linestyle=style,
                linewidth=2.2,
                label=f"{text} (AUC {auc:.3f})" if auc is not None else text,
            )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.grid(color="#eeeeee", linewidth=0.8)
    ax.set_title(title or "ROC curves (one class vs rest)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.03, 1.0), frameon=False, fontsize=9)
    return fig


def _save(fig, path: Path) -> None:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI, metadata={"Software": None})


def write_plots(
    out_dir: str | Path,
    y: np.ndarray,
    proba: np.ndarray,
    classes: Sequence[str],
    report: dict | None = None,
    title: str = "",
) -> list[Path]:
    """Write confusion_matrix.png, roc.png, roc.csv, roc_micro.csv and confusion.csv into ``out_dir``.

    AUCs in the ROC legend come from ``report`` (a full report) when given, so the figure shows
    exactly the report's numbers; otherwise they are computed here.
    """
    from endoctl.metrics import class_auc, confusion_matrix, micro_auc

    out_dir = Path(out_dir)
    pred = proba.argmax(axis=1)
    cm = confusion_matrix(y, pred, len(classes))
    table = roc_table(y, proba, classes)
    if report is not None and "per_class" in report:
        aucs = {name: report["per_class"][name]["auc"] for name in classes}
        aucs.update(micro=report.get("auc_micro"), macro=report.get("auc_macro"))
    else:
        per = class_auc(y, proba)
        aucs = {name: float(a) for name, a in zip(classes, per)}
        defined = per[~np.isnan(per)]
        aucs.update(micro=micro_auc(y, proba), macro=float(defined.mean()) if len(defined) else None)
    aucs = {k: (None if v is None or not np.isfinite(v) else v) for k, v in aucs.items()}
    paths = [out_dir / name for name in PLOT_FILES]
    heading = f"{title}: " if title else ""
    accuracy = (
        f", balanced accuracy {report['balanced_accuracy']:.3f}" if report and "balanced_accuracy" in report else ""
    )
    _save(confusion_figure(cm, classes, f"{heading}confusion matrix, {len(y):,} images{accuracy}"), paths[0])
    _save(roc_figure(table, aucs, f"{heading}ROC curves (one class vs rest)"), paths[1])
    write_csv(paths[2], table)
    write_csv(paths[3], table.loc[table["class"] == "micro", ["fpr", "tpr"]])
    write_csv(paths[4], confusion_table(y, pred, classes))
    return paths

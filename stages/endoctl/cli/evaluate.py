"""``endoctl evaluate``: predictions scored against ground truth (the CE24 report, or the full one)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    FRAME_GAP_DEFAULT,
    HashWorkers,
    error,
    fail,
    hashing_progress,
    note,
    resolve_frame_gap,
    worker_count,
)
from endoctl.params import EVALUATE

app = typer.Typer()


@app.command()
def evaluate(
    truth: Annotated[
        Path,
        typer.Option(
            help="Ground truth: endoctl split CSV (target_class; class_mapping.json beside it lists the classes), "
            "CE24 one-hot xlsx (validation) or image_path + class_label xlsx (test)."
        ),
    ],
    predictions: Annotated[
        Path,
        typer.Option(
            help="Predictions (CE24 submission xlsx/CSV or `endoctl predict` CSV: image_path + one probability column "
            "per class), or a folder of them."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Report JSON; for a predictions folder (or an existing folder), a folder receiving <file "
            "stem>_metrics.json per file."
        ),
    ],
    report: Annotated[
        str,
        typer.Option(
            help="full: paper metrics, per-class, confusion matrix, per-source, bootstrap CIs (+ the ce24 report); "
            "ce24: exactly the CE24 organisers' report."
        ),
    ] = "full",
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Folder for confusion_matrix.png, roc.png, roc.csv, roc_micro.csv, confusion.csv (a sub-folder per "
            "file for a predictions folder)."
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            help="Bootstrap resamples for 95% CIs of the full report (0: none); whole groups when the truth has a "
            "group column."
        ),
    ] = EVALUATE.bootstrap,
    seed: Annotated[
        int, typer.Option(help="Bootstrap seed; same inputs and seed give identical reports.")
    ] = EVALUATE.seed,
    convention: Annotated[
        str | None,
        typer.Option(
            help="CE24 class-wise metrics from argmax or from thresholding each probability at 0.5 (default: "
            "threshold for class_label truth, like the organisers' test reports; else argmax)."
        ),
    ] = None,
    metrics_out: Annotated[
        Path | None,
        typer.Option(
            "--metrics",
            help="Also write the headline numbers of a full report (paper metrics + CI bounds, CE24 headline, per "
            "source) here: the file for `dvc metrics`.",
        ),
    ] = None,
    train: Annotated[
        list[Path] | None,
        typer.Option(
            help="Split file the model was trained on, repeatable (any format `audit` reads): the report adds "
            "`leak_free`, the same metrics on the truth images whose group (patient/video, duplicates) has no "
            "image there, and leak_free_images.csv lists them."
        ),
    ] = None,
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="With --train: folder the truth and train paths are relative to; hash the images so near-duplicates "
            "join groups too."
        ),
    ] = None,
    workers: HashWorkers = 0,
    frame_gap: Annotated[
        int | None,
        typer.Option(
            help="With --train: an image numbered within this many frames of a training image of the same name prefix "
            "(<video>_<frame>, imageNNNNN, ulcer1_<frame>) is not leak-free either; 0: groups only. "
            + FRAME_GAP_DEFAULT
        ),
    ] = None,
    scores: Annotated[
        bool,
        typer.Option(
            "--scores",
            help="The class columns are scores (logits, margins), not probabilities: any finite value; class "
            "metrics from the argmax, AUC/AP from ranks, no metric that needs probabilities (auc_micro, ce24 "
            "null). --report ce24 takes scores without it, as the organisers did.",
        ),
    ] = False,
) -> None:
    """Score predictions against ground truth: the CE24 organisers' report exactly, or a full report with CIs and plots.

    Several outputs (report, --metrics, --plots) are replaced together as one folder: --plots when
    given, else --out's folder; each must lie in it. A predictions folder is scored file by file:
    each file that cannot be scored is one error line, the others' reports are written, and the
    command exits 1 with the count.
    """

    from endoctl.evaluate import EvaluateRequest
    from endoctl.evaluate import evaluate as run_evaluate

    request = EvaluateRequest(
        truth,
        predictions,
        out,
        report,
        plots,
        bootstrap,
        seed,
        convention,
        metrics_out,
        tuple(train or ()),
        images_root,
        worker_count(workers),
        resolve_frame_gap(frame_gap),
        scores,
    )
    try:
        result = run_evaluate(request, lambda: hashing_progress(visible=images_root is not None))
    except (ValueError, FileNotFoundError) as exc:  # OutputError and EvaluationError are ValueErrors
        fail(str(exc))
    for line in result.notes():
        note(line)
    typer.echo(result.summary())
    if result.failed:
        for line in result.failures():
            error(line)
        error(
            f"{len(result.failed)} of {len(result.failed) + len(result.scored)} prediction file(s) could not be "
            f"scored; the other {len(result.scored)} report(s) were written"
        )
        raise typer.Exit(1)

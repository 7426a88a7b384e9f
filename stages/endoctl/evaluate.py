"""The evaluate stage: score one predictions file, or a folder of them, against one truth; write the set.

Reading and aligning truth and predictions is :mod:`endoctl.alignment`, the metric maths (the full
and the CE24 report) :mod:`endoctl.metrics`; this module decides what is read and where each output
goes. A run writes one report per predictions file (``out`` itself, or ``<stem>_metrics.json`` in
``out`` when that is a folder: always for a predictions folder), and optionally ``--metrics`` (the
headline numbers), plots (a sub-folder per file for a predictions folder) and, with training files,
the leak-free image list. More than one output is one set, replaced together by
:func:`endoctl.io.atomic_dir`: ``out`` when the reports go into it, else the plots folder when
given, else the report's folder; every output must lie in it.

With training files each report gains ``leak_free``: the same report on the truth images that no
training group holds and that lie more than ``frame_gap`` frames from every training image of their
name prefix (:func:`endoctl.leaks.leak_free_rows`), with how that subset was chosen.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from endoctl import alignment, metrics
from endoctl.io import atomic_dir, check_output_dir, write_csv, write_text
from endoctl.leaks import leak_free_rows
from endoctl.params import EVALUATE
from endoctl.plots import PLOT_FILES, write_plots

WHAT = "evaluate outputs"  # how messages about the output set name it
Tick = Callable[[int, int | None], None]  # on_progress(done, total) of the image hashing


@dataclass(frozen=True)
class EvaluateRequest:
    """The options of ``endoctl evaluate``, parsed: ``workers`` >= 1, ``frame_gap`` resolved and >= 0."""

    truth: Path
    predictions: Path  # a file, or a folder of them
    out: Path
    report: str = "full"
    plots: Path | None = None
    bootstrap: int = EVALUATE.bootstrap
    seed: int = EVALUATE.seed
    convention: str | None = None
    metrics_out: Path | None = None
    train: tuple[Path, ...] = ()
    images_root: Path | None = None
    workers: int = 1
    frame_gap: int = 0
    scores: bool = False  # --scores: the class columns are scores, not probabilities

    @property
    def values(self) -> str:
        """What :func:`endoctl.alignment.align` accepts: the ce24 report takes any finite value, as the
        organisers' script does; otherwise probabilities unless --scores."""
        return "ce24" if self.report == "ce24" else "scores" if self.scores else "probabilities"


@dataclass(frozen=True)
class OutputPlan:
    """Where every output of a run goes, and the folder replaced as their one set."""

    reports: dict[Path, Path]  # predictions file -> its report
    plot_dirs: dict[Path, Path]  # predictions file -> its plots folder (none without --plots)
    metrics_out: Path | None
    leak_free: Path | None  # the leak-free image list (with training files)
    home: Path | None = None  # None: a lone report, written by itself
    option: str = "--out"  # the option that names ``home``, for messages
    owned: tuple[str, ...] = ()  # entry names (globs) of ``home`` that are evaluate's own

    def staged(self, path: Path, staging: Path | None) -> Path:
        """``path``'s place in the staging copy of ``home`` (``path`` itself when nothing is staged)."""
        if staging is None or self.home is None:
            return path
        return staging / path.resolve().relative_to(self.home.resolve())


@dataclass(frozen=True)
class Scored:
    """One predictions file aligned to the truth, and its report."""

    file: Path
    data: metrics.EvalData
    report: dict


@dataclass(frozen=True)
class EvaluateResult:
    """What a run scored: enough for the command's notes and its one summary line."""

    request: EvaluateRequest
    truth: alignment.Truth
    scored: list[Scored]  # one per predictions file, in file-name order
    seconds: float  # reading, scoring and writing
    failed: list[tuple[Path, str]] = field(default_factory=list)  # folder run: files that could not be scored, why

    def failures(self) -> list[str]:
        """One line per predictions file of a folder run that could not be scored, naming it."""
        return [msg if msg.startswith(f"{file.name}:") else f"{file.name}: {msg}" for file, msg in self.failed]

    def notes(self) -> list[str]:
        """What the reader of each report should know (absent classes, argmax disagreements), by file."""
        full = self.request.report == "full"
        return [
            f"{s.file.name}: {note}"
            for s in self.scored
            for note in (s.report["notes"] if full else metrics.report_notes(s.data))
        ]

    def summary(self) -> str:
        """The command's one line: which report, the images, each file's headline numbers."""
        r, first = self.request, self.scored[0].data
        unit = "groups" if first.group is not None else "images"
        how = (
            f"ce24 report, {r.convention or self.truth.default_convention}"
            if r.report == "ce24"
            else "full report" + (f", {r.bootstrap} bootstrap resamples of {unit}" if r.bootstrap else "")
        )
        return (
            f"evaluate ({how}): {len(first.y)} images, {len(first.classes)} classes, matched by {first.match}; "
            + "; ".join(metrics.summary(s.file.stem, s.report) for s in self.scored)
            + f" in {self.seconds:.1f} s -> {r.out}"
        )


def evaluate(
    request: EvaluateRequest, hashing: Callable[[], AbstractContextManager[Tick | None]] = contextlib.nullcontext
) -> EvaluateResult:
    """Check the options, score every predictions file and write the output set, all or nothing.

    ``hashing`` opens the caller's progress display for the leak check's image hashing (only then)
    and yields its ``on_progress``. Unusable options or inputs raise ``ValueError``
    (:class:`endoctl.alignment.EvaluationError`) or ``FileNotFoundError`` with a one-line message before
    anything is written; an unwritable output raises :class:`endoctl.io.OutputError` (a ``ValueError``)
    and leaves the previous set in place.

    A predictions folder is scored file by file: a file that cannot be scored (unreadable, misaligned,
    bad values) goes to ``failed`` with its message and the others' outputs are written as the set
    (so no report of the failed file remains in it); only when no file can be scored does the run
    raise, writing nothing.
    """
    files = input_files(request)
    plan = plan_outputs(request, files)
    if plan.home is not None:
        check_output_dir(plan.home, plan.owned, plan.option, WHAT)
    started = time.perf_counter()
    truth = alignment.load_truth(request.truth)
    unseen = training_leaks(request, len(truth.labels), hashing) if request.train else None
    if not request.predictions.is_dir():
        scored, failed = [score_file(request, truth, files[0], unseen)], []
    else:
        scored, failed = score_folder(request, truth, files, unseen)
    write_outputs(plan, request, truth, scored, unseen)
    return EvaluateResult(request, truth, scored, time.perf_counter() - started, failed)


# ----------------------------------------------------------------------------- options and inputs


def input_files(request: EvaluateRequest) -> list[Path]:
    """The predictions files to score, every option checked first (nothing is read yet)."""
    r = request
    if r.report not in metrics.REPORTS:
        raise ValueError(f"--report must be one of {', '.join(metrics.REPORTS)}, got {r.report!r}")
    if r.convention is not None and r.convention not in metrics.CONVENTIONS:
        raise ValueError(f"--convention must be one of {', '.join(metrics.CONVENTIONS)}, got {r.convention!r}")
    if r.bootstrap < 0:
        raise ValueError(f"--bootstrap must be >= 0, got {r.bootstrap}")
    if not r.truth.is_file():
        raise FileNotFoundError(f"--truth file not found: {r.truth}")
    files = _prediction_files(r)
    if r.images_root is not None and (not r.train or not r.images_root.is_dir()):
        raise ValueError(f"--images-root needs --train and an existing folder: {r.images_root}")
    return files


def _prediction_files(r: EvaluateRequest) -> list[Path]:
    """``--predictions`` itself, or the prediction tables in that folder (the truth file excluded)."""
    folder = r.predictions.is_dir()
    if r.metrics_out is not None and (r.report != "full" or folder):
        raise ValueError("--metrics needs --report full and a single predictions file")
    if not folder:
        if not r.predictions.is_file():
            raise FileNotFoundError(f"--predictions file or folder not found: {r.predictions}")
        return [r.predictions]
    files = alignment.prediction_files(r.predictions, exclude=[r.truth])
    if not files:
        raise ValueError(f"no prediction files ({', '.join(alignment.PREDICTION_SUFFIXES)}) in {r.predictions}")
    if r.out.is_file():
        raise ValueError(f"--out must be a folder when --predictions is a folder: {r.out} is a file")
    return files


# ----------------------------------------------------------------------------------- the outputs


def plan_outputs(request: EvaluateRequest, files: list[Path]) -> OutputPlan:
    """Every output path, and for more than one output the folder that holds them all (see the module doc)."""
    r = request
    folder = r.predictions.is_dir()
    into_folder = folder or r.out.is_dir()
    reports = {file: r.out / f"{file.stem}_metrics.json" if into_folder else r.out for file in files}
    plot_dirs = {file: r.plots / file.stem if folder else r.plots for file in files} if r.plots is not None else {}
    leak_free = (r.out if into_folder else r.out.parent) / metrics.LEAK_FREE_FILE if r.train else None
    written = [
        *reports.values(),
        *([r.metrics_out] if r.metrics_out is not None else []),
        *plot_dirs.values(),
        *([leak_free] if leak_free is not None else []),
    ]
    if len(written) == 1:
        return OutputPlan(reports, plot_dirs, r.metrics_out, leak_free)
    home, option = (
        (r.out, "--out")
        if into_folder
        else (r.plots, "--plots")
        if r.plots is not None
        else (r.out.parent, "the folder of --out")
    )
    plots_at_home = r.plots is not None and r.plots.resolve() == home.resolve()
    owned = _owned_names(home, option, written, plots_at_home)
    return OutputPlan(
        reports, plot_dirs, r.metrics_out, leak_free, home, option, (*owned, *(["*_metrics.json"] if folder else []))
    )


def _owned_names(home: Path, option: str, written: list[Path], plots_at_home: bool) -> list[str]:
    """The entry names of ``home`` the outputs take (sorted); an output outside ``home`` is an error,
    since only ``home`` is replaced as a whole."""
    root = home.resolve()
    outside = [p for p in written if p.resolve() != root and root not in p.resolve().parents]
    if outside:
        raise ValueError(
            f"{outside[0]} is outside {home}: evaluate replaces its outputs together as one folder "
            f"({option} {home}), so put them all in it (e.g. {home / outside[0].name})"
        )
    owned = {p.resolve().relative_to(root).parts[0] for p in written if p.resolve() != root}
    return sorted(owned | (set(PLOT_FILES) if plots_at_home else set()))


def write_outputs(
    plan: OutputPlan,
    request: EvaluateRequest,
    truth: alignment.Truth,
    scored: list[Scored],
    unseen: pd.DataFrame | None,
) -> None:
    """Write every output: a lone report directly, a set through a staging folder swapped in at once."""
    if plan.home is None:
        _write(plan, request, truth, scored, unseen, None)
        return
    with atomic_dir(plan.home, plan.owned, plan.option, WHAT) as staging:
        _write(plan, request, truth, scored, unseen, staging)


def _write(
    plan: OutputPlan,
    request: EvaluateRequest,
    truth: alignment.Truth,
    scored: list[Scored],
    unseen: pd.DataFrame | None,
    staging: Path | None,
) -> None:
    """The outputs of :func:`write_outputs`, each at its place in ``staging`` when one is given."""
    for s in scored:
        write_text(plan.staged(plan.reports[s.file], staging), metrics.dumps(s.report))
        if plan.metrics_out is not None:
            write_text(plan.staged(plan.metrics_out, staging), metrics.dumps(metrics.headline(s.report)))
        if s.file in plan.plot_dirs:
            write_plots(
                plan.staged(plan.plot_dirs[s.file], staging),
                s.data.y,
                s.data.proba,
                s.data.classes,
                s.report if request.report == "full" else None,
                s.file.stem,
            )
    if plan.leak_free is not None and unseen is not None:
        write_csv(plan.staged(plan.leak_free, staging), leak_free_images(truth, unseen))


# ------------------------------------------------------------------------------ scoring, leak-free


def training_leaks(
    request: EvaluateRequest,
    n_truth: int,
    hashing: Callable[[], AbstractContextManager[Tick | None]] = contextlib.nullcontext,
) -> pd.DataFrame:
    """:func:`endoctl.leaks.leak_free_rows` of the truth file, one row per truth row evaluate read."""
    for file in request.train:
        if not file.is_file():
            raise FileNotFoundError(f"--train file not found: {file}")
    with hashing() as tick:
        rows = leak_free_rows(
            request.truth,
            request.train,
            request.images_root,
            workers=request.workers,
            on_progress=tick,
            frame_gap=request.frame_gap,
        )
    if len(rows) != n_truth:  # pragma: no cover - both read the same file with the same reader
        raise ValueError(f"{request.truth}: {len(rows)} rows read for the leak check, {n_truth} for evaluation")
    return rows


def leak_free_provenance(request: EvaluateRequest, unseen: pd.DataFrame) -> dict:
    """How the leak-free subset was chosen, stored beside its metrics: the training files, the
    frame gap, and how many images each rule removed."""
    return {
        "train": [str(f) for f in request.train],
        "frame_gap": request.frame_gap,
        "group_trained": int(unseen["group_trained"].sum()),
        "frame_adjacent_only": int((unseen["frame_adjacent"] & ~unseen["group_trained"]).sum()),
    }


def leak_free_images(truth: alignment.Truth, unseen: pd.DataFrame) -> pd.DataFrame:
    """The truth images ``leak_free`` scores (``image_id, source, path, group, label``), to check by hand."""
    free = unseen["leak_free"].to_numpy()
    listed = unseen.loc[free, ["image_id", "source", "path", "group"]]
    return listed.assign(label=truth.labels.to_numpy()[free])


def score_folder(
    request: EvaluateRequest, truth: alignment.Truth, files: list[Path], unseen: pd.DataFrame | None
) -> tuple[list[Scored], list[tuple[Path, str]]]:
    """Every file of a predictions folder scored, or set aside with its one-line message; an
    ``EvaluationError`` when none can be scored (each file's message, up to a few)."""
    scored, failed = [], []
    for file in files:
        try:
            scored.append(score_file(request, truth, file, unseen))
        except alignment.EvaluationError as exc:
            failed.append((file, str(exc)))
    if not scored:
        raise alignment.EvaluationError(
            f"none of the {len(files)} prediction file(s) in {request.predictions} could be scored: "
            + "; ".join(msg for _, msg in failed[: alignment.SHOWN])
            + (f"; ... ({len(failed)} in all)" if len(failed) > alignment.SHOWN else "")
        )
    return scored, failed


def score_file(request: EvaluateRequest, truth: alignment.Truth, file: Path, unseen: pd.DataFrame | None) -> Scored:
    """One predictions file aligned and reported, with its ``leak_free`` report when ``unseen`` is given."""
    r = request
    data = alignment.align(truth, alignment.load_predictions(file), file.name, r.values)
    report = metrics.compute_report(data, r.report, r.bootstrap, r.seed, r.convention)
    if unseen is not None:
        keep = unseen["leak_free"].to_numpy()
        report["leak_free"] = {
            **metrics.leak_free_report(data, keep, r.report, r.bootstrap, r.seed, r.convention),
            **leak_free_provenance(r, unseen),
        }
    return Scored(file, data, report)

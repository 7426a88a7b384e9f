"""What every command shares: the progress bar, one-line errors and the options several commands declare.

Imports nothing of endoctl beyond ``io`` and ``params`` (light), so a command's DVC stage depends on
this module without depending on another command's code.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from endoctl.io import DEDUPE_REPORT_FILE, DUPLICATES_FILE, PAIRS_FILE
from endoctl.params import DEDUPE, resolve_workers

console = Console(stderr=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def ticker(progress: Progress, task: TaskID, decimals: int = 0) -> Callable[[int, int | None], None]:
    """An ``on_progress(done, total)`` callback moving ``task`` and showing the img/s so far."""
    began = time.perf_counter()

    def tick(done: int, total: int | None) -> None:
        rate = done / max(time.perf_counter() - began, 1e-9)
        progress.update(task, completed=done, total=total, rate=f"{rate:,.{decimals}f} img/s")

    return tick


@contextlib.contextmanager
def hashing_progress(visible: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A "hash images" progress bar while the block runs, yielding its ``on_progress``."""
    with progress_bar() as progress:
        yield ticker(progress, progress.add_task("hash images", total=None, rate="", visible=visible))


# One decompression-bomb limit for every stage that opens images (params.yaml `ingest.max_pixels`):
# an image ingest admitted under a raised limit must not be rejected later.
MAX_PIXELS_HELP = "Reject larger images as decompression bombs (keep equal to ingest's --max-pixels)."
MaxPixels = Annotated[int, typer.Option(help=MAX_PIXELS_HELP)]

# Options several commands declare alike: one declaration, so their flags and help texts cannot drift apart.
Workers = Annotated[int, typer.Option(help="Worker processes (0 = all cores).")]
HashWorkers = Annotated[int, typer.Option(help="With --images-root: hashing worker processes (0 = all cores).")]
DataRoot = Annotated[Path, typer.Option(help="Folder the paths in the input CSVs are relative to.")]
Duplicates = Annotated[
    Path | None,
    typer.Option(
        help=f"dedupe's output folder, or its {DUPLICATES_FILE} (read with the files beside it: {PAIRS_FILE}, "
        f"{DEDUPE_REPORT_FILE})."
    ),
]
TaxonomyFile = Annotated[Path | None, typer.Option(help="Taxonomy YAML (default: the packaged taxonomy-v2.yaml).")]

# The model options of the commands that run a checkpoint (predict, study).
Checkpoint = Annotated[
    Path,
    typer.Option(
        help="endoctl checkpoint (.pt), plain timm weights (.safetensors/.pth/.bin; needs --class-mapping and "
        "--model-name) or the seed paper's Lightning .ckpt."
    ),
]
ClassMapping = Annotated[
    Path | None,
    typer.Option(
        help="A split's class_mapping.json: the classes of timm/Lightning weights (checked against an endoctl "
        "checkpoint's own)."
    ),
]
ModelName = Annotated[
    str | None, typer.Option(help="timm model name, for weights that do not say (e.g. eva02_base_patch14_224).")
]
BatchSize = Annotated[int, typer.Option(help="Images (frames) per forward pass.")]
Device = Annotated[str, typer.Option(help="cpu, cuda[:N] or auto (cuda when available).")]
Fast = Annotated[
    bool, typer.Option(help="inference_mode + channels-last + bf16 autocast where supported; --no-fast: fp32 eager.")
]


def check_max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        fail(f"--max-pixels must be >= 1, got {max_pixels}")


def worker_count(workers: int) -> int:
    """``--workers`` as a count (0: all cores), or one line for a negative one, before any work."""
    try:
        return resolve_workers(workers)
    except ValueError as exc:
        fail(str(exc))


def _say(label: str, message: str) -> None:
    """One labelled line on stderr; file contents may look like rich markup, so they are printed as they are."""
    from rich.markup import escape

    console.print(f"{label} {escape(message)}", highlight=False, soft_wrap=True)


def error(message: str) -> None:
    _say("[red]error:[/red]", message)


def fail(message: str) -> NoReturn:
    """One error line, exit 2."""
    error(message)
    raise typer.Exit(2)


def warn(message: str) -> None:
    _say("[yellow]warning:[/yellow]", message)


def note(message: str) -> None:
    _say("[yellow]note:[/yellow]", message)


@contextlib.contextmanager
def output_errors() -> Iterator[None]:
    """An output that cannot be written (read-only file system, no space, a folder holding other
    files, ...) ends the command with one line naming it, not a traceback."""
    from endoctl.io import OutputError

    try:
        yield
    except OutputError as exc:
        fail(str(exc))


def load_manifests(paths: list[Path]) -> tuple[list[Path], list]:
    """The manifest files named by ``paths`` and their frames; a header-only one is warned about."""
    from endoctl.io import find_manifests, read_manifests

    try:
        files = find_manifests(paths)
        frames, empty = read_manifests(files)
    except ValueError as exc:
        fail(str(exc))
    for name in empty:
        warn(f"{name}: no rows (header only): that source contributes no images")
    return files, frames


def duplicates_file(path: Path | None) -> Path | None:
    """dedupe's output folder (or its clusters CSV named directly) -> the clusters CSV; missing: one line."""
    if path is not None and path.is_dir():
        path = path / DUPLICATES_FILE
    if path is not None and not path.is_file():
        fail(f"--duplicates file not found: {path}")
    return path


# From endoctl.params (light: --help stays fast), so the number cannot go stale.
FRAME_GAP_DEFAULT = f"Default: dedupe's sequence gap ({DEDUPE.sequence_gap})."


def resolve_frame_gap(value: int | None) -> int:
    """``--frame-gap`` of audit and evaluate: default dedupe's sequence gap, never negative."""
    if value is None:
        return DEDUPE.sequence_gap
    if value < 0:
        fail(f"--frame-gap must be >= 0, got {value}")
    return value


def resolve_device(device: str) -> str:
    """``--device``: auto -> cuda when available, else cpu; a CUDA device on a machine without one: one line."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"--device {device}: CUDA is not available here (use --device cpu)")
    return device

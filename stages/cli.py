"""The ``endoctl`` command line: each command parses options, calls one core function, prints a summary.

Heavy modules are imported inside the commands so ``endoctl --help`` stays instant.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

app = typer.Typer(
    name="endoctl",
    help="Build leak-free GI-endoscopy image datasets and train EVA-02 classifiers on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    )


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _format_help() -> str:
    from endoctl.sources import REGISTRY

    return "Source layout: " + ", ".join(sorted(REGISTRY)) + " (see `endoctl sources`)."


@app.command()
def sources() -> None:
    """List the supported dataset layouts and how each derives labels, patients and official splits."""
    from endoctl.sources import REGISTRY

    for name in sorted(REGISTRY):
        typer.echo(REGISTRY[name].describe() + "\n")


@app.command()
def synth(
    dest: Annotated[Path, typer.Argument(help="Folder to write kvasir_capsule/, kid/ and ce24/ into (replaced).")],
    seed: Annotated[int, typer.Option(help="Random seed; same seed and sizes give byte-identical files.")] = 0,
    videos: Annotated[int, typer.Option(help="Kvasir-Capsule-like videos (= patients).")] = 6,
    frames_per_video: Annotated[int, typer.Option(help="Consecutive frames per video.")] = 40,
    kid_patients: Annotated[int, typer.Option(help="KID-like patients.")] = 8,
    kid_images_per_patient: Annotated[int, typer.Option(help="Images per KID-like patient.")] = 10,
    ce24_copy_fraction: Annotated[float, typer.Option(help="Share of source images copied (resized, re-encoded) into CE24 training/validation.")] = 0.6,
    ce24_test_videos: Annotated[int, typer.Option(help="Extra videos whose frames appear only in CE24 testing.")] = 2,
    corrupt: Annotated[bool, typer.Option(help="Plant a few corrupt files (truncated, empty, text-as-JPEG).")] = True,
) -> None:
    """Write small, deterministic demo datasets in the native layouts of Kvasir-Capsule, KID and CE24."""
    from endoctl.synth import SynthConfig
    from endoctl.synth import synth as run_synth

    config = SynthConfig(seed, videos, frames_per_video, kid_patients, kid_images_per_patient,
                         ce24_copy_fraction, ce24_test_videos, corrupt)
    start = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task("synth", total=None, rate="")
        counts = run_synth(dest, config, lambda done, total: progress.update(task, completed=done, total=total))
    seconds = time.perf_counter() - start
    total = sum(counts.values())
    parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    typer.echo(f"synth: {total} files ({parts}) in {seconds:.1f} s, {total / seconds:.0f} files/s -> {dest}")


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Dataset root in its native layout.")],
    format: Annotated[str, typer.Option("--format", "-f", help=_format_help())],
    source: Annotated[str, typer.Option(help="Source name, used in image ids (e.g. kvasir-capsule).")],
    out: Annotated[Path, typer.Option(help="Manifest CSV; rejections go to <stem>.rejected.csv beside it.")],
    labels: Annotated[Optional[Path], typer.Option(help="Label/metadata file the layout reads (csv: required; ce24: test truth xlsx; kvasir-capsule: metadata.csv; gastrovision: folder of split CSVs).")] = None,
    data_root: Annotated[Path, typer.Option(help="Manifest paths are written relative to this folder.")] = Path("."),
    workers: Annotated[int, typer.Option(help="Worker processes (0 = all cores).")] = 0,
    max_pixels: Annotated[int, typer.Option(help="Reject larger images as decompression bombs.")] = 178_956_970,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any file is rejected.")] = False,
) -> None:
    """Scan one dataset, hash every image (sha256, pHash, dHash) and write its manifest CSV."""
    import os

    from endoctl.ingest import ingest as run_ingest
    from endoctl.io import write_csv
    from endoctl.sources import get_adapter

    if not src.is_dir():
        _fail(f"source folder not found: {src}")
    try:
        adapter = get_adapter(format, src, labels)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        _fail(str(exc))
    workers = workers or os.cpu_count() or 1
    with _progress() as progress:
        task = progress.add_task(f"ingest {source}", total=None, rate="")
        began = time.perf_counter()

        def tick(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.0f} img/s")

        result = run_ingest(adapter.scan(), source, data_root, workers, max_pixels, tick)
    if result.found == 0:
        _fail(f"no images found in {src} (layout {format}: {adapter.layout})")
    rejected_path = out.with_name(f"{out.stem}.rejected.csv")
    write_csv(out, result.manifest)
    write_csv(rejected_path, result.rejected)
    rate = len(result.manifest) / max(result.seconds, 1e-9)
    typer.echo(
        f"ingest {source}: found {result.found} = accepted {len(result.manifest)} + rejected "
        f"{len(result.rejected)} (skipped {result.skipped} metadata/hidden files) in "
        f"{result.seconds:.1f} s, {rate:,.0f} img/s, {workers} workers -> {out}"
    )
    if strict and len(result.rejected):
        first = result.rejected.iloc[0]
        _fail(f"--strict: {len(result.rejected)} file(s) rejected, first {first.path}: {first.reason} (see {rejected_path})")


if __name__ == "__main__":
    app()

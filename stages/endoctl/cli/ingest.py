"""``endoctl sources`` and ``endoctl ingest``: list the dataset layouts; scan one dataset into its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    Workers,
    check_max_pixels,
    console,
    fail,
    output_errors,
    progress_bar,
    ticker,
    worker_count,
)
from endoctl.io import MANIFEST_FILE, REJECTED_FILE, SOURCE_FILE
from endoctl.params import INGEST, IngestParams

app = typer.Typer()


def format_help() -> str:
    from endoctl.sources import FORMATS  # names only: the adapters (and pandas) load when used

    return (
        "Source layout: "
        + ", ".join(sorted(FORMATS))
        + ", or auto: recognise it from the folder (see `endoctl sources`)."
    )


@app.command()
def sources() -> None:
    """List the supported dataset layouts and how each derives labels, patients and official splits."""
    from endoctl.sources import AUTO, DETECTION_ORDER, REGISTRY
    from endoctl.sources.base import MARKS

    typer.echo("How each rule is known: " + "; ".join(f"[{k}] {v}" for k, v in MARKS.items()) + ".\n")
    for name in sorted(REGISTRY):
        typer.echo(REGISTRY[name].describe() + "\n")
    typer.echo(
        f"--format {AUTO} tries, in this order: {', '.join(DETECTION_ORDER)} (folder and csv are never guessed)."
    )


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Dataset root in its native layout.")],
    format: Annotated[str, typer.Option("--format", "-f", help=format_help())],
    source: Annotated[str, typer.Option(help="Source name, used in image ids (e.g. kvasir-capsule).")],
    out: Annotated[
        Path,
        typer.Option(
            help=f"Output folder (e.g. manifests/ingest/NAME): {MANIFEST_FILE}, {REJECTED_FILE} (path, reason) and "
            f"{SOURCE_FILE} (the format, so split needs no --format-of), replaced together."
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            help="Label/metadata file the layout reads (csv: required; ce24: test truth xlsx; kvasir-capsule: "
            "metadata.csv; gastrovision: folder of split CSVs; hyperkvasir: folder of official split files; "
            "medfmc-endo: folder of endo_*.csv; crohnipi: CrohnIPI_description.csv; see-ai: label CSV, or a "
            "folder of box files)."
        ),
    ] = None,
    data_root: Annotated[Path, typer.Option(help="Manifest paths are written relative to this folder.")] = Path("."),
    workers: Workers = INGEST.workers,
    max_pixels: Annotated[int, typer.Option(help="Reject larger images as decompression bombs.")] = INGEST.max_pixels,
    strict: Annotated[bool, typer.Option(help="Exit non-zero if any file is rejected.")] = False,
) -> None:
    """Scan one dataset, hash every image (sha256, pHash, dHash) and write its manifest and rejected list."""
    run_ingest(src, format, source, out, IngestParams(max_pixels, workers), labels, data_root, strict)


def run_ingest(
    src: Path,
    format: str,
    source: str,
    out: Path,
    params: IngestParams,
    labels: Path | None = None,
    data_root: Path = Path("."),
    strict: bool = False,
) -> None:

    from endoctl.ingest import OUTPUT_FILES, ingest, write_ingest
    from endoctl.io import check_output_dir
    from endoctl.sources import AUTO, detect_format, get_adapter

    if src.is_file():
        fail(f"source {src} is a file, not a folder: give the dataset's root folder")
    if not src.is_dir():
        fail(f"source folder not found: {src}")
    check_max_pixels(params.max_pixels)
    if not source or "/" in source or "\\" in source or source in (".", ".."):
        fail(
            f"--source {source!r}: a source name begins every image id (<source>/<path>) and names a folder, so it "
            "must not be empty, '.' or '..', nor hold '/' or '\\'"
        )
    workers = worker_count(params.workers)
    if out.suffix.lower() == ".csv":
        fail(
            f"--out {out}: ingest writes a folder ({MANIFEST_FILE} + {REJECTED_FILE}, replaced together), "
            f"e.g. --out {out.with_suffix('')}"
        )
    with output_errors():
        check_output_dir(out, OUTPUT_FILES, what="ingest outputs")
    chosen = ""
    try:
        if format == AUTO:
            format, evidence = detect_format(src)
            chosen = f" (--format auto: {evidence})"
            console.print(
                f"ingest {source}: --format auto chose {format}: found {evidence}", highlight=False, markup=False
            )
        adapter = get_adapter(format, src, labels)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        fail(str(exc))
    with progress_bar() as progress:
        tick = ticker(progress, progress.add_task(f"ingest {source}", total=None, rate=""))
        result = ingest(adapter.scan(), source, data_root, workers, params.max_pixels, tick)
    if result.found == 0:
        fail(f"no images found in {src} (layout {format}: {adapter.layout})")
    if len(result.manifest) == 0:
        shown = "; ".join(f"{r.path}: {r.reason}" for r in result.rejected.head(2).itertuples())
        fail(f"no image accepted from {src}: {result.found} file(s) found, all rejected (first: {shown})")
    with output_errors():
        write_ingest(result, out, source, format)
    rate = len(result.manifest) / max(result.seconds, 1e-9)
    typer.echo(
        f"ingest {source}: format {format}{chosen}; found {result.found} = accepted {len(result.manifest)} + rejected "
        f"{len(result.rejected)} ({result.skipped_text()}) in {result.seconds:.1f} s, {rate:,.0f} img/s, "
        f"{workers} workers -> {out}"
    )
    if strict and len(result.rejected):
        first = result.rejected.iloc[0]
        fail(
            f"--strict: {len(result.rejected)} file(s) rejected, first {first.path}: {first.reason} "
            f"(see {out / REJECTED_FILE})"
        )

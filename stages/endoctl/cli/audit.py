"""``endoctl audit``: leaks in existing split files (groups and near-duplicates across splits)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    FRAME_GAP_DEFAULT,
    HashWorkers,
    console,
    fail,
    note,
    output_errors,
    progress_bar,
    resolve_frame_gap,
    ticker,
    worker_count,
)
from endoctl.params import DEDUPE

app = typer.Typer()


@app.command()
def audit(
    split: Annotated[
        list[str],
        typer.Option(
            "--split",
            help="NAME=FILE, repeated (at least two names; a repeated name joins its files). FILE: endoctl split CSV, "
            "CE24 xlsx, Kvasir-Capsule official_split CSV, or any table with a path column.",
        ),
    ],
    images_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder the split files' paths are relative to: hash the images and report near-duplicates across "
            "splits."
        ),
    ] = None,
    max_distance: Annotated[
        int, typer.Option(help="Near-duplicate radius in pHash/dHash bits (with --images-root).")
    ] = DEDUPE.max_distance,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the full report as JSON here.")] = None,
    fail_on_leak: Annotated[
        bool, typer.Option(help="Exit 1 when any group (patient/video/duplicate) is in more than one split.")
    ] = False,
    workers: HashWorkers = 0,
    frame_gap: Annotated[
        int | None,
        typer.Option(
            help="Count images numbered within this many frames of another split's image of the same name prefix "
            "(<video>_<frame>, imageNNNNN, ulcer1_<frame>); 0: off. " + FRAME_GAP_DEFAULT
        ),
    ] = None,
) -> None:
    """Report leaks in existing split files: patients/videos and near-duplicate images in more than one split."""
    import json

    from endoctl.audit import render_table, summary
    from endoctl.io import write_text
    from endoctl.leaks import audit_files

    pairs = [item.partition("=") for item in split]
    bad = [item for item, (name, eq, file) in zip(split, pairs) if not (name.strip() and eq and file.strip())]
    if bad:
        fail(f"--split expects NAME=FILE, got {bad[0]!r}")
    if len({name.strip() for name, _, _ in pairs}) < 2:
        fail("audit needs at least two split names (e.g. --split train=a.csv --split test=b.csv)")
    if images_root is not None and not images_root.is_dir():
        fail(f"--images-root folder not found: {images_root}")
    frame_gap = resolve_frame_gap(frame_gap)
    workers = worker_count(workers)
    error = None
    with progress_bar() as progress:
        task = progress.add_task("hash images", total=None, rate="", visible=images_root is not None)
        tick = ticker(progress, task)

        try:
            report = audit_files(
                [(name.strip(), Path(file.strip())) for name, _, file in pairs],
                images_root,
                max_distance,
                workers,
                tick,
                frame_gap,
            )
        except (ValueError, FileNotFoundError) as exc:
            error = str(exc)
    if error is not None:
        fail(error)
    console.print(render_table(report))
    for line in report.notes():
        note(line)
    if json_out is not None:
        with output_errors():
            write_text(json_out, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    typer.echo(summary(report) + (f" -> {json_out}" if json_out is not None else ""))
    if fail_on_leak and report.leaks:
        raise typer.Exit(1)

"""``endoctl report``: the dataset as a static HTML page (duplicates, sequences, conflicts, leaks, quality)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    DataRoot,
    Duplicates,
    MaxPixels,
    duplicates_file,
    fail,
    note,
    output_errors,
    progress_bar,
    ticker,
    worker_count,
)
from endoctl.io import MANIFEST_FILE, REJECTED_FILE
from endoctl.params import QUALITY, REPORT, QualityParams, ReportParams

app = typer.Typer()


@app.command()
def report(
    manifests: Annotated[
        list[Path],
        typer.Option(
            "--manifests",
            help=f"Ingest output folders ({MANIFEST_FILE} + {REJECTED_FILE}), manifest CSVs, or a folder of them "
            "(e.g. manifests/ingest); repeatable.",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(help="Report folder: index.html, thumbs/, the CSVs behind every gallery (replaced as a whole)."),
    ] = Path("manifests/report"),
    duplicates: Duplicates = None,
    split: Annotated[
        list[Path] | None,
        typer.Option("--split", help="Split folder (train_val.csv, test.csv, excluded.csv); repeatable."),
    ] = None,
    audit: Annotated[
        list[Path] | None, typer.Option("--audit", help="`endoctl audit --json` file; repeatable.")
    ] = None,
    data_root: DataRoot = Path("."),
    workers: Annotated[
        int, typer.Option(help="Worker processes for quality measures and thumbnails (0 = all cores).")
    ] = 0,
    clusters: Annotated[int, typer.Option(help="Duplicate clusters shown.")] = REPORT.clusters,
    members: Annotated[int, typer.Option(help="Images shown per cluster.")] = REPORT.members,
    sequences: Annotated[int, typer.Option(help="Frame sequences shown as film strips.")] = REPORT.sequences,
    frames: Annotated[int, typer.Option(help="Frames per film strip.")] = REPORT.frames,
    conflicts: Annotated[int, typer.Option(help="Label conflicts shown.")] = REPORT.conflicts,
    leaks: Annotated[int, typer.Option(help="Leaking groups and pairs shown per check.")] = REPORT.leaks,
    quality: Annotated[int, typer.Option(help="Images shown per quality flag (a seeded sample).")] = REPORT.quality,
    thumb_size: Annotated[int, typer.Option(help="Longer side of the thumbnails in pixels.")] = REPORT.thumb_size,
    seed: Annotated[int, typer.Option(help="Seed of the sampled galleries.")] = REPORT.seed,
    dark: Annotated[
        float, typer.Option(help="Dark: brightness (mean luma of the content region) below this.")
    ] = QUALITY.dark,
    overexposed: Annotated[float, typer.Option(help="Overexposed: brightness above this.")] = QUALITY.overexposed,
    low_information: Annotated[
        float, typer.Option(help="Low-information (near-uniform): luma standard deviation below this.")
    ] = QUALITY.low_information,
    blurry: Annotated[
        float, typer.Option(help="Blurry: sharpness (mean |Laplacian| / mean |gradient|) below this.")
    ] = QUALITY.blurry,
    min_side: Annotated[int, typer.Option(help="Odd size: shorter side below this many pixels ...")] = QUALITY.min_side,
    size_factor: Annotated[
        float, typer.Option(help="... or size more than this factor off its source's median.")
    ] = QUALITY.size_factor,
    max_aspect: Annotated[
        float, typer.Option(help="Odd aspect: longer side above this times the shorter.")
    ] = QUALITY.max_aspect,
    max_pixels: MaxPixels = REPORT.max_pixels,
) -> None:
    """Write a static HTML report (no network, no script): duplicates, sequences, conflicts, leaks, image quality."""

    from endoctl.io import check_output_dir, find_manifests
    from endoctl.quality import FLAGS
    from endoctl.report import OUTPUT_FILES, build_report, load_inputs, write_report

    try:
        files = find_manifests(manifests)
    except ValueError as exc:
        fail(str(exc))
    duplicates = duplicates_file(duplicates)
    for path in audit or []:
        if not path.is_file():
            fail(f"--audit file not found: {path}")
    for folder in split or []:
        if not folder.is_dir():
            fail(f"--split folder not found: {folder}")
    if min(clusters, members, sequences, frames, conflicts, leaks, quality) < 0 or thumb_size < 16:
        fail("gallery sizes must be >= 0 and --thumb-size >= 16")
    workers = worker_count(workers)
    with output_errors():  # before the work, not after it
        check_output_dir(out, OUTPUT_FILES, what="report files")
    params = ReportParams(
        clusters=clusters,
        members=members,
        sequences=sequences,
        frames=frames,
        conflicts=conflicts,
        leaks=leaks,
        quality=quality,
        thumb_size=thumb_size,
        seed=seed,
        max_pixels=max_pixels,
    )
    qparams = QualityParams(
        dark=dark,
        overexposed=overexposed,
        low_information=low_information,
        blurry=blurry,
        min_side=min_side,
        size_factor=size_factor,
        max_aspect=max_aspect,
    )
    error = None
    try:
        inputs = load_inputs(files, duplicates, split or [], audit or [])
    except (ValueError, FileNotFoundError) as exc:
        error = str(exc)
    if error is not None:
        fail(error)
    for line in inputs.notes:
        note(line)
    with progress_bar() as progress:
        tasks = {stage: progress.add_task(stage, total=None, rate="") for stage in ("quality", "thumbnails")}
        tickers = {stage: ticker(progress, task) for stage, task in tasks.items()}
        result = build_report(
            inputs, params, qparams, data_root, workers, lambda stage, done, total: tickers[stage](done, total)
        )
    s = result.summary
    if s["images"] and s["unreadable"] == s["images"]:  # a page of nothing: most likely the wrong folder
        first = result.tables["quality.csv"].iloc[0]
        fail(
            f"report: none of the {s['images']:,} images could be read (first {first['path']}: {first['reason']}); "
            f"manifest paths are resolved against --data-root, here {data_root.resolve()}: pass the folder ingest "
            "ran in"
        )
    with output_errors():
        index = write_report(result, out)
    flags = ", ".join(f"{f} {s[f]}" for f in FLAGS)
    typer.echo(
        f"report: {s['images']:,} images ({s['decoded']:,} decoded, "
        f"{s['decoded'] / max(result.quality_seconds, 1e-9):,.0f} img/s, "
        f"{workers} workers); {s['clusters']:,} duplicate clusters ({s['cross_source']:,} across sources, "
        f"{s['dark_clusters']} of dark/uniform frames), {s['sequences']:,} sequences, label conflicts in "
        f"{s['conflict_clusters']:,} clusters "
        f"(exact copies {s['exact_conflicts']:,}, near pairs {s['conflicts'] - s['exact_conflicts']:,}), "
        f"{s['leaking_groups']:,} leaking groups in {s['checks']} checks, {s['flagged']:,} images flagged ({flags}); "
        f"{s['thumbnails']:,} thumbnails; {result.seconds:.1f} s -> {index}"
    )

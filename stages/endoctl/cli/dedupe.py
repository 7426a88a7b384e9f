"""``endoctl dedupe``: exact and near-duplicate clusters and frame-sequence links across all sources."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import fail, load_manifests, output_errors, worker_count
from endoctl.io import DEDUPE_REPORT_FILE, DUPLICATES_FILE, PAIRS_FILE
from endoctl.params import DEDUPE, DedupeParams

app = typer.Typer()

# The near-duplicate and sequence options, shared with build-splits (one declaration, one help text).
MaxDistance = Annotated[int, typer.Option(help="Near duplicate: pHash Hamming distance at most this ...")]
DhashDistance = Annotated[int, typer.Option(help="... and dHash distance at most this.")]
MinSimilarity = Annotated[
    float,
    typer.Option(
        min=0.0,
        max=1.0,
        help="... and the pixels: correlation of the two 8x8 content grids at least this (0: off).",
    ),
]
SequenceGap = Annotated[int, typer.Option(help="Link video frames numbered at most this far apart (0: off).")]
SequenceDistance = Annotated[int, typer.Option(help="... whose pHash distance is at most this.")]


@app.command()
def dedupe(
    manifests: Annotated[
        list[Path],
        typer.Argument(
            help="Ingest output folders or manifest CSVs (all sources together), or a folder of them (e.g. "
            "manifests/ingest)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help=f"Output folder: {DUPLICATES_FILE} (clusters), {PAIRS_FILE}, {DEDUPE_REPORT_FILE}, replaced together."
        ),
    ] = Path("manifests/duplicates"),
    max_distance: MaxDistance = DEDUPE.max_distance,
    dhash_distance: DhashDistance = DEDUPE.dhash_distance,
    min_similarity: MinSimilarity = DEDUPE.min_similarity,
    sequence_gap: SequenceGap = DEDUPE.sequence_gap,
    sequence_distance: SequenceDistance = DEDUPE.sequence_distance,
    sequence_pattern: Annotated[
        str,
        typer.Option(
            help="Regex searched in each image path without its extension, groups 'prefix' and 'frame'; frames of one "
            "source and prefix are linked (default: Kvasir-Capsule <video>_<frame>, SEE-AI imageNNNNN, ERS "
            "<patient>/seq_NN/frames/NNNNNN).",
            show_default=False,
        ),
    ] = DEDUPE.sequence_pattern,
    workers: Annotated[int, typer.Option(help="Search threads (0 = all cores).")] = DEDUPE.workers,
) -> None:
    """Find exact and near-duplicate images across all sources (and frame-sequence links); cluster them."""
    run_dedupe(
        manifests,
        out,
        DedupeParams(
            max_distance=max_distance,
            dhash_distance=dhash_distance,
            min_similarity=min_similarity,
            sequence_gap=sequence_gap,
            sequence_distance=sequence_distance,
            sequence_pattern=sequence_pattern,
            workers=workers,
        ),
    )


def run_dedupe(manifests: list[Path], out: Path, params: DedupeParams) -> None:
    from endoctl.dedupe import OUTPUT_FILES, dedupe_manifests, write_dedupe
    from endoctl.io import check_output_dir

    if out.suffix.lower() == ".csv":
        fail(
            f"--out {out}: dedupe writes a folder ({', '.join(OUTPUT_FILES)}, replaced together), "
            f"e.g. --out {out.with_suffix('')}"
        )
    worker_count(params.workers)
    with output_errors():
        check_output_dir(out, OUTPUT_FILES, what="dedupe outputs")
    start = time.perf_counter()
    files, frames = load_manifests(manifests)
    try:
        result = dedupe_manifests(frames, [str(f) for f in files], params)
    except ValueError as exc:
        fail(str(exc))
    with output_errors():
        write_dedupe(result, out)
    rep = result.report
    largest = rep["largest_cluster"] or {"size": 0}
    seconds = time.perf_counter() - start
    typer.echo(
        f"dedupe: {rep['images']} images -> {rep['duplicate_clusters']} duplicate clusters "
        f"({rep['images_in_duplicate_clusters']} images; {rep['cross_source_clusters']} across sources, "
        f"{rep['conflicting_label_clusters']} with conflicting labels, largest {largest['size']}); pairs "
        + ", ".join(f"{k} {v}" for k, v in rep["pairs"].items())
        + f"; {seconds:.1f} s, {rep['images'] / max(seconds, 1e-9):,.0f} img/s -> {out}"
    )

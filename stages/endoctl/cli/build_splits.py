"""``endoctl build-splits``: ingest -> dedupe -> split in one command, for use without DVC."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import TaxonomyFile, console, fail
from endoctl.cli.dedupe import DhashDistance, MaxDistance, MinSimilarity, SequenceDistance, SequenceGap, run_dedupe
from endoctl.cli.ingest import run_ingest
from endoctl.cli.split import Folds, MaxGroupShare, Pins, Seed, Target, TestFraction, run_split
from endoctl.params import DEDUPE, INGEST, SPLIT, DedupeParams, IngestParams, SplitParams

app = typer.Typer()


@app.command("build-splits")
def build_splits(
    source: Annotated[
        list[str],
        typer.Option(
            help="NAME=FORMAT:PATH, repeatable, e.g. kvasir-capsule=kvasir-capsule:raw/kc (FORMAT may be auto)."
        ),
    ],
    target: Target,
    out: Annotated[
        Path, typer.Option(help="Folder for ingest/<NAME>/, duplicates/ and <target>/ (each as its command writes it).")
    ],
    pin: Pins = None,
    test_fraction: TestFraction = SPLIT.test_fraction,
    folds: Folds = SPLIT.folds,
    seed: Seed = SPLIT.seed,
    max_distance: MaxDistance = DEDUPE.max_distance,
    dhash_distance: DhashDistance = DEDUPE.dhash_distance,
    min_similarity: MinSimilarity = DEDUPE.min_similarity,
    sequence_gap: SequenceGap = DEDUPE.sequence_gap,
    sequence_distance: SequenceDistance = DEDUPE.sequence_distance,
    max_group_share: MaxGroupShare = SPLIT.max_group_share,
    taxonomy: TaxonomyFile = None,
    workers: Annotated[int, typer.Option(help="Worker processes/threads (0 = all cores).")] = INGEST.workers,
    nest_in: Annotated[
        Path | None, typer.Option(help="Upstream split folder this target nests in (see `endoctl split`).")
    ] = None,
) -> None:
    """ingest -> dedupe -> split in one command, for use without DVC; the same files as the DVC stages."""
    from endoctl.sources import AUTO, detect_format

    parsed = []
    for spec in source:
        name, _, rest = spec.partition("=")
        fmt, _, path = rest.partition(":")
        if not (name and fmt and path):
            fail(f"--source {spec!r}: expected NAME=FORMAT:PATH")
        if fmt == AUTO and Path(path).is_dir():  # resolved here: split maps labels by the real format
            try:
                fmt, evidence = detect_format(Path(path))
            except ValueError as exc:
                fail(str(exc))
            console.print(
                f"build-splits: {name}: --format auto chose {fmt}: found {evidence}", highlight=False, markup=False
            )
        parsed.append((name, fmt, Path(path)))
    manifests = [out / "ingest" / name for name, _, _ in parsed]
    for manifest, (name, fmt, path) in zip(manifests, parsed):
        run_ingest(path, fmt, name, manifest, IngestParams(workers=workers))
    duplicates = out / "duplicates"
    run_dedupe(
        manifests,
        duplicates,
        DedupeParams(
            max_distance=max_distance,
            dhash_distance=dhash_distance,
            min_similarity=min_similarity,
            sequence_gap=sequence_gap,
            sequence_distance=sequence_distance,
            workers=workers,
        ),
    )
    run_split(
        manifests,
        target,
        out / target,
        SplitParams(test_fraction, folds, seed, max_group_share),
        duplicates,
        pin or [],
        {name: fmt for name, fmt, _ in parsed if name != fmt},
        taxonomy,
        nest_in=nest_in,
    )

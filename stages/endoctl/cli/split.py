"""``endoctl split``: leak-free, class-stratified train_val folds and test, moving whole groups only."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    Duplicates,
    TaxonomyFile,
    duplicates_file,
    fail,
    load_manifests,
    output_errors,
    progress_bar,
    warn,
)
from endoctl.io import SOURCE_FILE
from endoctl.params import SPLIT, SplitParams

app = typer.Typer()

# The split options, shared with build-splits (one declaration, one help text).
TestFraction = Annotated[
    float, typer.Option(help="Share of labelled images to put in test (pinned groups count towards it).")
]
Folds = Annotated[int, typer.Option(help="Cross-validation folds of train_val.")]
Seed = Annotated[int, typer.Option(help="Random seed; same inputs and seed give byte-identical outputs.")]
Pins = Annotated[
    list[str] | None,
    typer.Option(
        "--pin",
        help="test=SOURCE[:OFFICIAL_SPLIT], repeatable: those images and every group holding one go to test.",
    ),
]
MaxGroupShare = Annotated[
    float, typer.Option(help="Warn when the largest group holds more than this share of all images.")
]
Target = Annotated[str, typer.Option(help="Taxonomy target (label set), e.g. ce24 or ee24-ce24.")]


@app.command()
def split(
    manifest: Annotated[
        list[Path],
        typer.Option(
            "--manifest",
            help="Manifest CSV (ingest output, or just image_id, source, path, label[, patient_id, official_split]), "
            "or a folder of them; repeat for every source. Groups are built over all of them.",
        ),
    ],
    target: Target,
    out: Annotated[
        Path,
        typer.Option(
            help="Output folder: train_val.csv, test.csv, class_mapping.json, excluded.csv, split_report.{json,md}."
        ),
    ],
    duplicates: Duplicates = None,
    test_fraction: TestFraction = SPLIT.test_fraction,
    folds: Folds = SPLIT.folds,
    seed: Seed = SPLIT.seed,
    pin: Pins = None,
    keep_assignments: Annotated[
        Path | None,
        typer.Option(
            help="Previous split folder: groups with images there keep their split and fold; only new groups are "
            "assigned."
        ),
    ] = None,
    taxonomy: TaxonomyFile = None,
    max_group_share: MaxGroupShare = SPLIT.max_group_share,
    format_of: Annotated[
        list[str] | None,
        typer.Option(
            help=f"NAME=FORMAT, repeatable: taxonomy dataset of a source whose name differs from its format; ingest "
            f"folders record it in {SOURCE_FILE}, so this only overrides (or names it for flat manifest CSVs)."
        ),
    ] = None,
    nest_in: Annotated[
        Path | None,
        typer.Option(
            help="Upstream split folder (e.g. the pre-training target's): every group keeps its fold/test place "
            "there, so no image of this split's fold k or test is trained on upstream when it validates on fold "
            "k; groups absent there are assigned freely."
        ),
    ] = None,
) -> None:
    """Split manifests into leak-free, class-stratified train_val folds and test, moving whole groups only."""
    formats = {}
    for item in format_of or []:
        name, eq, fmt = item.partition("=")
        if not (name.strip() and eq and fmt.strip()):
            fail(f"--format-of expects NAME=FORMAT, got {item!r}")
        formats[name.strip()] = fmt.strip()
    run_split(
        manifest,
        target,
        out,
        SplitParams(test_fraction, folds, seed, max_group_share),
        duplicates,
        pin or [],
        formats,
        taxonomy,
        keep_assignments,
        nest_in,
    )


def run_split(
    manifests: list[Path],
    target: str,
    out: Path,
    params: SplitParams,
    duplicates: Path | None = None,
    pins: list[str] = (),
    formats: dict[str, str] | None = None,
    taxonomy: Path | None = None,
    keep_assignments: Path | None = None,
    nest_in: Path | None = None,
) -> None:
    from endoctl import split as splitting
    from endoctl.io import check_output_dir, find_manifests, manifest_formats
    from endoctl.published import counts, manifest_entries
    from endoctl.taxonomy import load_taxonomy

    with output_errors():
        check_output_dir(out, splitting.OUTPUT_FILES, what="split outputs")
    started = time.perf_counter()
    try:  # cheap checks first; split() matches the pins before labelling and grouping
        files = find_manifests(manifests)
        formats = manifest_formats(files, formats)  # ingest's source.json; --format-of overrides
        duplicates = duplicates_file(duplicates)
        parsed_pins = [splitting.parse_pin(p) for p in pins]
        splitting.check_fractions(params.test_fraction, params.folds)
        tax = load_taxonomy(taxonomy)
        tax.target(target)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    files, frames = load_manifests(files)
    try:
        source_counts = counts(manifest_entries(files, frames, formats))
        pairs, dup_info = splitting.load_duplicates(duplicates) if duplicates is not None else (None, None)
        previous = splitting.read_previous(keep_assignments) if keep_assignments is not None else None
        upstream = splitting.read_previous(nest_in, "--nest-in") if nest_in is not None else None
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    recorded = {
        "manifests": [str(f) for f in files],
        "duplicates": str(duplicates) if duplicates else None,
        "duplicate_pairs": dup_info["pairs_file"] if dup_info else None,
        "target": target,
        "test_fraction": params.test_fraction,
        "folds": params.folds,
        "seed": params.seed,
        "pins": [str(p) for p in parsed_pins],
        "keep_assignments": str(keep_assignments) if keep_assignments else None,
        "nest_in": str(nest_in) if nest_in else None,
        "taxonomy": str(taxonomy) if taxonomy else "(packaged default)",
        "max_group_share": params.max_group_share,
        "formats": formats or {},
    }
    error = None
    with progress_bar() as progress:
        task = progress.add_task(f"split {target}", total=None, rate="")
        try:
            result = splitting.split(
                frames,
                pairs,
                tax,
                target,
                formats=formats or None,
                test_fraction=params.test_fraction,
                folds=params.folds,
                seed=params.seed,
                pins=parsed_pins,
                previous=previous,
                max_group_share=params.max_group_share,
                params=recorded,
                names=[str(f) for f in files],
                on_progress=lambda done, total: progress.update(task, completed=done, total=total, rate="groups"),
                nest_in=upstream,
                source_counts=source_counts,
            )
        except ValueError as exc:
            error = str(exc)
    if error is not None:
        fail(error)
    if not len(result.train_val) + len(result.test):
        reasons = result.excluded["reason"].value_counts()
        fail(
            f"no image maps to a class of target {target!r}: all {len(result.excluded)} excluded "
            f"(most often: {reasons.index[0]!r}, {reasons.iloc[0]} rows); nothing to split"
        )
    with output_errors():
        splitting.write_split(result, out)
    for warning in result.warnings:
        warn(warning)
    typer.echo(
        f"{_summary(result.report, target, params.folds, nest_in)} in {time.perf_counter() - started:.1f} s -> {out}"
    )


def _summary(r: dict, target: str, folds: int, nest_in: Path | None) -> str:
    """The split's one line, from its report: rows, groups, balance, straddling, pins, keep and nesting."""
    rows, s = r["rows"], r["straddling"]
    largest = r["groups"]["largest"]["share"] if r["groups"]["largest"] else 0.0
    return (
        f"split {target}: {rows['in']} rows = train_val {rows['train_val']} ({folds} folds) + test {rows['test']} "
        f"({r['test_fraction']['achieved']:.1%}) + excluded {rows['excluded']}; {r['groups']['total']} groups, "
        f"largest {largest:.1%}; max class deviation in test {r['max_abs_deviation_pp']['test']:.2f} pp; "
        f"straddling groups {s['groups_across_splits'] + s['groups_across_folds']}; pinned {r['pinned']['images']} "
        f"images in {r['pinned']['groups']} groups"
        + (
            f"; kept {r['keep']['kept_groups']} groups, {r['keep']['conflicting_groups']} conflicts"
            if r["keep"]
            else ""
        )
        + (
            f"; nested in {nest_in}: {r['nesting']['nested_groups']} groups, validation/test images seen in training "
            f"upstream {r['nesting']['images_seen_in_training_upstream']}"
            if r["nesting"]
            else ""
        )
    )

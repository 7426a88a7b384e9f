"""The ``endoctl`` command line: each command parses options, calls one core function, prints a summary.

Heavy modules are imported inside the commands so ``endoctl --help`` stays instant.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

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

from endoctl.io import DEDUPE_REPORT_FILE, DUPLICATES_FILE, MANIFEST_FILE, PAIRS_FILE, REJECTED_FILE, SOURCE_FILE
from endoctl.params import (
    CACHE,
    DEDUPE,
    EVALUATE,
    INGEST,
    PREDICT,
    QUALITY,
    REPORT,
    SPLIT,
    STUDY,
    CacheParams,
    DedupeParams,
    IngestParams,
    QualityParams,
    ReportParams,
    SplitParams,
    resolve_workers,
)

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
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def _ticker(progress: Progress, task: TaskID, decimals: int = 0) -> Callable[[int, int | None], None]:
    """An ``on_progress(done, total)`` callback moving ``task`` and showing the img/s so far."""
    began = time.perf_counter()

    def tick(done: int, total: int | None) -> None:
        rate = done / max(time.perf_counter() - began, 1e-9)
        progress.update(task, completed=done, total=total, rate=f"{rate:,.{decimals}f} img/s")

    return tick


@contextlib.contextmanager
def _hashing_progress(visible: bool) -> Iterator[Callable[[int, int | None], None]]:
    """A "hash images" progress bar while the block runs, yielding its ``on_progress``."""
    with _progress() as progress:
        yield _ticker(progress, progress.add_task("hash images", total=None, rate="", visible=visible))


# One decompression-bomb limit for every stage that opens images (params.yaml `ingest.max_pixels`):
# an image ingest admitted under a raised limit must not be rejected later.
_MAX_PIXELS_HELP = "Reject larger images as decompression bombs (keep equal to ingest's --max-pixels)."
MaxPixels = Annotated[int, typer.Option(help=_MAX_PIXELS_HELP)]

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


def _max_pixels(max_pixels: int) -> None:
    if max_pixels < 1:
        _fail(f"--max-pixels must be >= 1, got {max_pixels}")


def _workers(workers: int) -> int:
    """``--workers`` as a count (0: all cores), or one line for a negative one, before any work."""
    try:
        return resolve_workers(workers)
    except ValueError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    """One line on stderr (file contents may look like rich markup: printed as they are), exit 2."""
    from rich.markup import escape

    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _warn(message: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


def _note(message: str) -> None:
    from rich.markup import escape

    console.print(f"[yellow]note:[/yellow] {escape(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def _output_errors() -> Iterator[None]:
    """An output that cannot be written (read-only file system, no space, a folder holding other
    files, ...) ends the command with one line naming it, not a traceback."""
    from endoctl.io import OutputError

    try:
        yield
    except OutputError as exc:
        _fail(str(exc))


def _manifests(paths: list[Path]) -> tuple[list[Path], list]:
    """The manifest files named by ``paths`` and their frames; a header-only one is warned about."""
    from endoctl.io import find_manifests, read_manifests

    try:
        files = find_manifests(paths)
        frames, empty = read_manifests(files)
    except ValueError as exc:
        _fail(str(exc))
    for name in empty:
        _warn(f"{name}: no rows (header only): that source contributes no images")
    return files, frames


def _duplicates_file(path: Path | None) -> Path | None:
    """dedupe's output folder (or its clusters CSV named directly) -> the clusters CSV; missing: one line."""
    if path is not None and path.is_dir():
        path = path / DUPLICATES_FILE
    if path is not None and not path.is_file():
        _fail(f"--duplicates file not found: {path}")
    return path


def _format_help() -> str:
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
def synth(
    dest: Annotated[
        Path,
        typer.Argument(
            help="Folder to write kvasir_capsule/, kid/, ce24/, ers/ and see_ai/ into (replaced as a whole; it may "
            "hold only those)."
        ),
    ],
    seed: Annotated[int, typer.Option(help="Random seed; same seed and sizes give byte-identical files.")] = 0,
    videos: Annotated[int, typer.Option(help="Kvasir-Capsule-like videos (= patients).")] = 6,
    frames_per_video: Annotated[int, typer.Option(help="Consecutive frames per video.")] = 40,
    kid_patients: Annotated[int, typer.Option(help="KID-like patients.")] = 8,
    kid_images_per_patient: Annotated[int, typer.Option(help="Images per KID-like patient.")] = 10,
    ce24_copy_fraction: Annotated[
        float, typer.Option(help="Share of source images copied (resized, re-encoded) into CE24 training/validation.")
    ] = 0.6,
    ce24_test_videos: Annotated[int, typer.Option(help="Extra videos whose frames appear only in CE24 testing.")] = 2,
    corrupt: Annotated[
        bool,
        typer.Option(help="Plant a few corrupt files (truncated, empty, text-as-JPEG, an ERS frame without mask)."),
    ] = True,
    ers_patients: Annotated[
        int, typer.Option(help="ERS-like patients (multi-label PNG frames, labels in mask file names).")
    ] = 3,
    see_ai_videos: Annotated[int, typer.Option(help="SEE-AI-like videos (flat imageNNNNN.jpg + YOLO box files).")] = 3,
) -> None:
    """Write small, deterministic demo datasets in the native layouts of Kvasir-Capsule, KID, CE24, ERS and SEE-AI."""
    from endoctl.synth import SynthConfig
    from endoctl.synth import synth as run_synth

    config = SynthConfig(
        seed,
        videos,
        frames_per_video,
        kid_patients,
        kid_images_per_patient,
        ce24_copy_fraction,
        ce24_test_videos,
        corrupt,
        ers_patients,
        see_ai_videos,
    )
    start = time.perf_counter()
    error = None
    with _progress() as progress:
        task = progress.add_task("synth", total=None, rate="")
        try:
            counts = run_synth(dest, config, lambda done, total: progress.update(task, completed=done, total=total))
        except ValueError as exc:  # invalid sizes, or a DEST that cannot be replaced
            error = str(exc)
    if error is not None:
        _fail(error)
    seconds = time.perf_counter() - start
    total = sum(counts.values())
    parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    typer.echo(f"synth: {total} files ({parts}) in {seconds:.1f} s, {total / seconds:.0f} files/s -> {dest}")


@app.command()
def ingest(
    src: Annotated[Path, typer.Argument(help="Dataset root in its native layout.")],
    format: Annotated[str, typer.Option("--format", "-f", help=_format_help())],
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
    _ingest(src, format, source, out, IngestParams(max_pixels, workers), labels, data_root, strict)


def _ingest(
    src: Path,
    format: str,
    source: str,
    out: Path,
    params: IngestParams,
    labels: Path | None = None,
    data_root: Path = Path("."),
    strict: bool = False,
) -> None:
    from rich.markup import escape

    from endoctl.ingest import OUTPUT_FILES, ingest, write_ingest
    from endoctl.io import check_output_dir
    from endoctl.sources import AUTO, detect_format, get_adapter

    if src.is_file():
        _fail(f"source {src} is a file, not a folder: give the dataset's root folder")
    if not src.is_dir():
        _fail(f"source folder not found: {src}")
    _max_pixels(params.max_pixels)
    if not source or "/" in source or "\\" in source or source in (".", ".."):
        _fail(
            f"--source {source!r}: a source name begins every image id (<source>/<path>) and names a folder, so it "
            "must not be empty, '.' or '..', nor hold '/' or '\\'"
        )
    workers = _workers(params.workers)
    if out.suffix.lower() == ".csv":
        _fail(
            f"--out {out}: ingest writes a folder ({MANIFEST_FILE} + {REJECTED_FILE}, replaced together), "
            f"e.g. --out {out.with_suffix('')}"
        )
    with _output_errors():
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
        _fail(escape(str(exc)))
    with _progress() as progress:
        tick = _ticker(progress, progress.add_task(f"ingest {source}", total=None, rate=""))
        result = ingest(adapter.scan(), source, data_root, workers, params.max_pixels, tick)
    if result.found == 0:
        _fail(f"no images found in {src} (layout {format}: {adapter.layout})")
    if len(result.manifest) == 0:
        shown = "; ".join(f"{r.path}: {r.reason}" for r in result.rejected.head(2).itertuples())
        _fail(f"no image accepted from {src}: {result.found} file(s) found, all rejected (first: {shown})")
    with _output_errors():
        write_ingest(result, out, source, format)
    rate = len(result.manifest) / max(result.seconds, 1e-9)
    typer.echo(
        f"ingest {source}: format {format}{chosen}; found {result.found} = accepted {len(result.manifest)} + rejected "
        f"{len(result.rejected)} ({result.skipped_text()}) in {result.seconds:.1f} s, {rate:,.0f} img/s, "
        f"{workers} workers -> {out}"
    )
    if strict and len(result.rejected):
        first = result.rejected.iloc[0]
        _fail(
            f"--strict: {len(result.rejected)} file(s) rejected, first {first.path}: {first.reason} "
            f"(see {out / REJECTED_FILE})"
        )


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
    max_distance: Annotated[
        int, typer.Option(help="Near duplicate: pHash Hamming distance at most this ...")
    ] = DEDUPE.max_distance,
    dhash_distance: Annotated[int, typer.Option(help="... and dHash distance at most this.")] = DEDUPE.dhash_distance,
    min_similarity: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="... and the pixels: correlation of the two 8x8 content grids at least this (0: off).",
        ),
    ] = DEDUPE.min_similarity,
    sequence_gap: Annotated[
        int, typer.Option(help="Link video frames numbered at most this far apart (0: off).")
    ] = DEDUPE.sequence_gap,
    sequence_distance: Annotated[
        int, typer.Option(help="... whose pHash distance is at most this.")
    ] = DEDUPE.sequence_distance,
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
    _dedupe(
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


def _dedupe(manifests: list[Path], out: Path, params: DedupeParams) -> None:
    from endoctl.dedupe import OUTPUT_FILES, dedupe_manifests, write_dedupe
    from endoctl.io import check_output_dir

    if out.suffix.lower() == ".csv":
        _fail(
            f"--out {out}: dedupe writes a folder ({', '.join(OUTPUT_FILES)}, replaced together), "
            f"e.g. --out {out.with_suffix('')}"
        )
    _workers(params.workers)
    with _output_errors():
        check_output_dir(out, OUTPUT_FILES, what="dedupe outputs")
    start = time.perf_counter()
    files, frames = _manifests(manifests)
    try:
        result = dedupe_manifests(frames, [str(f) for f in files], params)
    except ValueError as exc:
        _fail(str(exc))
    with _output_errors():
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


# From endoctl.params (light: --help stays fast), so the number cannot go stale.
_FRAME_GAP_DEFAULT = f"Default: dedupe's sequence gap ({DEDUPE.sequence_gap})."


def _frame_gap(value: int | None) -> int:
    """``--frame-gap`` of audit and evaluate: default dedupe's sequence gap, never negative."""
    if value is None:
        return DEDUPE.sequence_gap
    if value < 0:
        _fail(f"--frame-gap must be >= 0, got {value}")
    return value


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
            "(<video>_<frame>, imageNNNNN, ulcer1_<frame>); 0: off. " + _FRAME_GAP_DEFAULT
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
        _fail(f"--split expects NAME=FILE, got {bad[0]!r}")
    if len({name.strip() for name, _, _ in pairs}) < 2:
        _fail("audit needs at least two split names (e.g. --split train=a.csv --split test=b.csv)")
    if images_root is not None and not images_root.is_dir():
        _fail(f"--images-root folder not found: {images_root}")
    frame_gap = _frame_gap(frame_gap)
    workers = _workers(workers)
    error = None
    with _progress() as progress:
        task = progress.add_task("hash images", total=None, rate="", visible=images_root is not None)
        tick = _ticker(progress, task)

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
        _fail(error)
    console.print(render_table(report))
    for note in report.notes():
        _note(note)
    if json_out is not None:
        with _output_errors():
            write_text(json_out, json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    typer.echo(summary(report) + (f" -> {json_out}" if json_out is not None else ""))
    if fail_on_leak and report.leaks:
        raise typer.Exit(1)


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
    target: Annotated[str, typer.Option(help="Taxonomy target (label set), e.g. ce24 or ee24-ce24.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Output folder: train_val.csv, test.csv, class_mapping.json, excluded.csv, split_report.{json,md}."
        ),
    ],
    duplicates: Duplicates = None,
    test_fraction: Annotated[
        float, typer.Option(help="Share of labelled images to put in test (pinned groups count towards it).")
    ] = SPLIT.test_fraction,
    folds: Annotated[int, typer.Option(help="Cross-validation folds of train_val.")] = SPLIT.folds,
    seed: Annotated[
        int, typer.Option(help="Random seed; same inputs and seed give byte-identical outputs.")
    ] = SPLIT.seed,
    pin: Annotated[
        list[str] | None,
        typer.Option(
            help="test=SOURCE[:OFFICIAL_SPLIT], repeatable: those images and every group holding one go to test."
        ),
    ] = None,
    keep_assignments: Annotated[
        Path | None,
        typer.Option(
            help="Previous split folder: groups with images there keep their split and fold; only new groups are "
            "assigned."
        ),
    ] = None,
    taxonomy: TaxonomyFile = None,
    max_group_share: Annotated[
        float, typer.Option(help="Warn when the largest group holds more than this share of all images.")
    ] = SPLIT.max_group_share,
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
            _fail(f"--format-of expects NAME=FORMAT, got {item!r}")
        formats[name.strip()] = fmt.strip()
    _split(
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


def _split(
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

    with _output_errors():
        check_output_dir(out, splitting.OUTPUT_FILES, what="split outputs")
    started = time.perf_counter()
    try:  # cheap checks first; split() matches the pins before labelling and grouping
        files = find_manifests(manifests)
        formats = manifest_formats(files, formats)  # ingest's source.json; --format-of overrides
        duplicates = _duplicates_file(duplicates)
        parsed_pins = [splitting.parse_pin(p) for p in pins]
        splitting.check_fractions(params.test_fraction, params.folds)
        tax = load_taxonomy(taxonomy)
        tax.target(target)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    files, frames = _manifests(files)
    try:
        source_counts = counts(manifest_entries(files, frames, formats))
        pairs, dup_info = splitting.load_duplicates(duplicates) if duplicates is not None else (None, None)
        previous = splitting.read_previous(keep_assignments) if keep_assignments is not None else None
        upstream = splitting.read_previous(nest_in, "--nest-in") if nest_in is not None else None
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
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
    with _progress() as progress:
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
        _fail(error)
    if not len(result.train_val) + len(result.test):
        reasons = result.excluded["reason"].value_counts()
        _fail(
            f"no image maps to a class of target {target!r}: all {len(result.excluded)} excluded "
            f"(most often: {reasons.index[0]!r}, {reasons.iloc[0]} rows); nothing to split"
        )
    with _output_errors():
        splitting.write_split(result, out)
    for warning in result.warnings:
        _warn(warning)
    r = result.report
    rows, s = r["rows"], r["straddling"]
    largest = r["groups"]["largest"]["share"] if r["groups"]["largest"] else 0.0
    typer.echo(
        f"split {target}: {rows['in']} rows = train_val {rows['train_val']} ({params.folds} folds) + test "
        f"{rows['test']} "
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
        + f" in {time.perf_counter() - started:.1f} s -> {out}"
    )


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
            + _FRAME_GAP_DEFAULT
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
        _workers(workers),
        _frame_gap(frame_gap),
        scores,
    )
    try:
        result = run_evaluate(request, lambda: _hashing_progress(visible=images_root is not None))
    except (ValueError, FileNotFoundError) as exc:  # OutputError and EvaluationError are ValueErrors
        _fail(str(exc))
    for note in result.notes():
        _note(note)
    typer.echo(result.summary())
    if result.failed:
        from rich.markup import escape

        for line in result.failures():
            console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        console.print(
            f"[red]error:[/red] {len(result.failed)} of {len(result.failed) + len(result.scored)} prediction "
            f"file(s) could not be scored; the other {len(result.scored)} report(s) were written",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


@app.command()
def predict(
    checkpoint: Annotated[
        Path,
        typer.Option(
            help="endoctl checkpoint (.pt), plain timm weights (.safetensors/.pth/.bin; needs --class-mapping and "
            "--model-name) or the seed paper's Lightning .ckpt."
        ),
    ],
    images: Annotated[
        Path,
        typer.Option(
            help="Folder (recursive, sorted) or CSV with a path column (endoctl split CSV; paths relative to "
            "--data-root)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Predictions .csv or .xlsx (CE24 submission columns); unreadable images go to <stem>.rejected.csv "
            "beside it."
        ),
    ],
    data_root: DataRoot = Path("."),
    class_mapping: Annotated[
        Path | None,
        typer.Option(
            help="A split's class_mapping.json: the classes of timm/Lightning weights (checked against an endoctl "
            "checkpoint's own)."
        ),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="timm model name, for weights that do not say (e.g. eva02_base_patch14_224).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = PREDICT.batch_size,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N] or auto (cuda when available).")] = PREDICT.device,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Image-decoding processes (0: in the main process; default: all cores up to 16 on cuda; on cpu 0 up "
            "to 4 cores, else 2)."
        ),
    ] = PREDICT.workers,
    compile: Annotated[
        bool, typer.Option(help="torch.compile the model (fast path only; pays off on long runs).")
    ] = False,
    fast: Annotated[
        bool,
        typer.Option(help="inference_mode + channels-last + bf16 autocast where supported; --no-fast: fp32 eager."),
    ] = True,
    max_pixels: MaxPixels = PREDICT.max_pixels,
) -> None:
    """Predict class probabilities for images with a checkpoint; writes the CE24 submission layout."""
    if not checkpoint.is_file():
        _fail(f"checkpoint not found: {checkpoint}")
    if batch_size < 1 or (workers is not None and workers < 0):
        _fail("--batch-size must be >= 1 and --workers >= 0")
    _max_pixels(max_pixels)
    import torch

    from endoctl import predict as inference
    from endoctl.io import printable
    from endoctl.model import load_for_inference

    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail(f"--device {device}: CUDA is not available here (use --device cpu)")
    error = None
    try:
        listed = inference.list_images(images, data_root)
        inference.check_output(out, len(listed.paths))
        inference.check_output_folder(out)
        if not listed.paths:
            raise ValueError(
                f"no images in {images}"
                + (f" ({listed.skipped} non-image/hidden files skipped)" if listed.skipped else "")
            )
        loaded = load_for_inference(checkpoint, class_mapping, model_name)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        error = str(exc)
    if error is not None:
        _fail(error)
    if listed.videos:
        _note(f"{images}: {listed.videos} video file(s) left out: `endoctl study` reads a video")
    if listed.repeated:
        path, rows = next(iter(listed.repeated.items()))
        _warn(
            f"{images}: {len(listed.repeated)} path(s) listed more than once (first {path!r} in rows "
            f"{', '.join(map(str, rows))}): each image is predicted once"
        )
    with _progress() as progress:
        task = progress.add_task("predict", total=len(listed.paths), rate="")
        tick = _ticker(progress, task, decimals=1)

        result = inference.predict_images(loaded, listed, device, batch_size, workers, fast, compile, tick, max_pixels)
    with _output_errors():
        rejected = inference.write_predictions(out, result)
    n = len(result.table)
    if not n:
        _fail(inference.nothing_predicted(listed, images, result.rejected, rejected))
    typer.echo(
        f"predict: {len(listed.paths)} images"
        + (f" (from {listed.rows} rows of {printable(images.name)})" if listed.repeated else "")
        + f" = predicted {n} + rejected {len(result.rejected)}"
        + (f" (see {printable(str(rejected))})" if len(result.rejected) else "")
        + f"; {loaded.model_name} ({loaded.source_format} weights, {len(loaded.class_names)} classes) on {device}, "
        f"{result.path.describe()}, batch {batch_size}; {result.seconds:.1f} s, "
        f"{(n + len(result.rejected)) / max(result.seconds, 1e-9):,.1f} img/s -> {printable(str(out))}"
    )


train_app = typer.Typer(
    help="Train classifiers: pretrain on the merged dataset, finetune on CE24. Values come from the "
    "params.yaml section named like the command, else TrainConfig's defaults (endoctl.train); every key is "
    "also an option.",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")
_P = "(default: params.yaml, else TrainConfig's)"


def _train(
    ctx: typer.Context,
    params: Annotated[
        Path, typer.Option(help="Parameter file; its section named like the command gives the defaults.")
    ] = Path("params.yaml"),
    resume: Annotated[
        bool, typer.Option(help="Continue from <out-dir>/last.pt, re-running the interrupted epoch.")
    ] = False,
    deterministic: Annotated[bool, typer.Option(help="Deterministic torch algorithms (bit-exact reruns).")] = False,
    split_dir: Annotated[
        str | None, typer.Option(help=f"Split folder (train_val.csv, class_mapping.json). {_P}")
    ] = None,
    val_fold: Annotated[int | None, typer.Option(help=f"Validation fold; the other folds train. {_P}")] = None,
    data_root: Annotated[str | None, typer.Option(help=f"Folder the CSV paths are relative to. {_P}")] = None,
    out_dir: Annotated[
        str | None, typer.Option(help="Checkpoints last.pt, best.pt (default: models/<command>).")
    ] = None,
    metrics_dir: Annotated[
        str | None, typer.Option(help="DVCLive metrics, plots, val_predictions.csv (default: metrics/<command>).")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help=f"timm model name. {_P}")] = None,
    img_size: Annotated[int | None, typer.Option(help=f"Input size (ViTs: a multiple of the patch size). {_P}")] = None,
    pretrained_file: Annotated[
        str | None,
        typer.Option(help=f"Backbone weights: timm file, endoctl or Lightning checkpoint; '' = random init. {_P}"),
    ] = None,
    drop_path_rate: Annotated[float | None, typer.Option(help=_P)] = None,
    epochs: Annotated[int | None, typer.Option(help=_P)] = None,
    batch_size: Annotated[int | None, typer.Option(help=f"Per process. {_P}")] = None,
    opt: Annotated[str | None, typer.Option(help=f"timm optimizer name. {_P}")] = None,
    lr: Annotated[float | None, typer.Option(help=_P)] = None,
    weight_decay: Annotated[float | None, typer.Option(help=_P)] = None,
    layer_decay: Annotated[float | None, typer.Option(help=f"Layer-wise lr decay, 0 = off. {_P}")] = None,
    warmup_epochs: Annotated[int | None, typer.Option(help=_P)] = None,
    warmup_lr: Annotated[float | None, typer.Option(help=_P)] = None,
    min_lr: Annotated[float | None, typer.Option(help=_P)] = None,
    scheduler_step: Annotated[
        str | None, typer.Option(help=f"Cosine schedule stepped per 'epoch' or 'update'. {_P}")
    ] = None,
    clip_grad: Annotated[float | None, typer.Option(help=f"Max gradient norm, 0 = off. {_P}")] = None,
    ema_decay: Annotated[float | None, typer.Option(help=f"Model EMA decay, 0 = off. {_P}")] = None,
    amp: Annotated[
        str | None,
        typer.Option(help=f"auto (bf16 where native, fp16 on older GPUs, else off) | off | bf16 | fp16. {_P}"),
    ] = None,
    balance: Annotated[
        str | None, typer.Option(help=f"sampler (inverse-frequency) | loss (class weights) | none. {_P}")
    ] = None,
    freeze_epochs: Annotated[
        int | None, typer.Option(help=f"Train only the head for this many first epochs. {_P}")
    ] = None,
    monitor: Annotated[
        str | None, typer.Option(help=f"Metric choosing best.pt, e.g. val/balanced_accuracy. {_P}")
    ] = None,
    hflip: Annotated[float | None, typer.Option(help=_P)] = None,
    vflip: Annotated[float | None, typer.Option(help=_P)] = None,
    rot90: Annotated[float | None, typer.Option(help=f"Probability of a random 90/180/270 rotation. {_P}")] = None,
    color_jitter: Annotated[float | None, typer.Option(help=_P)] = None,
    scale_min: Annotated[
        float | None, typer.Option(help=f"Random resized crop scale range (scale_min, 1). {_P}")
    ] = None,
    num_workers: Annotated[int | None, typer.Option(help=_P)] = None,
    seed: Annotated[int | None, typer.Option(help=_P)] = None,
    max_pixels: Annotated[int | None, typer.Option(help=f"{_MAX_PIXELS_HELP} {_P}")] = None,
) -> None:
    """Shared by `train pretrain` and `train finetune`; the command name picks the params section."""
    import os

    # Before torch loads OpenMP: idle threads sleep instead of spinning, which on a busy or small CPU
    # machine (data workers, other jobs) measured 5-10x faster training; no effect on GPU compute.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from endoctl.train import TrainError, load_config, train

    stage = ctx.info_name
    overrides = {k: v for k, v in ctx.params.items() if k not in ("params", "resume", "deterministic")}
    error = None
    try:
        config = load_config(stage, params, overrides)
    except (TrainError, TypeError) as exc:
        error = str(exc)
    if error is not None:
        _fail(error)
    main = os.environ.get("RANK", "0") == "0"
    with _progress() as progress:
        task = progress.add_task(stage, total=None, rate="", visible=main)

        def on_step(epoch: int, step: int, steps: int, loss: float) -> None:
            progress.update(
                task,
                description=f"{stage} epoch {epoch + 1}/{config.epochs}",
                completed=step,
                total=steps,
                rate=f"loss {loss:.3f}",
            )

        def on_epoch(epoch: int, m: dict[str, float]) -> None:
            progress.console.print(
                f"{stage} epoch {epoch + 1}/{config.epochs}: train loss {m['train/loss']:.4f}, val loss "
                f"{m['val/loss']:.4f}, balanced acc {m['val/balanced_accuracy']:.3f}, AUC {m['val/auc_macro']:.3f}, "
                f"F1 {m['val/f1_macro']:.3f}, mAP {m['val/map_macro']:.3f}, lr {m['lr']:.2e}",
                highlight=False,
            )

        try:
            result = train(config, resume, deterministic, on_step, on_epoch)
        except (TrainError, FileNotFoundError, ValueError) as exc:
            error = str(exc)
    if error is not None:
        _fail(error)
    if result.rank == 0:
        typer.echo(
            f"train {stage}: {config.model_name} @{config.img_size}, {result.epochs_run} epoch(s) in "
            f"{result.seconds:.1f} s ({result.train_images_per_second:,.1f} train img/s); best {config.monitor} "
            f"{result.best_value:.4f} at epoch {result.best_epoch + 1} -> {config.out_dir}/best.pt, "
            f"{config.metrics_dir}/"
        )


train_app.command(
    "pretrain", help="Pre-train on the merged dataset (params.yaml `pretrain`): models/pretrain, metrics/pretrain."
)(_train)
train_app.command(
    "finetune",
    help="Fine-tune on CE24 from models/pretrain/best.pt (params.yaml `finetune`): new head, models/finetune.",
)(_train)


@app.command()
def cache(
    split_dir: Annotated[
        Path, typer.Argument(help="Split folder (train_val.csv and/or test.csv, class_mapping.json).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            help=f"Cached split folder: images/, the split CSVs pointing at them, class_mapping.json, {REJECTED_FILE}."
        ),
    ],
    size: Annotated[
        int, typer.Option(help="Shorter side of the cached JPEGs in pixels (never enlarged); >= the training img_size.")
    ] = CACHE.size,
    quality: Annotated[int, typer.Option(help="JPEG quality of the cached images.")] = CACHE.quality,
    data_root: DataRoot = Path("."),
    workers: Workers = CACHE.workers,
    max_pixels: MaxPixels = CACHE.max_pixels,
) -> None:
    """Pre-resize a split folder's images once, so training decodes small JPEGs every epoch."""
    from endoctl.cache import cache_split

    if not split_dir.is_dir():
        _fail(f"split folder not found: {split_dir}")
    if out.resolve() == split_dir.resolve():
        _fail(f"--out must differ from the split folder {split_dir}")
    _workers(workers)
    _max_pixels(max_pixels)
    params = CacheParams(size, quality, workers, max_pixels)
    error = None
    with _progress() as progress:
        tick = _ticker(progress, progress.add_task(f"cache {split_dir.name}", total=None, rate=""))
        try:
            result = cache_split(split_dir, out, params, data_root, tick)
        except (ValueError, FileNotFoundError) as exc:
            error = str(exc)
    if error is not None:
        _fail(error)
    total = result.images + len(result.rejected)
    rows = ", ".join(f"{name} {len(df)}" for name, df in result.tables.items())
    typer.echo(
        f"cache {split_dir.name}: {total} images = cached {result.images} + rejected {len(result.rejected)}"
        + (f" (see {out / REJECTED_FILE})" if len(result.rejected) else "")
        + f"; rows {rows}; shorter side <= {size} px, JPEG q{quality}; {result.seconds:.1f} s, "
        f"{total / max(result.seconds, 1e-9):,.0f} img/s, {resolve_workers(workers)} workers -> {out}"
    )


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
    from rich.markup import escape

    from endoctl.io import check_output_dir, find_manifests
    from endoctl.quality import FLAGS
    from endoctl.report import OUTPUT_FILES, build_report, load_inputs, write_report

    try:
        files = find_manifests(manifests)
    except ValueError as exc:
        _fail(str(exc))
    duplicates = _duplicates_file(duplicates)
    for path in audit or []:
        if not path.is_file():
            _fail(f"--audit file not found: {path}")
    for folder in split or []:
        if not folder.is_dir():
            _fail(f"--split folder not found: {folder}")
    if min(clusters, members, sequences, frames, conflicts, leaks, quality) < 0 or thumb_size < 16:
        _fail("gallery sizes must be >= 0 and --thumb-size >= 16")
    workers = _workers(workers)
    with _output_errors():  # before the work, not after it
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
        _fail(escape(error))
    for note in inputs.notes:
        _note(note)
    with _progress() as progress:
        tasks = {stage: progress.add_task(stage, total=None, rate="") for stage in ("quality", "thumbnails")}
        tickers = {stage: _ticker(progress, task) for stage, task in tasks.items()}
        result = build_report(
            inputs, params, qparams, data_root, workers, lambda stage, done, total: tickers[stage](done, total)
        )
    s = result.summary
    if s["images"] and s["unreadable"] == s["images"]:  # a page of nothing: most likely the wrong folder
        first = result.tables["quality.csv"].iloc[0]
        _fail(
            f"report: none of the {s['images']:,} images could be read (first {first['path']}: {first['reason']}); "
            f"manifest paths are resolved against --data-root, here {data_root.resolve()}: pass the folder ingest "
            "ran in"
        )
    with _output_errors():
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


@app.command("build-splits")
def build_splits(
    source: Annotated[
        list[str],
        typer.Option(
            help="NAME=FORMAT:PATH, repeatable, e.g. kvasir-capsule=kvasir-capsule:raw/kc (FORMAT may be auto)."
        ),
    ],
    target: Annotated[str, typer.Option(help="Taxonomy target (label set), e.g. ce24 or ee24-ce24.")],
    out: Annotated[
        Path, typer.Option(help="Folder for ingest/<NAME>/, duplicates/ and <target>/ (each as its command writes it).")
    ],
    pin: Annotated[
        list[str] | None, typer.Option(help="test=SOURCE[:OFFICIAL_SPLIT], repeatable (see `endoctl split`).")
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="Share of labelled images in test.")] = SPLIT.test_fraction,
    folds: Annotated[int, typer.Option(help="Cross-validation folds of train_val.")] = SPLIT.folds,
    seed: Annotated[int, typer.Option(help="Random seed.")] = SPLIT.seed,
    max_distance: Annotated[
        int, typer.Option(help="Near-duplicate pHash distance (see `endoctl dedupe`).")
    ] = DEDUPE.max_distance,
    dhash_distance: Annotated[
        int, typer.Option(help="dHash distance confirming a pHash match.")
    ] = DEDUPE.dhash_distance,
    min_similarity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Near duplicates' pixel check (see `endoctl dedupe`).")
    ] = DEDUPE.min_similarity,
    sequence_gap: Annotated[
        int, typer.Option(help="Frame-number gap linking frames of one video.")
    ] = DEDUPE.sequence_gap,
    sequence_distance: Annotated[
        int, typer.Option(help="pHash distance for sequence links.")
    ] = DEDUPE.sequence_distance,
    max_group_share: Annotated[
        float, typer.Option(help="Warn when one group holds more than this share.")
    ] = SPLIT.max_group_share,
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
            _fail(f"--source {spec!r}: expected NAME=FORMAT:PATH")
        if fmt == AUTO and Path(path).is_dir():  # resolved here: split maps labels by the real format
            try:
                fmt, evidence = detect_format(Path(path))
            except ValueError as exc:
                _fail(str(exc))
            console.print(
                f"build-splits: {name}: --format auto chose {fmt}: found {evidence}", highlight=False, markup=False
            )
        parsed.append((name, fmt, Path(path)))
    manifests = [out / "ingest" / name for name, _, _ in parsed]
    for manifest, (name, fmt, path) in zip(manifests, parsed):
        _ingest(path, fmt, name, manifest, IngestParams(workers=workers))
    duplicates = out / "duplicates"
    _dedupe(
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
    _split(
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


@app.command()
def study(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A capsule study: a video (mp4, avi, mkv, ...) or a folder of numbered frame images.",
        ),
    ],
    checkpoint: Annotated[Path, typer.Option(help="Model checkpoint, as for `endoctl predict`.")],
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for frames.csv, segments.csv, summary.json, timeline.html and rejected.csv "
            "(replaced together)."
        ),
    ],
    class_mapping: Annotated[
        Path | None, typer.Option(help="class_mapping.json for timm/Lightning weights (see `endoctl predict`).")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="timm model name, for weights that do not say.")] = None,
    batch_size: Annotated[int, typer.Option(help="Frames per forward pass.")] = STUDY.batch_size,
    device: Annotated[str, typer.Option(help="cpu, cuda[:N] or auto (cuda when available).")] = STUDY.device,
    reuse_distance: Annotated[
        int,
        typer.Option(
            help="A frame within this many pHash bits of the last predicted frame takes its probabilities "
            "(-1: off; docs/study.md measures what it saves and changes)."
        ),
    ] = STUDY.reuse_distance,
    smooth: Annotated[
        int, typer.Option(help="Frames in the centred moving average before segments are cut.")
    ] = STUDY.smooth,
    min_frames: Annotated[int, typer.Option(help="Shortest segment, in frames.")] = STUDY.min_frames,
    background: Annotated[
        str, typer.Option(help="The class that is no finding (no segments, no pictures).")
    ] = STUDY.background,
    top: Annotated[int, typer.Option(help="Pictures per finding on the timeline page.")] = STUDY.top,
    fps: Annotated[
        float, typer.Option(help="Frame folders: frames per second (a frame's time = its number / fps).")
    ] = STUDY.fps,
    chunk_frames: Annotated[
        int, typer.Option(help="Frames per chunk: a killed run resumes at its first unfinished chunk.")
    ] = STUDY.chunk_frames,
    fast: Annotated[
        bool, typer.Option(help="inference_mode + channels-last + bf16 autocast where supported; --no-fast: fp32.")
    ] = True,
    timings: Annotated[
        bool,
        typer.Option(
            help="Record this run (seconds, frames/s, device) in summary.json; --no-timings: outputs that are "
            "byte-identical run to run (DVC)."
        ),
    ] = True,
    max_pixels: MaxPixels = STUDY.max_pixels,
) -> None:
    """Read a whole capsule study with a model: frame table, finding segments and a timeline page."""
    from endoctl.params import StudyParams

    params = StudyParams(
        batch_size, device, reuse_distance, smooth, min_frames, background, top, fps, chunk_frames, max_pixels
    )
    _max_pixels(max_pixels)
    if not checkpoint.is_file():
        _fail(f"checkpoint not found: {checkpoint}")
    import shutil

    import torch

    from endoctl import study as reading
    from endoctl.frames import model_geometry, open_study
    from endoctl.io import OutputError, check_output_dir, printable
    from endoctl.model import load_for_inference

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        _fail(f"--device {device}: CUDA is not available here (use --device cpu)")
    try:
        reading.check_params(params)
        check_output_dir(out, reading.STUDY_FILES, "--out", "study outputs")
        loaded = load_for_inference(checkpoint, class_mapping, model_name)
        frames = open_study(source, model_geometry(loaded.data_config), fps, max_pixels)
    except (ValueError, FileNotFoundError, RuntimeError, OutputError) as exc:
        _fail(str(exc))
    if frames.skipped:
        _note(f"{source}: {frames.skipped} entries are not numbered frame images and were left out")
    work = reading.work_folder(out)
    ident = reading.identity(source, checkpoint, params, f"{device} fast={fast}", loaded.class_names)
    state = reading.resume_state(work, ident, len(loaded.class_names), top)
    if state.frames:
        _note(f"resuming {printable(str(out))}: {state.chunks} finished chunks ({state.frames:,} frames) kept")
    with _progress() as progress:
        task = progress.add_task("study", total=frames.total, rate="")
        began = time.perf_counter()

        def tick(done: int, total: int | None) -> None:
            rate = (done - state_start) / max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.1f} frames/s")

        state_start = state.frames
        info = reading.predict_study(loaded, frames, work, state, params, device, fast, tick)
    rate = info.frames / max(info.seconds, 1e-9)
    run = {
        "seconds": round(info.seconds, 3),
        "frames": info.frames,
        "frames_per_second": round(rate, 2),
        "model_seconds": round(info.model_seconds, 3),
        "resumed_frames": info.resumed_frames,
        "device": str(device),
        "compute": info.path.describe(),
        "batch_size": batch_size,
    }
    with _output_errors():
        found = reading.write_outputs(
            out,
            work,
            state,
            loaded.class_names,
            params,
            source,
            frames.kind,
            loaded.model_name,
            run if timings else None,
        )
    shutil.rmtree(work, ignore_errors=True)
    findings = ", ".join(f"{name} {c['segments']}" for name, c in found["classes"].items() if c["segments"])
    typer.echo(
        f"study: {found['frames'] + found['rejected']:,} frames = predicted {found['predicted']:,} + reused "
        f"{found['reused']:,} + rejected {found['rejected']:,}; {found['segments']} segments"
        + (f" ({findings})" if findings else "")
        + f"; {loaded.model_name} on {device}, {info.path.describe()}; {info.seconds:.1f} s, {rate:,.1f} frames/s"
        + (f" (after {info.resumed_frames:,} resumed)" if info.resumed_frames else "")
        + f" -> {printable(str(out))}"
    )
    if state.error:  # the outputs hold the frames before it: say so, and fail the run
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(state.error)}; the frames before it are in {escape(str(out))}")
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

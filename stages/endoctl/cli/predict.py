"""``endoctl predict``: class probabilities for a set of images, in the CE24 submission layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    BatchSize,
    Checkpoint,
    ClassMapping,
    DataRoot,
    Device,
    Fast,
    MaxPixels,
    ModelName,
    check_max_pixels,
    fail,
    note,
    output_errors,
    progress_bar,
    resolve_device,
    ticker,
    warn,
)
from endoctl.params import PREDICT

app = typer.Typer()


@app.command()
def predict(
    checkpoint: Checkpoint,
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
    class_mapping: ClassMapping = None,
    model_name: ModelName = None,
    batch_size: BatchSize = PREDICT.batch_size,
    device: Device = PREDICT.device,
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
    fast: Fast = PREDICT.fast,
    max_pixels: MaxPixels = PREDICT.max_pixels,
) -> None:
    """Predict class probabilities for images with a checkpoint; writes the CE24 submission layout."""
    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    if batch_size < 1 or (workers is not None and workers < 0):
        fail("--batch-size must be >= 1 and --workers >= 0")
    check_max_pixels(max_pixels)

    from endoctl import predict as inference
    from endoctl.io import printable
    from endoctl.model import load_for_inference

    device = resolve_device(device)
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
        fail(error)
    if listed.videos:
        note(f"{images}: {listed.videos} video file(s) left out: `endoctl study` reads a video")
    if listed.repeated:
        path, rows = next(iter(listed.repeated.items()))
        warn(
            f"{images}: {len(listed.repeated)} path(s) listed more than once (first {path!r} in rows "
            f"{', '.join(map(str, rows))}): each image is predicted once"
        )
    with progress_bar() as progress:
        task = progress.add_task("predict", total=len(listed.paths), rate="")
        tick = ticker(progress, task, decimals=1)

        result = inference.predict_images(loaded, listed, device, batch_size, workers, fast, compile, tick, max_pixels)
    with output_errors():
        rejected = inference.write_predictions(out, result)
    n = len(result.table)
    if not n:
        fail(inference.nothing_predicted(listed, images, result.rejected, rejected))
    typer.echo(
        f"predict: {len(listed.paths)} images"
        + (f" (from {listed.rows} rows of {printable(images.name)})" if listed.repeated else "")
        + f" = predicted {n} + rejected {len(result.rejected)}"
        + (f" (see {printable(str(rejected))})" if len(result.rejected) else "")
        + f"; {loaded.model_name} ({loaded.source_format} weights, {len(loaded.class_names)} classes) on {device}, "
        f"{result.path.describe()}, batch {batch_size}; {result.seconds:.1f} s, "
        f"{(n + len(result.rejected)) / max(result.seconds, 1e-9):,.1f} img/s -> {printable(str(out))}"
    )

"""``endoctl cache``: a split's images pre-resized once, so training decodes small JPEGs every epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import DataRoot, MaxPixels, Workers, check_max_pixels, fail, progress_bar, ticker, worker_count
from endoctl.io import REJECTED_FILE
from endoctl.params import CACHE, CacheParams, resolve_workers

app = typer.Typer()


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
        fail(f"split folder not found: {split_dir}")
    if out.resolve() == split_dir.resolve():
        fail(f"--out must differ from the split folder {split_dir}")
    worker_count(workers)
    check_max_pixels(max_pixels)
    params = CacheParams(size, quality, workers, max_pixels)
    error = None
    with progress_bar() as progress:
        tick = ticker(progress, progress.add_task(f"cache {split_dir.name}", total=None, rate=""))
        try:
            result = cache_split(split_dir, out, params, data_root, tick)
        except (ValueError, FileNotFoundError) as exc:
            error = str(exc)
    if error is not None:
        fail(error)
    total = result.images + len(result.rejected)
    rows = ", ".join(f"{name} {len(df)}" for name, df in result.tables.items())
    typer.echo(
        f"cache {split_dir.name}: {total} images = cached {result.images} + rejected {len(result.rejected)}"
        + (f" (see {out / REJECTED_FILE})" if len(result.rejected) else "")
        + f"; rows {rows}; shorter side <= {size} px, JPEG q{quality}; {result.seconds:.1f} s, "
        f"{total / max(result.seconds, 1e-9):,.0f} img/s, {resolve_workers(workers)} workers -> {out}"
    )

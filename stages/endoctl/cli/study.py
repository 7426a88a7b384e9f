"""``endoctl study``: a whole capsule study read by a model into frames, segments and a timeline page."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import (
    BatchSize,
    Checkpoint,
    ClassMapping,
    Device,
    Fast,
    MaxPixels,
    ModelName,
    check_max_pixels,
    error,
    fail,
    note,
    output_errors,
    progress_bar,
    resolve_device,
)
from endoctl.params import STUDY, StudyParams

app = typer.Typer()


@app.command()
def study(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT",
            help="A capsule study: a video (mp4, avi, mkv, ...) or a folder of numbered frame images.",
        ),
    ],
    checkpoint: Checkpoint,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for frames.csv, segments.csv, summary.json, timeline.html and rejected.csv "
            "(replaced together)."
        ),
    ],
    class_mapping: ClassMapping = None,
    model_name: ModelName = None,
    batch_size: BatchSize = STUDY.batch_size,
    device: Device = STUDY.device,
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
    fast: Fast = STUDY.fast,
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
    check_max_pixels(max_pixels)
    if not checkpoint.is_file():
        fail(f"checkpoint not found: {checkpoint}")
    import shutil

    from endoctl import study as reading
    from endoctl.frames import model_geometry, open_study
    from endoctl.io import OutputError, check_output_dir, printable
    from endoctl.model import load_for_inference

    params = StudyParams(
        batch_size,
        resolve_device(device),
        fast,
        reuse_distance,
        smooth,
        min_frames,
        background,
        top,
        fps,
        chunk_frames,
        max_pixels,
    )
    device = params.device
    try:
        reading.check_params(params)
        check_output_dir(out, reading.STUDY_FILES, "--out", "study outputs")
        loaded = load_for_inference(checkpoint, class_mapping, model_name)
        frames = open_study(source, model_geometry(loaded.data_config), fps, max_pixels)
    except (ValueError, FileNotFoundError, RuntimeError, OutputError) as exc:
        fail(str(exc))
    if frames.skipped:
        note(f"{source}: {frames.skipped} entries are not numbered frame images and were left out")
    work = reading.work_folder(out)
    ident = reading.identity(source, checkpoint, params, loaded.class_names)
    state = reading.resume_state(work, ident, len(loaded.class_names), top)
    if state.frames:
        note(f"resuming {printable(str(out))}: {state.chunks} finished chunks ({state.frames:,} frames) kept")
    with progress_bar() as progress:
        task = progress.add_task("study", total=frames.total, rate="")
        began = time.perf_counter()

        def tick(done: int, total: int | None) -> None:
            rate = (done - state_start) / max(time.perf_counter() - began, 1e-9)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.1f} frames/s")

        state_start = state.frames
        info = reading.predict_study(loaded, frames, work, state, params, tick)
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
    with output_errors():
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
        error(f"{state.error}; the frames before it are in {out}")
        raise typer.Exit(1)

"""``endoctl synth``: the embedded demo datasets, in each source's native layout."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import fail, progress_bar

app = typer.Typer()


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
    with progress_bar() as progress:
        task = progress.add_task("synth", total=None, rate="")
        try:
            counts = run_synth(dest, config, lambda done, total: progress.update(task, completed=done, total=total))
        except ValueError as exc:  # invalid sizes, or a DEST that cannot be replaced
            error = str(exc)
    if error is not None:
        fail(error)
    seconds = time.perf_counter() - start
    total = sum(counts.values())
    parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
    typer.echo(f"synth: {total} files ({parts}) in {seconds:.1f} s, {total / seconds:.0f} files/s -> {dest}")

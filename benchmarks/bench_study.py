"""endoctl study on CPU: frames/s and peak memory on generated 336 px capsule studies, beside the model alone.

Studies: H.264 MP4s of 10,000 and 100,000 frames at 336x336 (a camera drifting over a large mucosa-like
texture, resting now and then: 30% of the frames in still stretches of 10-40 frames), 2 fps.

Runs, each in its own process (peak RSS = that process's ``ru_maxrss``), one after the other:

* **model alone**: the study's first frames decoded once to uint8 batches, then only the model
  (:class:`endoctl.predict.Predictor`, the compute path ``study`` uses) timed on them: the ceiling;
* **study**: ``endoctl study`` on the video, every frame predicted; frames/s from its summary (decode,
  hash, model, chunk files; start-up and the final pass excluded);
* **study + reuse**: the same with ``--reuse-distance``;
* **predict**: ``endoctl predict`` on the same frames written as JPEG files (10k study only).

Model: the demo's fine-tuned checkpoint (``models/finetune/best.pt``, ResNet-18 at 56 px, after
``make repro``) and EVA-02-Ti at 224 px (random init, 10 classes) on the first 2,000 frames: a
model that costs more than decoding, as every real one does.

What reuse changes: on the real 55-frame Kvasir-Capsule chain in ../shared and on the 10k study,
the frames reused at each distance, and against predicting every frame the largest probability
difference on a reused frame, the share of frames whose predicted class changes, and whether the
segments stay the same.

Writes benchmarks/results/study.md. ~25 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from smoke import add_arguments, out_path, write_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "study.md"
DEMO = ROOT / "models" / "finetune" / "best.pt"
CHAIN = ROOT.parent / "shared" / "real_images" / "kvasir_capsule_video_131368cc17e44240"
SIZE, FPS, STILL_SHARE = 336, 2, 0.3
_RSS = (
    "import resource, sys\nfrom endoctl.cli import app\nsys.argv = ['endoctl', *sys.argv[1:]]\ntry:\n    app()\n"
    "finally:\n    print(f'PEAK_RSS_KB {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}', file=sys.stderr)\n"
)


def study_frames(n: int, seed: int = 0):
    """``n`` 336 px RGB frames of a drifting camera over one texture; ~30% in still stretches."""
    from endoctl.testing import scene

    rng = np.random.default_rng(seed)
    texture = np.asarray(scene(seed, (1400, 1400)))
    pos, heading, k = np.array([500.0, 500.0]), 0.0, 0
    while k < n:
        still = rng.random() < STILL_SHARE / ((1 - STILL_SHARE) * 25 + STILL_SHARE)  # stretches of 25 on average
        hold = int(rng.integers(10, 41)) if still else 1
        x, y = (int(v) for v in pos)
        frame = texture[y : y + SIZE, x : x + SIZE]
        for _ in range(min(hold, n - k)):
            yield frame
            k += 1
        heading += rng.normal(0, 0.3)
        pos = np.clip(pos + rng.uniform(2, 8) * np.array([np.cos(heading), np.sin(heading)]), 0, 1400 - SIZE - 1)


def write_study(path: Path, n: int) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for frame in study_frames(n):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))


def write_jpegs(video: Path, folder: Path) -> int:
    import av

    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            frame.to_image().save(folder / f"frame_{i:06d}.jpg", quality=90)
    return i + 1


def endoctl(args: list[str]) -> tuple[str, float, int]:
    """(output, seconds, peak RSS in MB) of one endoctl command in its own process."""
    began = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RSS, *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"endoctl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    peak = int(proc.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) // 1024
    return proc.stdout + proc.stderr, seconds, peak


def model_alone(checkpoint: Path, video: Path, frames: int, batch: int) -> float:
    """Frames/s of the model alone on decoded uint8 batches (median seconds per frame over the batches)."""
    from endoctl.frames import VideoFrames, model_geometry
    from endoctl.model import load_for_inference
    from endoctl.predict import Predictor

    loaded = load_for_inference(checkpoint)
    config = loaded.data_config
    mean = torch.as_tensor(config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(config["std"], dtype=torch.float32).view(1, -1, 1, 1)
    predictor = Predictor(loaded, "cpu", True, False, mean, std)
    pixels = []
    for f in VideoFrames(video, model_geometry(config)).frames():
        pixels.append(f.pixels)
        if len(pixels) == frames:
            break
    batches = [
        torch.from_numpy(np.stack(pixels[i : i + batch])).permute(0, 3, 1, 2)
        for i in range(0, len(pixels) - batch + 1, batch)
    ]
    predictor(batches[0])  # warm-up
    per_frame = []
    for b in batches:
        began = time.perf_counter()
        predictor(b)
        per_frame.append((time.perf_counter() - began) / len(b))
    return 1 / float(np.median(per_frame))


def eva_checkpoint(path: Path, img_size: int) -> Path:
    from endoctl.model import create_model, save_checkpoint
    from endoctl.taxonomy import load_taxonomy

    mapping = load_taxonomy().target("ce24").class_mapping()
    torch.manual_seed(0)
    model = create_model("eva02_tiny_patch14_224", len(mapping), img_size=img_size).eval()
    save_checkpoint(path, model, "eva02_tiny_patch14_224", mapping, img_size=img_size)
    return path


def run_study(video: Path, checkpoint: Path, out: Path, extra: list[str]) -> tuple[dict, int]:
    output, _, peak = endoctl(["study", str(video), "--checkpoint", str(checkpoint), "--out", str(out), *extra])
    return json.loads((out / "summary.json").read_text()), peak


def reuse_effect(every: Path, reused: Path) -> tuple[float, float, bool]:
    """(max |probability difference| on reused frames, share of frames whose predicted class changed,
    segments identical) of a run with reuse against one predicting every frame."""
    a, b = pd.read_csv(every / "frames.csv"), pd.read_csv(reused / "frames.csv")
    classes = [c for c in a.columns if c not in ("frame", "time", "file", "predicted_class", "reused_from")]
    diff = np.abs(a[classes].to_numpy() - b[classes].to_numpy()).max(axis=1)
    on = b["reused_from"].notna().to_numpy()
    same = (every / "segments.csv").read_bytes() == (reused / "segments.csv").read_bytes()
    return (
        float(diff[on].max()) if on.any() else 0.0,
        float((a["predicted_class"] != b["predicted_class"]).mean()),
        same,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--frames", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--distances", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--reuse", type=int, default=4, help="--reuse-distance of the timed runs")
    args = parser.parse_args()
    sizes = [200] if args.smoke else args.frames
    distances = [args.reuse] if args.smoke else args.distances
    eva_frames, batch = (32 if args.smoke else 2000), 32
    lines = [
        "# endoctl study: frames/s and peak memory (CPU)",
        "",
        f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads; generated "
        f"{SIZE} px H.264 studies at {FPS} fps (30% of frames in still stretches). `benchmarks/bench_study.py`.",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        checkpoint, what = DEMO, "the demo's fine-tuned ResNet-18 at 56 px (`models/finetune/best.pt`)"
        if not DEMO.is_file() or args.smoke:
            from endoctl.model import create_model, save_checkpoint
            from endoctl.taxonomy import load_taxonomy

            mapping = load_taxonomy().target("ce24").class_mapping()
            checkpoint, what = tmp / "resnet18.pt", "ResNet-18 at 56 px, random init (run `make repro` for the demo's)"
            save_checkpoint(
                checkpoint, create_model("resnet18", len(mapping), img_size=56).eval(), "resnet18", mapping, img_size=56
            )
        rows, peaks = [], {}
        for n in sizes:
            video = tmp / f"study_{n}.mp4"
            began = time.perf_counter()
            write_study(video, n)
            print(f"study of {n:,} frames written in {time.perf_counter() - began:.0f} s", flush=True)
            ceiling = model_alone(checkpoint, video, min(n, 4096), batch)
            rows.append([f"{n:,}", "model alone (decoded batches)", f"{ceiling:,.0f}", "", "", "", "100%"])
            for label, extra in (
                ("study", []),
                (f"study --reuse-distance {args.reuse}", ["--reuse-distance", str(args.reuse)]),
            ):
                summary, peak = run_study(
                    video, checkpoint, tmp / f"out_{n}_{len(extra)}", ["--batch-size", str(batch), *extra]
                )
                rate = summary["run"]["frames_per_second"]
                peaks[n, label] = peak
                rows.append(
                    [
                        f"{n:,}",
                        f"`{label}`",
                        f"{rate:,.0f}",
                        f"{summary['predicted']:,}",
                        f"{summary['reused']:,}",
                        f"{peak:,}",
                        f"{rate / ceiling:.0%}",
                    ]
                )
                print(rows[-1], flush=True)
            if n == sizes[0]:
                folder = tmp / f"jpegs_{n}"
                write_jpegs(video, folder)
                output, seconds, peak = endoctl(
                    [
                        "predict",
                        "--checkpoint",
                        str(checkpoint),
                        "--images",
                        str(folder),
                        "--out",
                        str(tmp / "pred" / "p.csv"),
                        "--batch-size",
                        str(batch),
                    ]
                )
                rate = float(output.split(" img/s")[0].rsplit(", ", 1)[1].replace(",", ""))
                rows.append(
                    [
                        f"{n:,}",
                        "`predict` on the frames as JPEG files",
                        f"{rate:,.0f}",
                        f"{n:,}",
                        "0",
                        f"{peak:,}",
                        f"{rate / ceiling:.0%}",
                    ]
                )
                effects = []
                for d in distances:
                    out = tmp / (f"out_{n}_2" if d == args.reuse else f"reuse_{d}")  # the timed run's, if the same
                    if not out.is_dir():
                        run_study(video, checkpoint, out, ["--batch-size", str(batch), "--reuse-distance", str(d)])
                    summary = json.loads((out / "summary.json").read_text())
                    effects.append((d, summary, reuse_effect(tmp / f"out_{n}_0", out)))
        lines += [
            f"Model: {what}. Frames/s: `study` counts decode, hash, model and chunk files (not start-up or "
            "the final pass); the model alone is the ceiling (median batch).",
            "",
            "| frames | run | frames/s | predicted | reused | peak RSS MB | of model alone |",
            "|---:|---|---:|---:|---:|---:|---:|",
            *["| " + " | ".join(r) + " |" for r in rows],
            "",
        ]
        if len(sizes) > 1:
            small, large = peaks[sizes[0], "study"], peaks[sizes[-1], "study"]
            lines += [
                f"Peak memory, {sizes[-1]:,} against {sizes[0]:,} frames: {large:,} vs {small:,} MB "
                f"({large / small - 1:+.1%}; goal: within 10%).",
                "",
            ]
        # A model that costs more than decoding: EVA-02-Ti at 224 px
        eva = eva_checkpoint(tmp / "eva.pt", 224)
        video = tmp / f"study_{sizes[0]}.mp4"
        ceiling = model_alone(eva, video, min(eva_frames, 512), batch)
        short = tmp / "eva_study.mp4"
        write_study(short, eva_frames)
        summary, peak = run_study(short, eva, tmp / "eva_out", ["--batch-size", str(batch)])
        rate = summary["run"]["frames_per_second"]
        lines += [
            f"EVA-02-Ti at 224 px (random init) on {eva_frames:,} frames: model alone {ceiling:,.1f} frames/s, "
            f"`study` {rate:,.1f} frames/s = **{rate / ceiling:.0%}** of it (goal >= 90%), peak RSS {peak:,} MB.",
            "",
            "## What reuse changes",
            "",
            f"Against predicting every frame of the {sizes[0]:,}-frame study (same model): frames reused, the largest "
            "probability difference on a reused frame, frames whose predicted class changes, segments.",
            "",
            "| --reuse-distance | reused | max abs prob diff | predicted class changed | segments |",
            "|---:|---:|---:|---:|---|",
        ]
        for d, summary, (worst, changed, same) in effects:
            lines.append(
                f"| {d} | {summary['reused']:,} ({summary['reused'] / summary['frames']:.0%}) | "
                f"{worst:.3f} | {changed:.2%} | {'the same' if same else 'differ'} |"
            )
        if CHAIN.is_dir():
            reused = []
            for d in distances:
                summary, _ = run_study(CHAIN, checkpoint, tmp / f"chain_{d}", ["--reuse-distance", str(d)])
                reused.append(f"{d}: {summary['reused']}")
            lines += [
                "",
                "Real chain (55 consecutive Kvasir-Capsule frames in ../shared, a moving capsule): frames "
                "reused at each distance: " + ", ".join(reused) + ".",
            ]
    write_table(out_path(args, OUT), "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

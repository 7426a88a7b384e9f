"""GPU throughput of EVA-02-B through endoctl's own code: training (``endoctl train``'s epoch loop)
and inference (``endoctl predict``), with a 1M-frame capsule-study estimate.

Run with ``make bench-gpu`` on a CUDA machine (exits with a message otherwise); about 3-5 min on
one H100. Random-init ``eva02_base_patch14_224`` (nothing is downloaded), 10 classes, 224 px.

Files: the real 336x336 Kvasir-Capsule frames in ../shared (the size of capsule-video frames),
else generated 336x336 JPEG scenes, replicated to ``--images`` distinct paths (hard links when
possible: same bytes, so the page cache holds them; disk I/O is not part of the measurement).

Rows (each in its own try: a failing row is reported and the rest still runs):

1. model only: the same uint8 batches (already decoded) through ``Predictor`` — fp32 eager
   baseline, fast (bf16 autocast + channels-last), fast + ``torch.compile``: the GPU ceiling;
2. decode only: the DataLoader of ``predict_images`` (workers, Pillow decode, timm eval
   transform) without a model: the CPU ceiling;
3. end to end: ``endoctl.predict.predict_images`` on the files, fast path, with and without
   compile; steady-state img/s excludes the first batches (CUDA start-up, compilation), which are
   reported separately. A 1M-frame capsule study is extrapolated from the steady state plus the
   start-up;
4. ``endoctl study``'s reader on a generated 336 px H.264 study (``--study-frames``): FFmpeg
   decoding and hashing on its thread, the model on batches, chunk files, as the command runs it
   (compare with the model-only fast row: the issue's aim is >= 90% of it);
5. training (``endoctl.train.train_one_epoch``: bf16 autocast, AdamW with layer decay 0.7, warmup +
   cosine, gradient clipping): on synthetic tensors already on the GPU (the model limit), the
   training DataLoader alone (decode + endoscopy augmentations, the pipeline limit), and on the
   files through that loader (what a real run gets).

Writes benchmarks/results/gpu.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from smoke import add_arguments, out_path, write_table

from endoctl.model import LoadedModel, create_model, data_config_for
from endoctl.predict import ImageList, Predictor, default_workers, iter_batches, predict_images, split_transform

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "real_images"
CAPSULE = SHARED / "kvasir_capsule_video_131368cc17e44240"
OUT = ROOT / "benchmarks" / "results" / "gpu.md"
STUDY = 1_000_000


def sources(tmp: Path) -> tuple[list[Path], str]:
    """Distinct source JPEGs: real capsule frames, else real Kvasir-SEG, else generated scenes."""
    for folder, what in (
        (CAPSULE, "real Kvasir-Capsule frames (336x336)"),
        (SHARED / "kvasir_seg", "real Kvasir-SEG JPEGs"),
    ):
        files = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if len(files) >= 20:
            return files, f"{len(files)} {what}"
    from endoctl.testing import scene

    out = []
    for i in range(200):
        path = tmp / f"src_{i:03d}.jpg"
        scene(i, (336, 336)).save(path, quality=90)
        out.append(path)
    return out, "200 generated 336x336 JPEG scenes (../shared absent)"


def replicate(files: list[Path], n: int, folder: Path) -> ImageList:
    """``n`` distinct paths over ``files`` in 100-file sub-folders (hard links, else copies)."""
    names = []
    for i in range(n):
        rel = f"d{i // 100:04d}/{i:07d}.jpg"
        dest = folder / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = files[i % len(files)]
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
        names.append(rel)
    return ImageList(names, folder)


def shm_free_bytes() -> int | None:
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return None


def safe_workers(requested: int, batch: int, size: int) -> tuple[int, str]:
    """Cap workers so in-flight batches (2 per worker) fit in half of /dev/shm (containers: often 64 MB)."""
    free = shm_free_bytes()
    per_worker = 2 * batch * 3 * size * size
    if free is None or requested == 0 or requested * per_worker <= free // 2:
        return requested, ""
    capped = max(0, int(free // 2 // per_worker))
    return capped, f"workers capped {requested} -> {capped}: /dev/shm has {free / 2**20:.0f} MiB free"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_only(
    loaded: LoadedModel, device: torch.device, batch: int, iters: int, compile: bool
) -> list[tuple[str, float, str]]:
    """img/s of each compute path on identical uint8 batches already on the host (copy included)."""
    import copy

    _, mean, std = split_transform(loaded.data_config)
    size = loaded.data_config["input_size"][-1]
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = x.pin_memory() if device.type == "cuda" else x
    rows = []
    specs = [("model only: baseline", False, False), ("model only: fast", True, False)]
    specs += [("model only: fast + compile", True, True)] if compile else []
    for label, fast, comp in specs:
        try:
            own = LoadedModel(copy.deepcopy(loaded.model), loaded.class_names, loaded.data_config, loaded.model_name)
            predictor = Predictor(own, device, fast, comp, mean, std, fixed_batch=batch)
            start = time.perf_counter()
            for _ in range(2):
                predictor(x)
            sync(device)
            warm = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(iters):
                predictor(x)
            sync(device)
            ips = batch * iters / (time.perf_counter() - start)
            rows.append((label, ips, f"{predictor.path.describe()}; warm-up {warm:.1f} s"))
            del own, predictor
            if device.type == "cuda":
                torch.cuda.empty_cache()
        except Exception as exc:  # noqa: BLE001 - report and go on
            rows.append((label, float("nan"), f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
            traceback.print_exc()
        print(f"{rows[-1][0]}: {rows[-1][1]:,.0f} img/s ({rows[-1][2]})", flush=True)
    return rows


def decode_only(images: ImageList, data_config: dict, batch: int, workers: int, limit: int) -> float:
    """img/s of the DataLoader alone (open + decode + resize/crop + collate), the CPU ceiling."""
    transform, _, _ = split_transform(data_config)
    subset = ImageList(images.paths[:limit], images.root)
    start, first, n, n0 = time.perf_counter(), None, 0, 0
    for indices, _, failed in iter_batches(subset, transform, batch, workers):
        if first is None:  # exclude worker start-up
            first, n0 = time.perf_counter(), len(indices) + len(failed)
        n += len(indices) + len(failed)
    end = time.perf_counter()
    return (n - n0) / max(end - first, 1e-9) if n > n0 else n / (end - start)


def end_to_end(
    loaded: LoadedModel,
    images: ImageList,
    device: torch.device,
    batch: int,
    workers: int,
    compile: bool,
    skip_batches: int = 5,
) -> tuple[float, float, float]:
    """(steady img/s, start-up seconds, total seconds) of predict_images; start-up = first batches."""
    marks: list[tuple[int, float]] = []
    start = time.perf_counter()
    result = predict_images(
        loaded,
        images,
        device,
        batch,
        workers,
        fast=True,
        compile=compile,
        on_progress=lambda done, total: marks.append((done, time.perf_counter())),
    )
    total = time.perf_counter() - start
    if len(result.rejected):
        print(f"  note: {len(result.rejected)} images rejected, first: {result.rejected.iloc[0].tolist()}")
    k = min(skip_batches, len(marks) - 2)
    if k < 0:
        return len(images.paths) / total, 0.0, total
    done0, t0 = marks[k]
    done1, t1 = marks[-1]
    steady = (done1 - done0) / max(t1 - t0, 1e-9)
    startup = t0 - start - done0 / steady  # time beyond what the first images would take at steady state
    return steady, max(startup, 0.0), total


def study_row(loaded: LoadedModel, device: torch.device, batch: int, frames: int, tmp: Path) -> tuple[str, float, str]:
    """``endoctl study``'s reader and model on a generated H.264 study (bench_study's generator)."""
    from bench_study import SIZE, write_study

    from endoctl.frames import VideoFrames, model_geometry
    from endoctl.params import StudyParams
    from endoctl.study import State, predict_study

    video, work = tmp / "study.mp4", tmp / "study-work"
    write_study(video, frames)
    work.mkdir()
    params = StudyParams(batch_size=batch, device=str(device))
    state = State.start(len(loaded.class_names), params.top)
    info = predict_study(loaded, VideoFrames(video, model_geometry(loaded.data_config)), work, state, params)
    note = (
        f"{frames:,} frames of {SIZE} px H.264, batch {batch}; model {info.model_seconds:.1f} s of {info.seconds:.1f} s"
    )
    return "endoctl study: video decoded on a thread + model", info.frames / info.seconds, note


def train_rows(
    model_name: str, images: ImageList, device: torch.device, batch: int, workers: int, steps: int, img_size: int = 224
) -> list[tuple[str, float, str]]:
    """img/s of endoctl's training step: synthetic tensors, the training loader alone, and both."""
    import pandas as pd
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from torch import nn

    from endoctl import data as datamod
    from endoctl.devices import amp_dtype
    from endoctl.train import Dist, train_one_epoch

    torch.manual_seed(0)
    model = create_model(model_name, 10, img_size=img_size, drop_path_rate=0.1).to(device)
    data_config = data_config_for(model, img_size)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-4, weight_decay=0.05, layer_decay=0.7)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=1, warmup_epochs=0, updates_per_epoch=10 * steps
    )
    amp = amp_dtype("auto", device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    criterion = nn.CrossEntropyLoss()
    n = min(len(images.paths), batch * steps)
    frame = pd.DataFrame({"path": images.paths[:n], "label": np.arange(n) % 10})
    dataset = datamod.LabelledImages(frame, datamod.build_transform(data_config, True, datamod.Augment()), images.root)
    loader = datamod.make_loader(
        dataset, batch, datamod.DistributedWeightedSampler(n), workers, device.type == "cuda", drop_last=True
    )
    size = data_config["input_size"][-1]
    synthetic = [
        (torch.randn(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device))
        for _ in range(4)
    ]
    rows = []

    def timed(label: str, run, note: str) -> None:
        try:
            run(3)  # warm-up: cuDNN/cuBLAS plans, allocator, loader workers
            sync(device)
            start = time.perf_counter()
            done = run(steps)
            sync(device)
            rows.append((label, done / (time.perf_counter() - start), note))
        except Exception as exc:  # noqa: BLE001 - report and go on
            rows.append((label, float("nan"), f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
            traceback.print_exc()
        print(f"{rows[-1][0]}: {rows[-1][1]:,.0f} img/s ({rows[-1][2]})", flush=True)

    def step(batches) -> int:
        _, seen = train_one_epoch(
            model, batches, criterion, optimizer, scheduler, scaler, None, amp, 1.0, 0, device, Dist()
        )
        return seen

    def on_synthetic(k: int) -> int:
        return step([synthetic[i % len(synthetic)] for i in range(k)])

    def loader_only(k: int) -> int:
        seen = 0
        for i, (x, _) in enumerate(loader):
            x.to(device, non_blocking=True)
            seen += len(x)
            if i + 1 == k:
                break
        return seen

    class Limited(list):
        """The first ``k`` batches of the training loader, drawn lazily (train_one_epoch needs len())."""

        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

        def __len__(self) -> int:
            return self.k

        def __iter__(self):
            for i, item in enumerate(loader):
                if i == self.k:
                    return
                yield item

    precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[amp]
    timed(
        "train: synthetic tensors (model limit)",
        on_synthetic,
        f"batch {batch}, {precision} autocast, AdamW + layer decay",
    )
    timed("train: loader only (decode + augment, pipeline limit)", loader_only, f"{workers} workers, pinned memory")
    timed("train: files through the loader", lambda k: step(Limited(k)), f"batch {batch}, {workers} workers")
    model = optimizer = synthetic = None  # free the GPU memory before the next measurement
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="distinct file paths for the end-to-end run")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--workers", type=int, default=None, help="decode processes (default: predict's, all cores up to 16)"
    )
    parser.add_argument("--model", default="eva02_base_patch14_224")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to dry-run this script")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--iters", type=int, default=30, help="batches per model-only row")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="build the replicated files here (default: a temp dir)"
    )
    parser.add_argument("--study-frames", type=int, default=20_000, help="frames of the generated study video")
    parser.add_argument("--train-batch-size", type=int, default=128)
    parser.add_argument("--train-steps", type=int, default=20, help="measured steps per training row (after 3 warm-up)")
    add_arguments(parser)
    args = parser.parse_args()
    if args.smoke:  # every row on the CPU with timm's tiny test ViT at 64 px, a few images and steps; no GPU needed
        args.device, args.model, args.img_size, args.images = "cpu", "test_vit", 64, 48
        args.batch_size, args.workers, args.study_frames = 8, 0, 48
        args.no_compile, args.iters, args.train_batch_size, args.train_steps = True, 2, 4, 2
        torch.set_num_threads(1)  # no OpenMP spinning on a busy machine

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench_gpu: no CUDA device here (torch.cuda.is_available() is False): nothing measured. "
            "Run `make bench-gpu` on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        return 1
    device = torch.device(args.device)
    began = time.perf_counter()
    compile = not args.no_compile
    torch.manual_seed(0)
    model = create_model(args.model, 10, img_size=args.img_size).eval()
    data_config = data_config_for(model, args.img_size)
    loaded = LoadedModel(model, [f"c{i}" for i in range(10)], data_config, args.model)
    workers = default_workers(device) if args.workers is None else args.workers
    workers, shm_note = safe_workers(workers, args.batch_size, args.img_size)
    if shm_note:
        print(f"note: {shm_note}", flush=True)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (dry run)"
    print(
        f"{gpu}; torch {torch.__version__}; {os.cpu_count()} CPUs; {workers} decode workers; batch {args.batch_size}",
        flush=True,
    )

    rows: list[tuple[str, float, str]] = []
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        tmp = Path(tmp)
        files, what = sources(tmp)
        start = time.perf_counter()
        images = replicate(files, args.images, tmp / "study")
        print(f"{args.images:,} files from {what} in {time.perf_counter() - start:.1f} s", flush=True)

        rows += model_only(loaded, device, args.batch_size, args.iters, compile)
        try:
            ips = decode_only(
                images,
                data_config,
                args.batch_size,
                workers,
                min(len(images.paths), 8 * args.batch_size * max(workers, 1)),
            )
            rows.append(("decode only (DataLoader, no model)", ips, f"{workers} workers"))
        except Exception as exc:  # noqa: BLE001
            rows.append(("decode only (DataLoader, no model)", float("nan"), f"failed: {type(exc).__name__}: {exc}"))
            traceback.print_exc()
        print(f"{rows[-1][0]}: {rows[-1][1]:,.0f} img/s ({rows[-1][2]})", flush=True)

        study = []
        for comp in [False, True] if compile else [False]:
            label = "end to end: predict_images, fast" + (" + compile" if comp else "")
            try:
                import copy

                own = LoadedModel(copy.deepcopy(model), loaded.class_names, data_config, args.model)
                steady, startup, total = end_to_end(own, images, device, args.batch_size, workers, comp)
                minutes = (startup + STUDY / steady) / 60
                rows.append((label, steady, f"start-up {startup:.1f} s; {len(images.paths):,} images in {total:.1f} s"))
                study.append((label, minutes, steady))
                del own
            except Exception as exc:  # noqa: BLE001
                rows.append((label, float("nan"), f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"))
                traceback.print_exc()
            print(f"{rows[-1][0]}: {rows[-1][1]:,.0f} img/s ({rows[-1][2]})", flush=True)
        try:
            import copy

            own = LoadedModel(copy.deepcopy(model), loaded.class_names, data_config, args.model)
            rows.append(study_row(own, device, args.batch_size, args.study_frames, tmp))
            del own
        except Exception as exc:  # noqa: BLE001
            rows.append(
                ("endoctl study", float("nan"), f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
            )
            traceback.print_exc()
        print(f"{rows[-1][0]}: {rows[-1][1]:,.0f} img/s ({rows[-1][2]})", flush=True)
        del model, loaded
        train = train_rows(args.model, images, device, args.train_batch_size, workers, args.train_steps, args.img_size)
    seconds = time.perf_counter() - began
    base = next((ips for label, ips, _ in rows if label == "model only: baseline" and np.isfinite(ips)), None)
    lines = [
        f"# GPU benchmark: predict and train ({gpu}, {args.model}, random init, {args.img_size} px)",
        "",
        f"torch {torch.__version__}, {os.cpu_count()} CPUs, {workers} decode workers, batch {args.batch_size}; "
        f"files: {args.images:,} paths over {what}.",
        "",
        "| what | img/s | x model-only baseline | notes |",
        "|---|---:|---:|---|",
    ]
    for label, ips, note in rows:
        ratio = f"{ips / base:.2f}x" if base and np.isfinite(ips) else "–"
        value = f"{ips:,.0f}" if np.isfinite(ips) else "–"
        lines.append(f"| {label} | {value} | {ratio} | {note} |")
    lines += ["", "| training | img/s | notes |", "|---|---:|---|"]
    for label, ips, note in train:
        lines.append(f"| {label} | {f'{ips:,.0f}' if np.isfinite(ips) else '–'} | {note} |")
    lines.append("")
    for label, minutes, steady in study:
        lines.append(
            f"- {STUDY:,}-frame capsule study, {label.split(': ', 1)[1]}: **{minutes:.1f} min** "
            f"({steady:,.0f} img/s steady state + start-up)"
        )
    fast = next((ips for label, ips, _ in rows if label == "model only: fast" and np.isfinite(ips)), None)
    reading = next((ips for label, ips, _ in rows if label.startswith("endoctl study") and np.isfinite(ips)), None)
    if fast and reading:
        lines.append(f"- `endoctl study` reads at **{reading / fast:.0%}** of the model-only fast row (aim: >= 90%).")
    if shm_note:
        lines.append(f"- note: {shm_note}")
    lines += [
        "- end to end is bounded by the smaller of the decode-only and model-only rows.",
        f"- whole benchmark: {seconds:.0f} s",
        "",
    ]
    print("\n".join(lines))
    if args.smoke:  # every row ran and measured something
        failed = [label for label, ips, _ in rows + train if not np.isfinite(ips) or ips <= 0]
        assert not failed, f"rows failed: {failed}"
    if device.type != "cuda" and args.out is None:
        print("(dry run on CPU: benchmarks/results/gpu.md left unchanged)")
        return 0
    write_table(out_path(args, OUT), "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

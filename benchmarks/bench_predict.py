"""CPU inference throughput: fp32 eager baseline vs endoctl's fast path, same run, same batches.

Models: timm ``eva02_tiny_patch14_224`` and ``eva02_base_patch14_224`` at 224 px, random init
(nothing is downloaded), 10 classes, ``torch.set_num_threads(2)``.

Throughput: the images are decoded and resized/cropped once (timm's eval transform, uint8); every
compute path then gets exactly the same uint8 batches (normalisation on the "device" is included in
every path). Paths: **baseline** = fp32, eager, NCHW, ``no_grad``; **fast** = ``inference_mode`` +
channels-last + bf16 autocast (when the CPU has native bf16) — the default of ``endoctl predict``;
**fast + compile** adds ``torch.compile`` (``--compile``; compile time reported separately).
Batches are interleaved (batch 1 on every path, then batch 2, ...) so that load from other
processes on a shared machine hits all paths alike; img/s = 1 / median seconds per image over
the batches (robust to bursts of foreign load).
End-to-end (EVA-02-Ti only): ``endoctl.predict.predict_images`` on JPEG files (decode +
transform + model, with the default worker count: decoding in the main process on <= 4 cores),
baseline vs fast.

Agreement. With random weights there is no real held-out AUC to keep, and a random head gives
near-uniform probabilities (any two paths would trivially agree). So the model gets a head that
has to use its features: 10 synthetic classes are made from real images (Kvasir-SEG JPEGs in
../shared when present, else generated scenes) by a fixed colour cast per class (RGB gains
1 + 0.15 u_c, u_c a random unit vector) times a random per-image brightness (+-15 %); a
multinomial logistic-regression probe is fitted on the **fp32 path's** pooled features of a
training set and written into ``model.head``; then each path runs the whole model on a disjoint
held-out set. Reported: max |prob difference|, argmax agreement, and each path's macro
one-vs-rest AUC against the synthetic labels, |AUC change|. The probe is fitted on fp32 features,
so any bias favours the baseline. Random-init features differ little between images, which
makes this a harsh test of bf16 rounding (a trained model's features are far more spread out).

Writes benchmarks/results/predict.md. ~3 min on 2 cores (EVA-02-B on few images only).
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from smoke import add_arguments, out_path, write_table

from endoctl.devices import bf16_supported
from endoctl.model import LoadedModel, create_model, data_config_for
from endoctl.predict import ImageList, Predictor, predict_images, split_transform

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "real_images" / "kvasir_seg"
OUT = ROOT / "benchmarks" / "results" / "predict.md"
CLASSES = 10
CAST, JITTER = 0.15, 0.15


def source_files(n: int, tmp: Path) -> tuple[list[Path], str]:
    """``n`` JPEG files: real Kvasir-SEG images when ../shared has them, else generated 336x336 scenes."""
    if SHARED.is_dir():
        files = sorted(SHARED.glob("*.jpg"))
        if len(files) >= 50:
            return [files[i % len(files)] for i in range(n)], f"real Kvasir-SEG JPEGs ({min(n, len(files))} distinct)"
    from endoctl.testing import scene

    out = []
    for i in range(n):
        path = tmp / f"scene_{i:05d}.jpg"
        scene(i, (336, 336)).save(path, quality=90)
        out.append(path)
    return out, "generated 336x336 JPEG scenes (../shared absent)"


def synthetic_classes(raw: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Colour-cast classes (see module docstring): (uint8 images, labels 0..9, balanced)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(CLASSES, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    labels = np.arange(len(raw)) % CLASSES
    rng.shuffle(labels)
    gains = (1 + CAST * directions[labels]) * rng.uniform(1 - JITTER, 1 + JITTER, size=(len(raw), 1))
    cast = raw.float() * torch.tensor(gains, dtype=torch.float32)[:, :, None, None]
    return cast.clamp(0, 255).round().to(torch.uint8), labels


def features(model: torch.nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch: int) -> np.ndarray:
    """fp32 pooled pre-logit features (the probe's input)."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch].float().div(255).sub(mean).div(std)
            out.append(model.forward_head(model.forward_features(xb), pre_logits=True))
    return torch.cat(out).numpy()


def fit_probe(model: torch.nn.Module, feats: np.ndarray, labels: np.ndarray) -> None:
    """Multinomial logistic regression on standardised features, folded into ``model.head``."""
    from sklearn.linear_model import LogisticRegression

    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    probe = LogisticRegression(max_iter=5000).fit((feats - mu) / sd, labels)
    weight = probe.coef_ / sd
    bias = probe.intercept_ - weight @ mu
    with torch.no_grad():
        model.head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        model.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))


@dataclass
class PathResult:
    name: str
    describe: str
    ips: float
    probs: np.ndarray
    warmup_s: float


def run_paths(
    loaded: LoadedModel, x: torch.Tensor, batch: int, mean: torch.Tensor, std: torch.Tensor, compile: bool
) -> list[PathResult]:
    """Time every path on the same uint8 batches, interleaved; keep each path's probabilities."""
    specs = [("baseline", False, False), ("fast", True, False)] + ([("fast + compile", True, True)] if compile else [])
    predictors, warm, kept = [], [], []
    for spec in specs:
        _, fast, comp = spec
        own = LoadedModel(copy.deepcopy(loaded.model), loaded.class_names, loaded.data_config, loaded.model_name)
        predictor = Predictor(own, "cpu", fast, comp, mean, std, fixed_batch=batch)
        start = time.perf_counter()
        try:
            predictor(x[:batch])  # warm-up; compiles the compiled path
        except Exception as exc:  # noqa: BLE001 - e.g. no C++ compiler for inductor: skip that path
            print(f"skip {spec[0]}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            continue
        warm.append(time.perf_counter() - start)
        predictors.append(predictor)
        kept.append(spec)
    specs = kept
    per_image: list[list[float]] = [[] for _ in specs]
    probs: list[list[np.ndarray]] = [[] for _ in specs]
    for i in range(0, len(x), batch):
        xb = x[i : i + batch]
        for k, predictor in enumerate(predictors):
            start = time.perf_counter()
            out = predictor(xb)
            per_image[k].append((time.perf_counter() - start) / len(xb))
            probs[k].append(out.numpy())
    return [
        PathResult(name, p.path.describe(), 1 / float(np.median(t)), np.concatenate(pr), w)
        for (name, _, _), p, t, pr, w in zip(specs, predictors, per_image, probs, warm)
    ]


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(CLASSES))))


def bench_model(
    name: str, raw: torch.Tensor, n_train: int, n_test: int, batch: int, compile: bool, data_config: dict
) -> tuple[list[PathResult], dict]:
    torch.manual_seed(0)
    model = create_model(name, CLASSES, img_size=data_config["input_size"][-1]).eval()
    _, mean, std = split_transform(data_config)
    x, labels = synthetic_classes(raw[: n_train + n_test])
    fit_probe(model, features(model, x[:n_train], mean, std, batch), labels[:n_train])
    loaded = LoadedModel(model, [f"c{i}" for i in range(CLASSES)], data_config, name)
    results = run_paths(loaded, x[n_train:], batch, mean, std, compile)
    held = labels[n_train:]
    base = results[0].probs
    agreement = {"n": n_test, "auc_baseline": macro_auc(held, base)}
    for r in results[1:]:
        agreement[r.name] = {
            "max_prob_diff": float(np.abs(r.probs - base).max()),
            "argmax_agreement": float((r.probs.argmax(1) == base.argmax(1)).mean()),
            "auc": macro_auc(held, r.probs),
        }
    return results, agreement


def end_to_end(files: list[Path], data_config: dict, batch: int, chunk: int = 32) -> list[tuple[str, float]]:
    """predict_images on JPEG files (decode + transform + model), baseline vs fast, EVA-02-Ti.

    The files are cut into chunks run alternately on each path (order swapped every chunk);
    img/s is the median over chunks, so foreign load on a shared machine hits both paths alike.
    """
    torch.manual_seed(0)
    model = create_model("eva02_tiny_patch14_224", CLASSES, img_size=data_config["input_size"][-1]).eval()
    root = files[0].parent
    names = sorted({f.name for f in files})
    paths = {
        label: LoadedModel(copy.deepcopy(model), [f"c{i}" for i in range(CLASSES)], data_config, "eva02_tiny")
        for label in ("baseline", "fast")
    }
    rates: dict[str, list[float]] = {label: [] for label in paths}
    for label, loaded in paths.items():  # warm-up (oneDNN primitives for these shapes)
        predict_images(loaded, ImageList(names[:batch], root), "cpu", batch, fast=label == "fast")
    for k, start in enumerate(range(0, len(names), chunk)):
        images = ImageList(names[start : start + chunk], root)
        for label in ("baseline", "fast") if k % 2 == 0 else ("fast", "baseline"):
            result = predict_images(paths[label], images, "cpu", batch, fast=label == "fast")
            assert len(result.table) + len(result.rejected) == len(images.paths), "an image was lost"
            rates[label].append(len(result.table) / result.seconds)
    return [(label, float(np.median(r))) for label, r in rates.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ti-train", type=int, default=150)
    parser.add_argument("--ti-test", type=int, default=200)
    parser.add_argument("--b-train", type=int, default=40)
    parser.add_argument("--b-test", type=int, default=40)
    parser.add_argument("--e2e", type=int, default=160, help="JPEG files for the end-to-end EVA-02-Ti run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    parser.add_argument("--skip-base", action="store_true")
    add_arguments(parser)
    args = parser.parse_args()
    if args.smoke:  # EVA-02-Ti on a few images, no compile, no EVA-02-B
        args.ti_train, args.ti_test, args.e2e, args.no_compile, args.skip_base = 20, 16, 8, True, True
        args.threads = 1  # 112 px (below), one thread: no OpenMP spinning on a busy machine
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    size = 112 if args.smoke else 224
    data_config = data_config_for(create_model("eva02_tiny_patch14_224", CLASSES, img_size=size), size)  # Ti and B
    cpu_transform, _, _ = split_transform(data_config)
    with tempfile.TemporaryDirectory() as tmp:
        n = max(args.ti_train + args.ti_test, args.b_train + args.b_test, args.e2e)
        files, what = source_files(n, Path(tmp))
        raw = torch.stack([cpu_transform(Image.open(f).convert("RGB")) for f in files])
        runs = [("EVA-02-Ti", "eva02_tiny_patch14_224", args.ti_train, args.ti_test, 4 if args.smoke else 16)]
        if not args.skip_base:
            runs.append(("EVA-02-B", "eva02_base_patch14_224", args.b_train, args.b_test, 8))
        table, agree = [], []
        for label, name, n_train, n_test, batch in runs:
            results, agreement = bench_model(name, raw, n_train, n_test, batch, not args.no_compile, data_config)
            for r in results:  # every path gives n_test probability rows
                assert r.probs.shape == (n_test, CLASSES) and np.isfinite(r.probs).all(), (r.name, r.probs.shape)
                assert np.allclose(r.probs.sum(1), 1, atol=2e-2), f"{r.name}: probabilities do not sum to 1"
            base = results[0].ips
            for r in results:
                table.append(
                    f"| {label} | {r.name} ({r.describe}) | {batch} | {r.ips:.1f} | {r.ips / base:.2f}x | "
                    f"{r.warmup_s:.1f} |"
                )
                print(
                    f"{label:10s} {r.name:15s} {r.ips:7.1f} img/s  {r.ips / base:.2f}x  (warm-up {r.warmup_s:.1f} s)",
                    flush=True,
                )
            for path in results[1:]:
                a = agreement[path.name]
                agree.append(
                    f"| {label} | {path.name} | {agreement['n']} | {a['max_prob_diff']:.4f} | "
                    f"{a['argmax_agreement']:.1%} | {agreement['auc_baseline']:.4f} | {a['auc']:.4f} | "
                    f"{abs(a['auc'] - agreement['auc_baseline']):.4f} |"
                )
                print(
                    f"{label:10s} {path.name}: max|dp| {a['max_prob_diff']:.4f}, argmax {a['argmax_agreement']:.1%}, "
                    f"AUC {agreement['auc_baseline']:.4f} -> {a['auc']:.4f}",
                    flush=True,
                )
        e2e_files = [f for f in files[: args.e2e]]
        e2e = end_to_end(e2e_files, data_config, 4 if args.smoke else 16, 4 if args.smoke else 32) if args.e2e else []
        for label, ips in e2e:
            print(f"end-to-end EVA-02-Ti {label}: {ips:.1f} img/s", flush=True)
    seconds = time.perf_counter() - began
    cap = torch.backends.cpu.get_cpu_capability()
    lines = [
        f"# predict benchmark (CPU, {args.threads} threads, {size} px, random init + probe head)",
        "",
        f"Images: {what}. CPU capability {cap}; native bf16: {bf16_supported(torch.device('cpu'))}. "
        f"Load average before the run {load:.2f} (above ~0.5, other processes share these 2 cores and OpenMP "
        "threads stall each other: compare ratios, measured on interleaved batches, more than absolute numbers).",
        "",
        "| model | path | batch | img/s | x baseline | warm-up s |",
        "|---|---|---:|---:|---:|---:|",
        *table,
    ]
    if e2e:
        lines += [
            "",
            f"End-to-end EVA-02-Ti, `predict_images` on {len(set(e2e_files))} JPEG files (default workers): "
            + ", ".join(f"{label} {ips:.1f} img/s" for label, ips in e2e)
            + f" ({e2e[1][1] / e2e[0][1]:.2f}x).",
        ]
    lines += [
        "",
        "Agreement with the fp32 baseline on held-out images (10 synthetic colour-cast classes, logistic-regression "
        "probe fitted on fp32 features written into the head; see the script docstring):",
        "",
        "| model | path | held-out | max abs prob diff | argmax agreement | AUC fp32 | AUC path | abs AUC change |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *agree,
        "",
        f"Target: >= 2x img/s with abs AUC change <= 0.005. Whole benchmark: {seconds:.0f} s.",
        "",
    ]
    print(f"whole benchmark: {seconds:.0f} s")
    write_table(out_path(args, OUT), "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

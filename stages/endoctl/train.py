"""Training: pre-train on the merged dataset, fine-tune on CE24 (EndoExtend24's two stages).

One loop serves both stages (they differ only in their params.yaml section: split folder, weights
to start from, hyper-parameters). Built from timm's factories (model, transforms, AdamW with
layer-wise lr decay, warmup + cosine schedule, EMA) so a real run only changes parameters.

Exact resume: ``last.pt`` is written after every epoch with the model, optimizer, scheduler,
scaler, EMA, best-so-far and every rank's RNG states; the data order and the augmentation of
each sample are functions of ``(seed, epoch)`` (see :mod:`endoctl.data`). So ``--resume`` after
a kill re-runs the interrupted epoch from the previous epoch's state and ends with weights equal
to an uninterrupted run (on CPU with deterministic algorithms; tested).

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DDP (NCCL on GPU, gloo on CPU), the
weighted sampler is sharded over ranks, validation is sharded and gathered, and only rank 0
logs (DVCLive) and writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from endoctl import data as datamod
from endoctl import devices
from endoctl.devices import AMP_MODES, autocast
from endoctl.io import TRAIN_VAL_FILE, atomic_open, write_csv
from endoctl.params import MAX_PIXELS

STAGES = ("pretrain", "finetune")
LAST_CHECKPOINT = "last.pt"  # resume state, written every epoch
SCHEDULER_STEPS = ("epoch", "update")
# monitor name -> whether larger is better
MONITORS = {
    "val/balanced_accuracy": True,
    "val/auc_macro": True,
    "val/f1_macro": True,
    "val/map_macro": True,
    "val/loss": False,
}


class TrainError(ValueError):
    """A configuration or input problem; the message says what to change."""


@dataclass(frozen=True)
class TrainConfig:
    """Every training parameter and its one default; field names are the params.yaml keys and the CLI option names.

    params.yaml's ``pretrain``/``finetune`` sections hold only the pipeline's own choices that differ
    from these (tests/test_params.py checks); ``load_config`` fills in the rest from here.
    """

    split_dir: str = "manifests/ee24-ce24"  # endoctl split folder: train_val.csv + class_mapping.json
    val_fold: int = 0  # fold used for validation, the others train
    data_root: str = "."  # CSV `path` values are relative to this folder
    out_dir: str = "models/pretrain"  # last.pt, best.pt
    metrics_dir: str = "metrics/pretrain"  # DVCLive: metrics.json, plots/, val_predictions.csv
    model_name: str = "eva02_tiny_patch14_224"
    img_size: int = 224  # the models' native size; ViTs: a multiple of the patch size (EVA-02: 14)
    pretrained_file: str = ""  # backbone weights: timm file, endoctl checkpoint, Lightning checkpoint; "" = random
    drop_path_rate: float = 0.1
    epochs: int = 3
    batch_size: int = 16  # per process
    opt: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.05
    layer_decay: float = 0.0  # layer-wise lr decay (0 = off)
    warmup_epochs: int = 0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    scheduler_step: str = "update"  # epoch | update
    clip_grad: float = 1.0  # max gradient norm (0 = off)
    ema_decay: float = 0.0  # model EMA (0 = off); when on, the EMA weights are validated and saved as best
    amp: str = "auto"  # auto (bf16 where native, fp16 on older GPUs, else off) | off | bf16 | fp16
    balance: str = "sampler"  # sampler (inverse-frequency WeightedRandomSampler) | loss (class weights) | none
    freeze_epochs: int = 0  # train only the classifier head for this many first epochs
    monitor: str = "val/balanced_accuracy"
    hflip: float = 0.5
    vflip: float = 0.5
    rot90: float = 0.5
    color_jitter: float = 0.2
    scale_min: float = 0.8  # random resized crop scale (scale_min, 1): keeps small lesions in view
    num_workers: int = 2  # DataLoader decoding processes (0: in the main process)
    seed: int = 0
    max_pixels: int = MAX_PIXELS  # ingest's decompression-bomb limit: what ingest admitted, training opens

    def validate(self) -> None:
        """Fail before any work with one message per wrong value."""
        checks = [
            (self.amp in AMP_MODES, f"amp must be one of {AMP_MODES}, got {self.amp!r}"),
            (
                self.balance in datamod.BALANCE_MODES,
                f"balance must be one of {datamod.BALANCE_MODES}, got {self.balance!r}",
            ),
            (
                self.scheduler_step in SCHEDULER_STEPS,
                f"scheduler_step must be one of {SCHEDULER_STEPS}, got {self.scheduler_step!r}",
            ),
            (self.monitor in MONITORS, f"monitor must be one of {sorted(MONITORS)}, got {self.monitor!r}"),
            (
                self.epochs >= 1 and self.batch_size >= 1 and self.img_size >= 1,
                "epochs, batch_size and img_size must be >= 1",
            ),
            (0 <= self.freeze_epochs <= self.epochs, "freeze_epochs must be between 0 and epochs"),
            (self.num_workers >= 0, f"num_workers must be >= 0 (0: load in the main process), got {self.num_workers}"),
            (0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)"),
            (0.0 < self.scale_min <= 1.0, "scale_min must be in (0, 1]"),
            (self.max_pixels >= 1, f"max_pixels must be >= 1, got {self.max_pixels}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainError(message)


def load_config(stage: str, params_file: Path | None, overrides: dict) -> TrainConfig:
    """The stage's params.yaml section (when the file exists) overridden by command-line values."""
    if stage not in STAGES:
        raise TrainError(f"unknown stage {stage!r}; choose one of {STAGES}")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    section: dict = {"out_dir": f"models/{stage}", "metrics_dir": f"metrics/{stage}"}
    if params_file is not None and Path(params_file).is_file():
        loaded = yaml.safe_load(Path(params_file).read_text(encoding="utf-8")) or {}
        section.update(loaded.get(stage) or {})
    unknown = sorted(set(section) - set(defaults))
    if unknown:
        raise TrainError(f"{params_file}: unknown key(s) in section {stage!r}: {unknown}; known: {sorted(defaults)}")
    section.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(**{k: _coerce(k, v, type(defaults[k])) for k, v in section.items()})
    config.validate()
    return config


def _coerce(key: str, value: object, kind: type) -> object:
    """A params value as its field's type: YAML reads ``1e-4`` (no dot) as text, ``pretrained_file:`` as null."""
    if value is None and kind is str:
        return ""
    try:
        if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise TrainError(f"{key} must be {kind.__name__}, got {value!r}") from None


@dataclass(frozen=True)
class TrainResult:
    """What a run achieved, for the command's summary line (epochs are 0-based)."""

    best_epoch: int
    best_value: float
    last_metrics: dict[str, float]
    epochs_run: int
    train_images_per_second: float
    seconds: float
    rank: int


# --------------------------------------------------------------------------------- metrics


def val_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Balanced accuracy, macro AUC / mAP (one-vs-rest over the classes present in ``y``), macro F1
    (:func:`endoctl.metrics.f1_macro`, the evaluation report's own)."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score

    from endoctl.metrics import f1_macro

    pred = proba.argmax(axis=1)
    present = np.unique(y)
    onehot = (y[:, None] == present[None, :]).astype(int)
    scores = proba[:, present]
    ranked = len(present) >= 2  # AUC/AP need a negative for every present class
    with warnings.catch_warnings():  # predicting a class absent from a small val fold is expected
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(balanced_accuracy_score(y, pred))  # mean recall over the classes in y
    return {
        "balanced_accuracy": balanced,
        "auc_macro": float(roc_auc_score(onehot, scores, average="macro")) if ranked else float("nan"),
        "f1_macro": f1_macro(y, pred, proba.shape[1]),
        "map_macro": float(average_precision_score(onehot, scores, average="macro")) if ranked else float("nan"),
    }


# --------------------------------------------------------------------------- distributed / RNG


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (a world of one without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> tuple[Dist, torch.device]:
    """DDP from torchrun's environment (NCCL on GPU, gloo on CPU); a plain process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world <= 1:
        return Dist(), torch.device("cuda" if cuda else "cpu")
    import torch.distributed as tdist

    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if cuda:
        torch.cuda.set_device(dist.local_rank)
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if cuda else "gloo")
    return dist, torch.device(f"cuda:{dist.local_rank}" if cuda else "cpu")


def _gather(obj: object, dist: Dist) -> list:
    """Every rank's ``obj`` on every rank (a one-element list without DDP)."""
    if not dist.enabled:
        return [obj]
    import torch.distributed as tdist

    out: list = [None] * dist.world
    tdist.all_gather_object(out, obj)
    return out


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """This process's RNG streams (dropout, drop-path, ...) in a ``weights_only``-loadable form."""
    state = {
        "python": random.getstate(),
        "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: object) -> object:
    """Lists back to tuples, as ``random.setstate`` requires."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic algorithms for the duration of a run, restoring the process's setting after."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


# ---------------------------------------------------------------------------------- model


def _set_trainable(model: nn.Module, head_only: bool) -> None:
    """Freeze everything but the classifier head (``freeze_epochs``), or unfreeze all.

    Frozen parameters get no gradient, so AdamW skips them entirely (no weight decay either).
    """
    head = {id(p) for p in model.get_classifier().parameters()}
    for p in model.parameters():
        p.requires_grad_((not head_only) or id(p) in head)


def _wrap(model: nn.Module, dist: Dist, device: torch.device) -> nn.Module:
    """DDP over the currently trainable parameters (re-wrapped when freezing changes them)."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# ------------------------------------------------------------------------------- epochs


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    ema,
    amp_dtype: torch.dtype | None,
    clip_grad: float,
    epoch: int,
    device: torch.device,
    dist: Dist,
    on_step: Callable[[int, int, int, float], None] | None = None,
) -> tuple[float, int]:
    """One pass over the loader; returns (mean loss over all ranks' samples, samples seen on this rank)."""
    model.train()
    steps = len(loader)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = torch.zeros((), dtype=torch.float64, device=device)
    for step, (images, labels) in enumerate(loader):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step_update(num_updates=epoch * steps + step + 1)
        if ema is not None:
            ema.update(model.module if dist.enabled else model, step=epoch * steps + step + 1)
        loss_sum += loss.detach().double() * len(labels)
        seen += len(labels)
        if on_step is not None:
            on_step(epoch, step + 1, steps, float(loss.detach()))
    local_seen = int(seen.item())
    if dist.enabled:
        import torch.distributed as tdist

        tdist.all_reduce(loss_sum)
        tdist.all_reduce(seen)
    return float(loss_sum / seen.clamp_min(1)), local_seen


def val_loader(
    dataset: datamod.LabelledImages, batch_size: int, num_workers: int, device: torch.device, dist: Dist
) -> torch.utils.data.DataLoader:
    """This rank's shard of the val set (positions ``rank::world``, no padding: every image once)."""
    shard = list(range(dist.rank, len(dataset), dist.world))
    return datamod.make_loader(dataset, batch_size, shard, num_workers, device.type == "cuda")


@torch.inference_mode()
def predict_val(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    amp_dtype: torch.dtype | None,
    device: torch.device,
    dist: Dist,
) -> tuple[np.ndarray, float] | None:
    """Class probabilities for the whole val set and its mean loss, on rank 0 (None elsewhere)."""
    model.eval()
    probs, loss_sum = [], 0.0
    for images, labels in loader:
        with autocast(device, amp_dtype):
            logits = model(images.to(device, non_blocking=True)).float()
        loss_sum += float(nn.functional.cross_entropy(logits, labels.to(device), reduction="sum"))
        probs.append(logits.softmax(dim=1).cpu().numpy())
    parts = _gather((list(loader.sampler), np.concatenate(probs) if probs else None, loss_sum), dist)
    if not dist.is_main:
        return None
    total = sum(len(indices) for indices, _, _ in parts)
    num_classes = next(p.shape[1] for _, p, _ in parts if p is not None)
    proba = np.zeros((total, num_classes), dtype=np.float64)
    for indices, p, _ in parts:
        if p is not None:
            proba[indices] = p
    return proba, sum(loss for _, _, loss in parts) / total


# ---------------------------------------------------------------------------------- files


def write_val_predictions(path: Path, image_paths: list[str], proba: np.ndarray, class_names: list[str]) -> None:
    """The predictions contract: ``image_path``, one probability column per class, ``predicted_class``."""
    frame = pd.DataFrame(proba, columns=class_names)
    frame.insert(0, "image_path", image_paths)
    frame["predicted_class"] = np.asarray(class_names, dtype=object)[proba.argmax(axis=1)]
    write_csv(path, frame)


def _truncate_history(metrics_dir: Path, start_step: int) -> None:
    """Drop DVCLive plot rows of epochs that will be re-run (logged before a kill, not checkpointed)."""
    for tsv in (metrics_dir / "plots" / "metrics").rglob("*.tsv"):
        frame = pd.read_csv(tsv, sep="\t")
        if "step" in frame and (frame["step"] >= start_step).any():
            with atomic_open(tsv) as fh:
                frame[frame["step"] < start_step].to_csv(fh, sep="\t", index=False, lineterminator="\n")


# ------------------------------------------------------------------------------------ run


def train(
    config: TrainConfig,
    resume: bool = False,
    deterministic: bool = False,
    on_step: Callable[[int, int, int, float], None] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one stage end to end (or continue it from ``out_dir/last.pt`` with ``resume``)."""
    config.validate()
    dist, device = _init_distributed()
    try:
        with _deterministic(deterministic):
            return _run(config, resume, dist, device, on_step, on_epoch)
    finally:
        if dist.enabled:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def _missing_weights_message(path: str, model_name: str) -> str:
    return (
        f"pretrained_file not found: {path}. Provide that file, or set pretrained_file to '' for random "
        f"initialisation. It may be an endoctl checkpoint (models/pretrain/best.pt is written by "
        f"`endoctl train pretrain` / `dvc repro pretrain`), a Lightning checkpoint of the seed paper, or timm "
        f"weights; nothing is downloaded here, so fetch timm weights once on a machine with internet:\n"
        f"  python -c \"import timm, torch; m = timm.create_model('{model_name}', pretrained=True); "
        f"torch.save(m.state_dict(), '{Path(path).name}')\"\nand copy the file to {path}."
    )


def _create_for_training(config: TrainConfig, num_classes: int, weights: bool) -> nn.Module:
    """The model with a new ``num_classes`` head; with ``weights``, the backbone from ``pretrained_file``.

    The file is read by :func:`endoctl.model.training_weights` (the reader predict uses: numpy
    scalars in metadata load, unsafe pickles are refused); timm's own loader then takes that state
    dict, resamples position embeddings to ``img_size`` and drops the old head.
    """
    from endoctl import model as modelmod

    kwargs = {"img_size": config.img_size, "drop_path_rate": config.drop_path_rate}
    file = config.pretrained_file if weights and config.pretrained_file else None
    if file is None:
        return modelmod.create_model(config.model_name, num_classes, **kwargs)
    return modelmod.create_model(config.model_name, num_classes, state_dict=modelmod.training_weights(file), **kwargs)


def _load_training_state(path: Path, config: TrainConfig) -> dict:
    """``last.pt`` for ``--resume``, checked to be a training checkpoint of the same model."""
    from endoctl import model as modelmod

    state = modelmod.read_weights(path, tolerant=False)  # every object must come back as saved
    missing = [
        k
        for k in ("format", "state_dict", "optimizer", "scheduler", "epoch", "rng", "best")
        if not isinstance(state, dict) or k not in state
    ]
    if missing:
        raise TrainError(
            f"{path} is not an endoctl training checkpoint (lacks {', '.join(missing)}); "
            "delete it or train without --resume"
        )
    if state["model_name"] != config.model_name:
        raise TrainError(
            f"{path} holds {state['model_name']}, not {config.model_name}: "
            "resume with the same model_name or train without --resume"
        )
    fixed = ("split_dir", "val_fold", "img_size", "balance", "seed", "batch_size", "opt")
    changed = [k for k in fixed if state.get("params", {}).get(k) != getattr(config, k)]
    if changed:
        warnings.warn(
            f"resuming {path} with changed parameter(s) {changed}: the run will not match an uninterrupted one",
            stacklevel=2,
        )
    return state


@dataclass
class _Loop:
    """What every epoch works on, built once by :func:`_build`."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # timm's cosine scheduler
    scaler: torch.amp.GradScaler
    ema: Any  # timm's ModelEmaV3, or None without ema_decay
    criterion: nn.Module
    amp_dtype: torch.dtype | None
    sampler: datamod.DistributedWeightedSampler
    loader: torch.utils.data.DataLoader
    val_set: datamod.LabelledImages
    val_batches: torch.utils.data.DataLoader
    val_paths: list[str]  # val_predictions.csv rows, in val_set order
    meta: dict  # stored in every checkpoint: the class contract, preprocessing and params predict needs


def _inputs(config: TrainConfig, resume: bool) -> tuple[datamod.SplitData, dict | None]:
    """The split's train/val rows and, with ``resume``, the saved state: read and checked before any
    model is built, so a split without training rows or a missing weights file fails at once."""
    split = datamod.load_split(Path(config.split_dir), config.val_fold)
    if not len(split.train):
        raise TrainError(
            f"{Path(config.split_dir) / TRAIN_VAL_FILE}: every row is in val_fold {config.val_fold}: no training rows"
        )
    last_file = Path(config.out_dir) / LAST_CHECKPOINT
    state = _load_training_state(last_file, config) if resume and last_file.is_file() else None
    if resume and state is None:
        warnings.warn(f"--resume: no {last_file} yet, training from the first epoch", stacklevel=3)
    if state is None and config.pretrained_file and not Path(config.pretrained_file).is_file():
        raise TrainError(_missing_weights_message(config.pretrained_file, config.model_name))
    return split, state


def _build(
    config: TrainConfig, split: datamod.SplitData, state: dict | None, dist: Dist, device: torch.device
) -> _Loop:
    """Model, optimizer, data, loss, schedule, AMP and EMA from timm's factories. The order is part of
    the result: the seed comes first and every later random draw depends on what was built before it."""
    from timm.optim import create_optimizer_v2
    from timm.scheduler import create_scheduler_v2
    from timm.utils import ModelEmaV3

    from endoctl import model as modelmod

    num_classes = len(split.class_mapping)
    _seed_all(config.seed + dist.rank)
    model = _create_for_training(config, num_classes, weights=state is None)
    data_config = modelmod.data_config_for(model, config.img_size)
    if state is not None:
        model.load_state_dict(state["state_dict"])
    model.to(device)
    optimizer = create_optimizer_v2(
        model, opt=config.opt, lr=config.lr, weight_decay=config.weight_decay, layer_decay=config.layer_decay or None
    )

    augment = datamod.Augment(config.hflip, config.vflip, config.rot90, config.color_jitter, config.scale_min)
    root = Path(config.data_root)
    train_transform = datamod.build_transform(data_config, True, augment)
    train_set = datamod.LabelledImages(split.train, train_transform, root, config.max_pixels)
    val_set = datamod.LabelledImages(split.val, datamod.build_transform(data_config, False), root, config.max_pixels)
    val_batches = val_loader(val_set, config.batch_size, config.num_workers, device, dist)
    class_weights = datamod.inverse_frequency(train_set.labels, num_classes)
    sampler = datamod.DistributedWeightedSampler(
        len(train_set),
        class_weights[train_set.labels] if config.balance == "sampler" else None,
        rank=dist.rank,
        world=dist.world,
        seed=config.seed,
    )
    loader = datamod.make_loader(
        train_set,
        config.batch_size,
        sampler,
        config.num_workers,
        device.type == "cuda",
        drop_last=len(sampler) > config.batch_size,
        seed=config.seed,
    )
    criterion = nn.CrossEntropyLoss(
        weight=torch.as_tensor(class_weights, dtype=torch.float32, device=device) if config.balance == "loss" else None
    )
    scheduler, _ = create_scheduler_v2(
        optimizer,
        sched="cosine",
        num_epochs=config.epochs,
        warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr,
        min_lr=config.min_lr,
        step_on_epochs=config.scheduler_step == "epoch",
        updates_per_epoch=len(loader),
    )
    amp_dtype = devices.amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = ModelEmaV3(model, decay=config.ema_decay) if config.ema_decay > 0 else None
    meta = {
        "class_mapping": split.class_mapping,
        "class_names": list(split.class_names),
        "data_config": data_config,
        "img_size": config.img_size,
        "params": dataclasses.asdict(config),
    }
    return _Loop(
        model,
        optimizer,
        scheduler,
        scaler,
        ema,
        criterion,
        amp_dtype,
        sampler,
        loader,
        val_set,
        val_batches,
        list(split.val["path"]),
        meta,
    )


def _restore(loop: _Loop, state: dict | None, config: TrainConfig, dist: Dist) -> tuple[int, dict]:
    """The first epoch to run and the best so far; when resuming, the saved optimizer, scheduler,
    scaler, EMA and this rank's RNG streams too, so the run ends as an uninterrupted one would."""
    if state is None:
        return 0, {"epoch": -1, "value": None}
    loop.optimizer.load_state_dict(state["optimizer"])
    loop.scheduler.load_state_dict(state["scheduler"])
    loop.scaler.load_state_dict(state["scaler"])
    if loop.ema is not None and state.get("ema") is not None:
        loop.ema.module.load_state_dict(state["ema"])
    start_epoch, best = state["epoch"] + 1, state["best"]
    ranks = state["rng"]["ranks"]
    if len(ranks) == dist.world:
        _set_rng_state(ranks[dist.rank])
    else:  # another world size: reproducible, but not the uninterrupted run's streams
        warnings.warn(
            f"resuming {len(ranks)}-process training with {dist.world} processes: "
            "the RNG streams are reseeded, so the run will not match an uninterrupted one",
            stacklevel=3,
        )
        _seed_all(config.seed + 7919 * start_epoch + dist.rank)
    return start_epoch, best


def _open_live(metrics_dir: Path, start_epoch: int, dist: Dist) -> Any:
    """DVCLive on the main rank only (None elsewhere); on resume its history is cut back to the
    epochs that will not be re-run, so each epoch is logged once."""
    if not dist.is_main:
        return None
    from dvclive import Live

    if start_epoch > 0:
        _truncate_history(metrics_dir, start_epoch)
    live = Live(dir=str(metrics_dir), resume=start_epoch > 0, save_dvc_exp=False, dvcyaml=None, report=None)
    live.step = start_epoch
    return live


def _train_epoch(
    loop: _Loop,
    net: nn.Module,
    epoch: int,
    config: TrainConfig,
    device: torch.device,
    dist: Dist,
    on_step: Callable[[int, int, int, float], None] | None,
) -> tuple[float, int, float, float]:
    """One epoch in this epoch's sampler order, then the epoch's scheduler step: (mean loss, images
    this rank saw, the lr the epoch started at, for the log, and its seconds, for the throughput)."""
    loop.sampler.set_epoch(epoch)
    lr = max(group["lr"] for group in loop.optimizer.param_groups)
    began = time.perf_counter()
    train_loss, seen = train_one_epoch(
        net,
        loop.loader,
        loop.criterion,
        loop.optimizer,
        loop.scheduler,
        loop.scaler,
        loop.ema,
        loop.amp_dtype,
        config.clip_grad,
        epoch,
        device,
        dist,
        on_step,
    )
    seconds = time.perf_counter() - began
    loop.scheduler.step(epoch + 1)
    return train_loss, seen, lr, seconds


def _checkpoint(
    loop: _Loop,
    config: TrainConfig,
    epoch: int,
    evaluated: nn.Module,
    proba: np.ndarray,
    metrics: dict[str, float],
    best: dict,
    improved: bool,
    rng: list,
) -> None:
    """best.pt (the validated weights, EMA when on) with its val predictions when the monitored value
    improved; last.pt with everything :func:`_restore` needs, every epoch, so a kill loses one epoch."""
    from endoctl import model as modelmod

    out_dir = Path(config.out_dir)
    if improved:
        modelmod.save_checkpoint(
            out_dir / "best.pt", evaluated, model_name=config.model_name, epoch=epoch, metrics=metrics, **loop.meta
        )
        write_val_predictions(
            Path(config.metrics_dir) / "val_predictions.csv", loop.val_paths, proba, loop.meta["class_names"]
        )
    modelmod.save_checkpoint(
        out_dir / LAST_CHECKPOINT,
        loop.model,
        model_name=config.model_name,
        epoch=epoch,
        metrics=metrics,
        best=best,
        optimizer=loop.optimizer.state_dict(),
        scheduler=loop.scheduler.state_dict(),
        scaler=loop.scaler.state_dict(),
        ema=loop.ema.module.state_dict() if loop.ema is not None else None,
        rng={"ranks": rng, "sampler": loop.sampler.state_dict()},
        **loop.meta,
    )


def _log_epoch(live: Any, metrics: dict[str, float], best: dict, monitor: str) -> None:
    """The epoch's metrics into DVCLive's history and summary."""
    for name, logged in metrics.items():
        live.log_metric(name, logged)
    # metrics.json holds the last epoch's values; `best` says which epoch best.pt is, and its score
    shown = None if math.isnan(best["value"]) else best["value"]  # JSON has no NaN
    live.summary["best"] = {"epoch": best["epoch"], monitor.split("/")[-1]: shown}
    live.next_step()


def _run(
    config: TrainConfig,
    resume: bool,
    dist: Dist,
    device: torch.device,
    on_step: Callable[[int, int, int, float], None] | None,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    """Inputs, then everything built and (on resume) restored, then per epoch: train, validate and, on
    the main rank, log and checkpoint; the steps are apart so each can be read on its own."""
    started = time.perf_counter()
    split, state = _inputs(config, resume)
    loop = _build(config, split, state, dist, device)
    start_epoch, best = _restore(loop, state, config, dist)
    live = _open_live(Path(config.metrics_dir), start_epoch, dist)
    net, phase, last_metrics = loop.model, None, {}
    train_seconds, train_images = 0.0, 0
    for epoch in range(start_epoch, config.epochs):
        head_only = epoch < config.freeze_epochs
        if head_only != phase:
            _set_trainable(loop.model, head_only)
            net, phase = _wrap(loop.model, dist, device), head_only
        train_loss, seen, lr, seconds = _train_epoch(loop, net, epoch, config, device, dist, on_step)
        train_seconds += seconds
        train_images += seen * dist.world
        evaluated = loop.ema.module if loop.ema is not None else loop.model  # best.pt keeps what was validated
        scored = predict_val(evaluated, loop.val_batches, loop.amp_dtype, device, dist)
        rng = _gather(_rng_state(), dist)
        if not dist.is_main:
            continue
        proba, val_loss = scored
        last_metrics = {
            "train/loss": train_loss,
            "val/loss": val_loss,
            **{f"val/{k}": v for k, v in val_metrics(loop.val_set.labels, proba).items()},
            "lr": lr,
        }
        value = last_metrics[config.monitor]
        improved = _improved(value, best["value"], MONITORS[config.monitor])
        if improved:
            best = {"epoch": epoch, "value": value}
        _log_epoch(live, last_metrics, best, config.monitor)
        _checkpoint(loop, config, epoch, evaluated, proba, last_metrics, best, improved, rng)
        if on_epoch is not None:
            on_epoch(epoch, last_metrics)
    if live is not None:
        live.end()
    return TrainResult(
        best["epoch"],
        float("nan") if best["value"] is None else float(best["value"]),
        last_metrics,
        config.epochs - start_epoch,
        train_images / max(train_seconds, 1e-9),
        time.perf_counter() - started,
        dist.rank,
    )


def _improved(value: float, best: float | None, larger_is_better: bool) -> bool:
    """NaN never improves on a number; anything improves on nothing."""
    if best is None or (math.isnan(best) and not math.isnan(value)):
        return True
    return value > best if larger_is_better else value < best

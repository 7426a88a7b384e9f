"""``endoctl train pretrain|finetune``: values from params.yaml's section named like the command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from endoctl.cli.common import MAX_PIXELS_HELP, fail, progress_bar

app = typer.Typer()


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
    max_pixels: Annotated[int | None, typer.Option(help=f"{MAX_PIXELS_HELP} {_P}")] = None,
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
        fail(error)
    main = os.environ.get("RANK", "0") == "0"
    with progress_bar() as progress:
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
        fail(error)
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

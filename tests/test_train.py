"""Training stages: CLI, exact resume after a kill, DDP on 2 CPU processes, samplers, weights loading.

Everything runs on tiny generated split folders with the tiny EVA-02 at 28 px (2x2 patches), so
the whole file takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from endoctl import data as datamod
from endoctl import model as modelmod
from endoctl.cli import app
from endoctl.train import TrainConfig, TrainError, _create_for_training, load_config, train, val_metrics

ROOT = Path(__file__).resolve().parents[1]
MODEL = "eva02_tiny_patch14_224"
TINY = {
    "model_name": MODEL,
    "img_size": 28,
    "batch_size": 4,
    "num_workers": 0,
    "warmup_epochs": 0,
    "lr": 1e-3,
    "drop_path_rate": 0.1,
    "pretrained_file": "",
    "freeze_epochs": 0,
    "amp": "off",
}
METRIC_KEYS = {"loss"}, {"loss", "balanced_accuracy", "auc_macro", "f1_macro", "map_macro"}


def make_split(root: Path, name: str, classes: list[str], per_class: int = 8, folds: int = 2, seed: int = 0) -> Path:
    """A split folder like `endoctl split` writes: class-coloured images, train_val.csv, class_mapping.json."""
    rng = np.random.default_rng(seed)
    rows = []
    for c, cls in enumerate(classes):
        colour = np.array([255 * (c == 0), 255 * (c == 1), 255 * (c >= 2)], dtype=float)
        for i in range(per_class):
            pixels = np.clip(colour * 0.7 + rng.normal(0, 40, (40, 40, 3)), 0, 255).astype(np.uint8)
            path = Path("images") / name / f"{cls}_{i}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / path)
            rows.append(
                {
                    "image_id": f"{name}/{path.name}",
                    "source": name,
                    "path": path.as_posix(),
                    "label": cls,
                    "target_class": cls,
                    "group": f"g{c}{i}",
                    "fold": str(i % folds),
                }
            )
    split = root / "manifests" / name
    split.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(split / "train_val.csv", index=False)
    (split / "class_mapping.json").write_text(json.dumps({c: i for i, c in enumerate(classes)}))
    return split


def config(root: Path, split: Path, stage: str, **kw: object) -> TrainConfig:
    values = {
        **TINY,
        "split_dir": str(split),
        "data_root": str(root),
        "out_dir": str(root / "models" / stage),
        "metrics_dir": str(root / "metrics" / stage),
        "epochs": 2,
        **kw,
    }
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    make_split(root, "merged", ["angioectasia", "bleeding", "normal"], per_class=8)
    make_split(root, "target", ["normal", "polyp"], per_class=8, seed=1)
    return root


def _params_file(root: Path) -> Path:
    common = {k: v for k, v in TINY.items()}
    params = {
        "pretrain": {**common, "split_dir": "manifests/merged", "epochs": 2},
        "finetune": {
            **common,
            "split_dir": "manifests/target",
            "epochs": 2,
            "freeze_epochs": 1,
            "pretrained_file": "models/pretrain/best.pt",
        },
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


# ------------------------------------------------------------------------------ CLI end to end


@pytest.mark.slow
def test_cli_pretrain_then_finetune(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    _params_file(workspace)
    runner = CliRunner()
    first = runner.invoke(app, ["train", "pretrain", "--deterministic"])
    assert first.exit_code == 0, first.output
    assert "train pretrain" in first.output
    # a command-line option overrides the params.yaml section
    second = runner.invoke(app, ["train", "finetune", "--epochs", "1"])
    assert second.exit_code == 0, second.output

    for stage, epochs, classes in (
        ("pretrain", 2, ["angioectasia", "bleeding", "normal"]),
        ("finetune", 1, ["normal", "polyp"]),
    ):
        files = sorted(p.name for p in (workspace / "models" / stage).iterdir())
        assert files == ["best.pt", "last.pt"]  # no temp files left behind
        last = torch.load(workspace / "models" / stage / "last.pt", weights_only=True)
        assert last["format"] == "endoctl-ckpt/1" and last["epoch"] == epochs - 1
        assert last["class_names"] == classes and last["model_name"] == MODEL
        assert last["state_dict"]["head.weight"].shape[0] == len(classes)
        for key in ("optimizer", "scheduler", "scaler", "rng", "params", "data_config"):
            assert key in last
        loaded = modelmod.load_for_inference(workspace / "models" / stage / "best.pt")
        assert loaded.class_names == classes

        metrics = json.loads((workspace / "metrics" / stage / "metrics.json").read_text())
        assert set(metrics["train"]) == METRIC_KEYS[0] and set(metrics["val"]) == METRIC_KEYS[1]
        assert {"lr", "step"} <= set(metrics) and metrics["step"] == epochs - 1
        best = torch.load(workspace / "models" / stage / "best.pt", weights_only=True)
        assert metrics["best"] == {
            "epoch": best["epoch"],
            "balanced_accuracy": best["metrics"]["val/balanced_accuracy"],
        }
        plots = workspace / "metrics" / stage / "plots" / "metrics"
        history = pd.read_csv(plots / "val" / "balanced_accuracy.tsv", sep="\t")
        assert list(history["step"]) == list(range(epochs))

        preds = pd.read_csv(workspace / "metrics" / stage / "val_predictions.csv")
        assert list(preds.columns) == ["image_path", *classes, "predicted_class"]
        assert np.allclose(preds[classes].sum(axis=1), 1.0, atol=1e-5)
        assert set(preds["predicted_class"]) <= set(classes)
        truth = pd.read_csv(workspace / "manifests" / ("merged" if stage == "pretrain" else "target") / "train_val.csv")
        assert sorted(preds["image_path"]) == sorted(truth.loc[truth["fold"] == 0, "path"])


def test_missing_pretrained_file_is_a_clear_error(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    _params_file(workspace)
    result = CliRunner().invoke(
        app, ["train", "pretrain", "--pretrained-file", "weights/eva02.pth", "--out-dir", "models/missing"]
    )
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "pretrained_file not found: weights/eva02.pth" in text
    assert f"timm.create_model('{MODEL}', pretrained=True)" in text
    assert not (workspace / "models" / "missing").exists()


def test_unknown_params_key_and_bad_value_are_clear_errors(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workspace)
    (workspace / "bad.yaml").write_text(yaml.safe_dump({"pretrain": {"learning_rate": 0.1}}))
    result = CliRunner().invoke(app, ["train", "pretrain", "--params", "bad.yaml"])
    assert result.exit_code == 2 and "learning_rate" in result.output
    result = CliRunner().invoke(app, ["train", "pretrain", "--params", "none.yaml", "--balance", "oversample"])
    assert result.exit_code == 2 and "balance must be one of" in " ".join(result.output.split())
    (workspace / "typed.yaml").write_text("pretrain:\n  lr: 1e-4\n  epochs: 2.0\n  pretrained_file:\n")
    config = load_config("pretrain", workspace / "typed.yaml", {"seed": 3})
    assert (config.lr, config.epochs, config.pretrained_file, config.seed) == (1e-4, 2, "", 3)  # YAML 1e-4 is text
    (workspace / "typed.yaml").write_text("pretrain:\n  epochs: two\n")
    with pytest.raises(TrainError, match="epochs must be int"):
        load_config("pretrain", workspace / "typed.yaml", {})


def test_max_pixels_is_the_limit_training_applies(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--max-pixels`` (params.yaml ``ingest.max_pixels``, passed on by dvc.yaml) reaches the datasets:
    an image above it is unusable for training, which ends the run in one line, as any unusable image does."""
    monkeypatch.chdir(workspace)
    _params_file(workspace)
    frame = pd.read_csv("manifests/merged/train_val.csv").assign(label=0)
    assert datamod.LabelledImages(frame, lambda im: im.size, workspace)[0] == ((40, 40), 0)  # Pillow's limit
    with pytest.raises(ValueError, match="decompression bomb: 40x40 = 1600 pixels > limit 1000"):
        datamod.LabelledImages(frame, lambda im: im.size, workspace, max_pixels=1000)[0]
    assert load_config("pretrain", Path("params.yaml"), {"max_pixels": 1000}).max_pixels == 1000
    args = ["train", "pretrain", "--epochs", "1", "--out-dir", "models/bomb", "--metrics-dir", "metrics/bomb"]
    result = CliRunner().invoke(app, [*args, "--max-pixels", "1000"])
    error = " ".join(result.output.split())
    assert result.exit_code == 2 and "cannot use training image" in error, result.output
    assert "decompression bomb: 40x40 = 1600 pixels > limit 1000" in error
    result = CliRunner().invoke(app, [*args, "--max-pixels", "0"])
    assert result.exit_code == 2 and "max_pixels must be >= 1, got 0" in result.output


# ---------------------------------------------------------------------------------- resume


class Killed(RuntimeError):
    pass


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted_run(tmp_path: Path) -> None:
    split = make_split(tmp_path, "merged", ["a", "b", "c"], per_class=6)
    kw = {"epochs": 3, "ema_decay": 0.9, "scheduler_step": "update", "warmup_epochs": 1}
    full = config(tmp_path / "full", split, "pretrain", data_root=str(tmp_path), **kw)
    train(full, deterministic=True)

    killed = config(tmp_path / "killed", split, "pretrain", data_root=str(tmp_path), **kw)

    def kill_in_epoch_2(epoch: int, step: int, steps: int, loss: float) -> None:
        if epoch == 1 and step == 2:
            raise Killed

    with pytest.raises(Killed):
        train(killed, deterministic=True, on_step=kill_in_epoch_2)
    assert torch.load(Path(killed.out_dir) / "last.pt", weights_only=True)["epoch"] == 0
    torch.manual_seed(12345)  # whatever the process did since must not matter
    train(killed, resume=True, deterministic=True)

    a = torch.load(Path(full.out_dir) / "last.pt", weights_only=True)
    b = torch.load(Path(killed.out_dir) / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("state_dict", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert all(torch.equal(x, y) for x, y in zip(_tensors(a["optimizer"]), _tensors(b["optimizer"])))
    assert a["best"] == b["best"]
    history = pd.read_csv(Path(killed.metrics_dir) / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    reference = pd.read_csv(Path(full.metrics_dir) / "plots" / "metrics" / "train" / "loss.tsv", sep="\t")
    assert list(history["step"]) == [0, 1, 2]
    assert np.array_equal(history["loss"].to_numpy(), reference["loss"].to_numpy())


def _tensors(obj: object) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in sorted(obj, key=str) for t in _tensors(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for v in obj for t in _tensors(v)]
    return []


# ------------------------------------------------------------------------------------- DDP

TRACE = """
import os
if os.environ.get("ENDOCTL_TRACE") and "RANK" in os.environ:
    from endoctl import data, model
    rank, trace = os.environ["RANK"], os.environ["ENDOCTL_TRACE"]
    getitem, save = data.LabelledImages.__getitem__, model.save_checkpoint

    def traced_getitem(self, item):
        if isinstance(item, tuple):
            with open(os.path.join(trace, "samples-" + rank), "a") as fh:
                fh.write(str(item[0]) + "\\n")
        return getitem(self, item)

    def traced_save(path, *args, **kwargs):
        with open(os.path.join(trace, "saves-" + rank), "a") as fh:
            fh.write(os.path.basename(str(path)) + "\\n")
        return save(path, *args, **kwargs)

    data.LabelledImages.__getitem__, model.save_checkpoint = traced_getitem, traced_save
"""


@pytest.mark.slow
def test_ddp_two_cpu_processes(workspace: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    (tmp_path / "sitecustomize.py").write_text(TRACE)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "ENDOCTL_TRACE": str(trace),
        "OMP_NUM_THREADS": "1",
    }
    _params_file(workspace)
    out, metrics = tmp_path / "models", tmp_path / "metrics"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "endoctl",
        "train",
        "finetune",
        "--params",
        str(workspace / "params.yaml"),
        "--pretrained-file",
        "",
        "--freeze-epochs",
        "1",
        "--epochs",
        "2",
        "--balance",
        "none",
        "--out-dir",
        str(out),
        "--metrics-dir",
        str(metrics),
    ]
    proc = subprocess.Popen(
        cmd, cwd=workspace, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert stdout.count("train finetune:") == 1  # rank 0 only reports

    # checkpoints written by rank 0 only, once per epoch (+ best)
    assert not (trace / "saves-1").exists()
    saves = (trace / "saves-0").read_text().split()
    assert saves.count("last.pt") == 2 and 1 <= saves.count("best.pt") <= 2
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt"]
    assert (metrics / "metrics.json").is_file()

    # per epoch, the two ranks saw disjoint halves of the 8 training images (balance none: a permutation)
    seen = [np.array((trace / f"samples-{r}").read_text().split(), dtype=int) for r in (0, 1)]
    per_epoch = 8 // 2
    for epoch in range(2):
        a, b = (s[epoch * per_epoch : (epoch + 1) * per_epoch] for s in seen)
        assert len(a) == len(b) == per_epoch
        assert set(a).isdisjoint(b) and len(set(a) | set(b)) == 8


# -------------------------------------------------------------------------- data / sampler


def test_distributed_weighted_sampler_shards_and_weights() -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    weights = datamod.inverse_frequency(labels, 3)[labels]
    world = 3
    shards = [
        datamod.DistributedWeightedSampler(len(labels), weights, num_samples=30_000, rank=r, world=world, seed=5)
        for r in range(world)
    ]
    for s in shards:
        s.set_epoch(4)
    drawn = [list(s) for s in shards]
    assert {len(d) for d in drawn} == {10_000} and all(len(s) == 10_000 for s in shards)
    indices, seeds = shards[0].global_draw()
    for r in range(world):  # shard r = positions r, r + world, ... of the one global draw: disjoint
        assert [i for i, _ in drawn[r]] == list(indices[r::world])
        assert [s for _, s in drawn[r]] == list(seeds[r::world])
    freq = np.bincount(labels[indices], minlength=3) / len(indices)
    assert np.allclose(freq, 1 / 3, atol=0.02)  # inverse frequency balances the classes
    again = datamod.DistributedWeightedSampler(len(labels), weights, num_samples=30_000, rank=0, world=world, seed=5)
    again.set_epoch(4)
    assert list(again) == drawn[0]  # a function of (seed, epoch) only
    again.set_epoch(5)
    assert list(again) != drawn[0]

    plain = [datamod.DistributedWeightedSampler(10, None, rank=r, world=2, seed=1) for r in range(2)]
    a, b = ([i for i, _ in s] for s in plain)
    assert set(a).isdisjoint(b) and sorted(a + b) == list(range(10))


def test_augmentation_depends_only_on_the_sample_seed(workspace: Path) -> None:
    split = datamod.load_split(workspace / "manifests" / "merged", val_fold=0)
    model = modelmod.create_model(MODEL, 3, img_size=28)
    cfg = modelmod.data_config_for(model, 28)
    dataset = datamod.LabelledImages(
        split.train, datamod.build_transform(cfg, True, datamod.Augment(rot90=1.0)), workspace
    )
    first = dataset[(0, 123)][0]
    torch.manual_seed(999)
    state = torch.get_rng_state()
    assert torch.equal(dataset[(0, 123)][0], first)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's stream is untouched
    assert not torch.equal(dataset[(0, 124)][0], first)
    assert dataset[0][0].shape == (3, 28, 28)
    assert split.class_names == ["angioectasia", "bleeding", "normal"]  # no taxonomy target: the keys


def test_val_metrics_over_present_classes() -> None:
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.eye(4)[[0, 0, 1, 1, 2, 2]] * 0.9 + 0.025
    perfect = val_metrics(y, proba)
    assert perfect == {"balanced_accuracy": 1.0, "auc_macro": 1.0, "f1_macro": 1.0, "map_macro": 1.0}
    wrong = val_metrics(y, proba[::-1])
    assert wrong["balanced_accuracy"] < 0.5 and wrong["auc_macro"] < 1.0


def test_training_and_evaluate_share_one_macro_f1() -> None:
    """4 images, class 2 predicted but never true: scikit-learn's macro F1 over the classes in truth
    or prediction, (1 + 2/3 + 0) / 3 = 0.556, in training's validation metrics and in the report."""
    from sklearn.metrics import f1_score

    from endoctl.metrics import EvalData, full_report

    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.1, 0.3, 0.6]])
    expected = (1 + 2 / 3 + 0) / 3
    assert f1_score(y, proba.argmax(axis=1), average="macro") == pytest.approx(expected)
    assert val_metrics(y, proba)["f1_macro"] == pytest.approx(expected)
    data = EvalData(classes=["a", "b", "c"], y=y, proba=proba, image=np.array([f"i{k}.jpg" for k in range(4)]))
    report = full_report(data, n_bootstrap=0)
    assert report["f1_macro"] == pytest.approx(expected)
    assert report["per_class"]["c"]["f1"] == 0.0 and report["balanced_accuracy"] == pytest.approx(0.75)


# ---------------------------------------------------------------------- weights for training


def test_finetune_backbone_from_endoctl_and_lightning_checkpoints(tmp_path: Path) -> None:
    source = modelmod.create_model(MODEL, 3, img_size=28)
    mapping = {"a": 0, "b": 1, "c": 2}
    ckpt = tmp_path / "best.pt"
    modelmod.save_checkpoint(
        ckpt, source, model_name=MODEL, class_mapping=mapping, img_size=28, class_names=list(mapping)
    )
    lightning = tmp_path / "seed.ckpt"
    sd = source.state_dict()
    torch.save(
        {
            "state_dict": {
                **{f"backbone.{k}": v for k, v in sd.items() if not k.startswith("head.")},
                "classifier.linear.weight": sd["head.weight"],
                "classifier.linear.bias": sd["head.bias"],
            },
            "hyper_parameters": {"model_name": MODEL},
        },
        lightning,
    )
    for file, size in ((ckpt, 28), (lightning, 28), (ckpt, 42)):
        cfg = TrainConfig(model_name=MODEL, img_size=size, pretrained_file=str(file), out_dir=str(tmp_path / "out"))
        model = _create_for_training(cfg, 5, weights=True)
        own = model.state_dict()
        assert own["head.weight"].shape == (5, source.head.in_features)  # new head for the new classes
        backbone = [k for k in sd if not k.startswith("head.") and k != "pos_embed"]
        assert all(torch.equal(own[k], sd[k]) for k in backbone), file
        assert not any((tmp_path / "out").glob(".init-*"))  # the converted Lightning weights are removed


def test_ce24_classes_get_the_ce24_display_names(tmp_path: Path) -> None:
    from endoctl.taxonomy import load_taxonomy

    names = load_taxonomy().targets["ce24"].classes
    split = make_split(tmp_path, "ce24", [n.lower() for n in names], per_class=1, folds=1)
    assert datamod.load_split(split, val_fold=0).class_names == names  # e.g. 'Foreign Body', the CE24 columns


def test_multi_label_split_is_a_clear_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    split = make_split(tmp_path, "multi", ["a", "b"], per_class=2, folds=2)
    rows = pd.read_csv(split / "train_val.csv", dtype=str, keep_default_na=False)
    rows.loc[0, "target_class"] = "a|b"
    rows.to_csv(split / "train_val.csv", index=False)
    with pytest.raises(ValueError, match=r"target is multi-label \(1 images with several classes, e.g. 'a\|b'\)"):
        datamod.load_split(split, val_fold=0)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["train", "pretrain", "--params", "none.yaml", "--split-dir", str(split), "--out-dir", "models/x"]
    )
    assert result.exit_code == 2 and "multi-label" in result.output and "Traceback" not in result.output


class _Evil:
    """Pickles as a call to os.system: what an unsafe 'checkpoint' looks like."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_cli_finetune_from_checkpoint_with_numpy_metadata(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`train finetune --pretrained-file` reads an ordinary checkpoint holding a numpy scalar, as predict
    does, instead of timm's weights_only traceback; an unsafe pickle is refused in one line naming the
    file, and nothing in it runs (issue 25, case 10)."""
    monkeypatch.chdir(workspace)
    _params_file(workspace)
    source = modelmod.create_model(MODEL, 3, img_size=28)
    torch.save({"model": source.state_dict(), "best": np.float64(0.5), "epoch": np.int64(3)}, "w.pth")
    torch.save({"model": source.state_dict(), "hook": _Evil()}, "evil.pth")
    args = ["train", "finetune", "--epochs", "1", "--freeze-epochs", "0", "--out-dir", "models/np"]
    res = CliRunner().invoke(app, [*args, "--pretrained-file", "w.pth", "--metrics-dir", "metrics/np"])
    assert res.exit_code == 0, res.output
    best = torch.load("models/np/best.pt", weights_only=True)
    assert best["state_dict"]["head.weight"].shape[0] == 2
    res = CliRunner().invoke(app, [*args, "--pretrained-file", "evil.pth", "--out-dir", "models/evil"])
    error = res.stderr.strip()
    assert res.exit_code == 2 and error.startswith("error: refusing evil.pth: an unsafe pickle"), res.output
    assert "posix.system" in error and "\n" not in error and not Path("pwned").exists()

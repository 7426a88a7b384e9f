"""Checkpoint formats (endoctl, plain timm, seed-paper Lightning) and `endoctl predict`.

Tiny models only (EVA-02-Ti at 56 px, random init): nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import special_files
from PIL import Image
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.io import read_csv
from endoctl.model import (
    CKPT_FORMAT,
    create_model,
    display_names,
    load_for_inference,
    read_class_mapping,
    save_checkpoint,
    validate_class_mapping,
)
from endoctl.predict import (
    MAX_XLSX_ROWS,
    Predictor,
    check_output,
    collate_valid,
    list_images,
    natural_key,
    open_rgb,
    predict_images,
    prediction_table,
    split_transform,
)
from endoctl.taxonomy import load_taxonomy
from endoctl.testing import scene

runner = CliRunner()
NAME = "eva02_tiny_patch14_224"
SIZE = 56
CE24 = load_taxonomy().targets["ce24"]


def _model(seed: int = 0, num_classes: int = 10, img_size: int = SIZE) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(NAME, num_classes, img_size=img_size).eval()


def _probe_head(model: torch.nn.Module, images: list[Image.Image], seed: int = 0) -> torch.nn.Module:
    """Random head on standardised features: logits ~ N(0, 3^2) per image, not near-uniform.

    A random-init EVA-02 gives almost the same features for every image, so its own random head
    outputs ~0.1 everywhere and any two compute paths would trivially agree.
    """
    from timm.data import create_transform

    from endoctl.model import data_config_for

    transform = create_transform(**data_config_for(model, SIZE), is_training=False)
    with torch.no_grad():
        feats = model.forward_head(
            model.forward_features(torch.stack([transform(im) for im in images])), pre_logits=True
        )
        mean, std = feats.mean(0), feats.std(0) + 1e-6
        w = (
            torch.randn(model.head.weight.shape, generator=torch.Generator().manual_seed(seed))
            * 3
            / feats.shape[1] ** 0.5
        )
        model.head.weight.copy_(w / std)
        model.head.bias.copy_(-(w / std) @ mean)
    return model


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP threads stall each other on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(image_dir) -> torch.nn.Module:
    files = [p for p in sorted(image_dir.rglob("frame_*"))]
    return _probe_head(_model(), [Image.open(p).convert("RGB") for p in files])


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, reference) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(
        path,
        reference,
        NAME,
        CE24.class_mapping(),
        img_size=SIZE,
        epoch=3,
        optimizer={"state": {}},
        params={"lr": 1e-4},
    )
    return path


@pytest.fixture(scope="module")
def mapping_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "class_mapping.json"
    path.write_text(json.dumps(CE24.class_mapping(), indent=2) + "\n")
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    """12 readable images in nested folders (JPEG/PNG), one corrupt JPEG, and files to skip."""
    root = tmp_path_factory.mktemp("images")
    for i in range(12):
        folder = root / ("b" if i % 2 else "a") / f"v{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        im = scene(i, (72 + 4 * i, 64))
        if i % 4 == 3:
            im.save(folder / f"frame_{i:02d}.png")
        else:
            im.save(folder / f"frame_{i:02d}.jpg", quality=90)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (root / "README.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(b"")
    return root


# ---------------------------------------------------------------------------------------------
# Checkpoint formats


def test_endoctl_checkpoint_round_trip(ckpt, reference, x, mapping_json) -> None:
    raw = torch.load(ckpt, weights_only=True)
    assert raw["format"] == CKPT_FORMAT and raw["epoch"] == 3 and raw["class_names"] == CE24.classes
    assert raw["img_size"] == SIZE and raw["data_config"]["input_size"] == (3, SIZE, SIZE)
    loaded = load_for_inference(ckpt)
    assert loaded.class_names == CE24.classes and loaded.model_name == NAME
    assert loaded.source_format == "endoctl" and not loaded.model.training
    assert torch.equal(_logits(loaded.model, x), _logits(reference, x))
    assert load_for_inference(ckpt, mapping_json).class_names == CE24.classes  # a matching mapping is fine


def test_endoctl_checkpoint_rejects_other_classes(ckpt, tmp_path) -> None:
    other = tmp_path / "class_mapping.json"
    other.write_text(json.dumps({f"c{i}": i for i in range(10)}))
    with pytest.raises(ValueError, match="differ"):
        load_for_inference(ckpt, other)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_plain_timm_weights(tmp_path, reference, x, mapping_json, suffix) -> None:
    state = reference.state_dict()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:  # a DDP-style prefix must not matter
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    loaded = load_for_inference(path, mapping_json, model_name=NAME)
    assert loaded.source_format == "timm" and loaded.class_names == CE24.classes
    assert loaded.data_config["input_size"] == (3, SIZE, SIZE)  # image size read from the pos-embed
    assert torch.equal(_logits(loaded.model, x), _logits(reference, x))
    with pytest.raises(ValueError, match="--model-name"):
        load_for_inference(path, mapping_json)
    with pytest.raises(ValueError, match="--class-mapping"):
        load_for_inference(path, model_name=NAME)


def test_timm_training_checkpoint_names_its_model(tmp_path, reference, x, mapping_json) -> None:
    path = tmp_path / "model_best.pth.tar"
    torch.save({"epoch": 7, "arch": NAME, "state_dict": reference.state_dict(), "optimizer": {}}, path)
    loaded = load_for_inference(path, mapping_json)
    assert loaded.model_name == NAME and torch.equal(_logits(loaded.model, x), _logits(reference, x))


def test_plain_weights_with_wrong_head_size(tmp_path, mapping_json) -> None:
    path = tmp_path / "w.pth"
    torch.save(_model(num_classes=4).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit"):
        load_for_inference(path, mapping_json, model_name=NAME)


def _fake_lightning_hparams() -> object:
    """An object of a package that is absent at load time, like Lightning's AttributeDict."""
    module = types.ModuleType("fake_lightning.utilities")
    sys.modules["fake_lightning"] = types.ModuleType("fake_lightning")
    sys.modules["fake_lightning.utilities"] = module

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = module.__name__
    AttributeDict.__qualname__ = "AttributeDict"
    module.AttributeDict = AttributeDict
    return AttributeDict(model_name=f"timm/{NAME}.mim_in22k", lr=1e-4, img_size=SIZE)


def test_seed_paper_lightning_checkpoint(tmp_path, reference, x, mapping_json) -> None:
    state = reference.state_dict()
    sd = {f"backbone.{k}": v for k, v in state.items() if not k.startswith("head.")}
    sd["classifier.linear.weight"], sd["classifier.linear.bias"] = state["head.weight"], state["head.bias"]
    path = tmp_path / "epoch=9-step=100.ckpt"
    hparams = _fake_lightning_hparams()
    try:
        torch.save(
            {
                "epoch": 9,
                "global_step": 100,
                "pytorch-lightning_version": "2.4.0",
                "state_dict": sd,
                "hyper_parameters": hparams,
                "optimizer_states": [],
                "lr_schedulers": [],
            },
            path,
        )
    finally:
        sys.modules.pop("fake_lightning.utilities")
        sys.modules.pop("fake_lightning")
    loaded = load_for_inference(path, mapping_json)  # model name from hyper_parameters; no lightning needed
    assert loaded.source_format == "lightning" and loaded.model_name == f"{NAME}.mim_in22k"
    assert loaded.class_names == CE24.classes
    assert torch.equal(_logits(loaded.model, x), _logits(reference, x))
    plain = tmp_path / "plain.ckpt"  # no hyper_parameters: the name must be given
    torch.save({"state_dict": sd}, plain)
    with pytest.raises(ValueError, match="--model-name"):
        load_for_inference(plain, mapping_json)
    assert torch.equal(_logits(load_for_inference(plain, mapping_json, NAME).model, x), _logits(reference, x))


def test_unknown_layout_lists_top_level_keys(tmp_path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"weights": {"a": 1}, "meta": "x"}, path)
    with pytest.raises(ValueError, match=r"unrecognised checkpoint layout .*top-level keys meta, weights"):
        load_for_inference(path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_for_inference(tmp_path / "nope.pt")


def test_create_model_from_local_file_only(tmp_path) -> None:
    torch.manual_seed(3)
    backbone = create_model(NAME, 0, img_size=SIZE)
    path = tmp_path / "pretrain.pth"
    torch.save(backbone.state_dict(), path)
    model = create_model(NAME, 10, img_size=SIZE, pretrained_file=path)
    assert torch.equal(
        model.state_dict()["blocks.0.attn.qkv.weight"], backbone.state_dict()["blocks.0.attn.qkv.weight"]
    )
    assert model.head.weight.shape == (10, 192)
    bigger = create_model(NAME, 10, img_size=84, pretrained_file=path)  # timm resamples the pos-embed
    assert bigger.pos_embed.shape[1] == 1 + 6 * 6
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        create_model(NAME, 10, pretrained_file=tmp_path / "missing.safetensors")
    assert create_model("resnet10t", 3, img_size=64).num_classes == 3  # CNNs take no img_size: ignored
    with pytest.raises(ValueError, match="unknown timm model"):
        create_model("no_such_model", 3)


def test_class_mappings() -> None:
    assert display_names(CE24.class_mapping()) == CE24.classes
    assert display_names({"b": 1, "a": 0}) == ["a", "b"]
    with pytest.raises(ValueError, match="0..1"):
        validate_class_mapping({"a": 0, "b": 2})
    with pytest.raises(FileNotFoundError):
        read_class_mapping(Path("does/not/exist.json"))


# ---------------------------------------------------------------------------------------------
# Images and the output table


def test_list_images_folder_and_csv(image_dir, tmp_path) -> None:
    listed = list_images(image_dir)
    assert len(listed.paths) == 13 and listed.paths == sorted(listed.paths, key=natural_key) and listed.skipped == 2
    assert "a/broken.jpg" in listed.paths and all(not p.startswith("/") for p in listed.paths)
    table = tmp_path / "split.csv"
    pd.DataFrame({"image_id": ["x", "y", "z"], "path": ["b/2.jpg", "a/1.jpg", "b/2.jpg"]}).to_csv(table, index=False)
    assert list_images(table).paths == ["a/1.jpg", "b/2.jpg"]
    pd.DataFrame({"file": ["a.jpg"]}).to_csv(table, index=False)
    with pytest.raises(ValueError, match="no path column"):
        list_images(table)


def test_open_rgb_applies_exif_and_reports_reasons(tmp_path) -> None:
    im = scene(0, (40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    im.save(tmp_path / "rot.jpg", exif=exif)
    assert open_rgb(tmp_path / "rot.jpg").size == (20, 40)
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert open_rgb(tmp_path / "clear.png").getpixel((0, 0)) == (0, 0, 0)  # transparent -> black
    (tmp_path / "empty.jpg").write_bytes(b"")
    from endoctl.imaging import ImageRejected

    for name, reason in (("empty.jpg", "empty"), ("gone.jpg", "not found")):
        with pytest.raises(ImageRejected, match=reason):
            open_rgb(tmp_path / name)


def test_collate_drops_failed_samples() -> None:
    t = torch.zeros(3, 4, 4, dtype=torch.uint8)
    indices, batch, failed = collate_valid([(0, t, ""), (1, None, "bad"), (2, t, "")])
    assert indices.tolist() == [0, 2] and batch.shape == (2, 3, 4, 4) and failed == [(1, "bad")]
    assert collate_valid([(5, None, "bad")])[1] is None


def test_device_normalisation_equals_timm_transform(ckpt) -> None:
    from timm.data import create_transform

    config = load_for_inference(ckpt).data_config
    cpu_part, mean, std = split_transform(config)
    im = scene(4, (90, 70))
    expected = create_transform(**config, is_training=False)(im)
    raw = cpu_part(im)
    assert raw.dtype == torch.uint8
    assert torch.equal(raw.float().div(255).unsqueeze(0).sub(mean).div(std)[0], expected)


def test_prediction_table_layout() -> None:
    table = prediction_table(["b.jpg", "a.jpg"], np.array([[0.2, 0.8], [0.9, 0.1]]), ["Yes", "No"])
    assert list(table.columns) == ["image_path", "Yes", "No", "predicted_class"]
    assert table["image_path"].tolist() == ["a.jpg", "b.jpg"] and table["predicted_class"].tolist() == ["Yes", "No"]


def test_xlsx_row_limit_and_suffixes() -> None:
    assert check_output("p.xlsx", MAX_XLSX_ROWS) == "xlsx"
    assert check_output("p.csv", MAX_XLSX_ROWS + 1) == "csv"
    with pytest.raises(ValueError, match=r"p\.csv instead"):
        check_output("p.xlsx", MAX_XLSX_ROWS + 1)
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx"):
        check_output("p.json", 1)


FRAMES = ["frame_1.jpg", "frame_10.jpg", "frame_100.jpg", "frame_11.jpg", "frame_2.jpg", "frame_01.jpg"]


@pytest.fixture(scope="module")
def numbered_dir(tmp_path_factory) -> Path:
    """Frames numbered without zero padding, as a capsule video export writes them."""
    root = tmp_path_factory.mktemp("numbered")
    for i, name in enumerate(FRAMES):
        scene(i, (64, 64)).save(root / name, quality=90)
    return root


def test_natural_key_orders_digit_runs_as_numbers() -> None:
    names = ["v10/frame_2.jpg", "v2/frame_10.jpg", "frame_1.jpg", "frame_01.jpg", "frame_1a.jpg", "x"]
    assert sorted(names, key=natural_key) == [
        "frame_01.jpg",  # equal to frame_1 as numbers: the full string decides, so the order is total
        "frame_1.jpg",
        "frame_1a.jpg",
        "v2/frame_10.jpg",
        "v10/frame_2.jpg",
        "x",
    ]
    assert sorted(reversed(names), key=natural_key) == sorted(names, key=natural_key)


def test_cli_predict_lists_numbered_frames_in_natural_order(ckpt, numbered_dir, tmp_path) -> None:
    out = tmp_path / "pred" / "p.csv"
    args = ["predict", "--checkpoint", str(ckpt), "--images", str(numbered_dir), "--out", str(out)]
    res = runner.invoke(app, args + ["--device", "cpu", "--batch-size", "4", "--workers", "0"])
    assert res.exit_code == 0, res.output + res.stderr
    assert read_csv(out)["image_path"].tolist() == [
        "frame_01.jpg",
        "frame_1.jpg",
        "frame_2.jpg",
        "frame_10.jpg",
        "frame_11.jpg",
        "frame_100.jpg",
    ]


def test_cli_predict_xlsx_is_byte_identical_across_runs(ckpt, numbered_dir, tmp_path, monkeypatch) -> None:
    """openpyxl dates core.xml and every zip member with the wall clock: endoctl pins both, so a rerun
    a day later (the clock moved forward here) writes the same bytes, and the file still reads back."""
    args = ["predict", "--checkpoint", str(ckpt), "--images", str(numbered_dir), "--device", "cpu"]
    args += ["--batch-size", "4", "--workers", "0"]
    first, second = tmp_path / "a" / "p.xlsx", tmp_path / "b" / "p.xlsx"
    res = runner.invoke(app, args + ["--out", str(first)])
    assert res.exit_code == 0, res.output + res.stderr
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400 + 3)
    res = runner.invoke(app, args + ["--out", str(second)])
    assert res.exit_code == 0, res.output + res.stderr
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert {info.date_time for info in archive.infolist()} == {(2024, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    assert core.count("2024-01-01T00:00:00Z") == 2, core  # created and modified
    import openpyxl

    book = openpyxl.load_workbook(first)
    assert book.properties.created == book.properties.modified
    sheet = pd.read_excel(first)
    assert list(sheet.columns) == ["image_path", *CE24.classes, "predicted_class"]
    assert sheet["image_path"].tolist()[:3] == ["frame_01.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert np.allclose(sheet[CE24.classes].sum(axis=1), 1.0, atol=1e-5)


def test_fast_path_agrees_with_fp32(ckpt, image_dir) -> None:
    listed = list_images(image_dir)
    fp32 = predict_images(load_for_inference(ckpt), listed, "cpu", batch_size=5, workers=0, fast=False)
    fast = predict_images(load_for_inference(ckpt), listed, "cpu", batch_size=5, workers=0, fast=True)
    assert fp32.path.describe() == "fp32 eager" and "channels-last" in fast.path.describe()
    assert fp32.table["image_path"].tolist() == fast.table["image_path"].tolist()
    a, b = fp32.table[CE24.classes].to_numpy(), fast.table[CE24.classes].to_numpy()
    assert a.max(axis=1).mean() > 0.3  # the probabilities are not uniform, so the check means something
    # bf16 rounds activations to ~3 significant digits; random-init features barely differ between
    # images, so this standardised probe is a worst case (benchmarks/bench_predict.py measures more).
    assert np.abs(a - b).max() < 0.06 and np.abs(a - b).mean() < 0.005
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


def test_predictor_pads_fixed_batches(ckpt) -> None:
    loaded = load_for_inference(ckpt)
    batch = torch.randint(0, 255, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    plain = Predictor(loaded, fast=False)(batch)
    padded = Predictor(loaded, fast=False)
    padded.fixed_batch = 8  # as for a compiled model
    out = padded(batch)
    assert out.shape == (3, 10) and torch.allclose(out, plain, atol=1e-6)
    assert torch.allclose(plain.sum(1), torch.ones(3))


# ---------------------------------------------------------------------------------------------
# The command


def test_cli_predict_folder_csv_and_xlsx(ckpt, image_dir, tmp_path) -> None:
    out = tmp_path / "pred" / "p.csv"
    args = [
        "predict",
        "--checkpoint",
        str(ckpt),
        "--images",
        str(image_dir),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "4",
    ]
    res = runner.invoke(app, args + ["--workers", "2"])
    assert res.exit_code == 0, res.output + res.stderr
    assert "13 images = predicted 12 + rejected 1" in res.stdout and "img/s" in res.stdout
    first = out.read_bytes()
    table = pd.read_csv(out)
    assert list(table.columns) == ["image_path", *CE24.classes, "predicted_class"]
    assert table["image_path"].tolist() == sorted(table["image_path"], key=natural_key) and len(table) == 12
    assert np.allclose(table[CE24.classes].sum(axis=1), 1.0, atol=1e-5)
    assert set(table["predicted_class"]) <= set(CE24.classes)
    rejected = read_csv(tmp_path / "pred" / "p.rejected.csv")
    assert rejected["path"].tolist() == ["a/broken.jpg"] and rejected["reason"].str.len().min() > 0
    res = runner.invoke(app, args + ["--workers", "0"])  # rerun, other worker count: same bytes
    assert res.exit_code == 0 and out.read_bytes() == first

    xlsx = tmp_path / "pred" / "p.xlsx"
    # Same batch size as the CSV run: CPU kernels may round differently for another batch shape.
    res = runner.invoke(app, args[:-6] + ["--out", str(xlsx), "--device", "cpu", "--batch-size", "4", "--workers", "0"])
    assert res.exit_code == 0, res.stderr
    sheet = pd.read_excel(xlsx)
    assert list(sheet.columns) == ["image_path", *CE24.classes, "predicted_class"] and len(sheet) == 12
    assert np.allclose(sheet[CE24.classes].to_numpy(), table[CE24.classes].to_numpy(), atol=1e-7)


def test_cli_predict_on_split_csv(ckpt, image_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(image_dir.parent)
    split = tmp_path / "test.csv"
    paths = [f"{image_dir.name}/b/v1/frame_01.jpg", f"{image_dir.name}/a/v0/frame_00.jpg"]
    pd.DataFrame(
        {
            "image_id": ["x", "y"],
            "source": "ce24",
            "path": paths,
            "label": "Normal",
            "target_class": "normal",
            "group": "g",
            "fold": "",
        }
    ).to_csv(split, index=False)
    out = tmp_path / "predictions" / "p.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(split),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "0",
            "--no-fast",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert pd.read_csv(out)["image_path"].tolist() == sorted(paths)  # written as the CSV gives them


def test_cli_predict_counts_a_path_listed_twice(ckpt, image_dir, tmp_path, monkeypatch) -> None:
    """4 rows, one image listed twice, one broken: 3 images = predicted 2 + rejected 1, and a warning
    names the repeated path and its rows (before: rows merged without a word)."""
    monkeypatch.chdir(image_dir.parent)
    name = image_dir.name
    paths = [
        f"{name}/b/v1/frame_01.jpg",
        f"{name}/a/broken.jpg",
        f"{name}/a/v0/frame_00.jpg",
        f"{name}/b/v1/frame_01.jpg",
    ]
    pd.DataFrame({"path": paths}).to_csv(tmp_path / "list.csv", index=False)
    out = tmp_path / "predictions" / "p.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(tmp_path / "list.csv"),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
    )
    assert res.exit_code == 0, res.stderr
    assert "predict: 3 images (from 4 rows of list.csv) = predicted 2 + rejected 1" in res.stdout
    warning = " ".join(res.stderr.split())
    assert f"1 path(s) listed more than once (first '{name}/b/v1/frame_01.jpg' in rows 2, 5)" in warning
    assert len(pd.read_csv(out)) == 2 and len(pd.read_csv(out.with_name("p.rejected.csv"))) == 1


def test_cli_predict_errors_are_one_line(ckpt, image_dir, tmp_path) -> None:
    cases = [
        (["--checkpoint", str(tmp_path / "none.pt"), "--images", str(image_dir), "--out", "p.csv"], "none.pt"),
        (["--checkpoint", str(ckpt), "--images", str(tmp_path / "nowhere"), "--out", "p.csv"], "images not found"),
        (["--checkpoint", str(ckpt), "--images", str(image_dir), "--out", str(tmp_path / "p.json")], ".csv or .xlsx"),
    ]
    for args, expected in cases:
        res = runner.invoke(app, ["predict", *args, "--device", "cpu"])
        error = res.stderr.strip()
        assert res.exit_code == 2 and expected in error and "\n" not in error, error


def test_predict_output_round_trips_through_evaluate(ckpt, image_dir, tmp_path, monkeypatch) -> None:
    """A split CSV -> predict -> evaluate: every image matched, the report computed from our columns."""
    monkeypatch.chdir(image_dir.parent)
    images = sorted(p for p in image_dir.rglob("frame_*.*"))
    classes = [c.lower() for c in CE24.classes]
    split = tmp_path / "test.csv"
    pd.DataFrame(
        {
            "image_id": [f"s/{p.name}" for p in images],
            "source": "ce24",
            "path": [p.relative_to(image_dir.parent).as_posix() for p in images],
            "label": "",
            "target_class": [classes[k % 3] for k in range(len(images))],
            "group": "",
            "fold": "",
        }
    ).to_csv(split, index=False)
    (tmp_path / "class_mapping.json").write_text(json.dumps(CE24.class_mapping(), indent=2) + "\n")
    out = tmp_path / "predictions" / "pred.csv"
    res = runner.invoke(
        app,
        [
            "predict",
            "--checkpoint",
            str(ckpt),
            "--images",
            str(split),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "0",
        ],
    )
    assert res.exit_code == 0, res.stderr
    report_path = tmp_path / "report.json"
    res = runner.invoke(
        app,
        ["evaluate", "--truth", str(split), "--predictions", str(out), "--out", str(report_path), "--bootstrap", "20"],
    )
    assert res.exit_code == 0, res.output
    report = json.loads(report_path.read_text())
    assert 0.0 <= report["balanced_accuracy"] <= 1.0
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == len(images)


def test_predict_xlsx_never_writes_a_formula(ckpt, tmp_path, monkeypatch) -> None:
    """A file name such as ``=HYPERLINK(1).jpg`` is text in the xlsx, not a formula (issue 25): the
    sheet has no ``<f>`` and evaluate reads every name back."""
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).jpg", "+1.jpg", "plain.jpg"]
    Path("imgs").mkdir()
    for i, name in enumerate(names):
        scene(i, (64, 60)).save(Path("imgs") / name, quality=90)
    classes = [c.lower() for c in CE24.classes]
    truth = {"path": [f"imgs/{n}" for n in names], "target_class": classes[:3], "group": "", "fold": ""}
    pd.DataFrame(truth).to_csv("test.csv", index=False)
    Path("class_mapping.json").write_text(json.dumps(CE24.class_mapping()))
    args = ["predict", "--checkpoint", str(ckpt), "--images", "imgs", "--out", "p/p.xlsx", "--device", "cpu"]
    res = runner.invoke(app, [*args, "--workers", "0"])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile("p/p.xlsx") as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet and "<f " not in sheet, sheet[:500]
    assert sorted(pd.read_excel("p/p.xlsx", dtype=str)["image_path"]) == sorted(names)
    res = runner.invoke(app, ["evaluate", "--truth", "test.csv", "--predictions", "p/p.xlsx", "--out", "r/r.json"])
    assert res.exit_code == 0, res.output
    assert sum(map(sum, json.loads(Path("r/r.json").read_text())["confusion_matrix"]["matrix"])) == len(names)


def _endoctl(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The real CLI in a child process, so that a hang fails the test instead of stalling the run."""
    return subprocess.run(
        [sys.executable, "-m", "endoctl", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not Path("/dev/zero").exists(), reason="needs FIFOs and /dev/zero")
def test_cli_predict_rejects_fifos_and_devices(ckpt, tmp_path) -> None:
    """A FIFO and a link to /dev/zero among predict's images (folder and CSV) are rejected rows,
    "not a regular file", instead of a run that hangs or reads without end (issue 25, case 6)."""
    names = special_files(tmp_path / "imgs")
    (tmp_path / "list.csv").write_text("path\n" + "".join(f"imgs/{n}\n" for n in names))
    for images, prefix in (("imgs", ""), ("list.csv", "imgs/")):
        out = f"p_{Path(images).stem}/p.csv"
        res = _endoctl("predict", "--checkpoint", str(ckpt), "--images", images, "--out", out, "--device", "cpu",
                       "--workers", "0", cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "4 images = predicted 2 + rejected 2" in res.stdout, res.stdout
        assert pd.read_csv(tmp_path / out)["image_path"].tolist() == [f"{prefix}ok_0.jpg", f"{prefix}ok_1.jpg"]
        rejected = read_csv(tmp_path / out.replace("p.csv", "p.rejected.csv"))
        assert rejected.values.tolist() == [[f"{prefix}{n}", "not a regular file"] for n in ("fifo.jpg", "zero.jpg")]


def test_cli_predict_writes_non_utf8_names_escaped(ckpt, tmp_path) -> None:
    """A file name that is not UTF-8 (b'\\xe9t\\xe9.jpg' from a zip made on Windows) is predicted and
    written as ``\\xe9t\\xe9.jpg`` to the CSV, the xlsx and the console, as ingest writes it, instead of a
    UnicodeEncodeError after all the work (issue 25, case 8); the --out folder's name is not UTF-8 either."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    scene(0, (64, 60)).save(os.fsdecode(os.fsencode(imgs) + b"/\xe9t\xe9.jpg"), format="JPEG", quality=90)
    scene(1, (64, 60)).save(imgs / "plain.jpg", quality=90)
    for suffix in ("csv", "xlsx"):
        out = os.fsdecode(b"r\xe9s/p." + suffix.encode())
        res = _endoctl("predict", "--checkpoint", str(ckpt), "--images", "imgs", "--out", out, "--device", "cpu",
                       "--workers", "0", cwd=tmp_path)  # fmt: skip
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert "2 images = predicted 2 + rejected 0" in res.stdout and f"-> r\\xe9s/p.{suffix}" in res.stdout
        path = tmp_path / out
        table = pd.read_csv(path) if suffix == "csv" else pd.read_excel(path)
        assert table["image_path"].tolist() == ["\\xe9t\\xe9.jpg", "plain.jpg"]


def test_cli_predict_with_nothing_readable_is_an_error(ckpt, tmp_path, monkeypatch) -> None:
    """Every image unreadable, or no CSV path existing: exit 2 and one line, no header-only table, the
    rejected rows kept; for the CSV the line names the folder paths were resolved against and
    --data-root, which then finds them (issue 25, case 9)."""
    monkeypatch.chdir(tmp_path)
    Path("broken").mkdir()
    for name in ("a.jpg", "b.png"):
        Path("broken", name).write_bytes(b"not an image")
    Path("imgs").mkdir()
    scene(0, (64, 60)).save("imgs/x.jpg", quality=90)
    Path("list.csv").write_text("path\nimgs/x.jpg\nimgs/gone.jpg\n")
    Path("elsewhere").mkdir()
    base = ["predict", "--checkpoint", str(ckpt), "--device", "cpu", "--workers", "0"]
    for images, root, expected in (
        ("broken", ".", "nothing predicted: all 2 images of broken are unreadable (first a.jpg: not an image"),
        ("list.csv", "elsewhere", f"none of the 2 paths in list.csv exists under {tmp_path / 'elsewhere'} (CSV"),
    ):
        out = Path(f"p_{Path(images).stem}/p.csv")
        res = runner.invoke(app, [*base, "--images", images, "--data-root", root, "--out", str(out)])
        error = " ".join(res.stderr.split())
        assert res.exit_code == 2 and error.startswith("error: ") and expected in error, res.output
        assert "--data-root" in error or images == "broken"
        assert f"see {out.with_name('p.rejected.csv')}" in error and "\n" not in res.stderr.strip()
        assert sorted(p.name for p in out.parent.iterdir()) == ["p.rejected.csv"]  # no header-only table
        assert len(read_csv(out.with_name("p.rejected.csv"))) == 2
    res = runner.invoke(app, [*base, "--images", "list.csv", "--data-root", ".", "--out", "p_list/p.csv"])
    assert res.exit_code == 0 and "2 images = predicted 1 + rejected 1" in res.stdout, res.output


def test_cli_predict_applies_max_pixels(ckpt, tmp_path, monkeypatch) -> None:
    """``--max-pixels`` (params.yaml ``ingest.max_pixels``, passed on by dvc.yaml) decides here as in
    ingest: an image above it is a rejected row, "decompression bomb: ...", and the others are predicted."""
    monkeypatch.chdir(tmp_path)
    Path("imgs").mkdir()
    scene(0, (64, 60)).save("imgs/small.jpg", quality=90)  # 3,840 pixels
    scene(1, (120, 100)).save("imgs/large.png")  # 12,000 pixels
    base = ["predict", "--checkpoint", str(ckpt), "--images", "imgs", "--device", "cpu", "--workers", "0"]
    res = runner.invoke(app, [*base, "--out", "low/p.csv", "--max-pixels", "5000"])
    assert res.exit_code == 0 and "2 images = predicted 1 + rejected 1" in res.stdout, res.output
    assert read_csv("low/p.csv")["image_path"].tolist() == ["small.jpg"]
    rejected = read_csv("low/p.rejected.csv")
    assert rejected["path"].tolist() == ["large.png"]
    assert rejected["reason"].iloc[0].startswith("decompression bomb: 120x100 = 12000 pixels > limit 5000")
    res = runner.invoke(app, [*base, "--out", "default/p.csv"])  # the default: Pillow's own limit
    assert res.exit_code == 0 and "2 images = predicted 2 + rejected 0" in res.stdout, res.output
    res = runner.invoke(app, [*base, "--out", "zero/p.csv", "--max-pixels", "0"])
    assert res.exit_code == 2 and "--max-pixels must be >= 1, got 0" in res.stderr and not Path("zero").exists()


def test_cli_predict_reads_numpy_metadata_and_refuses_unsafe_pickles(reference, mapping_json, tmp_path) -> None:
    """predict loads a checkpoint holding numpy scalars, and refuses one that would run code, in one line
    naming the file (issue 25, case 10: the same reader as `train --pretrained-file`)."""

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"model": reference.state_dict(), "best": np.float64(0.5)}, tmp_path / "w.pth")
    torch.save({"model": reference.state_dict(), "hook": Evil()}, tmp_path / "evil.pth")
    scene(0, (64, 60)).save(tmp_path / "x.jpg", quality=90)
    args = ["--images", str(tmp_path), "--device", "cpu", "--workers", "0"]
    args += ["--model-name", NAME, "--class-mapping", str(mapping_json)]
    res = runner.invoke(
        app, ["predict", "--checkpoint", str(tmp_path / "w.pth"), *args, "--out", str(tmp_path / "p/p.csv")]
    )
    assert res.exit_code == 0 and "1 images = predicted 1 + rejected 0" in res.stdout, res.output
    res = runner.invoke(
        app, ["predict", "--checkpoint", str(tmp_path / "evil.pth"), *args, "--out", str(tmp_path / "q/q.csv")]
    )
    error = res.stderr.strip()
    assert res.exit_code == 2 and error.startswith(f"error: refusing {tmp_path / 'evil.pth'}: an unsafe pickle")
    assert "\n" not in error and not (tmp_path / "pwned").exists()


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE/SIGXFSZ")
def test_cli_predict_xlsx_on_a_full_disk_is_one_line(ckpt, tmp_path) -> None:
    """Writing the workbook fails (a file-size limit stands in for a full disk): one error line naming
    the output, no traceback (no second one from a half-closed ZipFile), and nothing left half-written
    (issue 25, case 12)."""
    import resource

    for i in range(3):
        scene(i, (64, 60)).save(tmp_path / f"f{i}.jpg", quality=90)

    def limited() -> None:  # in the child: files past 3,000 bytes cannot be written (EFBIG, as ENOSPC)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    res = subprocess.run(
        [sys.executable, "-m", "endoctl", "predict", "--checkpoint", str(ckpt), "--images", ".", "--out", "out/p.xlsx",
         "--device", "cpu", "--workers", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=limited,
    )  # fmt: skip
    assert res.returncode != 0 and "Traceback" not in res.stderr and "Exception ignored" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "p.xlsx" in lines[0], res.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

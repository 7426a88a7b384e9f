"""params.yaml, params.paper.yaml, dvc.yaml and the documentation agree with each other and with the code."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml

from endoctl.params import EvaluateParams, PredictParams
from endoctl.train import TrainConfig, _coerce, load_config

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


SHARED = {"ingest.max_pixels"}  # one setting for every stage that opens images


def test_every_stage_has_its_own_params_section() -> None:
    params, stages = load("params.yaml"), load("dvc.yaml")["stages"]
    section = {name: name.partition("-")[0] for name in stages}  # split-nested: a variant of split, same section
    assert list(params) == list(dict.fromkeys(section.values()))  # one section per stage, in pipeline order
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for entry in body.get("params", []):
            if str(entry) in SHARED:
                assert f"${{{entry}}}" in body["cmd"], f"stage {name} depends on {entry} but does not pass it"
                continue
            assert str(entry).split(".")[0] == section[name], f"stage {name} reads params outside its section: {entry}"


TRAIN_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
PATH_OPTIONS = {"split-dir", "out-dir", "metrics-dir", "pretrained-file", "data-root"}


def stage_defaults(stage: str) -> dict[str, object]:
    """What `endoctl train <stage>` runs with when params.yaml gives nothing: TrainConfig's defaults."""
    return dataclasses.asdict(load_config(stage, None, {}))


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_training_sections_hold_only_the_pipelines_own_choices(stage: str) -> None:
    """Each default has one home (TrainConfig): a params.yaml key is a field whose value differs from it."""
    section, defaults = load("params.yaml")[stage], stage_defaults(stage)
    assert set(section) <= set(TRAIN_FIELDS), set(section) - set(TRAIN_FIELDS)
    restated = {k: v for k, v in section.items() if _coerce(k, v, type(TRAIN_FIELDS[k].default)) == defaults[k]}
    assert not restated, f"params.yaml `{stage}` restates TrainConfig defaults: {restated}"


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_training_commands_pass_paths_and_the_stage_reads_its_section(stage: str) -> None:
    body = load("dvc.yaml")["stages"][stage]
    # any change to the section reruns the stage; so does ingest's decompression-bomb limit, the one setting
    # (SHARED) every stage that opens images passes: an image ingest admitted must not fail training
    assert body["params"] == [stage, "ingest.max_pixels"]
    command = body["cmd"]
    assert command.startswith(f"endoctl train {stage} ") and len(command) < 200, command
    assert "--max-pixels ${ingest.max_pixels}" in command
    passed = set(re.findall(r"--([a-z0-9-]+)", command))
    assert passed <= PATH_OPTIONS | {"max-pixels"}, passed - PATH_OPTIONS


@pytest.mark.parametrize(
    ("stage", "params_class", "paths"),
    [("predict", PredictParams, {"checkpoint", "sets"}), ("evaluate", EvaluateParams, {"truth", "predictions", "dir"})],
)
def test_predict_and_evaluate_sections_hold_paths_and_non_defaults(stage: str, params_class: type, paths: set) -> None:
    """Their code defaults (endoctl.params) have one home too; the commands pass each non-default."""
    section = load("params.yaml")[stage]
    defaults = {f.name: f.default for f in dataclasses.fields(params_class)}
    assert set(section) - paths <= set(defaults), set(section) - paths - set(defaults)
    restated = {k: v for k, v in section.items() if k in defaults and v == defaults[k]}
    assert not restated, f"params.yaml `{stage}` restates code defaults: {restated}"
    body = load("dvc.yaml")["stages"][stage]
    command = body.get("do", body)["cmd"]
    for key in set(section) & set(defaults):
        assert f"--{key.replace('_', '-')} ${{{stage}.{key}}}" in command, key


def test_paper_settings_are_known_keys() -> None:
    """params.paper.yaml's training keys are TrainConfig fields of the right type; other keys exist in params.yaml."""
    base, paper = load("params.yaml"), load("params.paper.yaml")
    assert paper
    for stage, section in paper.items():
        for key, value in section.items():
            if stage in ("pretrain", "finetune"):
                assert key in TRAIN_FIELDS, f"{stage}.{key}"
                _coerce(key, value, type(TRAIN_FIELDS[key].default))  # raises on a wrong type
            else:
                assert key in base[stage], f"{stage}.{key}"
    assert paper["pretrain"]["model_name"] == paper["finetune"]["model_name"] == "eva02_base_patch14_224.mim_in22k"


def test_documented_experiment_command_equals_params_paper() -> None:
    page = (ROOT / "docs" / "training.md").read_text()
    match = re.search(r"^dvc exp run -n paper \\\n((?:    .*\n)+)", page, re.M)
    assert match, "docs/training.md lost the `dvc exp run -n paper` block"
    words = shlex.split(match.group(1).replace("\\\n", " "))
    assert words[::2] == ["-S"] * (len(words) // 2)
    # `++key=value` sets a key whether params.yaml lists it or not (`key=value` fails on a missing key)
    assert all(w.startswith("++") for w in words[1::2]), words[1::2]
    given = dict(w.removeprefix("++").split("=", 1) for w in words[1::2])
    assert given == {k: str(v) for k, v in leaves(load("params.paper.yaml")).items()}


@pytest.mark.slow
def test_paper_model_and_optimizer_build_offline() -> None:
    """EVA-02-B at 224 with drop path and layer-wise lr decay, as the paper settings ask (random init)."""
    from timm.optim import create_optimizer_v2

    from endoctl.train import _create_for_training

    paper = load("params.paper.yaml")["finetune"]
    keys = ("model_name", "img_size", "drop_path_rate")
    config = TrainConfig(**{k: paper[k] for k in keys}, pretrained_file="")
    model = _create_for_training(config, num_classes=10, weights=False)
    assert sum(p.numel() for p in model.parameters()) > 85_000_000
    assert model.patch_embed.img_size == (224, 224) and model.head.out_features == 10
    optimizer = create_optimizer_v2(
        model, opt="adamw", lr=paper["lr"], weight_decay=0.05, layer_decay=paper["layer_decay"]
    )
    scales = sorted({round(g["lr_scale"], 6) for g in optimizer.param_groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(paper["layer_decay"] ** 13, rel=1e-4)


def test_report_section_is_exactly_the_reports_options_with_their_defaults() -> None:
    """params.yaml `report`, `endoctl report`'s options (and defaults) and the dvc.yaml command agree."""
    import inspect

    from endoctl.cli.report import report

    defaults = {
        name: p.default.default if hasattr(p.default, "default") else p.default
        for name, p in inspect.signature(report).parameters.items()
    }
    section = load("params.yaml")["report"]
    assert set(section) <= set(defaults), set(section) - set(defaults)
    tuned = {k: v for k, v in section.items() if k != "workers"}  # workers: the machine's, not a default
    assert {k: defaults[k] for k in tuned} == tuned  # the demo runs the documented defaults
    command = load("dvc.yaml")["stages"]["report"]["cmd"]
    passed = dict(re.findall(r"--([a-z0-9-]+) \$\{report\.([a-z_]+)\}", command))
    assert passed == {k.replace("_", "-"): k for k in section}

"""The whole pipeline through real DVC in a temporary git repo, as a newcomer runs it.

synth -> ingest -> dedupe -> split (-> report) -> pretrain -> finetune -> predict -> evaluate, then what users do
next: repro again (nothing runs), change a parameter (only what depends on it reruns), compare with
`dvc metrics diff`, run an experiment with `dvc exp run -S`, render `dvc plots show`, and rebuild
the splits without DVC (`endoctl build-splits`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from endoctl.io import read_csv
from endoctl.train import load_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def git_commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=endoctl", "-c", "user.email=endoctl@localhost", "commit", "-qm", message], repo)


def set_param(repo: Path, section: str, key: str, value: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params[section][key] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "stages", repo / "stages", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copy(ROOT / "params.yaml", repo)  # the demo exactly as `make repro` runs it
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    git_commit(repo, "init")
    run(["dvc", "repro"], repo)
    git_commit(repo, "demo run")  # a baseline for `dvc metrics diff`
    return repo


def test_repro_ingests_every_demo_source(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert sorted(p.name for p in (repo / "manifests" / "ingest").iterdir()) == sorted(
        [".gitignore", *params["ingest"]["sources"]]
    )
    for name in params["ingest"]["sources"]:
        manifest = read_csv(repo / "manifests" / "ingest" / name / "manifest.csv")
        rejected = read_csv(repo / "manifests" / "ingest" / name / "rejected.csv")
        assert len(manifest) > 0 and (manifest["source"] == name).all()
        assert manifest["path"].map(lambda p: (repo / p).is_file()).all()
        assert len(rejected) >= 1, f"the demo plants corrupt files in every source ({name})"
    kc = read_csv(repo / "manifests" / "ingest" / "kvasir-capsule" / "manifest.csv")
    assert (kc["patient_id"].str.len() == 16).all()
    assert kc["patient_id"].nunique() == params["synth"]["videos"]
    ce24 = read_csv(repo / "manifests" / "ingest" / "ce24" / "manifest.csv")
    assert set(ce24["official_split"]) == {"training", "validation", "test"}
    # CE24 copies are re-encodings: same file names as in the sources, different bytes.
    names = kc["path"].str.rsplit("/", n=1).str[-1]
    copies = ce24[ce24["path"].str.rsplit("/", n=1).str[-1].isin(set(names))]
    assert len(copies) > 0 and not set(copies["sha256"]) & set(kc["sha256"])
    assert (repo / "manifests" / "ingest" / ".gitignore").is_file()


def test_repro_dedupes_and_splits_without_leaks(repo: Path) -> None:
    import json

    clusters = read_csv(repo / "manifests" / "duplicates" / "duplicates.csv")
    assert (clusters.groupby("cluster")["source"].nunique() > 1).any()  # CE24 copies found in their sources
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert (
        list(params["split"]["targets"]) == ["ee24-ce24"]
        and params["split"]["nested"]["ce24"]["nest_in"] == "ee24-ce24"
    )
    for target in ("ee24-ce24", "ce24"):
        folder = repo / "manifests" / target
        report = json.loads((folder / "split_report.json").read_text())
        assert all(v == 0 for k, v in report["straddling"].items() if k != "examples"), report["straddling"]
        test = read_csv(folder / "test.csv")
        ce24 = read_csv(repo / "manifests" / "ingest" / "ce24" / "manifest.csv")
        pinned = set(ce24.loc[ce24["official_split"] == "test", "image_id"])
        assert pinned <= set(test["image_id"]) | set(read_csv(folder / "excluded.csv")["image_id"])
        assert json.loads((folder / "class_mapping.json").read_text())["angioectasia"] == 0
    # fine-tuning nests in pre-training: per the report and from the files, no image of ce24's fold k or test
    # is in a pre-training fold other than k (pre-training on all folds but k trains on those)
    nesting = json.loads((repo / "manifests" / "ce24" / "split_report.json").read_text())["nesting"]
    folds = params["split"]["folds"]
    assert nesting["images_seen_in_training_upstream"] == 0 and set(nesting["folds"]) == {str(k) for k in range(folds)}
    assert all(
        f["seen_in_training_upstream"] == f["group_seen_in_training_upstream"] == 0 for f in nesting["folds"].values()
    )
    assert (
        "images of this split's validation/test seen in training upstream: 0"
        in (repo / "manifests" / "ce24" / "split_report.md").read_text()
    )
    up = {name: read_csv(repo / "manifests" / "ee24-ce24" / f"{name}.csv") for name in ("train_val", "test")}
    down = {name: read_csv(repo / "manifests" / "ce24" / f"{name}.csv") for name in ("train_val", "test")}
    where = pd.concat([up["train_val"], up["test"].assign(fold="test")]).set_index("image_id")["fold"]
    group_where = pd.concat([up["train_val"], up["test"].assign(fold="test")]).groupby("group")["fold"].agg(set)
    for k in map(str, range(folds)):
        held = pd.concat([down["train_val"][down["train_val"]["fold"] == k], down["test"]])
        assert held["image_id"].map(where).isin([k, "test"]).all(), k
        assert held["group"].isin(group_where.index).all()  # same manifests, same groups: every one nested
        assert held["group"].map(group_where).map(lambda s, k=k: s <= {k, "test"}).all(), k
    # the demo's fine-tuning validation fold is big enough to mean something: every class spread over
    # two or more groups of train_val is in it (today all ten)
    tv = down["train_val"]
    val = tv[tv["fold"] == str(load_config("finetune", repo / "params.yaml", {}).val_fold)]
    spread = tv.groupby("target_class")["group"].nunique()
    assert len(val) >= 150 and val["group"].nunique() >= 12, (len(val), val["group"].nunique())
    assert set(spread[spread >= 2].index) <= set(val["target_class"]), spread


def test_repro_writes_the_report_with_the_planted_copies_sequences_and_conflict(repo: Path) -> None:
    report = repo / "manifests" / "report"
    html = (report / "index.html").read_text()
    for heading in ("Overview", "Duplicate clusters", "Frame sequences", "Label conflicts", "Leaks", "Image quality"):
        assert f"<h2>{heading}</h2>" in html
    clusters = read_csv(report / "clusters.csv")
    assert clusters["cross_source"].iloc[0] == "True"  # CE24's copies of Kvasir-Capsule and KID images
    assert read_csv(report / "sequences.csv")["patient_id"].nunique() >= 6  # the demo's videos as film strips
    conflict = read_csv(report / "conflicts.csv").iloc[0]  # the CE24 image filed under two classes
    assert conflict["kind"] == "exact" and conflict["label_a"] != conflict["label_b"]
    assert len(list((report / "thumbs").glob("*.jpg"))) == len(set(re.findall(r'src="thumbs/([^"]+)"', html)))


def test_repro_trains_predicts_and_evaluates_above_chance(repo: Path, tmp_path: Path) -> None:
    import json

    for stage in ("pretrain", "finetune"):
        assert (repo / "models" / stage / "best.pt").is_file() and (repo / "models" / stage / "last.pt").is_file()
        logged = json.loads((repo / "metrics" / stage / "metrics.json").read_text())
        assert {"train", "val", "best"} <= set(logged)
        assert (repo / "metrics" / stage / "plots" / "metrics" / "val" / "balanced_accuracy.tsv").is_file()
    test = json.loads((repo / "metrics" / "test" / "metrics.json").read_text())
    report = json.loads((repo / "metrics" / "test" / "report.json").read_text())
    assert test["balanced_accuracy"] == report["balanced_accuracy"]
    assert test["n_images"] == len(read_csv(repo / "manifests" / "ce24" / "test.csv"))
    # the held-out test is leak-free by construction: evaluate --train (the pretrain and finetune split
    # files) finds no test image whose group is trained on, and scores all of them again
    free = report["leak_free"]
    assert free["n_images"] == free["of_images"] == test["n_images"] == test["leak_free"]["n_images"]
    assert free["group_trained"] == free["frame_adjacent_only"] == 0
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert free["train"] == [f"{params[stage]['split_dir']}/train_val.csv" for stage in ("pretrain", "finetune")]
    assert test["leak_free"]["balanced_accuracy"] == test["balanced_accuracy"]
    listed = read_csv(repo / "metrics" / "test" / "leak_free_images.csv")
    assert sorted(listed["image_id"]) == sorted(read_csv(repo / "manifests" / "ce24" / "test.csv")["image_id"])
    present = [c for c, v in report["per_class"].items() if v["support"] > 0]
    chance = 1 / len(present)
    assert test["balanced_accuracy"] > 2 * chance, (test["balanced_accuracy"], present)
    assert test["auc_macro"] > 0.75
    for name in ("roc.png", "confusion_matrix.png", "roc.csv", "roc_micro.csv", "confusion.csv"):
        assert (repo / "metrics" / "test" / name).stat().st_size > 0
    # the submission file passes evaluate's sanity check against CE24's own test truth
    submission = repo / "metrics" / "predictions" / "ce24-submission" / "submission.xlsx"
    out = run(
        [
            "endoctl",
            "evaluate",
            "--truth",
            "raw/demo/ce24/testing/test_data.xlsx",
            "--predictions",
            str(submission),
            "--report",
            "ce24",
            "--out",
            str(tmp_path / "ce24.json"),
        ],
        repo,
    )
    assert "evaluate (ce24 report" in out
    assert json.loads((tmp_path / "ce24.json").read_text())["mean_auc"] > 0.5


def test_repro_reads_the_demo_study_video_into_a_timeline(repo: Path) -> None:
    """The fine-tuned model on the study synth writes: every frame predicted, planted findings found as
    segments where they were planted (the demo model is small: at least two of the three)."""
    import json

    from endoctl.synth import CE24_CLASS_OF, NORMAL, _study_frames

    out = repo / "metrics" / "study"
    summary = json.loads((out / "summary.json").read_text())
    _, frames = _study_frames(yaml.safe_load((repo / "params.yaml").read_text())["synth"]["seed"])
    assert summary["frames"] == summary["predicted"] == len(frames) and summary["complete"] and "run" not in summary
    planted: dict[str, list[int]] = {}
    for i, (finding, _) in enumerate(frames):
        if finding != NORMAL:
            planted.setdefault(CE24_CLASS_OF[finding], []).append(i)
    segments = read_csv(out / "segments.csv")
    found = {
        name
        for name, where in planted.items()
        for s in segments[segments["class"] == name].itertuples()
        if int(s.first_frame) <= max(where) and int(s.last_frame) >= min(where)
    }
    assert len(found) >= 2, (planted, segments)
    assert len(read_csv(out / "frames.csv")) == len(frames)
    assert (out / "timeline.html").read_text().count('<path class="line"') == len(summary["classes"])


def test_dvc_plots_show_renders_training_curves_roc_and_confusion(repo: Path, tmp_path: Path) -> None:
    run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo)
    html = (tmp_path / "plots" / "index.html").read_text()
    for title in (
        "ROC (held-out test, micro average)",
        "Confusion matrix (held-out test)",
        "metrics/finetune/plots/metrics/val/balanced_accuracy",
        "metrics/pretrain/plots/metrics/train/loss",
    ):
        assert title in html, title
    assert {p.name.rsplit("_", 1)[-1] for p in (tmp_path / "plots" / "static").iterdir()} >= {"roc.png", "matrix.png"}


def test_build_splits_standalone_equals_the_dvc_stages(repo: Path, tmp_path: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    sources = [f"--source={name}={spec['format']}:{spec['path']}" for name, spec in params["ingest"]["sources"].items()]
    split = params["split"]
    nested = {
        target: ["--nest-in", str(tmp_path / spec["nest_in"] / spec["nest_in"])]
        for target, spec in split["nested"].items()
    }
    for target, spec in {**split["targets"], **split["nested"]}.items():  # upstream targets first
        out = tmp_path / target
        run(
            [
                "endoctl",
                "build-splits",
                *sources,
                "--target",
                target,
                "--out",
                str(out),
                *spec["args"].split(),
                *nested.get(target, []),
                "--test-fraction",
                str(split["test_fraction"]),
                "--folds",
                str(split["folds"]),
                "--seed",
                str(split["seed"]),
                "--max-group-share",
                str(split["max_group_share"]),
                *(
                    f"--{key.replace('_', '-')}={params['dedupe'][key]}"
                    for key in ("max_distance", "dhash_distance", "sequence_gap", "sequence_distance")
                ),
            ],
            repo,
        )
        for name in ("train_val.csv", "test.csv", "excluded.csv", "class_mapping.json"):
            assert (out / target / name).read_bytes() == (repo / "manifests" / target / name).read_bytes(), name
    for name in ("duplicates.csv", "duplicate_pairs.csv"):
        assert (tmp_path / "ce24" / "duplicates" / name).read_bytes() == (
            repo / "manifests" / "duplicates" / name
        ).read_bytes(), name


def test_second_repro_does_nothing_and_param_change_reruns_only_ingest(repo: Path) -> None:
    assert "up to date" in run(["dvc", "status"], repo)
    out = run(["dvc", "repro"], repo)
    assert "Running stage" not in out
    before = (repo / "manifests" / "ingest" / "kid" / "manifest.csv").read_bytes()
    set_param(repo, "ingest", "workers", 1)
    out = run(["dvc", "repro"], repo)
    assert "Running stage 'ingest@kid'" in out and "Running stage 'synth'" not in out
    assert "Running stage 'dedupe'" not in out  # ingest outputs unchanged: nothing downstream reruns
    assert (
        repo / "manifests" / "ingest" / "kid" / "manifest.csv"
    ).read_bytes() == before  # worker count never changes output


# The training change the last two tests make: fine-tuning only (pre-training untouched), at 4x the demo's
# learning rate (a different first epoch: the demo's best checkpoint is its first) for a quarter of its epochs.
RETRAIN = {"lr": 4, "epochs": 0.25}  # finetune parameter -> factor


@pytest.fixture(scope="module")
def retrained(repo: Path) -> tuple[str, dict]:
    """Fine-tuning rerun with RETRAIN's parameters, then committed: (the repro's output,
    `dvc metrics diff --json` of the workspace against HEAD before that commit)."""
    import json

    params = yaml.safe_load((repo / "params.yaml").read_text())
    for key, factor in RETRAIN.items():
        value = params["finetune"][key] * factor
        set_param(repo, "finetune", key, int(value) if isinstance(params["finetune"][key], int) else value)
    out = run(["dvc", "repro"], repo)
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo))
    git_commit(repo, "finetune retrained: " + ", ".join(f"{k} x{f}" for k, f in RETRAIN.items()))
    return out, diff


def test_training_param_reruns_only_training_onwards_and_metrics_diff_shows_it(
    retrained: tuple[str, dict],
) -> None:
    out, diff = retrained
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"finetune", "predict@test", "predict@ce24-submission", "study", "evaluate"}, ran
    changed = diff["metrics/test/metrics.json"]
    assert changed and all(set(v) == {"old", "new", "diff"} for v in changed.values())
    assert any(v["diff"] for v in changed.values())
    assert "metrics/finetune/metrics.json" in diff


def test_exp_run_with_a_set_param_is_a_comparable_experiment(repo: Path, retrained: tuple[str, dict]) -> None:
    """An experiment from HEAD (the retrained fixture's commit: fine-tuning for a quarter of the demo's epochs,
    so the experiment's retraining is short too)."""
    import json

    run(["dvc", "exp", "run", "-S", "finetune.lr=0.0001", "-n", "low-lr"], repo)
    rows = json.loads(run(["dvc", "exp", "show", "--json"], repo))
    exps = [exp for row in rows for exp in (row.get("experiments") or [])]
    named = [e for e in exps if e.get("name") == "low-lr"]
    assert named, [e.get("name") for e in exps]
    data = named[0]["revs"][0]["data"]
    assert data["params"]["params.yaml"]["data"]["finetune"]["lr"] == 0.0001
    test = data["metrics"]["metrics/test/metrics.json"]["data"]
    assert 0 <= test["balanced_accuracy"] <= 1
    diff = run(["dvc", "exp", "diff", "HEAD", "low-lr"], repo)
    assert "finetune.lr" in diff and "balanced_accuracy" in diff

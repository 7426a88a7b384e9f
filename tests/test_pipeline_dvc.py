"""The pipeline through real DVC in a temporary git repo: synth -> ingest -> dedupe -> split."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from endoctl.io import read_csv

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

SMALL_SYNTH = {"seed": 3, "videos": 2, "frames_per_video": 8, "kid_patients": 2,
               "kid_images_per_patient": 4, "ce24_copy_fraction": 0.6, "ce24_test_videos": 1}


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
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"] = SMALL_SYNTH
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=endoctl", "-c", "user.email=endoctl@localhost", "commit", "-qm", "init"], repo)
    run(["dvc", "repro"], repo)
    return repo


def test_repro_ingests_every_demo_source(repo: Path) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for name in params["ingest"]["sources"]:
        manifest = read_csv(repo / "manifests" / "ingest" / f"{name}.csv")
        rejected = read_csv(repo / "manifests" / "ingest" / f"{name}.rejected.csv")
        assert len(manifest) > 0 and (manifest["source"] == name).all()
        assert manifest["path"].map(lambda p: (repo / p).is_file()).all()
        assert len(rejected) >= 1, f"the demo plants corrupt files in every source ({name})"
    kc = read_csv(repo / "manifests" / "ingest" / "kvasir-capsule.csv")
    assert (kc["patient_id"].str.len() == 16).all()
    assert kc["patient_id"].nunique() == SMALL_SYNTH["videos"]
    ce24 = read_csv(repo / "manifests" / "ingest" / "ce24.csv")
    assert set(ce24["official_split"]) == {"training", "validation", "test"}
    # CE24 copies are re-encodings: same file names as in the sources, different bytes.
    names = kc["path"].str.rsplit("/", n=1).str[-1]
    copies = ce24[ce24["path"].str.rsplit("/", n=1).str[-1].isin(set(names))]
    assert len(copies) > 0 and not set(copies["sha256"]) & set(kc["sha256"])
    assert (repo / "manifests" / "ingest" / ".gitignore").is_file()


def test_repro_dedupes_and_splits_without_leaks(repo: Path) -> None:
    import json

    clusters = read_csv(repo / "manifests" / "duplicates.csv")
    assert (clusters.groupby("cluster")["source"].nunique() > 1).any()  # CE24 copies found in their sources
    for target in ("ee24-ce24", "ce24"):
        folder = repo / "manifests" / target
        report = json.loads((folder / "split_report.json").read_text())
        assert all(v == 0 for k, v in report["straddling"].items() if k != "examples"), report["straddling"]
        test = read_csv(folder / "test.csv")
        ce24 = read_csv(repo / "manifests" / "ingest" / "ce24.csv")
        pinned = set(ce24.loc[ce24["official_split"] == "test", "image_id"])
        assert pinned <= set(test["image_id"]) | set(read_csv(folder / "excluded.csv")["image_id"])
        assert json.loads((folder / "class_mapping.json").read_text())["angioectasia"] == 0


def test_second_repro_does_nothing_and_param_change_reruns_only_ingest(repo: Path) -> None:
    assert "up to date" in run(["dvc", "status"], repo)
    out = run(["dvc", "repro"], repo)
    assert "Running stage" not in out
    params = yaml.safe_load((repo / "params.yaml").read_text())
    before = (repo / "manifests" / "ingest" / "kid.csv").read_bytes()
    params["ingest"]["workers"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo)
    assert "Running stage 'ingest@kid'" in out and "Running stage 'synth'" not in out
    assert "Running stage 'dedupe'" not in out  # ingest outputs unchanged: nothing downstream reruns
    assert (repo / "manifests" / "ingest" / "kid.csv").read_bytes() == before  # worker count never changes output

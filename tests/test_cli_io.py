"""The command line surface and atomic output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.io import atomic_open, read_csv, write_csv

runner = CliRunner()


def test_every_command_has_useful_help() -> None:
    top = runner.invoke(app, ["--help"])
    assert top.exit_code == 0
    commands = ["sources", "synth", "ingest", "dedupe", "split", "build-splits", "audit", "cache", "train",
                "predict", "evaluate"]
    for command in [*commands, "train pretrain", "train finetune"]:
        assert command.split()[-1] in top.output or command.startswith("train ")
        res = runner.invoke(app, [*command.split(), "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, command
    ingest_help = runner.invoke(app, ["ingest", "--help"]).output
    for option in ("--format", "--source", "--out", "--workers", "--labels", "--strict", "kvasir-capsule"):
        assert option in ingest_help


def test_module_entry_point_and_sources_listing() -> None:
    out = subprocess.run([sys.executable, "-m", "endoctl", "sources"], capture_output=True, text=True, check=True)
    for name in ("ce24", "kvasir-capsule", "kid", "see-ai", "hyperkvasir", "kvasir-v2", "gastrovision", "folder", "csv"):
        assert f"{name}:" in out.stdout
    assert "patient:" in out.stdout and "official split:" in out.stdout


@pytest.mark.parametrize("sync", [True, False])
def test_interrupted_write_leaves_nothing(tmp_path: Path, sync: bool) -> None:
    """With or without fsync (the image cache skips it), a write is all or nothing."""
    target = tmp_path / "out" / "m.csv"
    write_csv(target, pd.DataFrame({"a": ["1"]}))
    with pytest.raises(RuntimeError):
        with atomic_open(target, sync=sync) as fh:
            fh.write("half-written")
            raise RuntimeError("killed")
    assert read_csv(target)["a"].tolist() == ["1"]  # the old complete file survives
    assert [p.name for p in target.parent.iterdir()] == ["m.csv"]  # and no temp file is left


def test_csv_is_deterministic_text(tmp_path: Path) -> None:
    df = pd.DataFrame({"image_id": ["b", "a"], "phash": ["00ff", "0a0b"]})
    write_csv(tmp_path / "x.csv", df)
    assert (tmp_path / "x.csv").read_bytes() == b"image_id,phash\nb,00ff\na,0a0b\n"
    assert read_csv(tmp_path / "x.csv")["phash"].tolist() == ["00ff", "0a0b"]  # hex stays text

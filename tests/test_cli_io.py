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
    commands = [
        "sources",
        "synth",
        "ingest",
        "dedupe",
        "split",
        "build-splits",
        "audit",
        "report",
        "cache",
        "train",
        "predict",
        "evaluate",
    ]
    for command in [*commands, "train pretrain", "train finetune"]:
        assert command.split()[-1] in top.output or command.startswith("train ")
        res = runner.invoke(app, [*command.split(), "--help"])
        assert res.exit_code == 0 and "Usage" in res.output, command
    ingest_help = runner.invoke(app, ["ingest", "--help"]).output
    for option in ("--format", "--source", "--out", "--workers", "--labels", "--strict", "kvasir-capsule", "auto"):
        assert option in ingest_help


HEAVY = ("pandas", "numpy", "torch", "timm", "PIL", "sklearn", "numba")


@pytest.mark.parametrize("argv", [None, ["--help"], ["ingest", "--help"], ["evaluate", "--help"]])
def test_import_and_help_load_no_heavy_library(argv: list[str] | None) -> None:
    """`endoctl --help` answers fast because nothing heavy is imported for it (README: under a second)."""
    run = "" if argv is None else f"sys.argv = ['endoctl', *{argv!r}]\ntry:\n    app()\nexcept SystemExit:\n    pass\n"
    loaded = f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"
    code = f"import sys\nfrom endoctl.cli import app\n{run}{loaded}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]", out[-300:]


def test_a_command_loads_only_its_own_module() -> None:
    """The endoctl group imports a command's module when it runs, so a DVC stage's code is that module's
    (tests/test_dvc_deps.py) and editing one command reruns only its stages."""
    code = (
        "import sys\nfrom endoctl.cli import app\nsys.argv = ['endoctl', 'cache', '--help']\ntry:\n    app()\n"
        "except SystemExit:\n    pass\nprint(sorted(m for m in sys.modules if m.startswith('endoctl.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "['endoctl.cli.cache', 'endoctl.cli.common']", out[-300:]


def test_format_names_are_the_registered_adapters() -> None:
    from endoctl.sources import FORMATS, REGISTRY

    assert sorted(FORMATS) == sorted(REGISTRY)
    assert all(REGISTRY[name].__module__ == f"endoctl.sources.{module}" for name, module in FORMATS.items())


def test_module_entry_point_and_sources_listing() -> None:
    out = subprocess.run([sys.executable, "-m", "endoctl", "sources"], capture_output=True, text=True, check=True)
    for name in (
        "ce24",
        "kvasir-capsule",
        "kid",
        "see-ai",
        "hyperkvasir",
        "kvasir-v2",
        "gastrovision",
        "folder",
        "csv",
        "ers",
        "limuc",
        "medfmc-endo",
        "crohnipi",
    ):
        assert f"\n{name}: " in out.stdout
    assert "patient:" in out.stdout and "official split:" in out.stdout
    # how each rule is known, the label vocabulary, and what --format auto looks for
    assert "[V] verified" in out.stdout and "label [V]:" in out.stdout and "patient [?]:" in out.stdout
    assert "labels (123): b01-b02, c01-c34, g01-g70, h01-h07, q01-q10" in out.stdout
    assert "labels (7): N, E, O, AU, U3-10, U>10, S" in out.stdout
    assert "--format auto tries, in this order: ce24, " in out.stdout


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

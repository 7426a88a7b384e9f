"""`endoctl build-splits` gives the same files as the stage commands run one by one."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.synth import SynthConfig, synth

runner = CliRunner()
SOURCES = [("kvasir-capsule", "kvasir_capsule"), ("kid", "kid"), ("ce24", "ce24")]
INGEST_FILES = ("manifest.csv", "rejected.csv", "source.json")


def invoke(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_build_splits_equals_the_stages(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    synth(
        Path("raw"),
        SynthConfig(
            seed=5, videos=3, frames_per_video=10, kid_patients=3, kid_images_per_patient=5, ce24_test_videos=1
        ),
    )
    specs = [f"--source={name}={name}:raw/{folder}" for name, folder in SOURCES]
    out = invoke("build-splits", *specs, "--target", "ee24-ce24", "--out", "one", "--pin", "test=ce24:test")
    assert "straddling groups 0" in out
    manifests = []
    for name, folder in SOURCES:
        manifests.append(f"staged/ingest/{name}")
        invoke("ingest", f"raw/{folder}", "-f", name, "--source", name, "--out", manifests[-1])
    invoke("dedupe", *manifests, "--out", "staged/duplicates")
    invoke(
        "split",
        *[f"--manifest={m}" for m in manifests],
        "--duplicates",
        "staged/duplicates",
        "--target",
        "ee24-ce24",
        "--out",
        "staged/ee24-ce24",
        "--pin",
        "test=ce24:test",
    )
    data_files = (
        [f"ingest/{n}/{f}" for n, _ in SOURCES for f in INGEST_FILES]
        + [f"duplicates/{f}" for f in ("duplicates.csv", "duplicate_pairs.csv", "duplicates_report.json")]
        + [
            *(f"ee24-ce24/{f}" for f in ("train_val.csv", "test.csv", "class_mapping.json", "excluded.csv")),
        ]
    )
    for rel in data_files:
        assert (Path("one") / rel).read_bytes() == (Path("staged") / rel).read_bytes(), rel
    for folder in ("one", "staged"):  # nothing else: no temporaries, no stray files
        assert sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file()) == sorted(
            [*data_files, "ee24-ce24/split_report.json", "ee24-ce24/split_report.md"]
        )
    # the DVC stages pass the manifests folder (and dedupe's output folder): same files as naming each
    invoke("dedupe", "staged/ingest", "--out", "folder/duplicates")
    invoke(
        "split",
        "--manifest",
        "staged/ingest",
        "--duplicates",
        "folder/duplicates/duplicates.csv",
        "--target",
        "ee24-ce24",
        "--out",
        "folder/ee24-ce24",
        "--pin",
        "test=ce24:test",
    )
    for rel in data_files[len(INGEST_FILES) * len(SOURCES) :]:
        assert (Path("folder") / rel).read_bytes() == (Path("staged") / rel).read_bytes(), rel
    Path("nothing").mkdir()
    res = runner.invoke(app, ["dedupe", "nothing", "--out", "x"])
    assert res.exit_code == 2 and "no manifests in folder nothing" in res.output


def test_build_splits_rejects_bad_source_spec(tmp_path: Path) -> None:
    res = runner.invoke(app, ["build-splits", "--source", "kid", "--target", "ce24", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "NAME=FORMAT:PATH" in res.output

"""Ingest records the format that read a source (source.json), so split needs no --format-of, and
split/report set each source's found / accepted / rejected count beside the paper's Table 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from source_trees import ers_tree, medfmc_tree
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.ingest import MANIFEST_COLUMNS
from endoctl.io import SOURCE_FILE, read_csv, write_csv
from endoctl.published import PAPER_TOTAL, PUBLISHED, counts, published

runner = CliRunner()


def invoke(*args: str, ok: bool = True) -> str:
    res = runner.invoke(app, list(map(str, args)))
    assert (res.exit_code == 0) == ok, res.output
    return res.output


@pytest.fixture
def ingested(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """MedFMC ingested as 'medfmc' and ERS as 'gdansk-ers': names that are not their formats."""
    monkeypatch.chdir(tmp_path)
    medfmc_tree(Path("raw/medfmc"))
    ers_tree(Path("raw/ers"))
    out = {"medfmc": Path("ingest/medfmc"), "gdansk-ers": Path("ingest/gdansk-ers")}
    invoke("ingest", "raw/medfmc", "--source", "medfmc", "--format", "medfmc-endo", "--out", out["medfmc"])
    invoke("ingest", "raw/ers", "--source", "gdansk-ers", "--format", "ers", "--out", out["gdansk-ers"])
    return out


def split(*args: str, ok: bool = True) -> str:
    return invoke(
        "split", *args, "--target", "ee24-ce24", "--out", "split", "--folds", "2", "--test-fraction", "0.3", ok=ok
    )


def test_published_counts_add_up_to_table_1() -> None:
    assert sum(n for parts in PUBLISHED.values() for _, n in parts) == PAPER_TOTAL == 226_867
    assert published("ers") == ("ERS", 121_399)
    assert published("kid") == ("KID 2 + KID 1", 2_448)
    assert published("ce24") is None and published("csv") is None


def test_split_takes_the_format_from_the_ingest_folder(ingested: dict[str, Path]) -> None:
    medfmc = ingested["medfmc"]
    assert json.loads((medfmc / SOURCE_FILE).read_text()) == {"format": "medfmc-endo", "source": "medfmc"}
    assert list(read_csv(medfmc / "manifest.csv").columns) == MANIFEST_COLUMNS  # the manifest is as before
    out = split("--manifest", "ingest")
    report = json.loads(Path("split/split_report.json").read_text())
    assert report["params"]["formats"] == {"gdansk-ers": "ers", "medfmc": "medfmc-endo"}
    assert {"gdansk-ers", "medfmc"} <= set(report["sources"]), out
    # an ingest folder from before source.json: the name stands for the format, --format-of names it
    (medfmc / SOURCE_FILE).unlink()
    assert "not in the taxonomy" in split("--manifest", "ingest", ok=False)
    split("--manifest", "ingest", "--format-of", "medfmc=medfmc-endo")
    # --format-of overrides what ingest recorded
    (ingested["gdansk-ers"] / SOURCE_FILE).write_text('{"format": "kid", "source": "gdansk-ers"}\n')
    split("--manifest", "ingest", "--format-of", "medfmc=medfmc-endo", "--format-of", "gdansk-ers=ers")
    assert json.loads(Path("split/split_report.json").read_text())["params"]["formats"] == {
        "gdansk-ers": "ers",
        "medfmc": "medfmc-endo",
    }


def test_split_report_sets_the_counts_beside_table_1(ingested: dict[str, Path]) -> None:
    medfmc, ers = medfmc_tree(Path("tmp_medfmc")), ers_tree(Path("tmp_ers"))  # what the trees hold
    # a flat manifest CSV (no rejected list) of a source the paper does not count
    rows = read_csv(ingested["medfmc"] / "manifest.csv").head(1)
    write_csv(Path("flat.csv"), rows.assign(source="ce24", image_id="ce24/x.png", label="Polyp"))
    split("--manifest", "ingest", "--manifest", "flat.csv")
    c = json.loads(Path("split/split_report.json").read_text())["source_counts"]
    by_format = {r["format"]: r for r in c["datasets"]}
    assert [r["format"] for r in c["datasets"]] == ["ers", "medfmc-endo", "ce24"]  # Table 1's order, then others
    assert by_format["medfmc-endo"] == {
        "format": "medfmc-endo",
        "published_as": "MedFMC",
        "sources": ["medfmc"],
        "found": medfmc.found,
        "accepted": len(medfmc.records),
        "rejected": len(medfmc.rejected),
        "published": 3_865,
        "difference": medfmc.found - 3_865,
        "check": "fewer",
    }
    assert by_format["ers"]["found"] == ers.found and by_format["ers"]["published"] == 121_399
    assert by_format["ce24"]["published"] is None and by_format["ce24"]["found"] is None
    assert c["total"]["published"] == 121_399 + 3_865
    assert c["total"]["difference"] == ers.found + medfmc.found - 121_399 - 3_865
    md = Path("split/split_report.md").read_text()
    assert (
        f"| medfmc-endo | MedFMC | medfmc | {medfmc.found} | {len(medfmc.records)} | {len(medfmc.rejected)} | 3,865 | "
        f"{medfmc.found - 3_865:+,} | ⚠ fewer than published |" in md
    )
    assert "| ce24 | - | ce24 | - | 1 | - | - | - | - |" in md


def test_counts_flag_a_match_and_a_surplus() -> None:
    c = counts([("a", "crohnipi", 3_490, 8), ("b", "gastrovision", 8_001, 0), ("c", "kid", 2_448, 0)])
    assert [r["format"] for r in c["datasets"]] == ["kid", "crohnipi", "gastrovision"]  # Table 1's order
    assert [r["check"] for r in c["datasets"]] == ["match", "match", "more"]  # kid's count is KID 2 + KID 1
    assert c["total"] == {
        "found": 3_498 + 8_001 + 2_448,
        "accepted": 3_490 + 8_001 + 2_448,
        "rejected": 8,
        "published": 3_498 + 8_000 + 2_448,
        "difference": 1,
        "check": "more",
    }


def test_html_report_overview_has_the_counts(ingested: dict[str, Path]) -> None:
    medfmc = medfmc_tree(Path("tmp_medfmc"))
    invoke("report", "--manifests", "ingest", "--out", "report", "--workers", "1")
    page = Path("report/index.html").read_text()
    assert "<h3>Sources beside the published counts</h3>" in page
    row = page.split("<td>medfmc-endo</td>", 1)[1].split("</tr>", 1)[0]
    assert "<td>medfmc</td>" in row and '<td class="n">3,865</td>' in row
    assert f'<span class="bad">{medfmc.found - 3_865:+,}</span>' in row
    assert "fewer than published" in row


def test_format_auto_records_the_format_it_chose(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    medfmc_tree(Path("raw"))
    assert "auto chose medfmc-endo" in invoke("ingest", "raw", "--source", "mine", "--format", "auto", "--out", "m")
    assert json.loads(Path("m", SOURCE_FILE).read_text()) == {"format": "medfmc-endo", "source": "mine"}

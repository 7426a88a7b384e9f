"""`endoctl report` on a small synthesized dataset: what it shows, its files, and the page in headless Chromium."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from browser import blank, full_page, load_page
from PIL import Image, ImageFilter
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.io import read_csv
from endoctl.synth import SynthConfig, synth

runner = CliRunner()
SOURCES = [("kvasir-capsule", "kvasir_capsule"), ("kid", "kid"), ("ce24", "ce24")]
HEADINGS = ["Overview", "Duplicate clusters", "Frame sequences", "Label conflicts", "Leaks", "Image quality", "Files"]
KID_NORMAL = Path("raw/kid/normal-small-bowel")


def invoke(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def _plant_quality_problems() -> dict[str, str]:
    """Images a curator wants flagged, filed as KID patient P1: file stem -> the flag expected."""
    size = 360
    y, x = np.mgrid[0:size, 0:size] / size
    for k in range(2):  # two unlit frames with the same faint vignette: one pHash, a false cluster
        dark = (6 + 8 * (1 - np.hypot(x - 0.5, y - 0.5)))[..., None].repeat(3, axis=2).astype(np.uint8)
        dark[4 * k : 4 * k + 8, 4:12] = 30  # differing bytes, in the border the hash ignores
        Image.fromarray(dark).save(KID_NORMAL / f"normal-small-bowel-P1-9{k}.jpg", quality=90)
    source = Image.open(sorted(KID_NORMAL.glob("normal-small-bowel-P1-*.jpg"))[0]).convert("RGB")
    source.filter(ImageFilter.GaussianBlur(8)).save(KID_NORMAL / "normal-small-bowel-P1-92.jpg", quality=90)
    white = np.asarray(source, dtype=np.float64) * 0.3 + 255 * 0.7
    Image.fromarray(white.astype(np.uint8)).save(KID_NORMAL / "normal-small-bowel-P1-93.jpg", quality=90)
    source.crop((0, 120, 360, 240)).save(KID_NORMAL / "normal-small-bowel-P1-94.jpg", quality=90)
    return {
        "normal-small-bowel-P1-90": "dark",
        "normal-small-bowel-P1-91": "dark",
        "normal-small-bowel-P1-92": "blurry",
        "normal-small-bowel-P1-93": "overexposed",
        "normal-small-bowel-P1-94": "odd_aspect",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], str]:
    """The demo pipeline on a small synthesized dataset (with planted quality problems), then the report."""
    root = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        synth(
            Path("raw"),
            SynthConfig(
                seed=3, videos=2, frames_per_video=16, kid_patients=3, kid_images_per_patient=6, ce24_test_videos=1
            ),
        )
        planted = _plant_quality_problems()
        for name, folder in SOURCES:
            invoke(
                "ingest",
                f"raw/{folder}",
                "-f",
                name,
                "--source",
                name,
                "--out",
                f"manifests/ingest/{name}",
                "--workers",
                "1",
            )
        invoke("dedupe", "manifests/ingest", "--out", "manifests/duplicates", "--workers", "1")
        invoke(
            "split",
            "--manifest",
            "manifests/ingest",
            "--duplicates",
            "manifests/duplicates",
            "--target",
            "ee24-ce24",
            "--out",
            "manifests/ee24-ce24",
            "--pin",
            "test=ce24:test",
        )
        ce24 = read_csv("manifests/ingest/ce24/manifest.csv")
        for split in ("training", "validation"):  # CE24's official split, audited from its file lists
            ce24.loc[ce24["official_split"] == split, ["path"]].to_csv(f"{split}.csv", index=False)
        runner.invoke(
            app, ["audit", "--split", "train=training.csv", "--split", "val=validation.csv", "--json", "audit.json"]
        )
        out = invoke(
            "report",
            "--manifests",
            "manifests/ingest",
            "--duplicates",
            "manifests/duplicates",
            "--split",
            "manifests/ee24-ce24",
            "--audit",
            "audit.json",
            "--out",
            "manifests/report",
            "--workers",
            "2",
        )
    return root, planted, out


def test_report_shows_the_planted_copies_sequences_conflicts_and_quality_problems(built) -> None:
    root, planted, out = built
    report = root / "manifests" / "report"
    assert re.search(r"report: \d+ images .* -> manifests/report/index\.html", out), out
    manifest = pd.concat([read_csv(root / "manifests" / "ingest" / n / "manifest.csv") for n, _ in SOURCES]).set_index(
        "image_id"
    )
    name = lambda i: manifest.at[i, "path"].rsplit("/", 1)[-1]  # noqa: E731

    clusters = read_csv(report / "clusters.csv")
    heads = clusters.groupby("cluster", sort=False).head(2).groupby("cluster", sort=False)["image_id"].agg(list)
    cross = clusters.drop_duplicates("cluster").set_index("cluster")["cross_source"] == "True"
    assert cross.iloc[0] and not cross[cross.to_numpy().argmin() :].any()  # clusters across sources first
    assert all(manifest.at[a, "source"] != manifest.at[b, "source"] for a, b in heads[cross[cross].index])
    copies = [(a, b) for a, b in heads[cross[cross].index].head(20) if name(a) == name(b)]  # CE24 keeps file names
    assert len(copies) >= 5, copies  # the planted copies, each next to its original

    conflicts = read_csv(report / "conflicts.csv")
    planted_conflict = conflicts.iloc[0]  # synth files one CE24 copy under two classes, same bytes
    assert planted_conflict["kind"] == "exact" and planted_conflict["basis"] == "label in ce24"
    assert name(planted_conflict["image_id_a"]) == name(planted_conflict["image_id_b"])
    assert planted_conflict["label_a"] != planted_conflict["label_b"]

    chains = read_csv(report / "sequences.csv")
    kc = chains[chains["source"] == "kvasir-capsule"]
    assert kc["patient_id"].nunique() == 2 and (kc.groupby("chain")["patient_id"].nunique() == 1).all()
    frames = kc["frame"].astype(int).to_numpy()
    assert all((g["frame"].astype(int).diff().dropna() > 0).all() for _, g in kc.groupby("chain")), frames

    quality = read_csv(report / "quality.csv")
    flags = {Path(p).stem: set(f.split("|")) for p, f in zip(quality["path"], quality["flags"])}
    for stem, expected in planted.items():
        assert expected in flags.get(stem, set()), (stem, flags.get(stem))
    assert flags["normal-small-bowel-P1-90"] >= {"dark", "low_information"}
    others = {s: f for s, f in flags.items() if s not in planted}  # the synthetic images are smooth: a few are soft
    assert all(f == {"blurry"} for f in others.values()) and len(others) <= 0.02 * len(manifest), others

    html = (report / "index.html").read_text()
    assert "1 of these clusters consist only of dark or near-uniform frames" in html  # the planted pair
    leaks = read_csv(report / "leaks.csv")
    assert set(leaks["check"]) == {"audit", "ce24 (official)"}  # the split itself: no leak
    assert 'ee24-ce24: <span class="ok">no leak</span>' in html
    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (report / src).is_file(), src
    assert sorted(p.name for p in (report / "thumbs").iterdir()) == sorted(
        {Path(s).name for s in re.findall(r'<img src="([^"]+)"', html)}
    )  # thumbnails only for what is shown
    assert "<script" not in html and not re.search(r"(src|href)=\"(https?:)?//", html)  # offline, no script


def test_report_is_deterministic_and_replaced_as_a_whole(built, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, _ = built
    monkeypatch.chdir(root)
    args = [
        "report",
        "--manifests",
        "manifests/ingest",
        "--duplicates",
        "manifests/duplicates",
        "--split",
        "manifests/ee24-ce24",
        "--audit",
        "audit.json",
        "--workers",
        "1",
    ]
    Path("again").mkdir()
    (Path("again") / "index.html").write_text("from an older report")
    (Path("again") / "thumbs").mkdir()
    (Path("again") / "thumbs" / "stale.jpg").write_bytes(b"an older thumbnail")
    invoke(*args, "--out", "again")
    files = sorted(p.relative_to("manifests/report") for p in Path("manifests/report").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to("again") for p in Path("again").rglob("*") if p.is_file())
    for rel in files:
        assert (Path("again") / rel).read_bytes() == (Path("manifests/report") / rel).read_bytes(), rel

    import endoctl.io

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(endoctl.io, "write_csv", broken)
    before = Path("again/index.html").read_bytes()
    with pytest.raises(OSError, match="disk full"):
        runner.invoke(app, [*args, "--out", "again"], catch_exceptions=False)
    assert Path("again/index.html").read_bytes() == before
    assert not [p for p in Path(".").iterdir() if p.name.startswith(".again.")]  # no temporary folder left


def test_bad_inputs_give_one_line_errors(built, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _, _ = built
    monkeypatch.chdir(root)
    res = runner.invoke(app, ["report", "--manifests", "manifests/ingest", "--split", "nowhere", "--out", "x"])
    assert res.exit_code == 2 and "--split folder not found: nowhere" in res.output
    Path("thin").mkdir()
    Path("thin/a.csv").write_text("image_id,source,path,label\na/1.jpg,a,1.jpg,x\n")
    res = runner.invoke(app, ["report", "--manifests", "thin", "--out", "x"])
    assert res.exit_code == 2 and "thin/a.csv: missing column(s)" in res.output and "ingest manifest" in res.output
    res = runner.invoke(app, ["report", "--manifests", "manifests/ingest", "--audit", "training.csv", "--out", "x"])
    assert res.exit_code == 2 and "training.csv: not an `endoctl audit --json` file" in res.output
    assert not Path("x").exists()


def test_section_builders_escape_every_string_from_data() -> None:
    from endoctl import report_view as view
    from endoctl.pages import render
    from endoctl.params import ReportParams
    from endoctl.report import thumb_key

    assert thumb_key("../../etc/passwd", "a/1.jpg") == thumb_key("", "a/1.jpg") != thumb_key("", "a/2.jpg")
    assert thumb_key("ab" * 32, "a/1.jpg") == "ab" * 10

    evil = "<img src=x onerror=alert(1)>&"
    images = pd.DataFrame(
        {
            "source": [evil, "b"],
            "label": [evil, "<b>"],
            "patient_id": [evil, ""],
            "path": ["a", "b"],
            "phash": ["0" * 16] * 2,
            "key": ["k1", "k2"],
        },
        index=pd.Index([f"id{evil}", "id2"], name="image_id"),
    )
    place = pd.DataFrame({evil: ["test", ""]}, index=images.index)
    gallery = view.Gallery(images, place)
    conflicts = pd.DataFrame(
        [
            {
                "cluster": evil,
                "kind": "exact",
                "distance": 0,
                "basis": f"label in {evil}",
                "image_id_a": f"id{evil}",
                "source_a": evil,
                "label_a": evil,
                "image_id_b": "id2",
                "source_b": "b",
                "label_b": "<b>",
            }
        ]
    )
    data = view.conflicts(conflicts, gallery, ReportParams())
    html = render(
        "report_conflicts.html.j2", conflicts=data, thumbs={"k1": (64, 48), "k2": "cannot <read>"}, thumb_size=64
    )
    assert gallery.wanted == {"k1": "a", "k2": "b"}
    assert "<img src=x" not in html and '<b>"' not in html and "<read>" not in html
    assert html.count("&lt;img src=x onerror=alert(1)&gt;&amp;") >= 5
    assert html.count("<img ") == 1 and "cannot &lt;read&gt;" in html


def test_hostile_names_from_the_data_are_escaped_in_the_whole_page(tmp_path: Path, monkeypatch) -> None:
    """A source, label, class, patient or split folder named ``<script>...`` is text on the page, never markup."""
    from endoctl.params import ReportParams
    from endoctl.report import build_report, load_inputs

    monkeypatch.chdir(tmp_path)
    evil = "<script>alert(1)</script>"
    Path("m").mkdir()
    manifest = pd.DataFrame(
        {
            "image_id": [f"{evil}/{k}.jpg" for k in range(3)],
            "source": [evil] * 3,
            "path": [f"raw/{k}.jpg" for k in range(3)],  # not there: unreadable, shown with the reason
            "label": [evil, "b", ""],
            "patient_id": [evil] * 3,
            "official_split": ["", "", ""],
            "width": ["10"] * 3,
            "height": ["10"] * 3,
            "sha256": [""] * 3,
            "phash": ["0" * 16] * 3,
        }
    )
    manifest.to_csv("m/manifest.csv", index=False)
    split = Path(evil.replace("/", "_"))
    split.mkdir()
    pd.DataFrame(
        {
            "image_id": manifest["image_id"],
            "source": manifest["source"],
            "label": manifest["label"],
            "target_class": [evil, evil, "x"],
            "group": [evil] * 3,
            "fold": ["0", "1", ""],
        }
    ).to_csv(split / "train_val.csv", index=False)
    result = build_report(load_inputs([Path("m/manifest.csv")], splits=[split]), ReportParams(quality=5))
    page = result.html
    assert "<script" not in page and "alert(1)</" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 10
    assert "Split &lt;script&gt;alert(1)&lt;_script&gt;" in page  # the folder's name
    assert result.summary["unreadable"] == 3 and "<h3>unreadable (3)</h3>" in page
    assert build_report(load_inputs([Path("m/manifest.csv")], splits=[split]), ReportParams(quality=5)).html == page


def test_templates_are_package_data_found_through_importlib_resources() -> None:
    """The page's templates and stylesheet ship inside the package (pyproject.toml package-data) and load from it."""
    import tomllib
    from importlib.resources import files
    from pathlib import PurePosixPath

    from endoctl.pages import TEMPLATES, environment

    folder = files("endoctl") / TEMPLATES
    assert folder.joinpath("report.html.j2").is_file() and folder.joinpath("report.css").is_file()
    setuptools = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["tool"][
        "setuptools"
    ]
    assert "endoctl.templates" in setuptools["packages"]
    shipped = setuptools["package-data"]["endoctl.templates"]
    templates = environment().list_templates()
    assert {"base.html.j2", "report.html.j2", "report.css", "report_conflicts.html.j2"} <= set(templates)
    for name in templates:  # every template matches a package-data pattern: a wheel carries it
        assert "/" not in name and any(PurePosixPath(name).match(pattern) for pattern in shipped), name
        assert folder.joinpath(*name.split("/")).read_text(encoding="utf-8")
    assert environment().autoescape is True


# ------------------------------------------------------------------------------- headless Chromium


def page_problems(driver, url: str) -> tuple[list[str], Image.Image]:
    """Load ``url``; return what is wrong with the page as a person would see it, and a full-page screenshot."""
    problems = load_page(driver, url)
    headings = [h.text for h in driver.find_elements("css selector", "h2")]
    if headings != HEADINGS:
        problems.append(f"section headings {headings}")
    if driver.execute_script("return document.images.length") == 0:
        problems.append("no images")
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    if driver.execute_script("return document.querySelector('nav').getBoundingClientRect().top") != 0:
        problems.append("the section nav does not stay at the top")
    image = full_page(driver)
    return problems + blank(image), image


def test_report_renders_in_headless_chromium(built, browser, tmp_path: Path) -> None:
    root, _, _ = built
    report = root / "manifests" / "report"
    problems, shot = page_problems(browser, (report / "index.html").as_uri())
    shot.save(tmp_path / "report.png")
    assert problems == [], problems
    assert shot.height > 1500 and shot.width >= 700  # half scale
    # the same checks catch a broken page: a missing thumbnail and a failing script
    shutil.copytree(report, tmp_path / "broken")
    victim = sorted((tmp_path / "broken" / "thumbs").iterdir())[0]
    victim.unlink()
    index = tmp_path / "broken" / "index.html"
    index.write_text(index.read_text().replace("</body>", "<script>undefinedFunction()</script></body>"))
    problems, _ = page_problems(browser, index.as_uri())
    assert any(victim.name in p and p.startswith("image not loaded") for p in problems), problems
    assert any("undefinedFunction" in p for p in problems), problems


def test_report_on_one_source_with_the_shared_duplicates(built, monkeypatch: pytest.MonkeyPatch) -> None:
    """One source's manifests with dedupe's folder for all of them (issue 25): clusters, pairs and
    sequences naming images of other sources are left out and counted, and the counts add up."""
    root, _, _ = built
    monkeypatch.chdir(root)
    res = runner.invoke(
        app,
        [
            "report",
            "--manifests",
            "manifests/ingest/kid",
            "--duplicates",
            "manifests/duplicates",
            "--out",
            "kid_report",
            "--workers",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    kid = set(read_csv("manifests/ingest/kid/manifest.csv")["image_id"])
    pairs = read_csv("manifests/duplicates/duplicate_pairs.csv")
    outside = int((~(pairs["image_id_a"].isin(kid) & pairs["image_id_b"].isin(kid))).sum())
    assert outside and f"{outside:,} of {len(pairs):,} duplicate pairs name images outside the given manifests" in (
        " ".join(res.output.split())
    )
    clusters = read_csv("kid_report/clusters.csv")
    assert set(clusters["image_id"]) <= kid
    assert (clusters.groupby("cluster").size() == clusters.groupby("cluster")["cluster_size"].first().astype(int)).all()
    assert read_csv("kid_report/sequences.csv").empty  # KID has no frame sequences; Kvasir-Capsule's are left out

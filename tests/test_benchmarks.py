"""The benchmark scripts never rot: each runs at a tiny size (``--smoke``) with its correctness checks.

``make bench`` runs them for real (minutes to ~20 min each); here every script runs its own code path
in seconds as a subprocess, writing its table to a temporary ``--out`` (never benchmarks/results).
The scripts run two at a time (started together for the whole session, longest first), so the file
takes about as long as its slowest pair. Scripts that read the real images in ../shared skip without
them. Also: bench_ee24's usefulness() on a hand-made build whose answers are known.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
REAL = ROOT.parent / "shared" / "real_images"
# longest first: two run at a time (bench_study second: started last, it was the file's tail)
SCRIPTS = [
    "bench_ee24",
    "bench_study",
    "bench_predict",
    "bench_gpu",
    "bench_cache",
    "bench_report",
    "bench_dedupe",
    "bench_startup",
    "bench_split",
    "bench_ingest",
]
NEEDS_REAL = {"bench_ingest", "bench_cache", "bench_report"}  # skip without ../shared/real_images
TIMEOUT = 300
# bench_ee24 also runs its baseline path, with this very endoctl as the baseline: every stage's outputs must match
EXTRA = {"bench_ee24": ["--baseline", f"{sys.executable} -m endoctl", "--baseline-commit", "HEAD"]}


def _smoke(script: str, out: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(BENCH / f"{script}.py"), "--smoke", "--out", str(out), *EXTRA.get(script, [])]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="session")
def smoke_runs(request, tmp_path_factory) -> dict[str, tuple[Future, Path]]:
    """Every selected script's smoke run, started at once on a pool of two."""
    wanted = {
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_benchmark_smoke" and hasattr(item, "callspec")
    }
    if not REAL.is_dir():
        wanted -= NEEDS_REAL
    folder = tmp_path_factory.mktemp("benchmarks")
    runs = {}
    with ThreadPoolExecutor(2) as pool:
        for script in SCRIPTS:
            if script in wanted:
                out = folder / f"{script}.md"
                runs[script] = (pool.submit(_smoke, script, out), out)
        yield runs


@pytest.mark.slow  # torch + timm imports, ~15 endoctl processes: minutes on 2 shared cores
@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_smoke(script: str, smoke_runs) -> None:
    if script in NEEDS_REAL and not REAL.is_dir():
        pytest.skip(f"real reference data not available: {REAL} (../shared is absent)")
    future, out = smoke_runs[script]
    proc = future.result(timeout=TIMEOUT)
    assert proc.returncode == 0, f"{script} --smoke failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}"
    assert out.is_file(), f"{script} --smoke wrote no table to --out"
    text = out.read_text()
    assert text.startswith("# ") and "|---" in text, text[:2000]
    if script == "bench_ee24":
        for part in ("## What the split is worth", "planted-copy recall", "Goals:", "total time <= 5 min, on the"):
            assert part in text, part
        stages = ("| ingest (", "| dedupe", "| split", "| cache")
        stage_rows = [line for line in text.splitlines() if line.startswith(stages)]
        assert len(stage_rows) == 6 and all(line.rstrip().endswith("| yes |") for line in stage_rows), stage_rows


# ------------------------------------------------------------------ bench_ee24.usefulness on a known build


@pytest.fixture(scope="module")
def ee24():
    sys.path.insert(0, str(BENCH))
    try:
        import bench_ee24
    finally:
        sys.path.remove(str(BENCH))
    return bench_ee24


def test_usefulness_counts_a_known_build(ee24) -> None:
    kc1, kc2 = "kvasir-capsule/v_1.jpg", "kvasir-capsule/v_2.jpg"
    ce_n, ce_u = "ce24/training/N/KVASIR/v_1.jpg", "ce24/training/U/KVASIR/v_1.jpg"  # a copy, its byte copy
    see, ce_see = "see-ai/n/image1.jpg", "ce24/training/N/SEE-AI/image1.jpg"  # a copy dedupe missed
    test1, kid = "ce24/testing/Images/test1.jpg", "kid/x/k1.jpg"
    images = pd.DataFrame(
        [
            (kc1, "1", "1.0", "", ""),
            (kc2, "1", "2.0", "", ""),
            (ce_n, "1", "1.0", kc1, "resized"),
            (ce_u, "1", "1.0", ce_n, "byte"),
            (see, "2", "0.0", "", ""),
            (ce_see, "2", "0.0", see, "resized"),
            (test1, "3", "0.0", "", ""),
            (kid, "4", "0.0", "", ""),
        ],
        columns=["path", "scene", "t", "copy_of", "copy_kind"],
    )
    manifest = pd.DataFrame(
        {
            "image_id": images["path"],
            "source": images["path"].str.split("/").str[0],
            "path": "corpus/" + images["path"],
            "official_split": ["test" if p == test1 else "" for p in images["path"]],
        }
    )
    cluster = {kc1: "c1", kc2: "c1", ce_n: "c1", ce_u: "c1"}
    clusters = pd.DataFrame({"image_id": images["path"], "cluster": [cluster.get(p, p) for p in images["path"]]})
    pairs = pd.DataFrame(
        [
            (kc1, ce_n, "3", "near"),  # planted, linked
            (ce_n, ce_u, "0", "exact"),  # planted, linked
            (kc1, kc2, "9", "near"),  # unrelated families, same scene (neighbouring frames)
            (see, kid, "10", "near"),  # unrelated, different scenes
            (kc2, ce_n, "16", "sequence"),  # not a near pair: ignored
        ],
        columns=["image_id_a", "image_id_b", "distance", "kind"],
    )
    rows = manifest[["image_id", "source"]].assign(group=["g1", "g1", "g1", "g1", "g2", "g5", "g3", "g4"])
    test = rows["image_id"].isin([test1, kid, ce_see])
    u = ee24.usefulness(manifest, clusters, pairs, {"t": (rows[~test], rows[test])}, images)

    t = u["targets"]["t"]
    assert (t["labelled"], t["test"], t["pinned"], t["groups"]) == (8, 3, 1, 5)
    assert t["test_share"] == pytest.approx(3 / 8) and t["test_share_unpinned"] == pytest.approx(2 / 7)
    assert (t["largest_group"], t["largest_group_images"], t["largest_group_share"]) == ("g1", 4, 0.5)
    assert t["largest_group_sources"] == {"kvasir-capsule": 2, "ce24": 2}
    assert t["kvasir_capsule_groups"] == 1
    assert t["see_ai_group_sizes"] == {"groups": 1, "median": 1.0, "largest": 1}
    assert t["per_source"] == {"ce24": (2, 2), "kid": (0, 1), "kvasir-capsule": (2, 0), "see-ai": (1, 0)}
    links = u["links"]
    assert (links["planted"], links["planted_ingested"]) == (3, 3)
    assert links["recall"] == pytest.approx(2 / 3) and links["direct"] == pytest.approx(2 / 3)
    assert links["recall_by_kind"] == {"byte": 1.0, "resized": 0.5}
    assert (links["near_pairs"], links["near_unplanted"], links["near_other_scene"]) == (3, 2, 1)

    met = {what: ok for what, ok, _ in ee24.goals(u, ee24.time_goal(100.0, None))}
    assert met["planted-copy recall >= 98%"] is False and met["total time <= 5 min"] is True
    assert met["t: largest group <= 2% of images"] is False


def test_reference_scales_the_time_goal_to_the_machine_that_set_it(ee24, tmp_path: Path) -> None:
    """Stage times come back from a bench_ee24 table (the committed one: rows add up to its total);
    a run here is judged by the reference commit's time there over its time here."""
    committed = (BENCH / "results" / "ee24.md").read_text()
    seconds = ee24.stage_seconds(committed)
    assert {"ingest", "dedupe", "split ee24-ce24", "split ce24", "cache ee24-ce24", "cache ce24"} < set(seconds)
    assert sum(v for k, v in seconds.items() if k != "total") == pytest.approx(seconds["total"], abs=0.5)
    with pytest.raises(ValueError, match="no total row"):
        ee24.stage_seconds("| stage | images |\n|---|---:|")
    ref = ee24.Reference("abc1234", here={"total": 500.0}, there={"total": 250.0})
    assert ref.scaled(560.0) == pytest.approx(280.0)
    what, ok, number = ee24.time_goal(560.0, ref)
    assert ok and "280 s there (560 s here; abc1234 took 500.0 s here and 250.0 s there)" == number
    assert ee24.time_goal(640.0, ref)[1] is False and ee24.time_goal(640.0, None)[1] is False

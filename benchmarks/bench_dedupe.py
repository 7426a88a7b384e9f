"""Near-duplicate search: endoctl's multi-index hashing vs brute force vs imagededup, same hashes.

Hash sets are generated with realistic clustering (a third as many cluster centres as hashes,
members 0-8 random bit flips from their centre). Checks the index returns exactly the
brute-force result on 20k hashes, times 226k and 1M at D=10 (and D=12), and runs imagededup's
``find_duplicates`` on the same 20k hashes.

Then the whole ``endoctl dedupe`` stage (process start, CSV reading, exact + near + sequence
pairs, clusters, report, CSV writing) on 226k manifest rows in 7 source files: 3% byte-identical
copies, near-duplicates whose pHash and dHash are both close, and capsule-style frame names; wall
time and peak memory of the command, plus each step timed in this process.
Writes benchmarks/results/dedupe.md.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from bench_ee24 import run_stage  # wall time and process-tree RSS of a command
from smoke import add_arguments, out_path, write_table

from endoctl import dedupe as dd
from endoctl.dedupe import layout, near_pairs
from endoctl.hashing import from_hex, to_hex
from endoctl.io import DEDUPE_REPORT_FILE, DUPLICATES_FILE, PAIRS_FILE, read_csv, write_csv, write_text
from endoctl.params import DedupeParams
from endoctl.testing import brute_force_pairs, synthetic_hashes

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "dedupe.md"


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def imagededup_seconds(hashes: np.ndarray, distance: int) -> tuple[float, int]:
    from imagededup.methods import PHash

    logging.disable(logging.WARNING)
    encodings = {f"img{k:07d}": f"{int(h):016x}" for k, h in enumerate(hashes)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dups, seconds = timed(
            lambda: PHash(verbose=False).find_duplicates(encoding_map=encodings, max_distance_threshold=distance)
        )
    return seconds, sum(len(v) for v in dups.values()) // 2


SIZES = {"226k": 226_000, "1M": 1_000_000}  # timed index searches (after the 20k check)
SOURCES = ("kvasir-capsule", "see-ai", "kid", "hyperkvasir", "gastrovision", "ce24", "kvasir-v2")


def stage_manifests(folder: Path, n: int, seed: int = 0) -> None:
    """``n`` manifest rows over 7 sources with exact copies, near copies (both hashes close) and frames."""
    rng = np.random.default_rng(seed)
    centre = np.arange(n)
    near = rng.random(n) < 0.15  # near copies share another image's centre
    centre[near] = rng.integers(0, n, int(near.sum()))
    flips = lambda: np.bitwise_or.reduce(  # noqa: E731 - up to 4 random bit flips per hash
        np.where(rng.random((4, n)) < 0.5, np.uint64(1) << rng.integers(0, 64, (4, n)).astype(np.uint64), np.uint64(0))
    )
    ph = rng.integers(0, 2**63, n, dtype=np.uint64)[centre] ^ flips()
    dh = rng.integers(0, 2**63, n, dtype=np.uint64)[centre] ^ flips()
    sha = np.array([hashlib.sha256(b"%d" % i).hexdigest() for i in range(n)], dtype=object)
    copy = rng.random(n) < 0.03
    src = np.array(SOURCES)[rng.integers(0, len(SOURCES), n)]
    sha[copy] = sha[rng.integers(0, n, int(copy.sum()))]
    names = [
        f"labelled/{k % 300:016x}_{k}.jpg"
        if s == "kvasir-capsule"
        else f"image{k:06d}.jpg"
        if s == "see-ai"
        else f"cls/{k}.jpg"
        for k, s in enumerate(src)
    ]
    table = pd.DataFrame(
        {
            "image_id": [f"{s}/{p}" for s, p in zip(src, names)],
            "source": src,
            "path": names,
            "label": "Normal",
            "patient_id": "",
            "official_split": "",
            "width": "336",
            "height": "336",
            "bytes": "20000",
            "sha256": sha,
            "phash": to_hex(ph),
            "dhash": to_hex(dh),
        }
    )
    for source in SOURCES:
        write_csv(folder / f"{source}.csv", table[table["source"] == source].sort_values("image_id"))


def whole_stage(n: int, workers: int) -> list[str]:
    """``endoctl dedupe`` as a command (wall, peak RSS) and its steps timed in-process."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ingest"
        folder.mkdir()
        stage_manifests(folder, n)
        out = Path(tmp) / "duplicates"  # the dedupe output folder
        cmd = [
            str(Path(sys.executable).with_name("endoctl")),
            "dedupe",
            str(folder),
            "--out",
            str(out),
            "--workers",
            str(workers),
        ]
        wall, peak_mb, summary = run_stage(cmd, Path(tmp))
        written = read_csv(out / DUPLICATES_FILE)
        assert len(written) == n, f"{DUPLICATES_FILE}: {len(written)} rows for {n} images"
        assert (out / PAIRS_FILE).is_file() and (out / DEDUPE_REPORT_FILE).is_file()
        steps = []

        def step(name, fn):
            result, seconds = timed(fn)
            steps.append((name, seconds))
            return result

        files = sorted(folder.glob("*.csv"))
        manifest = step("read 7 CSVs", lambda: pd.concat([read_csv(f) for f in files], ignore_index=True))
        params = DedupeParams(workers=workers)
        ordered = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
        step("exact pairs (sha256)", lambda: dd.exact_pairs(ordered))
        reps = ordered.drop_duplicates("sha256")
        step("near pairs (index search)", lambda: near_pairs(from_hex(reps["phash"]), params.max_distance, workers))
        step("sequence pairs", lambda: dd.sequence_pairs(ordered, params))
        pairs = step("find_pairs (all of the above)", lambda: dd.find_pairs(manifest, params))
        clusters = step("clusters", lambda: dd.cluster(manifest, pairs))
        rep = step("report", lambda: dd.report(manifest, clusters, pairs, params))
        assert len(clusters) == n and rep["images"] == n
        assert len(pairs) == len(read_csv(out / PAIRS_FILE)), "in-process pairs differ from the command's"
        mine = Path(tmp) / "in-process"
        step(
            "write 3 files",
            lambda: (
                write_csv(mine / DUPLICATES_FILE, clusters),
                write_csv(mine / PAIRS_FILE, pairs),
                write_text(mine / DEDUPE_REPORT_FILE, str(rep)),
            ),
        )
    return [
        "",
        f"## The whole `endoctl dedupe` stage: {n:,} manifest rows in 7 files, {workers} threads",
        "",
        f"`endoctl dedupe FOLDER --workers {workers}`: **{wall:.1f} s** wall, peak memory {peak_mb:,.0f} MB (RSS of "
        "the process tree)",
        "",
        f"> {summary.rsplit(' -> ', 1)[0]}",
        "",
        "| step (in-process) | seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.2f} |" for name, seconds in steps],
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="skip the 1M run")
    add_arguments(parser)
    args = parser.parse_args()
    # the check size, the timed sizes and the whole-stage size; smoke: tiny, no 1M run
    check, sizes, stage = (2_000, {"5k": 5_000}, 3_000) if args.smoke else (20_000, SIZES, 226_000)
    near_pairs(synthetic_hashes(2000), 10)  # compile (cached) outside the timings
    rows = []
    h20 = synthetic_hashes(check)
    fast, t_fast = timed(lambda: near_pairs(h20, 10, args.workers))
    slow, t_slow = timed(lambda: brute_force_pairs(h20, 10))
    same = all(np.array_equal(a, b) for a, b in zip(fast, slow))
    rows.append((f"{check // 1000}k", 10, t_fast, len(fast[0])))
    sizes = {rows[0][0]: check, **sizes}
    try:
        t_idd, n_idd = imagededup_seconds(h20, 10)
        imagededup = (
            f"- imagededup `find_duplicates` on the same {rows[0][0]} hashes: {t_idd:.1f} s ({n_idd:,} pairs); "
            f"endoctl is **{t_idd / t_fast:.0f}x** faster (target >= 100x); same pair count: {n_idd == len(fast[0])}"
        )
    except ImportError:  # a benchmark-only baseline (`make bench` installs it): only this comparison is skipped
        imagededup = "- imagededup not installed: its comparison skipped (`make bench` installs it)"
    for label, n in sizes.items():
        if n == check or (args.quick and n > 226_000):
            continue
        h = synthetic_hashes(n, seed=n)
        for d in (10, 12):
            pairs, seconds = timed(lambda h=h, d=d: near_pairs(h, d, args.workers))
            rows.append((label, d, seconds, len(pairs[0])))
    lines = [
        f"# dedupe benchmark (clustered 64-bit hashes, {args.workers} threads)",
        "",
        "| hashes | D | layout (chunks x bits, radius) | seconds | pairs |",
        "|---|---:|---|---:|---:|",
    ]
    for label, d, seconds, n_pairs in rows:
        lay = layout(sizes[label], d)
        widths = "/".join(str(w) for _, w in lay.chunks)
        lines.append(f"| {label} | {d} | {len(lay.chunks)} x {widths}, r={lay.radius} | {seconds:.2f} | {n_pairs:,} |")
    lines += [
        "",
        f"- {rows[0][0]} at D=10: index {t_fast:.2f} s vs brute force {t_slow:.2f} s; identical pair sets: **{same}**",
        imagededup,
        "- targets: 226k at D=10 <= 30 s, 1M <= 5 min",
        *whole_stage(stage, args.workers),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_table(out_path(args, OUT), text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

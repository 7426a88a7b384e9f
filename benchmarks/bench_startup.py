"""Start-up time of the command line: `endoctl --help` and a command's `--help`, hyperfine-style.

Each row starts a fresh process REPEATS times (after WARMUP runs) and reports mean, standard
deviation and minimum wall time. Baselines in the same run: the bare interpreter, the CLI framework
alone (typer + rich, the floor of any typer app; typer 0.29 also imports pydantic to coerce a
command's options, so a sub-command's help pays that too) and `ingest --help` as it was before the format list
stopped importing the source adapters (which pulled in pandas, numpy and Pillow). Also lists which
heavy libraries each help run imports (none is the goal). Writes benchmarks/results/startup.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from smoke import add_arguments, out_path, write_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "startup.md"
WARMUP, REPEATS = 2, 15
HEAVY = ("pandas", "numpy", "torch", "timm", "PIL", "sklearn", "numba", "scipy")
CLI = "import sys\nfrom endoctl.cli import app\nsys.argv = ['endoctl', *sys.argv[1:]]\n"
BEFORE = "from endoctl.sources import REGISTRY  # what the --format help used to import\n"
ROWS = [
    ("python -c pass (interpreter)", ["-c", "pass"]),
    ("import typer, rich (CLI framework)", ["-c", "import typer, rich.console, rich.progress"]),
    (
        "import typer, rich, pydantic (+ typer's option coercion)",
        ["-c", "import typer, rich.console, rich.progress, rich.markdown\nfrom pydantic import TypeAdapter"],
    ),
    ("endoctl --help", ["-c", CLI + "app()", "--help"]),
    ("endoctl ingest --help", ["-c", CLI + "app()", "ingest", "--help"]),
    ("endoctl evaluate --help", ["-c", CLI + "app()", "evaluate", "--help"]),
    ("endoctl ingest --help, adapters imported (before)", ["-c", BEFORE + CLI + "app()", "ingest", "--help"]),
]


def timed(args: list[str], warmup: int = WARMUP, repeats: int = REPEATS) -> list[float]:
    times = []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def heavy_imports(args: list[str]) -> tuple[str, float]:
    """The heavy libraries a run imports, and its wall time (with the probe)."""
    probe = (
        "import atexit, sys\natexit.register(lambda: print(sorted({m.split('.')[0] for m in sys.modules} & "
        f"{set(HEAVY)!r}), file=sys.stderr))\n"
    )
    code = probe + args[1] if args[0] == "-c" else probe
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args[2:]], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    err = proc.stderr
    found = err.strip().splitlines()[-1] if err.strip() else "[]"
    return ", ".join(eval(found)) or "none", seconds  # noqa: S307 - our own printed list


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    cli = parser.parse_args()
    warmup, repeats = (0, 0) if cli.smoke else (WARMUP, REPEATS)  # smoke: the probe's run is the one timing
    results = []
    for label, args in ROWS:
        times = timed(args, warmup, repeats)
        heavy, probe_seconds = heavy_imports(args)
        times = times or [probe_seconds]
        sd = statistics.stdev(times) if len(times) > 1 else 0.0
        results.append((label, statistics.mean(times), sd, min(times), heavy))
        print(f"{label}: {results[-1][1]:.3f} s", flush=True)
    before = results[-1][1]
    lines = [
        "# Command-line start-up (`--help`)",
        "",
        f"Fresh process per run, {warmup} warm-up + {repeats} timed runs, wall time; same run, same machine "
        "(2 cores, shared: compare rows, not days).",
        "",
        "| command | mean s | sd s | min s | vs before | heavy libraries imported |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, mean, sd, low, heavy in results:
        lines.append(f"| {label} | {mean:.3f} | {sd:.3f} | {low:.3f} | {mean / before:.2f}x | {heavy} |")
    lines += [
        "",
        "`python -X importtime -m endoctl ingest --help`: what remains is typer itself (rich rendering, "
        "and pydantic for a sub-command's options); the source adapters, pandas, numpy and Pillow load only "
        "when a command runs.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_table(out_path(cli, OUT), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

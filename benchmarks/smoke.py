"""The ``--smoke`` / ``--out`` options every benchmark script shares.

``--smoke`` runs the script's real code path at a tiny size (seconds), with its correctness checks,
so that ``tests/test_benchmarks.py`` notices interface changes; its numbers mean nothing. ``--out``
says where the table goes; without it a full run writes ``benchmarks/results/<name>.md`` and a smoke
run writes no file (the committed results are never overwritten by a smoke run).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny sizes, seconds: the real code path and its checks, meaningless timings",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the table here (default: benchmarks/results/<name>.md; with --smoke: no file)",
    )


def out_path(args: argparse.Namespace, default: Path) -> Path | None:
    """Where the table goes: ``--out``, else ``default`` in a full run, else nowhere (smoke)."""
    if args.out is not None:
        return args.out
    return None if args.smoke else default


def write_table(path: Path | None, text: str) -> None:
    if path is None:
        print("(smoke run: no table file written; pass --out to keep it)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"-> {path}")

"""Atomic, deterministic file output: an interrupted stage never leaves half-written files."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
            kwargs.setdefault("newline", "")
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path) as fh:
        fh.write(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """UTF-8, ``\\n`` line ends, no index: byte-identical for identical frames."""
    with atomic_open(path) as fh:
        df.to_csv(fh, index=False, lineterminator="\n")


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """Read an endoctl CSV with every column as text, so ids and hashes round-trip unchanged."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)

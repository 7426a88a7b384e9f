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
def atomic_open(path: str | Path, mode: str = "w", sync: bool = True, **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    ``sync``: fsync before the rename, so the file is on disk, not only whole, when the stage ends.
    Bulk writers of many small files (the image cache) pass False: an fsync per file costs ~3 ms,
    more than encoding the image, and a stage that dies before it ends is rerun by DVC anyway.
    """
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
            if sync:
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


def write_bytes(path: str | Path, data: bytes, sync: bool = True) -> None:
    with atomic_open(path, "wb", sync) as fh:
        fh.write(data)


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """UTF-8, ``\\n`` line ends, no index: byte-identical for identical frames."""
    with atomic_open(path) as fh:
        df.to_csv(fh, index=False, lineterminator="\n")


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """Read an endoctl CSV with every column as text, so ids and hashes round-trip unchanged."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)


def read_table(path: str | Path, what: str = "file") -> pd.DataFrame:
    """A CSV (``,``/``;``/tab from the header) or xlsx with every cell as stripped text.

    Text keeps float cells exact and lets bad values be reported by row instead of coerced.
    Fully blank rows are dropped but the index is kept, so ``index + 2`` is the row number in the
    file (header = 1). Unreadable files raise one-line errors naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        try:
            df = pd.read_excel(path, dtype=str).fillna("")
        except Exception as exc:  # openpyxl raises many types for broken workbooks
            raise ValueError(f"{path}: cannot read workbook ({type(exc).__name__}: {exc})") from None
    else:
        try:
            with open(path, encoding="utf-8-sig", newline="") as fh:
                header = fh.readline()
            sep = max((",", ";", "\t"), key=header.count) if header.strip() else ","
            df = read_csv(path, sep=sep, encoding="utf-8-sig")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            msg = str(exc).strip().replace("\n", " ")
            raise ValueError(f"{path}: cannot read as CSV ({type(exc).__name__}: {msg})") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.astype(str).str.strip())
    return df[(df != "").any(axis=1)]

"""Scan a source with its adapter, hash every image once, write one manifest row per image.

The hot path (read, sha256, reduced-scale decode, batched pHash/dHash) runs in worker
processes on chunks of files; the result is sorted by ``image_id`` so the output is identical
for any worker count.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from endoctl.hashing import dhash_batch, grid_batch, grid_hex, phash_batch, to_hex
from endoctl.imaging import ImageRejected, decode_gray, read_image_file, thumbs
from endoctl.io import (
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    REJECTED_FILE,
    SOURCE_FILE,
    atomic_dir,
    printable,
    write_csv,
    write_text,
)
from endoctl.parallel import imap_chunks
from endoctl.params import MAX_PIXELS
from endoctl.sources.base import Entry, ImageRecord, Rejection, Skipped

REJECTED_COLUMNS = ["path", "reason"]
FILES_PER_TASK = 64  # small enough that the last task barely delays the others
OUTPUT_FILES = (MANIFEST_FILE, REJECTED_FILE, SOURCE_FILE)


@dataclass
class IngestResult:
    manifest: pd.DataFrame
    rejected: pd.DataFrame
    skipped: dict[str, int]  # files that are not dataset images, per kind (Skipped.why), sorted
    seconds: float

    @property
    def found(self) -> int:
        return len(self.manifest) + len(self.rejected)

    def skipped_text(self) -> str:
        """``skipped 5: 3 annotation masks, 2 metadata/hidden files`` (``skipped 0`` when none)."""
        total = sum(self.skipped.values())
        return f"skipped {total}" + (": " + ", ".join(f"{n} {why}" for why, n in self.skipped.items()) if total else "")


def hash_files(files: list[str], max_pixels: int = MAX_PIXELS) -> list[tuple | str]:
    """Per file either ``(width, height, bytes, sha256, phash_hex, dhash_hex, grid_hex)`` or a rejection reason."""
    out: list[tuple | str] = []
    grays, slots = [], []
    for file in files:
        try:
            data = read_image_file(file)
            gray = decode_gray(data, max_pixels)
        except ImageRejected as exc:
            out.append(str(exc))
            continue
        slots.append(len(out))
        out.append((gray.width, gray.height, len(data), hashlib.sha256(data).hexdigest()))
        grays.append(gray.pixels)
    if grays:
        stack = np.stack(thumbs(grays))
        hashes = zip(slots, to_hex(phash_batch(stack)), to_hex(dhash_batch(stack)), grid_hex(grid_batch(stack)))
        for slot, ph, dh, grid in hashes:
            out[slot] = (*out[slot], ph, dh, grid)
    return out


def _hash_task(args: tuple[list[str], int]) -> list[tuple | str]:
    return hash_files(*args)


def _relative(file: str | Path, data_root: Path) -> str:
    return Path(os.path.relpath(file, data_root)).as_posix()


class _Relative:
    """:func:`_relative` with one ``os.path.relpath`` per folder, not per file: it calls ``getcwd`` and
    normalises both paths every time (~50 us, seconds on a 60k-image source, all after the workers are done)."""

    def __init__(self, data_root: Path) -> None:
        self.data_root = data_root
        self.folders: dict[str, str] = {}

    def __call__(self, file: str | Path) -> str:
        folder, name = os.path.split(os.fspath(file))
        if not folder or name in ("", ".", ".."):  # nothing to share, or a name relpath would normalise away
            return _relative(file, self.data_root)
        prefix = self.folders.get(folder)
        if prefix is None:
            prefix = self.folders[folder] = _relative(folder, self.data_root)
        return name if prefix == "." else f"{prefix}/{name}"


def ingest(
    entries: Iterable[Entry],
    source: str,
    data_root: Path = Path("."),
    workers: int = 1,
    max_pixels: int = MAX_PIXELS,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> IngestResult:
    """Hash every :class:`ImageRecord` in ``entries``; ``Rejection`` rows pass through with their reason."""
    start = time.perf_counter()
    records: list[ImageRecord] = []
    rejected: list[tuple[str, str]] = []
    skipped: dict[str, int] = {}
    scanned = False
    relative = _Relative(data_root)

    def jobs() -> Iterator[tuple[list[str], int]]:
        """Chunks of files as the walk finds them, so hashing overlaps the directory scan."""
        nonlocal scanned
        chunk: list[str] = []
        for entry in entries:
            if isinstance(entry, ImageRecord):
                records.append(entry)
                chunk.append(str(entry.file))
                if len(chunk) == FILES_PER_TASK:
                    yield chunk, max_pixels
                    chunk = []
            elif isinstance(entry, Rejection):
                rejected.append((printable(relative(entry.file)), entry.reason))
            elif isinstance(entry, Skipped):
                skipped[entry.why] = skipped.get(entry.why, 0) + 1
        if chunk:
            yield chunk, max_pixels
        scanned = True

    results: list[tuple | str] = []

    def collect(parts: Iterable[list[tuple | str]]) -> None:
        for part in parts:
            results.extend(part)
            if on_progress:
                on_progress(len(results), len(records) if scanned else None)

    collect(imap_chunks(_hash_task, jobs(), workers))
    rows = []
    for record, result in zip(records, results):
        path = relative(record.file)
        if isinstance(result, str):
            rejected.append((path, result))
            continue
        width, height, size, sha, ph, dh, grid = result
        rows.append(
            (
                f"{source}/{record.rel}",
                source,
                path,
                record.label,
                record.patient_id,
                record.official_split,
                width,
                height,
                size,
                sha,
                ph,
                dh,
                grid,
            )
        )
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).sort_values("image_id", kind="stable")
    rejects = pd.DataFrame(rejected, columns=REJECTED_COLUMNS).sort_values(["path", "reason"])
    return IngestResult(
        manifest.reset_index(drop=True),
        rejects.reset_index(drop=True),
        dict(sorted(skipped.items())),
        time.perf_counter() - start,
    )


def source_json(source: str, format: str) -> str:
    """``source.json``: the adapter that read the source, so split and report need no ``--format-of``."""
    return json.dumps({"format": format, "source": source}, indent=2, sort_keys=True) + "\n"


def write_ingest(result: IngestResult, out: str | Path, source: str | None = None, format: str | None = None) -> None:
    """The manifest, its rejected list and (given ``source`` and ``format``) ``source.json``, replaced
    together (found = accepted + rejected holds on disk)."""
    with atomic_dir(out, OUTPUT_FILES, what="ingest outputs") as tmp:
        write_csv(tmp / MANIFEST_FILE, result.manifest)
        write_csv(tmp / REJECTED_FILE, result.rejected)
        if source is not None and format is not None:
            write_text(tmp / SOURCE_FILE, source_json(source, format))

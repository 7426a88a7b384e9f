"""What every source adapter shares: the record types, a safe directory walk, and the registry.

An adapter turns a dataset's native folder layout into :class:`ImageRecord` rows (or
:class:`Rejection` rows for files it cannot place). It never decodes images: ``ingest`` does.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from endoctl.imaging import IMAGE_SUFFIXES

# Documentation and metadata that datasets ship beside their images: skipped and counted.
METADATA_SUFFIXES = frozenset(
    {".csv", ".tsv", ".xlsx", ".xls", ".json", ".yaml", ".yml", ".md", ".txt", ".pdf", ".html", ".xml"}
)


@dataclass(frozen=True)
class ImageRecord:
    """One candidate image; ``rel`` is its POSIX path below the source root (the id's stable part)."""

    file: Path
    rel: str
    label: str
    patient_id: str = ""
    official_split: str = ""


@dataclass(frozen=True)
class Rejection:
    file: str  # printable path (non-UTF-8 bytes escaped)
    reason: str


@dataclass(frozen=True)
class Skipped:
    rel: str


Entry = ImageRecord | Rejection | Skipped


def printable(path: str) -> str:
    """A path that is always valid UTF-8: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class FileEntry:
    file: Path
    rel: str
    parts: tuple[str, ...]  # rel split into folders + file name

    @property
    def stem(self) -> str:
        return Path(self.parts[-1]).stem


def walk(root: Path) -> Iterator[FileEntry | Rejection | Skipped]:
    """Every file below ``root`` in sorted order, following symlinks but never looping.

    Image files come back as :class:`FileEntry`; metadata/hidden files as :class:`Skipped`;
    broken links, symlink loops, unreadable folders, non-UTF-8 names and non-image files as
    :class:`Rejection`.
    """
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel_parts: tuple[str, ...]) -> Iterator[FileEntry | Rejection | Skipped]:
        try:
            st = folder.stat()
        except OSError as exc:
            yield Rejection(printable(str(folder)), f"unreadable folder: {exc.strerror}")
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            yield Rejection(printable(str(folder)), "symlink loop: folder already visited (a link back to it)")
            return
        seen.add(key)
        try:
            names = sorted(os.listdir(folder))
        except OSError as exc:
            yield Rejection(printable(str(folder)), f"unreadable folder: {exc.strerror}")
            return
        for name in names:
            path = folder / name
            parts = (*rel_parts, name)
            rel = "/".join(parts)
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                yield Rejection(printable(str(path)), "file name is not valid UTF-8")
                continue
            if name.startswith("."):
                yield Skipped(rel)
                continue
            try:
                mode = path.stat().st_mode
            except OSError as exc:
                if path.is_symlink():
                    why = "symlink loop" if exc.errno == errno.ELOOP else "broken symlink"
                    yield Rejection(str(path), why)
                else:
                    yield Rejection(str(path), f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISDIR(mode):
                yield from visit(path, parts)
            elif not stat.S_ISREG(mode):
                yield Rejection(str(path), "not a regular file")
            else:
                suffix = path.suffix.lower()
                if suffix in IMAGE_SUFFIXES:
                    yield FileEntry(path, rel, parts)
                elif suffix in METADATA_SUFFIXES or name.lower().startswith("readme"):
                    yield Skipped(rel)
                else:
                    yield Rejection(str(path), f"unsupported file type '{suffix or name}'")

    yield from visit(root, ())


class Adapter:
    """Base adapter: subclasses describe their layout and map one file to one record.

    ``labels`` is the optional label/metadata file the dataset ships (see each adapter's doc).
    """

    name: ClassVar[str]
    layout: ClassVar[str]
    label_rule: ClassVar[str]
    patient_rule: ClassVar[str] = "none (the dataset publishes no patient ids)"
    split_rule: ClassVar[str] = "none"

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        self.root = root
        self.labels = labels

    def scan(self) -> Iterator[Entry]:
        for item in walk(self.root):
            if isinstance(item, FileEntry):
                yield self.record(item)
            else:
                yield item

    def record(self, entry: FileEntry) -> ImageRecord | Rejection:
        raise NotImplementedError

    def misplaced(self, entry: FileEntry) -> Rejection:
        return Rejection(str(entry.file), f"not in the {self.name} layout {self.layout}")

    @classmethod
    def describe(cls) -> str:
        return (
            f"{cls.name}: {cls.layout}\n  label: {cls.label_rule}\n"
            f"  patient: {cls.patient_rule}\n  official split: {cls.split_rule}"
        )


REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    REGISTRY[cls.name] = cls
    return cls


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path

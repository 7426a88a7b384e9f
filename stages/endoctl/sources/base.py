"""What every source adapter shares: the record types, a safe directory walk, and the registry.

An adapter turns a dataset's native folder layout into :class:`ImageRecord` rows (or
:class:`Rejection` rows for files it cannot place). It never decodes images: ``ingest`` does.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from endoctl.imaging import IMAGE_SUFFIXES
from endoctl.io import printable

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
    """A file that is not a dataset image: ``why`` says what it is (counted per kind in the summary)."""

    rel: str
    why: str = "metadata/hidden files"


ANNOTATION = "annotation masks"  # segmentation masks and box files: the dataset's labels, not images
PATH_MAX = 4096  # Linux: the longest path a system call takes, in bytes


Entry = ImageRecord | Rejection | Skipped


@dataclass(frozen=True)
class FileEntry:
    file: Path
    rel: str
    parts: tuple[str, ...]  # rel split into folders + file name

    @property
    def stem(self) -> str:
        return Path(self.parts[-1]).stem


OUTSIDE = "symlinked folders leading out of the source (not followed)"


def _outside(path: Path, prefix: str) -> bool:
    """Whether the symlink ``path`` resolves to somewhere not below ``prefix`` (the root's real path + '/')."""
    return not (os.path.realpath(path) + os.sep).startswith(prefix)


def _unstattable(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return f"path too long ({len(os.fsencode(path))} bytes; the system reads at most {PATH_MAX}): not read"
    return f"cannot stat: {exc.strerror}"


def walk(root: Path) -> Iterator[FileEntry | Rejection | Skipped]:
    """Every file below ``root`` in sorted order, following symlinks but never looping or leaving ``root``.

    Image files come back as :class:`FileEntry`; metadata/hidden files as :class:`Skipped`;
    broken links, symlink loops, unreadable folders, non-UTF-8 names, paths longer than the system
    takes and non-image files as :class:`Rejection`.

    Symlinks are followed only while they stay inside ``root`` (its real path): a link to a folder
    elsewhere (``etc -> /etc``) is not entered and is counted as :data:`OUTSIDE`; a link to a file
    elsewhere is rejected (it stands where an image would, so it is named in the rejected list)
    and never opened. Links within ``root`` are followed as before: a folder reached a second way
    is rejected as already visited (read once); a file linked under a second name is read under
    both, like a copy (an image filed under two classes keeps both labels).
    """
    seen: set[tuple[int, int]] = set()
    inside = os.path.realpath(root).rstrip(os.sep) + os.sep

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
            link = False
            try:  # lstat first: one call for a plain entry, and no second call that could fail on a long path
                mode = path.lstat().st_mode
                link = stat.S_ISLNK(mode)
                if link:
                    mode = path.stat().st_mode
            except OSError as exc:
                if link:
                    yield Rejection(str(path), "symlink loop" if exc.errno == errno.ELOOP else "broken symlink")
                else:
                    yield Rejection(str(path), _unstattable(path, exc))
                continue
            if link and _outside(path, inside):
                if stat.S_ISDIR(mode):
                    yield Skipped(rel, OUTSIDE)
                else:
                    yield Rejection(str(path), "symlink to a file outside the source folder: not followed")
            elif stat.S_ISDIR(mode):
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


# How each rule of an adapter is known (SOURCES.md's marks), printed by ``endoctl sources``.
MARKS = {
    "V": "verified in the dataset's own repository, paper or published files",
    "3": "seen only in third-party loader code",
    "?": "inferred, not confirmed: check against your download",
}
RULES = ("layout", "label", "patient", "split")


class Adapter:
    """Base adapter: subclasses describe their layout and map one file to one record.

    The ``labels`` argument (kept as ``label_file``) is the optional label/metadata file the
    dataset ships (see each adapter's doc); the ``labels`` ClassVar is the vocabulary of labels the
    adapter emits, one entry per label a multi-label image joins with '|' (empty where it is
    open-ended, e.g. any class folder name): the taxonomy must map every one of them. ``evidence``
    marks each of ``RULES`` with keys of ``MARKS`` ("V", or "V/?" for a rule with a verified and an
    inferred part; generic layouts leave it empty). ``signature`` says what :meth:`detect` looks for.
    """

    name: ClassVar[str]
    layout: ClassVar[str]
    label_rule: ClassVar[str]
    patient_rule: ClassVar[str] = "none (the dataset publishes no patient ids)"
    split_rule: ClassVar[str] = "none"
    labels: ClassVar[tuple[str, ...]] = ()
    evidence: ClassVar[dict[str, str]] = {}
    signature: ClassVar[str] = ""

    def __init__(self, root: Path, labels: Path | None = None) -> None:
        self.root = root
        self.label_file = labels

    @classmethod
    def detect(cls, root: Path) -> str | None:
        """What in ``root`` shows this layout (a few cheap listings, never a walk), or None."""
        return None

    def scan(self) -> Iterator[Entry]:
        for item in walk(self.root):
            if isinstance(item, FileEntry):
                yield self.record(item)
            else:
                yield item

    def record(self, entry: FileEntry) -> Entry:
        raise NotImplementedError

    def misplaced(self, entry: FileEntry) -> Rejection:
        return Rejection(str(entry.file), f"not in the {self.name} layout {self.layout}")

    @classmethod
    def describe(cls) -> str:
        def mark(rule: str) -> str:
            return f" [{cls.evidence[rule]}]" if rule in cls.evidence else ""

        text = (
            f"{cls.name}: {cls.layout}{mark('layout')}\n  label{mark('label')}: {cls.label_rule}\n"
            f"  patient{mark('patient')}: {cls.patient_rule}\n  official split{mark('split')}: {cls.split_rule}"
        )
        if cls.labels:
            text += f"\n  labels ({len(cls.labels)}): {compact(cls.labels)}"
        if cls.signature:
            text += f"\n  --format auto looks for: {cls.signature}"
        return text


def compact(labels: tuple[str, ...]) -> str:
    """``c01, c02, …, c34`` runs written ``c01-c34``; other labels listed as they are."""
    out: list[str] = []
    run: list[tuple[str, int, str]] = []

    def flush() -> None:
        if run:
            out.append(run[0][2] if len(run) == 1 else f"{run[0][2]}-{run[-1][2]}")
            run.clear()

    for label in labels:
        match = re.fullmatch(r"([a-z])([0-9]{2})", label)
        if match and run and run[-1][0] == match.group(1) and run[-1][1] + 1 == int(match.group(2)):
            run.append((match.group(1), int(match.group(2)), label))
            continue
        flush()
        if match:
            run.append((match.group(1), int(match.group(2)), label))
        else:
            out.append(label)
    flush()
    return ", ".join(out)


def missing_listed(folder: Path, listed: dict[str, str], bad: dict[str, str], seen: set[str]) -> Iterator[Rejection]:
    """A rejection for every image a label file names (``listed``: name -> that file; ``bad``: name ->
    why its row is unusable) that the walk did not find in ``folder``."""
    for name in sorted((set(listed) | set(bad)) - seen):
        reason = f"{bad[name]}; image not found" if name in bad else f"listed in {listed[name]} but not found"
        yield Rejection(str(folder / name), reason)


def child_dirs(folder: Path) -> list[str]:
    """Sorted names of the sub-folders of ``folder`` (empty when it is not a readable folder)."""
    try:
        with os.scandir(folder) as it:
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return []


REGISTRY: dict[str, type[Adapter]] = {}


def register(cls: type[Adapter]) -> type[Adapter]:
    REGISTRY[cls.name] = cls
    return cls


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path

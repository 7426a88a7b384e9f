"""Atomic, deterministic output: an interrupted stage leaves its previous outputs or its new ones, never a mix.

Two mechanisms, one per kind of output:

* **One file** (:func:`atomic_open`, :func:`write_text`, :func:`write_csv`, ...): written to a
  hidden temporary beside it, fsynced, renamed over it.
* **A set of files that must agree** (a split's ``train_val.csv``/``test.csv``/report, a manifest
  and its rejected list, predictions and theirs, an evaluation's report, metrics and plots):
  :func:`atomic_dir` builds the whole folder as a hidden sibling and then *exchanges* it with the
  old folder in one step (Linux ``renameat2(RENAME_EXCHANGE)``), after which the old folder is
  deleted. Anyone opening files under the folder's path sees the old complete set up to that
  instant and the new complete set after it. Renaming one file after another cannot give that
  (killed in between: a new ``train_val.csv`` beside an old ``test.csv``), nor can moving the old
  folder aside first (a moment with no folder at all); the latter is only the fallback where the
  kernel or file system lacks ``RENAME_EXCHANGE`` (checked at run time).

Temporaries are named ``.<name>.<pid>.<8 random chars>.tmp``. A killed run leaves one behind; the
next run writing the same output deletes every such temporary whose process is gone (a live
concurrent run's temporary is left alone; process ids are per machine, so two machines must not
write one output folder on a shared file system at the same time), and readers of a folder of
outputs skip hidden names.

A set folder is replaced as a whole, so it must hold nothing but that command's outputs:
:func:`check_output_dir` refuses (before any work is done) a folder holding anything else, the
current folder or one of its parents, a file where a folder is expected, and a folder (or the one
that would hold it) where nothing can be created or removed (read-only, no permission).

Nothing heavy is imported at module level (pandas only inside the CSV helpers), so the command
line can use these helpers and still answer ``--help`` instantly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_exchange_supported: bool | None = None  # learnt on first use: None = not tried yet


class OutputError(ValueError):
    """An output that cannot be written; the message is one line naming the path and why."""


# --------------------------------------------------------------------------- temporaries


def _temp_name(path: Path) -> str:
    return f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _temp_pattern(name: str) -> re.Pattern:
    # pid optional: tempfile.mkstemp names of earlier versions (".<name>.<8 chars>.tmp") are stale too
    return re.compile(rf"\.{re.escape(name)}\.(?:(\d+)\.)?[a-z0-9_]{{8}}\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(path: str | Path) -> list[Path]:
    """Delete the temporaries of ``path`` left by killed runs (their process is gone); return them."""
    path = Path(path)
    pattern = _temp_pattern(path.name)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and not (match.group(1) and _alive(int(match.group(1)))):
            _remove(Path(entry.path))
            removed.append(Path(entry.path))
    return removed


def is_temporary(name: str) -> bool:
    """A hidden ``*.tmp`` name: an output being written (or left by a killed run), never an output."""
    return name.startswith(".") and name.endswith(".tmp")


def _why(path: str | Path, exc: OSError) -> str:
    """``cannot write NAME: why``, NAME being ``path`` where the failing name is its hidden temporary."""
    name = exc.filename if exc.filename and not is_temporary(os.path.basename(exc.filename)) else path
    return f"cannot write {name}: {exc.strerror or exc}"


NAME_MAX = 255  # bytes in one file or folder name (Linux file systems)


def check_name(path: str | Path, option: str = "--out") -> None:
    """Refuse a name too long for the file system, or for the hidden temporary written in its place
    (:func:`_temp_name`, ~25 bytes longer), naming the user's path: else the error names the temporary."""
    path = Path(path)
    extra = len(os.fsencode(_temp_name(path))) - len(os.fsencode(path.name))
    for part, room in [*((p, NAME_MAX) for p in path.parent.parts), (path.name, NAME_MAX - extra)]:
        size = len(os.fsencode(part))
        if size > room:
            why = ", as it is first written under the hidden name .<name>.<pid>.<8 chars>.tmp" * (room < NAME_MAX)
            raise OutputError(f"{option} {path}: name too long ({size} bytes; at most {room}{why})")


# --------------------------------------------------------------------------- single files


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", sync: bool = True, **kwargs) -> Iterator[IO]:
    """Open a temp file beside ``path``; rename it over ``path`` only if the block succeeds.

    ``sync``: fsync before the rename, so the file is on disk, not only whole, when the stage ends.
    Bulk writers of many small files (the image cache) pass False: an fsync per file costs ~3 ms,
    more than encoding the image, and a stage that dies before it ends is rerun by DVC anyway.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(_why(path, exc)) from None
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
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


# --------------------------------------------------------------------------- sets of files


def check_output_dir(
    path: str | Path, owns: Iterable[str], option: str = "--out", what: str = "the outputs", hint: str = ""
) -> Path:
    """Raise :class:`OutputError` unless ``path`` can be replaced as a whole by :func:`atomic_dir`.

    ``owns``: glob patterns of the entry names this command writes there; anything else in the
    folder (someone's other files) would be deleted by the swap, so it is refused, as are the
    current folder, a folder holding it, and an existing file. Hidden ``*.tmp`` leftovers count
    as the command's own. So is a folder that cannot be written (read-only file system, no
    permission), so that the command fails before its work rather than after it.
    """
    path = Path(path)
    check_name(path, option)
    patterns = list(owns)
    shown = f"{option} {path}" + (
        " (an empty value names it too)" if str(path) == "." and option.startswith("--") else ""
    )
    here = Path.cwd().resolve()
    full = path.resolve()
    if full == here or full in here.parents:
        raise OutputError(
            f"{shown}: that is the current folder (or holds it); {what} are replaced together as one "
            f"folder, so give them a folder of their own{hint}"
        )
    if path.is_symlink() and not path.is_dir() or path.exists() and not path.is_dir():
        raise OutputError(f"{shown} is a file; {what} are written into a folder (replaced as a whole){hint}")
    if path.is_dir():
        try:
            names = sorted(e.name for e in os.scandir(path))
        except OSError as exc:
            raise OutputError(f"{shown}: cannot read the folder: {exc.strerror}") from None
        foreign = [n for n in names if not is_temporary(n) and not any(fnmatch.fnmatchcase(n, p) for p in patterns)]
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise OutputError(
                f"{shown} holds {', '.join(map(repr, foreign[:3]))}{more}, which "
                f"{'is' if len(foreign) == 1 else 'are'} "
                f"not among {what} ({', '.join(patterns)}); the folder is replaced as a whole, so give them a folder "
                f"of their own{hint}"
            )
    # the swap creates a sibling of the folder and empties the old one: refuse now, not after the work
    for folder in ([path] if path.is_dir() else []) + [next(p for p in path.absolute().parents if p.is_dir())]:
        why = _unwritable(folder)
        if why:
            raise OutputError(f"cannot write {folder}: {why}{hint}")
    return path


def _unwritable(folder: Path) -> str | None:
    """Why entries cannot be created or removed in the existing ``folder`` (None: they can)."""
    if os.access(folder, os.W_OK | os.X_OK):
        return None
    return os.strerror(errno.EROFS if os.statvfs(folder).f_flag & os.ST_RDONLY else errno.EACCES)


def _libc_renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def exchange(a: str | Path, b: str | Path) -> bool:
    """Swap two existing paths in one atomic step; False where the kernel/file system cannot."""
    global _exchange_supported
    if _exchange_supported is False:
        return False
    fn = _libc_renameat2()
    if fn is None:
        _exchange_supported = False
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        _exchange_supported = True
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        _exchange_supported = False
        return False
    raise OSError(err, os.strerror(err), str(b))


SYNC_FILES_ONE_BY_ONE = 256  # larger sets (an image cache) are flushed with one syncfs instead


def _syncfs(folder: Path) -> None:
    """Flush the file system holding ``folder`` (Linux ``syncfs``; elsewhere ``sync``)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
        if fn is None or fn(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _sync(folder: Path) -> None:
    """Make every file and folder below ``folder`` durable before it is swapped in.

    A small set is fsynced file by file, so other processes' unrelated writes on the same file
    system are never waited for. A large one (an image cache of 10^5 files) is flushed with one
    ``syncfs``: an fsync per file costs ~3 ms, more than encoding the image, and 10^5 of them would
    dominate the stage.
    """
    walked = list(os.walk(folder))
    if sum(len(files) for _, _, files in walked) > SYNC_FILES_ONE_BY_ONE:
        _syncfs(folder)
        return
    for root, _, files in walked:
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the finished ``tmp`` folder at ``path``: exchange with the old folder, then delete it."""
    if path.is_dir() or path.is_symlink():
        if not exchange(tmp, path):  # fallback: a moment without the folder (see the module doc)
            aside = path.parent / _temp_name(path)
            os.rename(path, aside)
            os.rename(tmp, path)
            tmp = aside
        _fsync_dir(path.parent)
        _remove(tmp)  # now the previous set
    else:
        os.rename(tmp, path)
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_dir(
    path: str | Path, owns: Iterable[str] = ("*",), option: str = "--out", what: str = "the outputs", hint: str = ""
) -> Iterator[Path]:
    """Yield an empty hidden sibling of ``path`` to write the whole output set into; when the block
    succeeds it replaces ``path`` in one step (see the module doc), else it is deleted.

    OS errors (read-only file system, permissions, disk full) become one-line :class:`OutputError`
    messages naming the output path.
    """
    path = Path(path)
    patterns = list(owns)
    check_output_dir(path, patterns, option, what, hint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale(path)
        tmp = path.parent / _temp_name(path)
        os.mkdir(tmp)  # umask applies: the folder ends up with normal permissions
    except OSError as exc:
        raise OutputError(_why(path, exc)) from None
    try:
        yield tmp
        check_output_dir(path, patterns, option, what, hint)  # nothing foreign arrived meanwhile
        _sync(tmp)
        _swap_in(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        # a system error while writing (not an input's "not found" raised with a message)
        if isinstance(exc, OSError) and exc.errno is not None and str(exc.filename or tmp).startswith(str(tmp)):
            name = str(exc.filename or path).replace(str(tmp), str(path))
            raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None
        raise


# --------------------------------------------------------------------------- reading

# An ingest output folder: the manifest, the rejected list and what read them, replaced together.
MANIFEST_FILE = "manifest.csv"
REJECTED_FILE = "rejected.csv"
SOURCE_FILE = "source.json"  # {"format": the adapter (--format) that read the source, "source": its name}
MANIFEST_COLUMNS = [  # of MANIFEST_FILE: the image, its labels and where it came from, its size and hashes
    "image_id",
    "source",
    "path",
    "label",
    "patient_id",
    "official_split",
    "width",
    "height",
    "bytes",
    "sha256",
    "phash",
    "dhash",
    "grid",
]
# A dedupe output folder.
DUPLICATES_FILE, PAIRS_FILE, DEDUPE_REPORT_FILE = "duplicates.csv", "duplicate_pairs.csv", "duplicates_report.json"
PAIR_COLUMNS = ["image_id_a", "image_id_b", "distance", "kind", "similarity"]  # of PAIRS_FILE
# A split folder (cache keeps the same names for its re-pointed copy).
TRAIN_VAL_FILE, TEST_FILE, MAPPING_FILE, EXCLUDED_FILE = (
    "train_val.csv",
    "test.csv",
    "class_mapping.json",
    "excluded.csv",
)
SPLIT_FILES = (TRAIN_VAL_FILE, TEST_FILE)  # the image lists of a split folder
SPLIT_REPORT_FILE, SPLIT_REPORT_MD_FILE = "split_report.json", "split_report.md"


def find_manifests(paths: Iterable[str | Path]) -> list[Path]:
    """The manifest CSVs named by ``paths``: the one place that finds manifests.

    A path is a manifest CSV, an ingest output folder (its ``manifest.csv``), or a folder of them
    (``manifests/ingest``: every ``<source>/manifest.csv``, plus any ``*.csv`` but ``*.rejected.csv``
    directly in it), so a source added to params.yaml joins dedupe and split by itself. Hidden
    entries (an ingest in progress, or one that was killed) are never read.
    """
    files = []
    for path in map(Path, paths):
        if path.is_dir():
            if (path / MANIFEST_FILE).is_file():
                files.append(path / MANIFEST_FILE)
                continue
            entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
            found = [p / MANIFEST_FILE for p in entries if (p / MANIFEST_FILE).is_file()]
            found += [p for p in entries if p.suffix == ".csv" and p.is_file() and not p.name.endswith(".rejected.csv")]
            if not found:
                raise ValueError(
                    f"no manifests in folder {path} (expected <source>/{MANIFEST_FILE} folders written by "
                    f"`endoctl ingest`, or manifest CSVs)"
                )
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"manifest not found: {path}")
    return files


def read_manifests(files: list[Path]) -> tuple[list[pd.DataFrame], list[str]]:
    """Each manifest as a text frame, and the names of the header-only ones; all of them empty is an error."""
    frames = [read_csv(file) for file in files]
    empty = [str(f) for f, df in zip(files, frames) if not len(df)]
    if len(empty) == len(files):
        raise ValueError(
            f"{empty[0]}: no rows (header only){f', like the other {len(empty) - 1}' if len(empty) > 1 else ''}: "
            "no images to work on"
        )
    return frames, empty


def printable(path: str) -> str:
    """A path that is always valid UTF-8 (for CSVs, workbooks, the console): undecodable bytes of a
    file name (zips made on Windows) become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def rejected_beside(table: str | Path) -> Path:
    """``<stem>.rejected.csv`` beside a table file: the rows that could not go into it, with why."""
    table = Path(table)
    return table.with_name(f"{table.stem}.rejected.csv")


def rejected_file(manifest: Path) -> Path:
    """The rejected list written with ``manifest`` (``<folder>/rejected.csv``; :func:`rejected_beside`
    a manifest CSV of the older flat layout)."""
    manifest = Path(manifest)
    return manifest.with_name(REJECTED_FILE) if manifest.name == MANIFEST_FILE else rejected_beside(manifest)


def source_info(manifest: Path) -> dict[str, str] | None:
    """What ``endoctl ingest`` recorded beside ``manifest`` in its folder's ``source.json``
    (``format``: the adapter that read the source, ``source``: the name in its rows); None for a
    flat manifest CSV or an ingest folder written before the file existed."""
    import json

    manifest = Path(manifest)
    if manifest.name != MANIFEST_FILE or not (manifest.parent / SOURCE_FILE).is_file():
        return None
    file = manifest.parent / SOURCE_FILE
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: cannot read ({exc})") from None
    if not isinstance(info, dict) or not all(isinstance(info.get(k), str) and info[k] for k in ("format", "source")):
        raise ValueError(f'{file}: expected {{"format": "...", "source": "..."}} as `endoctl ingest` writes it')
    return {"format": info["format"], "source": info["source"]}


# Generic layouts (class folders, a labels CSV) carry no label vocabulary of their own: a source read
# through one is named by its source name (or --format-of), as before the format was recorded.
LAYOUT_FORMATS = frozenset({"folder", "csv"})


def manifest_formats(manifests: Iterable[Path], overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Source name -> the format (taxonomy dataset) that read it, from the ingest folders'
    ``source.json``, where the two differ; ``overrides`` (``--format-of``) win. Sources without the
    file (flat CSVs, older ingest folders) or read through a generic layout (:data:`LAYOUT_FORMATS`)
    are left out: their name stands for their format."""
    found: dict[str, tuple[str, Path]] = {}
    for manifest in manifests:
        info = source_info(manifest)
        if info is None or info["format"] in LAYOUT_FORMATS:
            continue
        name, fmt = info["source"], info["format"]
        if name in found and found[name][0] != fmt and name not in (overrides or {}):
            raise ValueError(
                f"source {name!r} was read as format {found[name][0]!r} ({found[name][1]}) and as {fmt!r} "
                f"({manifest.parent / SOURCE_FILE}): give it one with --format-of {name}=FORMAT"
            )
        found[name] = (fmt, manifest.parent / SOURCE_FILE)
    formats = {name: fmt for name, (fmt, _) in sorted(found.items()) if name != fmt}
    formats.update(overrides or {})
    return formats


def source_name(manifest: Path) -> str:
    """What a manifest file is called in reports: its ingest folder's name, or a flat CSV's stem."""
    manifest = Path(manifest)
    return manifest.parent.name if manifest.name == MANIFEST_FILE else manifest.stem


_MANGLED = re.compile(r"(.+)\.\d+")  # pandas' name for a repeated column: path, path.1, path.2, ...


def _mangled(columns: Iterable[object]) -> bool:
    """Whether pandas may have renamed a repeated header name (``x.1`` beside ``x``)."""
    names = {str(c) for c in columns}
    return any((m := _MANGLED.fullmatch(n)) and m[1] in names for n in names)


def check_header(path: str | Path, names: Iterable[object], sheet: str | None = None) -> None:
    """Refuse a header naming a column twice (compared stripped): pandas reads the second as
    ``name.1`` and every reader would silently use the first, so the one-line ``ValueError`` names
    the column as written."""
    seen: dict[str, int] = {}
    for name in names:
        seen[str(name).strip()] = seen.get(str(name).strip(), 0) + 1
    repeated = [f"{name!r} ({n} times)" for name, n in seen.items() if n > 1]
    if repeated:
        where = f" sheet {sheet!r}" if sheet is not None else ""
        raise ValueError(
            f"{path}{where}: repeated column(s) in the header: {', '.join(repeated)}; each column must appear once"
        )


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """Read an endoctl CSV with every column as text, so ids and hashes round-trip unchanged.

    An empty, non-UTF-8 or malformed file, or one whose header repeats a column, raises a one-line
    ``ValueError`` naming it.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)
        if _mangled(df.columns):  # confirm from the header as written
            check_header(path, pd.read_csv(path, header=None, nrows=1, dtype=str, **kwargs).iloc[0].dropna())
        return df
    except pd.errors.EmptyDataError:
        raise ValueError(
            f"{path}: empty file ({Path(path).stat().st_size} bytes), expected a CSV with a header row"
        ) from None
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        msg = str(exc).strip().replace("\n", " ")
        raise ValueError(f"{path}: cannot read as CSV ({type(exc).__name__}: {msg})") from None


def _check_formulas(path: Path, sheet: str) -> None:
    """Refuse a formula cell without a saved result: pandas reads it as empty, so a probability or a
    label would vanish without a word (programs that write formulas without computing them, such as
    openpyxl itself, leave no result in the file)."""
    import zipfile

    from openpyxl import load_workbook

    with zipfile.ZipFile(path) as z:  # most workbooks hold no formula at all: skip the two passes
        if not any(b"<f" in z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/")):
            return
    formulas = load_workbook(path, read_only=True, data_only=False)[sheet]
    results = load_workbook(path, read_only=True, data_only=True)[sheet]
    for cells, values in zip(formulas.iter_rows(), results.iter_rows()):
        for cell, value in zip(cells, values):
            if cell.data_type == "f" and value.value is None:
                raise ValueError(
                    f"{path} sheet {sheet!r}: cell {cell.coordinate} holds the formula {cell.value} without a saved "
                    "result: open and save the workbook in Excel or LibreOffice (which compute it), or save it as CSV"
                )


def _read_workbook(path: Path, key_columns: tuple[str, ...], one_sheet: bool = False) -> pd.DataFrame:
    """The sheet holding the data: the first with one of ``key_columns``, else the first non-empty.

    ``one_sheet``: the sheets with one of ``key_columns`` *and rows* must be one at most (which of
    two is meant is not guessed); a sheet with only the header then does not count.
    """
    import pandas as pd

    try:
        sheets = pd.read_excel(path, dtype=str, sheet_name=None)
    except Exception as exc:  # openpyxl raises many types for broken workbooks
        raise ValueError(f"{path}: cannot read workbook ({type(exc).__name__}: {exc})") from None
    filled = {name: df for name, df in sheets.items() if len(df.columns)}
    if not filled:
        raise ValueError(f"{path}: every sheet is empty ({', '.join(map(repr, sheets))})")
    wanted = {c.lower() for c in key_columns}
    keyed = [n for n, df in filled.items() if wanted & {str(c).strip().lower() for c in df.columns}]
    passed_over: list[str] = []
    if one_sheet:
        held = [n for n in keyed if len(filled[n].dropna(how="all"))]
        if len(held) > 1:
            raise ValueError(
                f"{path}: sheets {', '.join(map(repr, held))} all hold {'/'.join(key_columns)} rows; which one is "
                "meant is not guessed: keep one of them (or save it as CSV)"
            )
        if held:
            passed_over, keyed = [n for n in keyed if n not in held], held
    name = keyed[0] if keyed else next(iter(filled))
    if _mangled(filled[name].columns):  # confirm from the header as written
        check_header(path, pd.read_excel(path, sheet_name=name, header=None, nrows=1).iloc[0].dropna(), name)
    if filled[name].isna().any().any():
        _check_formulas(path, name)
    df = filled[name].fillna("")
    df.attrs.update(sheet=name, passed_over=passed_over)
    return df


def read_table(
    path: str | Path,
    what: str = "file",
    key_columns: tuple[str, ...] = (),
    encoding: str = "utf-8-sig",
    one_sheet: bool = False,
) -> pd.DataFrame:
    """A CSV (``,``/``;``/tab from the header) or xlsx with every cell as stripped text.

    Text keeps float cells exact and lets bad values be reported by row instead of coerced.
    ``encoding`` is for CSVs that are not UTF-8 (CrohnIPI ships ISO-8859-1).
    Fully blank rows are dropped but the index is kept, so ``index + 2`` is the row number in the
    file (header = 1). From a workbook, the first sheet with one of ``key_columns`` is read (else
    the first non-empty one; its name is in ``df.attrs["sheet"]``): CE24's truth workbooks repeat the
    header on a sheet of totals after the data. With ``one_sheet`` (predictions), two sheets with one
    of ``key_columns`` and rows are an error instead, and header-only ones are passed over (their
    names in ``df.attrs["passed_over"]``). Unreadable files raise one-line errors naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        df = _read_workbook(path, key_columns, one_sheet)
    else:
        with open(path, encoding=encoding, errors="replace", newline="") as fh:
            header = fh.readline()
        sep = max((",", ";", "\t"), key=header.count) if header.strip() else ","
        df = read_csv(path, sep=sep, encoding=encoding)
    attrs = dict(df.attrs)
    check_header(path, df.columns, attrs.get("sheet"))  # names differing only in spaces
    df.columns = [str(c).strip() for c in df.columns]
    df = df.apply(lambda col: col.astype(str).str.strip())
    df = df[(df != "").any(axis=1)]
    df.attrs.update(attrs)
    return df

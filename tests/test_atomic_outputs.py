"""Output sets change together or not at all: real runs killed with SIGKILL at many points.

Each run is the real ``endoctl`` command line in its own process, forked from a server process
that imported endoctl once (a fresh interpreter per run would spend a second on imports, and
the budget is many kills). The test polls the output's parent folder; once the run starts
writing (its hidden temporary appears) it waits a delay spread over the measured length of the
write phase and sends SIGKILL. Meanwhile a reader thread snapshots the output folder over and over.
Every state seen, by that reader or after a kill, must be byte for byte one complete set (the
old run's or the new run's), and the next run must clean up what a killed run left.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from test_split import TAXONOMY_YAML, make_manifest

from endoctl.io import OutputError, atomic_dir, clean_stale, write_csv, write_text
from endoctl.testing import scene

SERVER = r"""
import json, os, sys
from endoctl.cli import app
import endoctl.ingest, endoctl.split, endoctl.taxonomy, endoctl.sources
endoctl.sources.get_adapter("folder", ".")  # import every adapter now, not in each run
out = sys.stdout.fileno()
while line := sys.stdin.readline():
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1), os.dup2(null, 2)
        os.chdir(job["cwd"])
        try:
            app(job["argv"], prog_name="endoctl")
        except SystemExit as exc:
            os._exit(exc.code if isinstance(exc.code, int) else 1)
        os._exit(0)
    os.write(out, f"{pid}\n".encode())
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, but not reaped: its pid stays its own
    os.write(out, b"exited\n")
    sys.stdin.readline()  # the test is done with the pid (no more kill)
    _, status = os.waitpid(pid, 0)
    os.write(out, f"{os.waitstatus_to_exitcode(status)}\n".encode())
"""


KILLS = 12  # per stage


class Server:
    """Runs ``endoctl`` command lines in forked processes, one at a time; the test may kill them."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        self.pending = b""
        self.done = True

    def _line(self, timeout: float | None) -> str | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.pending:
            if not select.select([fd], [], [], timeout)[0]:
                return None
            chunk = os.read(fd, 4096)
            assert chunk, "the run server died"
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line.decode()

    def start(self, argv: list[str], cwd: Path) -> int:
        self.proc.stdin.write((json.dumps({"argv": argv, "cwd": str(cwd)}) + "\n").encode())
        self.done = False
        return int(self._line(60))

    def exited(self, timeout: float | None) -> bool:
        """Whether the run has exited (it stays a zombie, so killing its pid stays safe, until reaped)."""
        if not self.done:
            line = self._line(timeout)
            assert line in (None, "exited"), line
            self.done = line is not None
        return self.done

    def exit_code(self) -> int:
        """Wait for the run to end, reap it, return its exit code (-9 when killed)."""
        self.exited(None)
        self.proc.stdin.write(b"reap\n")
        return int(self._line(60))

    def run(self, argv: list[str], cwd: Path) -> int:
        self.start(argv, cwd)
        return self.exit_code()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


def temporaries(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".tmp"))


def snapshot(folder: Path) -> tuple[dict[str, bytes], bool]:
    """(every file of ``folder``, read through one directory handle, whether that folder is still
    the one at ``folder``'s path afterwards). Opening files by path one after another could mix
    two folders when a swap happens between two opens; a handle reads one folder. A folder that
    was swapped out may already be half deleted, so only a folder still in place must be complete."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        files = {}
        for name in sorted(os.listdir(fd)):
            try:
                file = os.open(name, os.O_RDONLY, dir_fd=fd)
            except FileNotFoundError:  # deleted: the folder is an old one being removed
                continue
            with os.fdopen(file, "rb") as fh:
                files[name] = fh.read()
        try:
            in_place = os.stat(folder).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            in_place = False
        return files, in_place
    finally:
        os.close(fd)


class Watcher(threading.Thread):
    """Snapshots ``folder`` until stopped; records which complete set each snapshot was."""

    def __init__(self, folder: Path, sets: dict[str, dict[str, bytes]]) -> None:
        super().__init__(daemon=True)
        self.folder, self.sets = folder, sets
        self.seen: Counter[str] = Counter()
        self.bad: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                state, in_place = snapshot(self.folder)
            except FileNotFoundError:
                state, in_place = {}, True  # no folder at all: never allowed once one was written
            if in_place or any(state == files for files in self.sets.values()):
                self.seen[classify(state, self.sets, self.bad)] += 1
            else:
                self.seen["partial read of a swapped-out folder"] += 1
            time.sleep(0.005)


def classify(state: dict[str, bytes], sets: dict[str, dict[str, bytes]], bad: list[str]) -> str:
    for name, files in sets.items():
        if state == files:
            return name
    bad.append(
        f"{sorted(state)}: "
        + ", ".join(
            f"{f}={'/'.join(n for n, s in sets.items() if s.get(f) == b) or '?'}" for f, b in sorted(state.items())
        )
    )
    return "inconsistent"


def kill_runs(
    server: Server, folder: Path, argv: dict[str, list[str]], sets: dict[str, dict[str, bytes]], cwd: Path, kills: int
) -> tuple[Counter, Counter, list[str]]:
    """Rerun ``folder``'s command with the other of two argument sets, over and over, killing it at
    ``kills`` points spread over its write phase (so every run would change the folder).

    The write phase starts when a hidden temporary of the run appears beside or inside ``folder``;
    its length is measured by one uninterrupted run first, and shortened whenever a run ends before
    its kill (a busy machine changes it). Returns (states after each run, states seen by the reader
    thread, problems).
    """
    after, bad = Counter(), []
    watcher = Watcher(folder, sets)
    watcher.start()
    span = None
    try:
        for k in range(-1, kills):
            current = classify(snapshot(folder)[0], sets, bad)
            name = next(n for n in sets if n != current)
            pid = server.start(argv[name], cwd)
            began = wait_for_temporary(server, folder, pid)
            delay = None
            if began is not None and span is None:  # the uninterrupted run: measure the write phase
                server.exited(None)
                span = time.monotonic() - began
            elif began is not None:
                delay = span * k / kills  # spread over the write phase
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)  # alive, or a zombie not yet reaped: never another process
            code = server.exit_code()
            if code == 0 and delay:  # it finished first: the write phase is shorter than the delay
                span = delay * 0.9
            state, _ = snapshot(folder)
            kind = classify(state, sets, bad)
            kind = "new" if kind == name else "old" if kind == current else kind
            leftovers = temporaries(folder.parent) + (temporaries(folder) if folder.is_dir() else [])
            if any(f".{pid}." not in n for n in leftovers):  # the killed run's own only: older ones were cleaned
                bad.append(f"temporaries of earlier runs remain: {leftovers}")
            how = "killed" if code == -signal.SIGKILL else "completed" if code == 0 else f"exit {code}"
            after[f"{how}: {kind} set{' + temporaries' if leftovers else ''}"] += 1
    finally:
        watcher.stop.set()
        watcher.join()
    return after, watcher.seen, bad + watcher.bad


def wait_for_temporary(server: Server, folder: Path, pid: int) -> float | None:
    """The time the run's write phase began (a temporary of it appeared), or None if it exited first."""
    marker = f".{pid}."
    while True:
        for where in (folder.parent, folder):
            try:
                if any(marker in n and n.endswith(".tmp") for n in os.listdir(where)):
                    return time.monotonic()
            except FileNotFoundError:
                pass
        if server.exited(0.0005):
            return None


def read_set(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ------------------------------------------------------------------------------------ kill tests


def test_killed_split_leaves_the_old_or_the_new_split(server: Server, tmp_path: Path) -> None:
    """A rerun with another --test-fraction, killed at 22 points: never a new train_val.csv beside an
    old test.csv (images in both), never a report describing other files, no temporaries kept."""
    (tmp_path / "taxonomy.yaml").write_text(TAXONOMY_YAML)
    write_csv(tmp_path / "m.csv", make_manifest("alpha", patients=80, per_patient=40, singles=200))
    argv = {
        f: [
            "split",
            "--manifest",
            "m.csv",
            "--target",
            "abc",
            "--taxonomy",
            "taxonomy.yaml",
            "--test-fraction",
            f,
            "--out",
        ]
        for f in ("0.2", "0.35")
    }
    sets = {}
    for f, args in argv.items():  # the two complete sets, and what makes each one consistent
        assert server.run([*args, f"ref{f}"], tmp_path) == 0
        sets[f] = read_set(tmp_path / f"ref{f}")
        train_val, test = (pd.read_csv(tmp_path / f"ref{f}" / n) for n in ("train_val.csv", "test.csv"))
        assert not set(train_val["image_id"]) & set(test["image_id"])
        assert not set(train_val["group"]) & set(test["group"])
        report = json.loads(sets[f]["split_report.json"])
        assert (report["rows"]["train_val"], report["rows"]["test"]) == (len(train_val), len(test))
        assert report["straddling"]["groups_across_splits"] == 0
    assert sets["0.2"]["test.csv"] != sets["0.35"]["test.csv"]

    out = tmp_path / "out"
    assert server.run([*argv["0.35"], "out"], tmp_path) == 0  # the first set
    after, seen, bad = kill_runs(server, out, {f: [*a, "out"] for f, a in argv.items()}, sets, tmp_path, KILLS)
    print(f"\nsplit, states after each run: {dict(after)}\nsplit, states seen by the reader: {dict(seen)}")
    assert not bad, bad[:3]
    assert sum(n for k, n in after.items() if k.startswith("killed")) >= KILLS // 2  # killed mid-write
    assert "killed: old set + temporaries" in after and seen["0.2"] and seen["0.35"]
    assert server.run([*argv["0.2"], "out"], tmp_path) == 0
    assert temporaries(tmp_path) == [] and temporaries(out) == []  # the last run cleaned every leftover
    assert read_set(out) == sets["0.2"]


def test_killed_ingest_keeps_manifest_and_rejected_list_together(server: Server, tmp_path: Path) -> None:
    """Two sources ingested into one folder in turn, killed at 22 points: found = accepted + rejected
    always holds for what is there (never a new manifest beside the old rejected list)."""
    small, large = tmp_path / "small", tmp_path / "large"
    for root, n, bad in ((small, 300, 3), (large, 450, 7)):
        for i in range(n):
            (root / f"c{i % 3}").mkdir(parents=True, exist_ok=True)
            scene(i, (40, 32)).save(root / f"c{i % 3}" / f"img{i:04d}.jpg", quality=80)
        for i in range(bad):
            (root / "c0" / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    found = {"small": 303, "large": 457}
    argv = {name: ["ingest", name, "-f", "folder", "--source", "s", "--workers", "1", "--out"] for name in found}
    sets = {}
    for name, args in argv.items():
        assert server.run([*args, f"ref-{name}"], tmp_path) == 0
        sets[name] = read_set(tmp_path / f"ref-{name}")
        manifest, rejected = (pd.read_csv(tmp_path / f"ref-{name}" / n) for n in ("manifest.csv", "rejected.csv"))
        assert len(manifest) + len(rejected) == found[name] and len(rejected) == found[name] - (
            300 if name == "small" else 450
        )

    out = tmp_path / "manifests" / "s"
    assert server.run([*argv["large"], "manifests/s"], tmp_path) == 0
    after, seen, bad = kill_runs(server, out, {n: [*a, "manifests/s"] for n, a in argv.items()}, sets, tmp_path, KILLS)
    print(f"\ningest, states after each run: {dict(after)}\ningest, states seen by the reader: {dict(seen)}")
    assert not bad, bad[:3]
    assert sum(n for k, n in after.items() if k.startswith("killed")) >= KILLS // 2
    assert "killed: old set + temporaries" in after and seen["small"] and seen["large"]
    assert server.run([*argv["large"], "manifests/s"], tmp_path) == 0
    assert temporaries(tmp_path / "manifests") == [] and read_set(out) == sets["large"]


# ------------------------------------------------------------------------------- the mechanism


def test_atomic_dir_failure_keeps_the_old_set_and_no_temporary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out, ["*.csv"]) as tmp:
        write_text(tmp / "a.csv", "old a\n")
        write_text(tmp / "b.csv", "old b\n")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_dir(out, ["*.csv"]) as tmp:
            write_text(tmp / "a.csv", "new a\n")
            raise RuntimeError("killed")
    assert read_set(out) == {"a.csv": b"old a\n", "b.csv": b"old b\n"}
    assert os.listdir(tmp_path) == ["out"]
    with atomic_dir(out, ["*.csv"]) as tmp:
        write_text(tmp / "a.csv", "new a\n")
    assert read_set(out) == {"a.csv": b"new a\n"}  # the set is replaced, b.csv does not linger
    assert oct(out.stat().st_mode & 0o777) == oct(0o777 & ~_umask())  # a normal folder, not mkdtemp's 0700


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_temporaries_of_dead_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale_dir = tmp_path / f".out.{dead.pid}.0a1b2c3d.tmp"
    stale_dir.mkdir()
    (stale_dir / "train_val.csv").write_text("half")
    legacy = tmp_path / ".out.k2x_9az1.tmp"  # an earlier version's mkstemp name (no pid)
    legacy.write_text("")
    live = tmp_path / f".out.{os.getppid()}.deadbeef.tmp"  # a live process's work in progress
    live.mkdir()
    other = tmp_path / ".out.csv.123.abcdefgh.tmp"  # the temporary of another output ("out.csv")
    other.write_text("")
    assert sorted(p.name for p in clean_stale(tmp_path / "out")) == sorted([stale_dir.name, legacy.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])


def test_folder_holding_other_files_cwd_and_files_are_refused(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"--out .*out holds 'notes.txt', which is not among"):
        with atomic_dir(out, ["*.csv"]):
            pass
    assert (out / "notes.txt").read_text() == "mine"
    monkeypatch.chdir(out)
    with pytest.raises(OutputError, match="that is the current folder"):
        with atomic_dir(Path("."), ["*"]):
            pass
    (tmp_path / "f").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        with atomic_dir(tmp_path / "f", ["*"]):
            pass


def test_without_rename_exchange_the_fallback_still_replaces_the_set(tmp_path: Path, monkeypatch) -> None:
    import endoctl.io as io_mod

    monkeypatch.setattr(io_mod, "exchange", lambda a, b: False)
    out = tmp_path / "out"
    for text in ("old", "new"):
        with atomic_dir(out) as tmp:
            write_text(tmp / "a.txt", text)
    assert (out / "a.txt").read_text() == "new" and os.listdir(tmp_path) == ["out"]


def test_rename_exchange_works_on_this_file_system(tmp_path: Path) -> None:
    from endoctl.io import exchange

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not supported here: endoctl falls back to rename-aside")
    assert os.listdir(tmp_path / "b") == ["x"] and os.listdir(tmp_path / "a") == []


def test_a_name_too_long_for_its_temporary_names_the_users_path(tmp_path: Path) -> None:
    """A 250-byte file name is legal but its hidden temporary is not: the error names the file asked for."""
    path = tmp_path / ("n" * 250 + ".json")
    with pytest.raises(OutputError) as err:
        write_text(path, "{}")
    assert str(err.value) == f"cannot write {path}: File name too long"
    assert os.listdir(tmp_path) == []

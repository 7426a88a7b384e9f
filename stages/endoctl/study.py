"""A whole capsule study in, a findings timeline out (``endoctl study``).

One study lasts 6-8 hours and holds up to a million frames, so nothing here grows with its length:

* **Streaming.** A thread decodes frames (:mod:`endoctl.frames`) into a short queue while the model
  predicts batches, so decoding stays off the model's path. Frames are cut into chunks of
  ``chunk_frames``; each finished chunk is written to a work folder beside ``--out`` with the
  running state (the last predicted frame, the best pictures so far), so a killed run resumes at
  its first unfinished chunk. Batches never cross a chunk, so a resumed run computes the same bits.
* **Reuse** (``reuse_distance`` >= 0). A capsule at rest films one scene for many frames: a frame
  within that many pHash bits of the last *predicted* frame takes its probabilities (``reused_from``).
* **Findings.** One last pass over the chunks writes ``frames.csv``, smooths the probabilities (a
  centred moving average of ``smooth`` frames, summed in a fixed order so chunk borders never
  change a bit), cuts runs of one predicted finding into segments and bins the tracks for
  ``timeline.html``, one self-contained page. ``summary.json`` says what the study holds and, under
  ``run``, how this run went (time, frames/s); without timings (``run=None``) the same study and
  settings give byte-identical outputs.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image

from endoctl.frames import THUMB, Frame, StudyFrames, StudyInputError
from endoctl.hashing import phash_batch
from endoctl.imaging import thumbs
from endoctl.io import atomic_dir, atomic_open, printable, write_csv
from endoctl.model import LoadedModel
from endoctl.pages import render
from endoctl.params import STUDY, StudyParams
from endoctl.predict import ComputePath, Predictor

FRAMES_FILE, SEGMENTS_FILE, SUMMARY_FILE, TIMELINE_FILE, REJECTED_FILE = (
    "frames.csv",
    "segments.csv",
    "summary.json",
    "timeline.html",
    "rejected.csv",
)
STUDY_FILES = (FRAMES_FILE, SEGMENTS_FILE, SUMMARY_FILE, TIMELINE_FILE, REJECTED_FILE)
SEGMENT_COLUMNS = [
    "class",
    "first_frame",
    "last_frame",
    "first_time",
    "last_time",
    "frames",
    "peak_probability",
    "peak_frame",
]
TRACK_BINS = 1000  # points per probability track on the page
PICTURE_GAP = 10  # frames: two pictures of one finding are at least this far apart
QUEUE_FRAMES = 256  # decoded frames waiting for the model at most
Rows = dict[str, np.ndarray]  # a chunk's arrays, one row per frame


def work_folder(out: Path) -> Path:
    """Where finished chunks wait until the outputs are written: a hidden sibling of ``--out``."""
    return out.parent / f".{out.name}.study-work"


# ---------------------------------------------------------------------------------------------
# Running state, carried from chunk to chunk and saved with each


@dataclass
class Pictures:
    """The best frames of each class so far (probability, then frame), at least ``gap`` frames apart."""

    index: np.ndarray  # (classes, top) int64, -1 where empty
    prob: np.ndarray  # (classes, top) float32
    thumb: np.ndarray  # (classes, top, THUMB, THUMB, 3) uint8
    time: np.ndarray  # (classes, top) float64

    @classmethod
    def empty(cls, classes: int, top: int) -> Pictures:
        return cls(
            np.full((classes, top), -1, np.int64),
            np.zeros((classes, top), np.float32),
            np.zeros((classes, top, THUMB, THUMB, 3), np.uint8),
            np.zeros((classes, top), np.float64),
        )

    def offer(self, c: int, index: np.ndarray, prob: np.ndarray, time: np.ndarray, thumbs: np.ndarray) -> None:
        """Merge candidates for class ``c``: best first, each kept unless a better kept one is nearer than the gap."""
        have = self.index[c] >= 0
        idx = np.concatenate([self.index[c][have], index])
        p = np.concatenate([self.prob[c][have], prob])
        t = np.concatenate([self.time[c][have], time])
        th = np.concatenate([self.thumb[c][have], thumbs])
        kept: list[int] = []
        for k in np.lexsort((idx, -p)):
            if all(abs(int(idx[k]) - int(idx[j])) >= PICTURE_GAP for j in kept):
                kept.append(int(k))
                if len(kept) == self.index.shape[1]:
                    break
        n = len(kept)
        self.index[c], self.prob[c], self.time[c] = -1, 0, 0
        self.index[c][:n], self.prob[c][:n], self.time[c][:n], self.thumb[c][:n] = (
            idx[kept],
            p[kept],
            t[kept],
            th[kept],
        )


@dataclass
class State:
    """Everything a resumed run needs besides the chunk files."""

    chunks: int  # chunks finished
    frames: int  # frames finished (the next frame's position)
    last_index: int  # the last predicted frame (-1: none yet) ...
    last_hash: np.uint64  # ... its pHash ...
    last_probs: np.ndarray  # ... and its probabilities
    pictures: Pictures
    ended: bool = False  # the input ended (or broke: ``error``)
    error: str = ""
    last_time: float = 0.0

    @classmethod
    def start(cls, classes: int, top: int) -> State:
        return cls(0, 0, -1, np.uint64(0), np.zeros(classes, np.float32), Pictures.empty(classes, top))

    def save(self, path: Path) -> None:
        # fields(), not asdict(): asdict deep-copies the pictures' arrays (MBs) on every chunk
        arrays = {f"pictures_{f.name}": getattr(self.pictures, f.name) for f in fields(self.pictures)}
        scalars = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "pictures"}
        with atomic_open(path, "wb") as fh:
            np.savez(fh, **arrays, **{k: np.asarray(v) for k, v in scalars.items()})

    @classmethod
    def load(cls, path: Path) -> State:
        with np.load(path, allow_pickle=False) as z:
            pictures = Pictures(**{k: z[f"pictures_{k}"] for k in ("index", "prob", "thumb", "time")})
            return cls(
                int(z["chunks"]),
                int(z["frames"]),
                int(z["last_index"]),
                np.uint64(z["last_hash"]),
                z["last_probs"],
                pictures,
                bool(z["ended"]),
                str(z["error"]),
                float(z["last_time"]),
            )


def frame_hash(thumb: np.ndarray) -> np.uint64:
    """pHash of a frame as ingest hashes images (the content region of its luma, 32x32 box average), so
    ``reuse_distance`` counts the same bits as dedupe's distances."""
    return phash_batch(np.stack(thumbs([cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY)])))[0]


# ---------------------------------------------------------------------------------------------
# Predicting, chunk by chunk


@dataclass
class ChunkRows:
    """One chunk's frames, as saved: every array has one row per frame (rejected frames included)."""

    index: list[int] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    reason: list[str] = field(default_factory=list)
    reused_from: list[int] = field(default_factory=list)
    hash: list[np.uint64] = field(default_factory=list)
    thumbs: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)


class ChunkPredictor:
    """Takes frames one by one, predicts in batches as they fill, finishes a chunk into arrays."""

    def __init__(self, predictor: Predictor, classes: int, params: StudyParams, state: State) -> None:
        self.predictor, self.classes, self.params, self.state = predictor, classes, params, state
        self.rows = ChunkRows()
        self.pending: list[tuple[int, np.ndarray]] = []  # (row, pixels) waiting for a batch
        self.probs: dict[int, np.ndarray] = {}  # row -> probabilities of predicted rows
        self.model_seconds = 0.0

    def add(self, frame: Frame, h: np.uint64) -> None:
        """Record ``frame`` (pHash ``h``); predict now if it fills a batch, or reuse the last prediction."""
        row = len(self.rows)
        rows = self.rows
        rows.index.append(frame.index)
        rows.time.append(frame.time)
        rows.name.append(frame.name)
        rows.reason.append(frame.reason)
        if frame.pixels is None:
            rows.reused_from.append(-1)
            rows.hash.append(np.uint64(0))
            rows.thumbs.append(np.zeros((THUMB, THUMB, 3), np.uint8))
            return
        rows.hash.append(h)
        rows.thumbs.append(frame.thumb)
        state, distance = self.state, self.params.reuse_distance
        if distance >= 0 and state.last_index >= 0 and (int(h) ^ int(state.last_hash)).bit_count() <= distance:
            rows.reused_from.append(state.last_index)
            return
        rows.reused_from.append(-1)
        state.last_index, state.last_hash = frame.index, h
        self.pending.append((row, frame.pixels))
        if len(self.pending) == self.params.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        batch = torch.from_numpy(np.stack([p for _, p in self.pending])).permute(0, 3, 1, 2)
        began = time.perf_counter()
        out = self.predictor(batch).cpu().numpy()
        self.model_seconds += time.perf_counter() - began
        for (row, _), probs in zip(self.pending, out):
            self.probs[row] = probs
        self.pending = []

    def finish(self) -> dict[str, np.ndarray]:
        """The chunk's arrays; updates the running state (last predicted frame, pictures)."""
        self._flush()
        rows, state, n = self.rows, self.state, len(self.rows)
        probs = np.zeros((n, self.classes), np.float32)
        position = {index: row for row, index in enumerate(rows.index)}
        for row in range(n):
            source = rows.reused_from[row]
            if row in self.probs:
                probs[row] = self.probs[row]
            elif source >= 0:  # earlier in this chunk, or the carried last predicted frame
                probs[row] = self.probs[position[source]] if source in position else state.last_probs
        if state.last_index in position:
            state.last_probs = probs[position[state.last_index]].copy()
        arrays = {
            "index": np.asarray(rows.index, np.int64),
            "time": np.asarray(rows.time, np.float64),
            "name": np.asarray(rows.name, dtype=str),
            "reason": np.asarray(rows.reason, dtype=str),
            "reused_from": np.asarray(rows.reused_from, np.int64),
            "hash": np.asarray(rows.hash, np.uint64),
            "probs": probs,
        }
        predicted = np.asarray([row in self.probs for row in range(n)], bool)
        winner = probs.argmax(axis=1) if n else np.zeros(0, np.int64)
        thumbs = np.stack(rows.thumbs) if n else np.zeros((0, THUMB, THUMB, 3), np.uint8)
        for c in range(self.classes):
            pick = np.flatnonzero(predicted & (winner == c))
            if len(pick):
                best = pick[np.lexsort((pick, -probs[pick, c]))][: state.pictures.index.shape[1]]
                state.pictures.offer(c, arrays["index"][best], probs[best, c], arrays["time"][best], thumbs[best])
        state.chunks += 1
        state.frames += n
        if n:
            state.last_time = float(arrays["time"][-1])
        return arrays


def _hashed(frames: Iterator[Frame]) -> Iterator[tuple[Frame, np.uint64]]:
    """Each frame with its pHash (0 for an unreadable one), computed on the decode thread."""
    for frame in frames:
        yield frame, (frame_hash(frame.thumb) if frame.thumb is not None else np.uint64(0))


def _prefetch(frames: Iterator[Any], depth: int) -> Iterator[Any]:
    """``frames`` decoded by a thread ``depth`` ahead; its errors are raised here, in order."""
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for frame in frames:
                if not put(frame):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put(exc)

    thread = threading.Thread(target=produce, name="study-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass
class RunInfo:
    frames: int  # frames this run read (resumed chunks not included)
    seconds: float
    model_seconds: float
    resumed_frames: int
    path: ComputePath


def identity(source: Path, checkpoint: Path, params: StudyParams, classes: list[str]) -> dict[str, Any]:
    """What must match for a work folder's chunks to be reused: the input, the model, every setting
    (the device and ``fast`` included: they change the numbers in the last bits)."""

    def stamp(path: Path) -> list[Any]:
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]

    return {
        "input": stamp(source),
        "checkpoint": stamp(checkpoint),
        "params": asdict(params),
        "classes": classes,
    }


def resume_state(work: Path, ident: dict[str, Any], classes: int, top: int) -> State:
    """The saved state when ``work`` holds chunks of the same run, else a fresh start (stale chunks removed)."""
    meta, state_file = work / "meta.json", work / "state.npz"
    if meta.is_file() and state_file.is_file():
        try:
            if json.loads(meta.read_text()) == ident:
                return State.load(state_file)
        except (ValueError, OSError, KeyError):
            pass
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with atomic_open(meta) as fh:
        json.dump(ident, fh, sort_keys=True)
    return State.start(classes, top)


def chunk_file(work: Path, n: int) -> Path:
    return work / f"chunk-{n:06d}.npz"


def predict_study(
    loaded: LoadedModel,
    study: StudyFrames,
    work: Path,
    state: State,
    params: StudyParams = STUDY,
    on_progress: Callable[[int, int | None], None] | None = None,
) -> RunInfo:
    """Predict every frame from ``state.frames`` on, chunk by chunk into ``work``, on ``params.device``
    (a torch device: ``auto`` is the command line's to resolve); the state after each chunk is saved
    with it. A broken input ends the study at the last good frame (``state.error``)."""
    config = loaded.data_config
    mean = torch.as_tensor(config["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(config["std"], dtype=torch.float32).view(1, -1, 1, 1)
    predictor = Predictor(loaded, params.device, params.fast, False, mean, std, fixed_batch=params.batch_size)
    classes, resumed = len(loaded.class_names), state.frames
    began, model_seconds, read = time.perf_counter(), 0.0, 0
    chunk = ChunkPredictor(predictor, classes, params, state)

    def close_chunk() -> None:
        nonlocal chunk, model_seconds
        arrays = chunk.finish()
        model_seconds += chunk.model_seconds
        with atomic_open(chunk_file(work, state.chunks - 1), "wb") as fh:
            np.savez(fh, **arrays)
        state.save(work / "state.npz")
        chunk = ChunkPredictor(predictor, classes, params, state)

    if not state.ended:
        try:
            for frame, h in _prefetch(_hashed(study.frames(state.frames)), QUEUE_FRAMES):
                chunk.add(frame, h)
                read += 1
                if on_progress is not None and read % 32 == 0:
                    on_progress(resumed + read, study.total)
                if len(chunk.rows) == params.chunk_frames:
                    close_chunk()
        except StudyInputError as exc:
            state.error = str(exc)
        state.ended = True
        if on_progress is not None:
            on_progress(resumed + read, study.total)
        if len(chunk.rows) or state.chunks == 0:
            close_chunk()
        else:
            state.save(work / "state.npz")
    return RunInfo(read, time.perf_counter() - began, model_seconds, resumed, predictor.path)


def read_chunks(work: Path, state: State) -> Iterator[dict[str, np.ndarray]]:
    for n in range(state.chunks):
        with np.load(chunk_file(work, n), allow_pickle=False) as z:
            yield {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# Findings


def smoothed(
    chunks: Iterable[dict[str, np.ndarray]], window: int
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(chunk rows, their centred moving average of ``probs`` over ``window`` frames) as the rows become
    complete. Each average is its window's rows added one by one in order, over how many exist (the
    study's ends have fewer), so where chunks end never changes a bit."""
    half = window // 2
    before = np.zeros((0, 0))
    pending: dict[str, np.ndarray] | None = None

    def emit(ready: int, final: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        nonlocal before, pending
        assert pending is not None
        probs = pending["probs"].astype(np.float64)
        classes = probs.shape[1]
        context = np.concatenate([before.reshape(-1, classes), probs])
        offset = len(context) - len(probs)
        lead = half - offset
        padded = np.concatenate([np.zeros((lead, classes)), context, np.zeros((half if final else 0, classes))])
        valid = np.concatenate([np.zeros(lead), np.ones(len(context)), np.zeros(half if final else 0)])
        total, count = padded[:ready].copy(), valid[:ready].copy()
        for k in range(1, 2 * half + 1):
            total += padded[k : k + ready]
            count += valid[k : k + ready]
        out = {k: v[:ready] for k, v in pending.items()}
        before = context[: offset + ready][-half:] if half else context[:0]
        pending = {k: v[ready:] for k, v in pending.items()}
        return out, total / count[:, None]

    for chunk in chunks:
        keep = chunk["reason"] == ""
        rows = {k: v[keep] for k, v in chunk.items()}
        pending = rows if pending is None else {k: np.concatenate([pending[k], rows[k]]) for k in rows}
        ready = len(pending["index"]) - half
        if ready > 0:
            yield emit(ready, False)
    if pending is not None and len(pending["index"]):
        yield emit(len(pending["index"]), True)


@dataclass
class Segments:
    """Runs of one smoothed predicted class (not the background) of at least ``min_frames`` frames."""

    names: list[str]
    background: int  # class index, -1: none
    min_frames: int
    rows: list[list[Any]] = field(default_factory=list)
    run: list[Any] | None = None  # [class, first, last, first_time, last_time, frames, peak_p, peak_frame]

    def feed(self, index: np.ndarray, time: np.ndarray, probs: np.ndarray, label: np.ndarray) -> None:
        for i in range(len(index)):
            c = int(label[i])
            if self.run is not None and self.run[0] == c:
                run = self.run
                run[2], run[4], run[5] = int(index[i]), float(time[i]), run[5] + 1
                if probs[i, c] > run[6]:
                    run[6], run[7] = float(probs[i, c]), int(index[i])
                continue
            self.close()
            if c != self.background:
                p = float(probs[i, c])
                self.run = [c, int(index[i]), int(index[i]), float(time[i]), float(time[i]), 1, p, int(index[i])]

    def close(self) -> None:
        if self.run is not None and self.run[5] >= self.min_frames:
            self.rows.append([self.names[self.run[0]], *self.run[1:]])
        self.run = None

    def table(self) -> pd.DataFrame:
        self.close()
        table = pd.DataFrame(self.rows, columns=SEGMENT_COLUMNS)
        table["peak_probability"] = table["peak_probability"].astype(np.float32)
        return table


@dataclass
class Findings:
    """What the last pass over the chunks gathers besides the written tables."""

    frames: int = 0
    predicted: int = 0
    reused: int = 0
    rejected: int = 0
    counts: np.ndarray | None = None  # frames per predicted class
    tracks: np.ndarray | None = None  # (classes, bins) max smoothed probability, NaN where no frame
    segments: pd.DataFrame | None = None


def write_frame_rows(fh, chunk: dict[str, np.ndarray], names: list[str], with_files: bool, header: bool) -> None:
    keep = chunk["reason"] == ""
    table = pd.DataFrame({"frame": chunk["index"][keep], "time": chunk["time"][keep]})
    if with_files:
        table["file"] = [printable(n) for n in chunk["name"][keep]]
    probs = chunk["probs"][keep]
    for j, name in enumerate(names):
        table[name] = probs[:, j]
    table["predicted_class"] = np.asarray(names, dtype=object)[probs.argmax(axis=1)] if len(probs) else []
    table["reused_from"] = pd.array([int(r) if r >= 0 else None for r in chunk["reused_from"][keep]], dtype="Int64")
    table.to_csv(fh, index=False, header=header, lineterminator="\n")


def gather(
    work: Path, state: State, names: list[str], params: StudyParams, with_files: bool, frames_out: Path
) -> tuple[Findings, pd.DataFrame]:
    """One pass over the chunks: ``frames.csv`` written, segments found, tracks binned; also the rejected rows."""
    classes = len(names)
    found = Findings(counts=np.zeros(classes, np.int64), tracks=np.full((classes, TRACK_BINS), np.nan))
    background = names.index(params.background) if params.background in names else -1
    segments = Segments(names, background, params.min_frames)
    rejected: list[tuple[str, str]] = []
    span = state.last_time if state.last_time > 0 else 1.0

    def chunks() -> Iterator[dict[str, np.ndarray]]:
        with atomic_open(frames_out) as fh:
            for n, chunk in enumerate(read_chunks(work, state)):
                write_frame_rows(fh, chunk, names, with_files, header=n == 0)
                bad = chunk["reason"] != ""
                rejected.extend(zip(map(printable, chunk["name"][bad]), chunk["reason"][bad]))
                ok = ~bad
                found.frames += int(ok.sum())
                found.reused += int((ok & (chunk["reused_from"] >= 0)).sum())
                found.rejected += int(bad.sum())
                found.counts += np.bincount(chunk["probs"][ok].argmax(axis=1), minlength=classes)
                yield chunk

    for rows, smooth in smoothed(chunks(), params.smooth):
        label = smooth.argmax(axis=1)
        segments.feed(rows["index"], rows["time"], rows["probs"], label)
        bins = np.minimum((rows["time"] / span * TRACK_BINS).astype(np.int64), TRACK_BINS - 1)
        for c in range(classes):
            track = found.tracks[c]
            seen = np.isnan(track[bins])
            track[bins[seen]] = -1.0
            np.maximum.at(track, bins, smooth[:, c])
    found.predicted = found.frames - found.reused
    found.segments = segments.table()
    return found, pd.DataFrame(rejected, columns=["path", "reason"])


# ---------------------------------------------------------------------------------------------
# Outputs


def clock(seconds: float) -> str:
    """``h:mm:ss`` (``m:ss`` under an hour): how capsule reading software shows a frame's time."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def summary(
    found: Findings, names: list[str], state: State, source: str, kind: str, params: StudyParams, model: str
) -> dict[str, Any]:
    """summary.json without ``run``: what the study holds."""
    per_segment = found.segments.groupby("class").size() if len(found.segments) else pd.Series(dtype=int)
    return {
        "study": source,
        "input": kind,
        "frames": found.frames,
        "predicted": found.predicted,
        "reused": found.reused,
        "rejected": found.rejected,
        "complete": not state.error,
        "error": state.error,
        "duration_s": round(state.last_time, 6),
        "model": model,
        "classes": {
            name: {"frames": int(found.counts[j]), "segments": int(per_segment.get(name, 0))}
            for j, name in enumerate(names)
        },
        "segments": len(found.segments),
        "params": {
            k: v for k, v in asdict(params).items() if k not in ("device", "fast", "max_pixels")
        },  # run: compute
    }


def _jpeg_data_uri(pixels: np.ndarray) -> str:
    import base64
    import io

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=85, optimize=False)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _ticks(span: float) -> list[tuple[float, str]]:
    """About six round time marks along ``span`` seconds, as (fraction, label)."""
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
    step = next((s for s in steps if span / s <= 8), 3600 * max(1, round(span / 3600 / 6)))
    return [(t / span, clock(t)) for t in np.arange(0, span + 1e-9, step)]


def timeline_view(
    found: Findings, state: State, names: list[str], summary_: dict[str, Any], params: StudyParams
) -> dict[str, Any]:
    """Plain data for ``study.html.j2``: tracks as SVG path data, segments as spans, pictures as data URIs."""
    span = state.last_time if state.last_time > 0 else 1.0
    width, height = 1000.0, 40.0
    tracks = []
    order = [j for j, n in enumerate(names) if n != params.background] + [
        j for j, n in enumerate(names) if n == params.background
    ]
    for j in order:
        parts = []  # bins without a frame (a short study has fewer frames than bins) are passed over
        for b in np.flatnonzero(~np.isnan(found.tracks[j])):
            x, y = (b + 0.5) / TRACK_BINS * width, height - 2 - found.tracks[j][b] * (height - 4)
            parts.append(f"{'L' if parts else 'M'}{x:.1f} {y:.1f}")
        segs = found.segments[found.segments["class"] == names[j]]
        tracks.append(
            {
                "name": names[j],
                "path": " ".join(parts),
                "frames": int(found.counts[j]),
                "background": names[j] == params.background,
                "spans": [
                    {
                        "x": row.first_time / span * width,
                        "w": max((row.last_time - row.first_time) / span * width, 1.5),
                        "title": f"{names[j]} {clock(row.first_time)}-{clock(row.last_time)}, {row.frames} frames, "
                        f"peak {row.peak_probability:.2f}",
                    }
                    for row in segs.itertuples()
                ],
            }
        )
    findings = []
    pictures = state.pictures
    for j in order:
        segs = found.segments[found.segments["class"] == names[j]]
        if names[j] == params.background or (not len(segs) and pictures.index[j][0] < 0):
            continue
        shown = [k for k in range(pictures.index.shape[1]) if pictures.index[j][k] >= 0]
        findings.append(
            {
                "name": names[j],
                "segments": [
                    {
                        "first": clock(r.first_time),
                        "last": clock(r.last_time),
                        "frames": r.frames,
                        "peak": f"{r.peak_probability:.2f}",
                        "peak_frame": r.peak_frame,
                    }
                    for r in segs.itertuples()
                ],
                "pictures": [
                    {
                        "src": _jpeg_data_uri(pictures.thumb[j][k]),
                        "frame": int(pictures.index[j][k]),
                        "time": clock(float(pictures.time[j][k])),
                        "prob": f"{float(pictures.prob[j][k]):.2f}",
                    }
                    for k in shown
                ],
            }
        )
    subtitle = (
        f"{summary_['study']}: {summary_['frames']:,} frames over {clock(state.last_time)}, read by {summary_['model']}"
    )
    return {
        "title": f"Study timeline: {summary_['study']}",
        "subtitle": subtitle,
        "nav": [("timeline", "Timeline", None), ("findings", "Findings", len(findings))],
        "thumb": THUMB,
        "bins": TRACK_BINS,
        "summary": summary_,
        "duration": clock(state.last_time),
        "ticks": [{"x": f * width, "label": label} for f, label in _ticks(span)],
        "tracks": tracks,
        "findings": findings,
        "width": width,
        "height": height,
    }


def write_outputs(
    out: Path,
    work: Path,
    state: State,
    names: list[str],
    params: StudyParams,
    source: Path,
    kind: str,
    model: str,
    run: dict[str, Any] | None,
) -> dict[str, Any]:
    """Every output into ``out`` at once (:func:`endoctl.io.atomic_dir`); returns the summary.
    ``run`` (timings, device) goes into summary.json when given."""
    with atomic_dir(out, STUDY_FILES, "--out", "study outputs") as tmp:
        found, rejected = gather(work, state, names, params, kind == "frames", tmp / FRAMES_FILE)
        write_csv(tmp / SEGMENTS_FILE, found.segments)
        write_csv(tmp / REJECTED_FILE, rejected)
        info = summary(found, names, state, printable(source.name), kind, params, model)
        with atomic_open(tmp / SUMMARY_FILE) as fh:
            json.dump(info | ({"run": run} if run is not None else {}), fh, indent=2)
            fh.write("\n")
        with atomic_open(tmp / TIMELINE_FILE) as fh:
            fh.write(render("study.html.j2", **timeline_view(found, state, names, info, params)))
    return info


def check_params(params: StudyParams) -> None:
    """``ValueError`` naming the option for a value that cannot work, before any work."""
    checks = [
        (params.batch_size >= 1, f"--batch-size must be >= 1, got {params.batch_size}"),
        (params.reuse_distance >= -1, f"--reuse-distance must be >= 0 (or -1: off), got {params.reuse_distance}"),
        (params.reuse_distance <= 64, f"--reuse-distance is in pHash bits (0-64), got {params.reuse_distance}"),
        (params.smooth >= 1, f"--smooth must be >= 1 frame, got {params.smooth}"),
        (params.min_frames >= 1, f"--min-frames must be >= 1, got {params.min_frames}"),
        (params.top >= 0, f"--top must be >= 0, got {params.top}"),
        (params.chunk_frames >= 1, f"--chunk-frames must be >= 1, got {params.chunk_frames}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)

"""Streaming inference: checkpoint + images -> one probability column per class (CE24 submission layout).

Images are listed up front (a folder, recursively in natural order, or a CSV's ``path`` column) but
opened one at a time by DataLoader workers, so a million-frame capsule study never sits in memory.
Each image is opened with Pillow (EXIF-transposed, RGB) and put through timm's eval transform
from the checkpoint's data config. The last two steps of that transform (to-float and normalise)
run on the device instead of in the workers: workers ship uint8 tensors (4x less to copy), and
``x.float() / 255``, ``- mean``, ``/ std`` are the same float32 operations, so the values are
identical to timm's own transform. A file that cannot be read becomes a row of
``<out stem>.rejected.csv`` and the run goes on.

Two compute paths, chosen by ``fast``:

* baseline: fp32, eager, contiguous (NCHW) tensors, ``torch.no_grad``;
* fast (default): ``torch.inference_mode``, channels-last, bf16 autocast on CUDA and on CPUs with
  native bf16 (AVX512-BF16 or AMX; plain fp32 elsewhere, silently), on CPU matmul attention
  instead of the fused SDPA kernel (:func:`use_matmul_attention`), optional ``torch.compile``.

Softmax is always taken in float32. Output rows are in natural order of ``image_path`` (digit runs
compared as numbers: ``frame_2`` before ``frame_10``); the same inputs and
options give byte-identical CSVs and xlsx files (:mod:`endoctl.xlsx` pins the workbook's dates).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from endoctl.devices import autocast, bf16_supported
from endoctl.frames import VIDEO_SUFFIXES
from endoctl.imaging import IMAGE_SUFFIXES, MISSING, ImageRejected, open_rgb
from endoctl.io import atomic_dir, atomic_open, check_output_dir, printable, read_csv, rejected_beside, write_csv
from endoctl.model import LoadedModel
from endoctl.params import MAX_PIXELS, PREDICT
from endoctl.xlsx import xlsx_bytes

MAX_XLSX_ROWS = 1_048_575  # Excel's 1,048,576 rows less the header
IMAGE_LIST_COLUMNS = ("path", "image_path")


# ---------------------------------------------------------------------------------------------
# Which images

_DIGITS = re.compile(r"(\d+)")


def natural_key(path: str) -> tuple[tuple[str | int, ...], str]:
    """Sort key of natural order: digit runs compare as integers (``frame_2`` before ``frame_10``),
    the rest as text; names equal that way (``frame_01``, ``frame_1``) fall back to the full string,
    so the order is total and the same on every machine."""
    parts = _DIGITS.split(path)  # text, digits, text, ...: same kinds at the same positions
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), path


def natural_sorted(paths: Iterable[str]) -> list[str]:
    return sorted(paths, key=natural_key)


@dataclass(frozen=True)
class ImageList:
    """``paths`` as written to ``image_path`` (natural order, unique); each file is ``root / path``."""

    paths: list[str]
    root: Path
    skipped: int = 0  # files in a folder that are not images by suffix, or hidden
    videos: int = 0  # of them, videos (``endoctl study`` reads those)
    rows: int = 0  # data rows of a CSV (0 for a folder)
    repeated: dict[str, list[int]] = field(default_factory=dict)  # CSV path listed more than once -> its rows

    def files(self) -> list[Path]:
        return [self.root / p for p in self.paths]


def list_images(source: str | Path, data_root: str | Path = ".") -> ImageList:
    """Images of a folder (recursive; paths relative to it) or of a CSV's ``path`` column.

    CSV paths are written as given and opened relative to ``data_root`` (the current folder), as in endoctl split
    CSVs. A path listed twice is predicted once (the output has one row per ``image_path``) and
    reported in ``repeated``; a row without a path is an error. Hidden files and folders and files
    without an image suffix are skipped, and counted.
    """
    source = Path(source)
    if source.is_dir():
        found, skipped, videos = [], 0, 0
        for folder, dirs, names in os.walk(source):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            rel = Path(folder).relative_to(source)
            for name in names:
                if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_SUFFIXES:
                    skipped += 1
                    videos += not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES
                    continue
                found.append((rel / name).as_posix())
        return ImageList(natural_sorted(found), source, skipped, videos=videos)
    if source.is_file():
        if source.suffix.lower() in VIDEO_SUFFIXES:
            raise ValueError(f"--images {source} is a video: `endoctl study` reads a whole video (or frame folder)")
        if source.suffix.lower() != ".csv":
            raise ValueError(f"--images must be a folder or a .csv with a path column, got {source}")
        table = read_csv(source)
        column = next((c for c in IMAGE_LIST_COLUMNS if c in table.columns), None)
        if column is None:
            raise ValueError(f"{source} has no path column (columns: {', '.join(map(str, table.columns))})")
        values = table[column].str.strip()
        empty = (values == "").to_numpy()
        if empty.any():
            raise ValueError(
                f"{source}: {int(empty.sum())} row(s) without a {column}, first: row {int(empty.argmax()) + 2}"
            )
        repeated = {p: [i + 2 for i in rows] for p, rows in values.groupby(values).indices.items() if len(rows) > 1}
        return ImageList(natural_sorted(set(values)), Path(data_root), rows=len(values), repeated=repeated)
    raise FileNotFoundError(f"images not found: {source} (expected a folder or a .csv)")


# ---------------------------------------------------------------------------------------------
# Reading one image


def split_transform(data_config: dict[str, Any]) -> tuple[Callable, torch.Tensor | None, torch.Tensor | None]:
    """(CPU part returning uint8 CHW, mean, std) of timm's eval transform for ``data_config``.

    When timm's transform does not end in to-tensor + normalise (an unexpected config), the whole
    transform runs on the CPU and mean/std are None.
    """
    from timm.data import create_transform
    from torchvision import transforms as T

    config = {
        k: data_config[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in data_config
    }
    full = create_transform(**config, is_training=False)
    steps = list(getattr(full, "transforms", []))
    if len(steps) >= 2 and isinstance(steps[-2], T.ToTensor) and isinstance(steps[-1], T.Normalize):
        mean = torch.as_tensor(steps[-1].mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.as_tensor(steps[-1].std, dtype=torch.float32).view(1, -1, 1, 1)
        return T.Compose([*steps[:-2], T.PILToTensor()]), mean, std
    return full, None, None


class InferenceImages(torch.utils.data.Dataset):
    """Opens image ``i`` only when asked: ``(i, tensor, "")`` or ``(i, None, reason)``."""

    def __init__(self, files: list[Path], transform: Callable, max_pixels: int = MAX_PIXELS) -> None:
        self.files, self.transform, self.max_pixels = files, transform, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str]:
        try:
            return i, self.transform(open_rgb(self.files[i], self.max_pixels)), ""
        except ImageRejected as exc:
            return i, None, str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad file must not end a million-image run
            return i, None, f"transform failed: {type(exc).__name__}: {exc}"


def collate_valid(
    items: list[tuple[int, torch.Tensor | None, str]],
) -> tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]:
    """(indices of readable images, their stacked tensors or None, [(index, reason)] of the others)."""
    good = [(i, x) for i, x, _ in items if x is not None]
    failed = [(i, reason) for i, x, reason in items if x is None]
    indices = torch.tensor([i for i, _ in good], dtype=torch.long)
    batch = torch.stack([x for _, x in good]) if good else None
    return indices, batch, failed


# ---------------------------------------------------------------------------------------------
# Compute


@dataclass(frozen=True)
class ComputePath:
    """How a batch goes through the model; ``describe`` is for summaries and benchmark tables."""

    device: torch.device
    fast: bool
    bf16: bool
    compiled: bool
    channels_last: bool
    matmul_attention: bool = False

    def describe(self) -> str:
        if not self.fast:
            return "fp32 eager"
        parts = ["bf16 autocast" if self.bf16 else "fp32", "channels-last"]
        parts += ["matmul attention"] if self.matmul_attention else []
        return " + ".join(parts + (["compiled"] if self.compiled else []))


def use_matmul_attention(model: torch.nn.Module) -> bool:
    """Switch timm attention blocks from fused SDPA to plain q@k^T -> softmax -> @v; True if any.

    Same maths. On CPU in bf16, PyTorch's fused (flash) SDPA kernel is slower than two oneDNN
    matmuls: measured on 2 AVX512-BF16 cores, EVA-02-Ti +15 % img/s, EVA-02-B +8 %. GPUs keep
    the fused kernel, which is the fast one there.
    """
    found = False
    for module in model.modules():
        if isinstance(getattr(module, "fused_attn", None), bool):
            module.fused_attn = False
            found = True
    return found


class Predictor:
    """A model prepared for one compute path: ``predictor(uint8 or float batch) -> fp32 probabilities``."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device = "cpu",
        fast: bool = True,
        compile: bool = False,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        fixed_batch: int | None = None,
    ) -> None:
        self.device = torch.device(device)
        bf16 = fast and bf16_supported(self.device)
        # Prepares ``loaded.model`` in place (device, memory format): one Predictor per model copy.
        model = loaded.model.eval().to(self.device)
        model = model.to(memory_format=torch.channels_last if fast else torch.contiguous_format)
        matmul = bool(fast and bf16 and self.device.type == "cpu" and use_matmul_attention(model))
        self.path = ComputePath(self.device, fast, bf16, bool(fast and compile), fast, matmul)
        if self.path.compiled and self.device.type == "cpu":
            # Inductor "freezing": weights become constants, so oneDNN pre-packs them (and their bf16
            # casts) once. Measured on 2 cores: EVA-02-B compiled 1.9x -> 2.4x the fp32 baseline.
            # Process-wide setting; only affects graphs compiled under inference_mode (never training).
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        self.model = torch.compile(model, dynamic=False) if self.path.compiled else model
        self.mean = mean.to(self.device) if mean is not None else None
        self.std = std.to(self.device) if std is not None else None
        # A compiled graph is specialised to one batch shape: pad short batches up to it.
        self.fixed_batch = fixed_batch if self.path.compiled else None

    def normalise(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 on the device, exactly timm's ToTensor + Normalize (floats pass through)."""
        batch = batch.to(self.device, non_blocking=True)
        if batch.dtype == torch.uint8:
            batch = batch.float().div(255)
            if self.mean is not None:
                batch = batch.sub(self.mean).div(self.std)
        return batch

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.normalise(batch)
        n = x.shape[0]
        if self.fixed_batch is not None and n < self.fixed_batch:
            x = torch.cat([x, x.new_zeros((self.fixed_batch - n, *x.shape[1:]))])
        if self.path.fast:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), autocast(self.device, torch.bfloat16 if self.path.bf16 else None):
                logits = self.model(x)
        else:
            with torch.no_grad():
                logits = self.model(x)
        return torch.softmax(logits[:n].float(), dim=1)


# ---------------------------------------------------------------------------------------------
# Whole run


@dataclass
class PredictionResult:
    table: pd.DataFrame  # image_path, <class display names...>, predicted_class; natural order of image_path
    rejected: pd.DataFrame  # path, reason
    seconds: float
    path: ComputePath


def default_workers(device: torch.device) -> int:
    """Decode processes: every core (up to 16) feeding a GPU; on CPU the model needs the cores.

    On a small CPU machine, decoding in the main process between batches beats a worker process
    whose decoding preempts the model's OpenMP threads (which then wait for each other).
    """
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(cores, 16)
    return 0 if cores <= 4 else 2


@contextmanager
def _threads_beside(workers: int, device: torch.device) -> Iterator[None]:
    """On CPU, leave one core per decode worker: oversubscribed OpenMP threads stall each other."""
    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    if device.type == "cpu" and workers > 0 and before + workers > cores:
        torch.set_num_threads(max(1, cores - workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def iter_batches(
    images: ImageList,
    transform: Callable,
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
    max_pixels: int = MAX_PIXELS,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, list[tuple[int, str]]]]:
    """Batches in list order from a DataLoader over lazily opened images (see :func:`collate_valid`)."""
    loader = torch.utils.data.DataLoader(
        InferenceImages(images.files(), transform, max_pixels),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_valid,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )
    yield from loader


def predict_images(
    loaded: LoadedModel,
    images: ImageList,
    device: str | torch.device = "cpu",
    batch_size: int = PREDICT.batch_size,
    workers: int | None = None,
    fast: bool = True,
    compile: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    max_pixels: int = PREDICT.max_pixels,
) -> PredictionResult:
    """Predict every image of ``images``; unreadable ones, and those above ``max_pixels`` (ingest's
    decompression-bomb limit), go to ``rejected`` instead of the table."""
    device = torch.device(device)
    if batch_size < 1:
        raise ValueError("batch size must be at least 1")
    transform, mean, std = split_transform(loaded.data_config)
    predictor = Predictor(loaded, device, fast, compile, mean, std, fixed_batch=batch_size)
    workers = default_workers(device) if workers is None else workers
    n = len(images.paths)
    probs = np.zeros((n, len(loaded.class_names)), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    rejected: list[tuple[str, str]] = []
    done = 0
    started = time.perf_counter()
    with _threads_beside(workers, device):
        for indices, batch, failed in iter_batches(
            images, transform, batch_size, workers, device.type == "cuda", max_pixels
        ):
            if batch is not None:
                out = predictor(batch)
                probs[indices.numpy()] = out.cpu().numpy()
                ok[indices.numpy()] = True
            rejected.extend((images.paths[i], reason) for i, reason in failed)
            done += len(indices) + len(failed)
            if on_progress is not None:
                on_progress(done, n)
    seconds = time.perf_counter() - started
    # A name that is not UTF-8 (zips made on Windows) is written with \xNN escapes, as ingest writes it.
    names = [printable(p) for p in images.paths]
    rejected = [(printable(p), reason) for p, reason in rejected]
    return PredictionResult(
        prediction_table([p for p, good in zip(names, ok) if good], probs[ok], loaded.class_names),
        pd.DataFrame(sorted(rejected, key=lambda r: (natural_key(r[0]), r)), columns=["path", "reason"]),
        seconds,
        predictor.path,
    )


def prediction_table(paths: list[str], probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """CE24 submission layout: ``image_path``, one column per class (display names), ``predicted_class``;
    rows in natural order of ``image_path`` (:func:`natural_key`: ``frame_2`` before ``frame_10``)."""
    if len(set(class_names)) != len(class_names) or {"image_path", "predicted_class"} & set(class_names):
        raise ValueError(f"class names must be unique and not image_path/predicted_class: {class_names}")
    order = np.asarray(sorted(range(len(paths)), key=lambda i: natural_key(paths[i])), dtype=np.intp)
    probs = np.asarray(probs, dtype=np.float32).reshape(len(paths), len(class_names))[order]
    table = pd.DataFrame({"image_path": [paths[i] for i in order]})
    for j, name in enumerate(class_names):
        table[name] = probs[:, j]
    names = np.asarray(class_names, dtype=object)
    table["predicted_class"] = names[probs.argmax(axis=1)] if len(paths) else pd.Series([], dtype=object)
    return table


# ---------------------------------------------------------------------------------------------
# Writing


def check_output(out: str | Path, rows: int) -> str:
    """``"csv"`` or ``"xlsx"`` for ``out``; ``ValueError`` for other suffixes or too many rows for Excel."""
    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise ValueError(f"--out must end in .csv or .xlsx, got {Path(out).name}")
    if suffix == ".xlsx" and rows > MAX_XLSX_ROWS:
        raise ValueError(
            f"{rows:,} images do not fit an Excel sheet (at most {MAX_XLSX_ROWS:,} data rows): "
            f"write {Path(out).with_suffix('.csv').name} instead"
        )
    return suffix[1:]


def output_names(out: str | Path) -> list[str]:
    """What predict may have written in ``--out``'s folder: the table in either format, its rejected list."""
    stem = Path(out).stem
    return [f"{stem}.csv", f"{stem}.xlsx", rejected_beside(out).name]


def check_output_folder(out: str | Path) -> None:
    """``OutputError`` unless ``--out``'s folder holds only predict outputs (it is replaced as a whole)."""
    out = Path(out)
    check_output_dir(
        out.parent,
        output_names(out),
        "the folder of --out",
        "predict outputs",
        hint=f" (e.g. --out predictions/{out.name})",
    )


def nothing_predicted(images: ImageList, source: str | Path, rejected: pd.DataFrame, rejected_file: Path) -> str:
    """The one line ending a run in which every image was rejected: a table without rows is no result.
    When no CSV path exists at all, it names the folder they were resolved against and ``--data-root``."""
    see = f"; see {printable(str(rejected_file))}"
    if Path(source).is_file() and rejected["reason"].eq(MISSING).all():
        return (
            f"nothing predicted: none of the {len(rejected)} paths in {source} exists under {images.root.resolve()} "
            f"(CSV paths are resolved against --data-root, default the current folder){see}"
        )
    path, reason = rejected.iloc[0]
    return f"nothing predicted: all {len(rejected)} images of {source} are unreadable (first {path}: {reason}){see}"


def write_predictions(out: str | Path, result: PredictionResult) -> Path:
    """Write the table (CSV or xlsx by suffix) and ``<stem>.rejected.csv`` beside it as one set: their
    folder is rebuilt and swapped in with one rename (:func:`endoctl.io.atomic_dir`). A table without
    rows is not written (a header-only file would pass for a result); the rejected list always is."""
    out = Path(out)
    kind = check_output(out, len(result.table))
    with atomic_dir(
        out.parent,
        output_names(out),
        "the folder of --out",
        "predict outputs",
        hint=f" (e.g. --out predictions/{out.name})",
    ) as tmp:
        if not result.table.empty:
            if kind == "csv":
                write_csv(tmp / out.name, result.table)  # float32 columns print as their shortest round-trip text
            else:
                table = result.table.copy()
                for name in table.columns[1:-1]:  # float32 -> the float64 of its shortest text (0.1, not 0.10000000149)
                    table[name] = table[name].to_numpy().astype(str).astype(np.float64)
                with atomic_open(tmp / out.name, "wb") as fh:
                    fh.write(xlsx_bytes(table))  # fixed dates: the same table gives the same bytes
        write_csv(tmp / rejected_beside(out).name, result.rejected)
    return rejected_beside(out)

"""Training data: split CSVs -> datasets, timm transforms with endoscopy augmentations, samplers.

Two choices make training reproducible and exactly resumable whatever the worker setup:

* The sampler draws, per epoch, both the sample order *and one seed per drawn sample* from a
  generator seeded by ``(seed, epoch)``. The dataset seeds the augmentation of each sample from
  that seed, so a sample's crop/flip/jitter does not depend on which worker loads it, on
  ``num_workers``, on persistent workers, or on whether the run was resumed.
* One sampler class serves single-process and DDP training: every rank draws the same global
  sequence and keeps positions ``rank, rank + world, ...``, so the shards are disjoint and, for
  the inverse-frequency weighted draw (the paper's class balancing), their union is one weighted
  sample of the whole training set.

Images are decoded exactly as ``endoctl predict`` decodes them (:func:`endoctl.imaging.open_rgb`)
and class display names come from :func:`endoctl.model.display_names`, so training, validation
predictions and inference agree.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from endoctl.imaging import ImageRejected, open_rgb
from endoctl.io import MAPPING_FILE, TRAIN_VAL_FILE, read_csv
from endoctl.model import display_names, read_class_mapping
from endoctl.params import MAX_PIXELS

BALANCE_MODES = ("sampler", "loss", "none")
TRAINING_REQUIRED = ("path", "target_class", "fold")


@dataclass(frozen=True)
class SplitData:
    """The train/val rows of one split folder and its class contract."""

    train: pd.DataFrame
    val: pd.DataFrame
    class_mapping: dict[str, int]  # lower-case class -> index (class_mapping.json)
    class_names: list[str]  # display names in index order: a taxonomy target's (CE24's) spelling, else the keys


@dataclass(frozen=True)
class Augment:
    """Endoscopy augmentations: capsule/endoscope frames have no canonical orientation."""

    hflip: float = 0.5
    vflip: float = 0.5
    rot90: float = 0.5  # probability of a random 90/180/270 degree rotation
    color_jitter: float = 0.2
    scale_min: float = 0.5  # random resized crop scale range (scale_min, 1)


def load_split(split_dir: Path, val_fold: int) -> SplitData:
    """Train = folds other than ``val_fold``, val = ``val_fold``, labels as class indices."""
    split_dir = Path(split_dir)
    file = split_dir / TRAIN_VAL_FILE
    if not file.is_file():
        raise FileNotFoundError(f"split file not found: {file} (run `endoctl split` or `dvc repro`)")
    df = read_csv(file)
    missing = [c for c in TRAINING_REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{file}: missing column(s) {missing}; found {list(df.columns)}")
    if not len(df):
        raise ValueError(f"{file}: no rows (header only): nothing to train on")
    mapping = read_class_mapping(split_dir / MAPPING_FILE)
    multi = df.loc[df["target_class"].str.contains("|", regex=False), "target_class"]
    if len(multi):  # softmax training needs one class per image; say so instead of "unknown class 'a|b'"
        raise ValueError(
            f"{file}: the split's target is multi-label ({len(multi)} images with several classes, e.g. "
            f"{multi.iloc[0]!r}); training takes one class per image: split with a target whose "
            "several_classes is priority or exclude"
        )
    unknown = sorted(set(df["target_class"].str.lower()) - set(mapping))
    if unknown:
        raise ValueError(f"{file}: target_class value(s) not in {MAPPING_FILE}: {unknown[:5]}")
    df = df.assign(label=df["target_class"].str.lower().map(mapping).astype(int))
    folds = sorted(df["fold"].unique())
    if str(val_fold) not in folds:
        raise ValueError(f"{file}: val_fold {val_fold} not among the folds {folds}")
    is_val = df["fold"] == str(val_fold)
    return SplitData(
        df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True), mapping, display_names(mapping)
    )


class RandomRot90:
    """Rotate a PIL image by a random multiple of 90 degrees with probability ``p``."""

    _OPS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, image: Image.Image) -> Image.Image:
        if torch.rand(1).item() >= self.p:
            return image
        return image.transpose(self._OPS[int(torch.randint(3, (1,)).item())])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def build_transform(data_config: dict, training: bool, augment: Augment | None = None) -> Callable:
    """timm's transform for the model's data config; training adds the endoscopy augmentations."""
    from timm.data import create_transform

    cfg = {
        k: data_config[k]
        for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        if k in data_config
    }
    if not training:
        return create_transform(**cfg, is_training=False)
    augment = augment or Augment()
    transform = create_transform(
        **cfg,
        is_training=True,
        hflip=augment.hflip,
        vflip=augment.vflip,
        color_jitter=augment.color_jitter,
        scale=(augment.scale_min, 1.0),
    )
    if augment.rot90 > 0:
        transform.transforms.insert(0, RandomRot90(augment.rot90))
    return transform


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed python's and torch's CPU generators (what timm/torchvision transforms draw from) for one
    sample, restoring both afterwards so the caller's streams (dropout, drop-path) are untouched."""
    py_state, torch_state = random.getstate(), torch.random.get_rng_state()
    random.seed(seed)
    torch.random.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        torch.random.set_rng_state(torch_state)


class LabelledImages(Dataset):
    """Images of a split table; an item is an index, or ``(index, seed)`` for seeded augmentation."""

    def __init__(
        self, frame: pd.DataFrame, transform: Callable, root: Path = Path("."), max_pixels: int = MAX_PIXELS
    ) -> None:
        self.paths = [Path(root) / p for p in frame["path"]]
        self.labels = frame["label"].to_numpy(dtype=np.int64)
        self.transform = transform
        self.max_pixels = max_pixels  # ingest's decompression-bomb limit

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        try:
            image = open_rgb(self.paths[index], self.max_pixels)  # the same decoding as `endoctl predict`
        except ImageRejected as exc:
            raise ValueError(f"cannot use training image {self.paths[index]}: {exc}") from None
        if seed is None:
            return self.transform(image), int(self.labels[index])
        with _seeded(seed):
            return self.transform(image), int(self.labels[index])


def inverse_frequency(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-class weight 1/count (0 for absent classes), scaled so the present classes average 1."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    present = counts > 0
    return weights / weights[present].mean() if present.any() else weights


class DistributedWeightedSampler(Sampler[tuple[int, int]]):
    """Per-epoch draw of ``(index, augmentation seed)``, sharded over DDP ranks.

    With ``weights`` it draws ``num_samples`` indices with replacement proportional to the weights
    (inverse class frequency balances the classes); without, it is a random permutation. The
    global sequence is padded to a multiple of ``world`` (wrapping around) and rank ``r`` keeps
    positions ``r::world``: disjoint shards, equal length on every rank (DDP needs equal steps).
    """

    def __init__(
        self,
        num_items: int,
        weights: Sequence[float] | np.ndarray | None = None,
        num_samples: int | None = None,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
    ) -> None:
        if num_items <= 0:
            raise ValueError("cannot sample from an empty training set")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.num_items = num_items
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        if self.weights is not None and (len(self.weights) != num_items or self.weights.sum() <= 0):
            raise ValueError("sampler weights must have one non-negative value per item and a positive sum")
        self.num_samples = num_samples or num_items
        self.rank, self.world, self.seed = rank, world, seed
        self.per_rank = math.ceil(self.num_samples / world)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw ``__iter__`` yields (same on every rank)."""
        self.epoch = epoch

    def global_draw(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole epoch's padded ``(indices, seeds)`` before sharding, identical on all ranks."""
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.per_rank * self.world
        if self.weights is None:
            drawn = rng.permutation(self.num_items)[: self.num_samples]
        else:
            drawn = rng.choice(self.num_items, size=self.num_samples, replace=True, p=self.weights / self.weights.sum())
        indices = np.resize(drawn, total)  # wraps around to pad
        seeds = rng.integers(0, 2**63 - 1, size=total, dtype=np.int64)
        return indices, seeds

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices, seeds = self.global_draw()
        for i in range(self.rank, len(indices), self.world):
            yield int(indices[i]), int(seeds[i])

    def __len__(self) -> int:
        return self.per_rank

    def state_dict(self) -> dict:
        """Everything that determines the draw: resuming with it repeats the epoch exactly."""
        return {"seed": self.seed, "epoch": self.epoch, "num_samples": self.num_samples, "world": self.world}


def make_loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler | Sequence[int],
    num_workers: int,
    pin_memory: bool,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with persistent workers (no re-spawn each epoch) and its own generator, so
    creating it never draws from the global torch RNG that dropout and drop-path use."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )

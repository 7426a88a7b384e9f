"""Multi-label stratification of ``endoctl split``'s group assignment, measured against baselines.

A generated multi-label manifest shaped like a merged endoscopy dataset: a few long capsule videos,
hundreds of patients with tens of frames, thousands of singletons and small duplicate clusters;
each patient/video has its own findings, so labels cluster by group, and findings co-occur
(erosion with erythema, ulcer with erythema or bleeding, ...). The same groups and labels are split
(20 % test + 5 folds, endoctl's ``assign``) four ways, differing only in the strata handed over:

* multi-label: each image's label set (a row counts for each of its labels: endoctl's rule for a
  ``several_classes: multi-label`` target);
* label set as one class: the set joined into one atomic class (the "label powerset");
* single label: one label per image chosen by a priority list (a ``priority`` target), and the
  split is then judged on all labels;
* groups only: no labels (sizes balanced, proportions left to chance).

Reported per strategy, over several seeds: the deviation of each label's share of images in test
and in every fold from its overall share (percentage points, and relative to the share: rare labels
matter), the test size, and the time. Writes benchmarks/results/split.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from smoke import add_arguments, out_path, write_table

from endoctl.assignment import assign

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "split.md"
SEEDS = (0, 1, 2)
FOLDS, TEST_FRACTION = 5, 0.2
# label: share of groups that have it as one of their findings
LABELS = {
    "erosion": 0.10,
    "erythema": 0.07,
    "ulcer": 0.09,
    "bleeding": 0.08,
    "polyp": 0.10,
    "angiectasia": 0.04,
    "lymphangiectasia": 0.03,
    "foreign-body": 0.02,
    "stenosis": 0.015,
    "lymphoid-follicle": 0.02,
    "worms": 0.005,
}
# finding -> (companion, probability that a frame with the finding also shows the companion)
CO_OCCUR = {
    "erosion": ("erythema", 0.45),
    "ulcer": ("erythema", 0.3),
    "bleeding": ("ulcer", 0.25),
    "angiectasia": ("bleeding", 0.2),
    "polyp": ("erosion", 0.1),
}
PRIORITY = [
    "worms",
    "foreign-body",
    "bleeding",
    "polyp",
    "ulcer",
    "angiectasia",
    "lymphangiectasia",
    "stenosis",
    "lymphoid-follicle",
    "erosion",
    "erythema",
    "normal",
]


def manifest(seed: int, scale: float = 1.0) -> pd.DataFrame:
    """``group, labels`` (a sorted tuple of labels per image) for about 25k images (times ``scale``):
    capsule videos of hundreds of frames, patients with tens of frames, singletons and small clusters."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate(
        [
            np.maximum(50, rng.lognormal(5.5, 0.6, max(2, round(12 * scale)))).astype(int),  # capsule videos
            rng.integers(5, 60, max(1, round(500 * scale))),  # patients with tens of frames
            rng.choice([1, 1, 1, 1, 2, 2, 3, 4], max(1, round(5000 * scale))),  # singletons, small clusters
        ]
    )
    names = list(LABELS)
    share = np.array(list(LABELS.values()))
    rows = []
    for g, size in enumerate(sizes):
        own = [names[i] for i in np.flatnonzero(rng.random(len(names)) < share * (3 if size > 4 else 1))]
        for _ in range(size):
            found = {lab for lab in own if rng.random() < 0.55}
            for lab in sorted(found):
                if lab in CO_OCCUR and rng.random() < CO_OCCUR[lab][1]:
                    found.add(CO_OCCUR[lab][0])
            if rng.random() < 0.02:  # a finding the group is not known for
                found.add(names[rng.choice(len(names), p=share / share.sum())])
            rows.append((f"g{g:05d}", tuple(sorted(found)) or ("normal",)))
    return pd.DataFrame(rows, columns=["group", "labels"])


def strata(df: pd.DataFrame) -> dict[str, pd.Series]:
    rank = {lab: i for i, lab in enumerate(PRIORITY)}
    return {
        "multi-label (endoctl)": df["labels"].map("|".join),
        "label set as one class": df["labels"].map("+".join),
        "single label (priority)": df["labels"].map(lambda labs: min(labs, key=rank.__getitem__)),
        "groups only (no strata)": pd.Series("x", index=df.index),
    }


def deviations(df: pd.DataFrame, placed: pd.DataFrame) -> dict[str, float]:
    """Label-share deviations (pp and relative %) in test and each fold; test size error."""
    carries = pd.DataFrame({lab: df["labels"].map(lambda labs, lab=lab: lab in labs) for lab in PRIORITY})
    overall = carries.mean()
    bins = {"test": placed["split"] == "test"} | {f"fold {f}": placed["fold"] == f for f in range(FOLDS)}
    dev = pd.DataFrame({b: carries[m].mean() - overall for b, m in bins.items()})  # labels x bins
    rel = dev.abs().div(overall, axis=0)
    folds = [c for c in dev.columns if c != "test"]
    return {
        "test max pp": 100 * dev["test"].abs().max(),
        "test mean pp": 100 * dev["test"].abs().mean(),
        "test mean rel %": 100 * rel["test"].mean(),
        "folds max pp": 100 * dev[folds].abs().to_numpy().max(),
        "folds mean pp": 100 * dev[folds].abs().to_numpy().mean(),
        "folds mean rel %": 100 * rel[folds].to_numpy().mean(),
        "test size %": 100 * bins["test"].mean(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args()
    seeds, scale = ((0,), 0.05) if args.smoke else (SEEDS, 1.0)
    results: dict[str, list[dict[str, float]]] = {}
    shape = []
    for seed in seeds:
        df = manifest(seed, scale)
        rarest = min(df["labels"].explode().value_counts().items(), key=lambda kv: kv[1])
        shape.append(
            (
                len(df),
                df["group"].nunique(),
                (df["labels"].map(len) > 1).mean(),
                df["labels"].nunique(),
                rarest[0],
                rarest[1] / len(df),
            )
        )
        for name, y in strata(df).items():
            start = time.perf_counter()
            placed = assign(df["group"], y, TEST_FRACTION, FOLDS, seed)
            took = time.perf_counter() - start
            assert placed.groupby(df["group"])["fold"].nunique().max() == 1  # groups never straddle
            assert placed.groupby(df["group"])["split"].nunique().max() == 1
            assert len(placed) == len(df) and set(placed["split"]) <= {"train_val", "test"}
            test = placed["split"] == "test"
            assert (placed.loc[~test, "fold"].isin(range(FOLDS))).all(), "every train_val row has a fold"
            results.setdefault(name, []).append(deviations(df, placed) | {"time s": took})
    table = pd.DataFrame({name: pd.DataFrame(rows).mean() for name, rows in results.items()}).T
    base = table.loc["single label (priority)"]
    images, groups, multi, sets = (np.mean([s[i] for s in shape]) for i in range(4))
    rare_name, rare_share = shape[0][4], np.mean([s[5] for s in shape if s[4] == shape[0][4]])
    rows = []
    for name, r in table.iterrows():
        rows.append(
            f"| {name} | {r['test max pp']:.2f} | {r['test mean pp']:.3f} | {r['test mean rel %']:.1f} | "
            f"{r['folds max pp']:.2f} | {r['folds mean pp']:.3f} | {r['folds mean rel %']:.1f} | "
            f"{r['folds mean pp'] / base['folds mean pp']:.2f}x | {r['test size %']:.2f} | {r['time s']:.1f} |"
        )
    text = "\n".join(
        [
            "# Split: multi-label stratification vs baselines",
            "",
            f"Generated multi-label manifests (seeds {', '.join(map(str, seeds))}; mean {images:,.0f} images in "
            f"{groups:,.0f} groups: 12 capsule videos, 500 patients, singletons and small clusters; {multi:.0%} of "
            "images "
            f"carry several of {len(PRIORITY)} labels, {sets:.0f} distinct label sets). Each strategy is endoctl's "
            f"`assign` ({TEST_FRACTION:.0%} test + {FOLDS} folds) given different strata; every label's share of "
            "images "
            "in test and in each fold is compared with its overall share. Means over the seeds, same run.",
            "",
            "| strata given to `assign` | test: max dev (pp) | test: mean dev (pp) | test: mean rel. dev (%) | "
            "folds: max dev (pp) | folds: mean dev (pp) | folds: mean rel. dev (%) | folds mean dev vs single label | "
            "test size (%) | time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "dev = |share of images carrying the label in the split − overall share|; rel. dev = dev / overall share "
            f"(weighs rare labels such as {rare_name}, {rare_share:.2%} of images, like common ones).",
            "",
        ]
    )
    print(text)
    write_table(out_path(args, OUT), text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

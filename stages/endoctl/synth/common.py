"""What every demo source's generator shares: finding names, seeded random streams, README tables.

Kept apart from the package's ``__init__`` so that the per-source modules import it without a cycle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from endoctl.synth import SynthConfig

NORMAL = "Normal clean mucosa"
WORMS = "Worms"

# Independent random streams, so e.g. changing the KID size never changes a Kvasir-Capsule pixel.
_PLAN_KC, _PLAN_TEST, _PLAN_KID, _RENDER_KC, _RENDER_TEST, _RENDER_KID, _RENDER_WORMS, _CE24, _RENDER_AIIMS = range(9)
_PLAN_ERS, _RENDER_ERS, _PLAN_SEE_AI, _RENDER_SEE_AI = range(9, 13)
_PLAN_STUDY, _RENDER_STUDY = range(13, 15)


def _rng(seed: int, stream: int, index: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _deck(rng: np.random.Generator, items: list[str]) -> Iterator[str]:
    """Shuffled passes over ``items``: every finding appears once before any repeats."""
    while True:
        for i in rng.permutation(len(items)):
            yield items[i]


@dataclass(frozen=True)
class _Item:
    """One written source image, kept in memory so CE24 can copy it."""

    source: str  # the CE24 sub-source folder: KVASIR or KID
    rel: str  # path below the source root
    name: str
    finding: str
    data: bytes


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _config_block(config: SynthConfig) -> str:
    return "```\n" + "\n".join(f"{k} = {v!r}" for k, v in dataclasses.asdict(config).items()) + "\n```\n"

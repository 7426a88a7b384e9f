"""Process-pool dispatch shared by the image stages (ingest, audit, cache, report), kept apart from any one stage
so that a stage's import closure (its DVC code dependencies) holds only what it runs."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def imap_chunks(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> Iterator[R]:
    """``fn`` over ``jobs`` in order: in ``workers`` forked processes, or here when ``workers`` <= 1."""
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            yield from pool.imap(fn, jobs)
    else:
        yield from map(fn, jobs)

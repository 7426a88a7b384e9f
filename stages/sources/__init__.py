"""Source adapters, registered by name: ``get_adapter("kvasir-capsule")``."""

from __future__ import annotations

from pathlib import Path

from endoctl.sources import ce24, csv_labels, folder, gastrovision, hyperkvasir, kid, kvasir_capsule, see_ai  # noqa: F401
from endoctl.sources.base import REGISTRY, Adapter, ImageRecord, Rejection, Skipped

__all__ = ["REGISTRY", "Adapter", "ImageRecord", "Rejection", "Skipped", "get_adapter"]


def get_adapter(name: str, root: Path, labels: Path | None = None) -> Adapter:
    if name not in REGISTRY:
        raise ValueError(f"unknown --format {name!r}; choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name](root, labels)

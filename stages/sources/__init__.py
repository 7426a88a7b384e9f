"""Source adapters, registered by name: ``get_adapter("kvasir-capsule")``.

The adapter modules are imported on first use of ``REGISTRY`` or :func:`get_adapter`, not with
this package: ``endoctl ingest --help`` lists the names in ``FORMATS`` without loading pandas,
numpy or Pillow. A new adapter module registers its class (``@register``) and is listed here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from endoctl.sources.base import Adapter

__all__ = ["FORMATS", "REGISTRY", "Adapter", "ImageRecord", "Rejection", "Skipped", "get_adapter"]

FORMATS = {  # --format name -> the module below endoctl.sources that registers it
    "ce24": "ce24",
    "csv": "csv_labels",
    "folder": "folder",
    "gastrovision": "gastrovision",
    "hyperkvasir": "hyperkvasir",
    "kid": "kid",
    "kvasir-capsule": "kvasir_capsule",
    "kvasir-v2": "folder",
    "see-ai": "see_ai",
}


def _registry() -> dict[str, type[Adapter]]:
    for module in sorted(set(FORMATS.values())):
        importlib.import_module(f"endoctl.sources.{module}")
    from endoctl.sources.base import REGISTRY

    return REGISTRY


def __getattr__(name: str):  # PEP 562: the registry and record types load the adapters lazily
    if name == "REGISTRY":
        return _registry()
    if name in ("Adapter", "ImageRecord", "Rejection", "Skipped"):
        from endoctl.sources import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_adapter(name: str, root: Path, labels: Path | None = None) -> Adapter:
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown --format {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name](root, labels)

"""Source adapters, registered by name: ``get_adapter("kvasir-capsule")``; ``detect_format`` for ``--format auto``.

The adapter modules are imported on first use of ``REGISTRY``, :func:`get_adapter` or
:func:`detect_format`, not with this package: ``endoctl ingest --help`` lists the names in
``FORMATS`` without loading pandas, numpy or Pillow. A new adapter module registers its class
(``@register``) and is listed in ``FORMATS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from endoctl.sources.base import Adapter

__all__ = [
    "AUTO",
    "DETECTION_ORDER",
    "FORMATS",
    "REGISTRY",
    "Adapter",
    "ImageRecord",
    "Rejection",
    "Skipped",
    "detect_format",
    "get_adapter",
]

FORMATS = {  # --format name -> the module below endoctl.sources that registers it
    "ce24": "ce24",
    "crohnipi": "crohnipi",
    "csv": "csv_labels",
    "ers": "ers",
    "folder": "folder",
    "gastrovision": "gastrovision",
    "hyperkvasir": "hyperkvasir",
    "kid": "kid",
    "kvasir-capsule": "kvasir_capsule",
    "kvasir-v2": "folder",
    "limuc": "limuc",
    "medfmc-endo": "medfmc",
    "see-ai": "see_ai",
}
AUTO = "auto"
# Most specific evidence first: named folders/files a dataset alone ships, then folder-name patterns
# (ERS patient folders), then sets of class-folder names. ``folder`` and ``csv`` are never guessed.
DETECTION_ORDER = (
    "ce24",
    "kvasir-capsule",
    "hyperkvasir",
    "see-ai",
    "crohnipi",
    "limuc",
    "ers",
    "medfmc-endo",
    "gastrovision",
    "kvasir-v2",
    "kid",
)


def _registry() -> dict[str, type[Adapter]]:
    # Imported here, on first use, and named one by one so the code a stage runs can be read off the
    # source (tests/test_dvc_deps.py); importing a module registers its adapter(s).
    from endoctl.sources import (  # noqa: F401
        ce24,
        crohnipi,
        csv_labels,
        ers,
        folder,
        gastrovision,
        hyperkvasir,
        kid,
        kvasir_capsule,
        limuc,
        medfmc,
        see_ai,
    )
    from endoctl.sources.base import REGISTRY

    return REGISTRY


def __getattr__(name: str):  # PEP 562: the registry and record types load the adapters lazily
    if name == "REGISTRY":
        return _registry()
    if name in ("Adapter", "ImageRecord", "Rejection", "Skipped"):
        from endoctl.sources import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def detect_format(root: Path) -> tuple[str, str]:
    """(format, what showed it) for the dataset in ``root``, trying ``DETECTION_ORDER`` in turn.

    Raises ValueError listing what each format looks for when none matches.
    """
    registry = _registry()
    for name in DETECTION_ORDER:
        found = registry[name].detect(root)
        if found:
            return name, found
    looked = "; ".join(f"{name}: {registry[name].signature}" for name in DETECTION_ORDER)
    raise ValueError(f"--format auto: no known layout in {root} (looked for {looked}); pass --format NAME")


def get_adapter(name: str, root: Path, labels: Path | None = None) -> Adapter:
    registry = _registry()
    if name not in registry:
        raise ValueError(f"unknown --format {name!r}; choose one of {', '.join(sorted(registry))} or {AUTO}")
    return registry[name](root, labels)

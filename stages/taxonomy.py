"""Class taxonomy: every source label -> unified findings -> the classes of a named target.

Datasets name the same thing differently ('Angiectasia', 'Angioectasia', 'angiodysplasia') and at
different granularity (KID's 'vascular' is angiectasia *or* blood). The taxonomy keeps those three
layers apart in one versioned YAML file (``taxonomies/taxonomy-v1.yaml``, overridable by a path):

* ``findings``: the unified vocabulary, finding -> one-line description;
* ``sources``: per dataset (the ``endoctl ingest --format`` name), every label -> its findings;
* ``targets``: named label sets (ordered display classes) and a finding -> class map.

:func:`map_labels` applies one target to a manifest. It never drops a row: a row it cannot use
gets a reason in ``excluded`` instead of a class, so a split report can say why each image is out.
A source label the taxonomy does not know is an error, never a silent exclusion: a new spelling
must be added to the YAML deliberately.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomies" / "taxonomy-v1.yaml"
SUPPORTED_VERSIONS = (1,)
LABEL_SEP = "|"  # several source labels of one image, as ingest writes them
FINDING_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_LISTED = 20  # offending labels named in one error message

UNLABELLED = "unlabelled image"


@dataclass(frozen=True)
class Target:
    """A named label set: ordered display ``classes`` and the finding -> class ``map``.

    ``sources`` (dataset keys) restricts which datasets may contribute; ``None`` means all.
    """

    name: str
    description: str
    classes: list[str]
    sources: list[str] | None
    map: dict[str, str]

    def class_mapping(self) -> dict[str, int]:
        """``{display_name.lower(): index}`` in ``classes`` order: the split/training contract.

        Lower-case keys so that label spellings differing only in case ('Foreign Body' vs
        'Foreign body') can never become two classes downstream.
        """
        return {name.lower(): i for i, name in enumerate(self.classes)}


@dataclass(frozen=True)
class Taxonomy:
    version: int
    findings: dict[str, str]
    sources: dict[str, dict[str, list[str]]]
    targets: dict[str, Target]

    def target(self, name: str) -> Target:
        """The target called ``name``; an unknown name lists the choices (typos fail loudly)."""
        if name not in self.targets:
            raise ValueError(f"unknown target {name!r}; choose one of {', '.join(sorted(self.targets))}")
        return self.targets[name]


# ---------------------------------------------------------------------------------------------
# Loading and validation


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key repeated in one mapping (PyYAML silently keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise ValueError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


class _Errors:
    """Collects every problem in a taxonomy file, so one run reports them all."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, where: str, problem: str) -> None:
        self.items.append(f"{where}: {problem}")

    def raise_any(self) -> None:
        if self.items:
            shown = "\n  ".join(self.items[:MAX_LISTED])
            more = f"\n  ... and {len(self.items) - MAX_LISTED} more" if len(self.items) > MAX_LISTED else ""
            raise ValueError(f"invalid taxonomy {self.path}:\n  {shown}{more}")


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _findings(raw: object, err: _Errors) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        err.add("findings", "must be a non-empty mapping of finding -> description")
        return {}
    out: dict[str, str] = {}
    for name, text in raw.items():
        where = f"findings.{name}"
        if not isinstance(name, str) or not FINDING_NAME.fullmatch(name):
            err.add(where, "finding names are lower-case words joined by '-' (e.g. blood-fresh)")
        elif not _is_text(text):
            err.add(where, "needs a one-line description")
        else:
            out[name] = text.strip()
    return out


def _sources(raw: object, findings: dict[str, str], err: _Errors) -> dict[str, dict[str, list[str]]]:
    if not isinstance(raw, dict) or not raw:
        err.add("sources", "must be a non-empty mapping of dataset -> {source label: finding(s)}")
        return {}
    out: dict[str, dict[str, list[str]]] = {}
    for dataset, labels in raw.items():
        if not isinstance(labels, dict) or not labels:
            err.add(f"sources.{dataset}", "must be a non-empty mapping of source label -> finding(s)")
            continue
        table: dict[str, list[str]] = {}
        for label, mapped in labels.items():
            where = f"sources.{dataset}.{label!r}"
            if not _is_text(label) or label != label.strip() or LABEL_SEP in label:
                err.add(where, f"a source label is non-empty text without surrounding spaces or {LABEL_SEP!r}")
                continue
            values = [mapped] if isinstance(mapped, str) else mapped
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                err.add(where, "maps to a finding or a non-empty list of findings")
                continue
            unknown = [v for v in values if v not in findings]
            if unknown:
                err.add(where, f"unknown finding(s) {', '.join(map(repr, unknown))} (not under findings:)")
                continue
            table[str(label)] = sorted(set(values))
        out[str(dataset)] = table
    return out


def _targets(raw: object, findings: dict[str, str], datasets: set[str], err: _Errors) -> dict[str, Target]:
    if not isinstance(raw, dict) or not raw:
        err.add("targets", "must be a non-empty mapping of target name -> definition")
        return {}
    out: dict[str, Target] = {}
    allowed = {"description", "classes", "sources", "map"}
    for name, spec in raw.items():
        where = f"targets.{name}"
        if not isinstance(spec, dict):
            err.add(where, "must be a mapping with description, classes, map and optional sources")
            continue
        for key in sorted(set(spec) - allowed, key=str):
            err.add(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        description = spec.get("description")
        if not _is_text(description):
            err.add(f"{where}.description", "needs a description")
        classes = spec.get("classes")
        if not isinstance(classes, list) or not classes or not all(_is_text(c) for c in classes):
            err.add(f"{where}.classes", "must be a non-empty list of class names")
            continue
        lowered = [c.lower() for c in classes]
        dupes = sorted({c for c in lowered if lowered.count(c) > 1})
        if dupes:
            err.add(f"{where}.classes", f"repeated class(es) (case-insensitive): {', '.join(dupes)}")
        sources = spec.get("sources")
        if sources is not None:
            if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
                err.add(f"{where}.sources", "must be a non-empty list of dataset names (or left out)")
                sources = None
            else:
                for dataset in sources:
                    if dataset not in datasets:
                        err.add(f"{where}.sources", f"unknown dataset {dataset!r} (not under sources:)")
        mapping = spec.get("map")
        if not isinstance(mapping, dict) or not mapping:
            err.add(f"{where}.map", "must be a non-empty mapping of finding -> class")
            continue
        for finding, cls in mapping.items():
            if finding not in findings:
                err.add(f"{where}.map.{finding}", "unknown finding (not under findings:)")
            if cls not in classes:
                err.add(f"{where}.map.{finding}", f"class {cls!r} is not one of the target's classes")
        out[str(name)] = Target(
            name=str(name),
            description=description.strip() if _is_text(description) else "",
            classes=[str(c) for c in classes],
            sources=list(sources) if sources is not None else None,
            map={str(f): str(c) for f, c in mapping.items()},
        )
    return out


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy YAML (default: the packaged ``taxonomies/taxonomy-v1.yaml``).

    Validation happens here, once, so that a typo in the file (a finding that does not exist, a
    class a target does not have, a key given twice) fails with the file and key named, instead of
    silently moving images between classes later. Raises ``ValueError``.
    """
    path = Path(path) if path is not None else DEFAULT_TAXONOMY
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise FileNotFoundError(f"taxonomy file not found: {path}") from None
    except ValueError as exc:
        raise ValueError(f"invalid taxonomy {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid taxonomy {path}: not valid YAML: {exc}") from None
    err = _Errors(path)
    if not isinstance(raw, dict):
        err.add("(top level)", "must be a mapping with version, findings, sources, targets")
        err.raise_any()
    for key in sorted(set(raw) - {"version", "findings", "sources", "targets"}, key=str):
        err.add(str(key), "unknown top-level key (allowed: version, findings, sources, targets)")
    version = raw.get("version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        err.add("version", f"must be one of {list(SUPPORTED_VERSIONS)}, got {version!r}")
    findings = _findings(raw.get("findings"), err)
    sources = _sources(raw.get("sources"), findings, err)
    targets = _targets(raw.get("targets"), findings, set(sources), err)
    err.raise_any()
    return Taxonomy(version=int(version), findings=findings, sources=sources, targets=targets)


# ---------------------------------------------------------------------------------------------
# Applying a target


def _split_label(label: str) -> list[str]:
    return sorted({part.strip() for part in label.split(LABEL_SEP) if part.strip()})


def _unknown_error(pairs: list[str]) -> ValueError:
    shown = "\n  ".join(pairs[:MAX_LISTED])
    more = f"\n  ... and {len(pairs) - MAX_LISTED} more" if len(pairs) > MAX_LISTED else ""
    return ValueError(
        f"{len(pairs)} source label(s) not in the taxonomy (add them under sources: in the taxonomy "
        f"YAML):\n  {shown}{more}"
    )


def map_labels(
    manifest: pd.DataFrame,
    taxonomy: Taxonomy,
    target: str,
    formats: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """A copy of ``manifest`` with ``findings``, ``target_class`` and ``excluded`` columns.

    ``manifest`` needs ``source`` and ``label`` (several labels joined by '|', or empty).
    ``formats`` maps manifest source names to taxonomy dataset keys (default and fallback: the
    source name itself). Every input row comes back, in order, with exactly one of
    ``target_class`` (a key of ``Target.class_mapping()``) or ``excluded`` (why) non-empty, so
    nothing disappears without a trace. A label the taxonomy does not know raises one
    ``ValueError`` listing every such ``source: label`` pair: mapping a dataset wrongly must
    never look like a successful run. Work is done once per unique (source, label) pair.
    """
    spec = taxonomy.target(target)
    missing = [c for c in ("source", "label") if c not in manifest.columns]
    if missing:
        raise ValueError(f"manifest has no column(s) {missing} (found {list(manifest.columns)})")
    formats = dict(formats or {})
    allowed = set(spec.sources) if spec.sources is not None else None

    sources = manifest["source"].fillna("").astype(str)
    labels = manifest["label"].fillna("").astype(str)
    # Factorize each column, then the integer pairs: much faster than hashing tuples of strings.
    source_codes, source_values = pd.factorize(sources)
    label_codes, label_values = pd.factorize(labels)
    width = max(len(label_values), 1)
    codes, pairs = pd.factorize(source_codes.astype(np.int64) * width + label_codes)

    results: list[tuple[str, str, str]] = []
    unknown: set[str] = set()
    for key in pairs:
        source, label = str(source_values[key // width]), str(label_values[key % width])
        dataset = formats.get(source, source)
        parts = _split_label(label)
        lookup = taxonomy.sources.get(dataset)
        found: set[str] = set()
        shown = source or "''"
        for part in parts:
            if lookup is None:
                note = "" if dataset == source else f" (dataset {dataset!r})"
                unknown.add(f"{shown}: {part}  [dataset not in the taxonomy{note}]")
            elif part not in lookup:
                note = "" if dataset == source else f" [dataset {dataset}]"
                unknown.add(f"{shown}: {part}{note}")
            else:
                found.update(lookup[part])
        results.append(_decide(spec, allowed, source, dataset, parts, sorted(found)))
    if unknown:
        raise _unknown_error(sorted(unknown))

    per_pair = np.array(results, dtype=object).reshape(len(results), 3)
    out = manifest.copy()
    for i, column in enumerate(("findings", "target_class", "excluded")):
        out[column] = per_pair[codes, i]
    return out


def _decide(
    spec: Target, allowed: set[str] | None, source: str, dataset: str, parts: list[str], findings: list[str]
) -> tuple[str, str, str]:
    """(findings, target_class, excluded) for one unique (source, label) pair."""
    joined = LABEL_SEP.join(findings)
    if allowed is not None and dataset not in allowed:
        via = "" if dataset == source else f" (dataset {dataset!r})"
        return joined, "", f"source {source!r}{via} not used by target {spec.name!r} (uses: {', '.join(spec.sources or [])})"
    if not parts:
        return joined, "", UNLABELLED
    classes = {f: spec.map[f] for f in findings if f in spec.map}
    if not classes:
        return joined, "", f"no finding maps into target {spec.name!r}: {', '.join(findings)}"
    distinct = sorted(set(classes.values()), key=spec.classes.index)
    if len(distinct) > 1:
        named = ", ".join(f"{f} -> {c}" for f, c in classes.items())
        return joined, "", f"ambiguous: findings map to several {spec.name!r} classes ({named})"
    return joined, distinct[0].lower(), ""

"""Class taxonomy: every source label -> unified findings -> the classes of a named target.

Datasets name the same thing differently ('Angiectasia', 'Angioectasia', 'angiodysplasia') and at
different granularity (KID's 'vascular' is angiectasia *or* blood). The taxonomy keeps those three
layers apart in one versioned YAML file (``taxonomies/taxonomy-v2.yaml``, overridable by a path):

* ``findings``: the unified vocabulary, finding -> one-line description; ``quality`` lists the
  findings that describe the picture (blur, ...) rather than the mucosa;
* ``refines`` (optional): finding -> the finding(s) it refines (its parents), e.g. ERS's ``ers-c26``
  refines ``ulcer``. A target that maps a refined finding reads it as itself; every other target
  reads its parents instead (recursively), so adding a refinement never changes an existing target;
* ``sources``: per dataset (the ``endoctl ingest --format`` name), every label -> its findings;
* ``targets``: named label sets (ordered display classes) and a finding -> class map, plus the rule
  for an image whose findings reach several classes (``several_classes``: ``exclude``,
  ``priority`` or ``multi-label``) and optional published reference counts. ``quality_classes:
  true`` lets a target map quality flags like any other finding (ERS's q codes as classes).

:func:`map_labels` applies one target to a manifest. It never drops a row: a row it cannot use
gets a reason in ``excluded`` instead of a class, so a split report can say why each image is out.
A source label the taxonomy does not know is an error, never a silent exclusion: a new spelling
must be added to the YAML deliberately. Quality flags never decide a class: an image whose only
findings are quality flags is excluded ("quality flag only").

Version 1 files (no ``quality``, no rules: every target excludes ambiguous images) still load.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeGuard

import numpy as np
import pandas as pd
import yaml

DEFAULT_TAXONOMY = Path(__file__).resolve().parent / "taxonomies" / "taxonomy-v2.yaml"
SUPPORTED_VERSIONS = (1, 2)
LABEL_SEP = "|"  # several source labels of one image, as ingest writes them; several classes of one image
FINDING_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_LISTED = 20  # offending labels named in one error message

UNLABELLED = "unlabelled image"
QUALITY_ONLY = "quality flag only"
EXCLUDE, PRIORITY, MULTI_LABEL = "exclude", "priority", "multi-label"
SEVERAL_RULES = (EXCLUDE, PRIORITY, MULTI_LABEL)
EVERY_FINDING = "every-finding"  # ``classes: every-finding``: each finding (but quality flags, refinements) is a class
MAPPED_COLUMNS = ("findings", "target_class", "excluded", "candidates")


@dataclass(frozen=True)
class Reference:
    """Published image counts of a target (e.g. a paper's table), to compare a build against.

    ``totals``: class -> images; ``datasets``: taxonomy dataset -> class -> images (only the cells
    the publication gives); ``images``: the published total, when given.
    """

    source: str
    totals: dict[str, int]
    datasets: dict[str, dict[str, int]]
    images: int | None = None


@dataclass(frozen=True)
class Target:
    """A named label set: ordered display ``classes`` and the finding -> class ``map``.

    ``sources`` (dataset keys) restricts which datasets may contribute; ``None`` means all.
    ``several``: what an image whose findings reach several classes becomes: ``exclude`` (an
    exclusion reason "ambiguous: ..."), ``priority`` (the first of its classes in ``priority``)
    or ``multi-label`` (all of them, joined with '|' in class order). ``quality_classes``: quality
    flags are findings like any other here (mapped, deciding a class) instead of never deciding one.
    """

    name: str
    description: str
    classes: list[str]
    sources: list[str] | None
    map: dict[str, str]
    several: str = EXCLUDE
    priority: list[str] | None = None
    reference: Reference | None = None
    quality_classes: bool = False

    @property
    def multi_label(self) -> bool:
        return self.several == MULTI_LABEL

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
    quality: frozenset[str] = field(default_factory=frozenset)
    refines: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def general(self, findings: Collection[str], keep: Collection[str] = frozenset()) -> list[str]:
        """``findings`` with every refined finding not in ``keep`` replaced by its parents, recursively
        (sorted, unique): what a target whose map is ``keep`` reads. ``keep`` empty: the most general
        findings, as every target that maps no refined finding reads them."""
        out: set[str] = set()
        todo = list(findings)
        while todo:
            finding = todo.pop()
            if finding in self.refines and finding not in keep:
                todo.extend(self.refines[finding])
            else:
                out.add(finding)
        return sorted(out)

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
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line {seen[key] + 1})"
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


def _quality(raw: object, findings: dict[str, str], err: _Errors) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not all(isinstance(f, str) for f in raw):
        err.add("quality", "must be a list of findings (those describing image quality, not the mucosa)")
        return frozenset()
    for name in raw:
        if name not in findings:
            err.add(f"quality.{name}", "unknown finding (not under findings:)")
        elif raw.count(name) > 1:
            err.add(f"quality.{name}", "listed twice")
    return frozenset(f for f in raw if f in findings)


def _refines(raw: object, findings: dict[str, str], err: _Errors) -> dict[str, tuple[str, ...]]:
    """finding -> its parent finding(s); both known findings, no finding its own ancestor."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        err.add("refines", "must be a mapping of finding -> the finding(s) it refines")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for name, parents in raw.items():
        where = f"refines.{name}"
        values = [parents] if isinstance(parents, str) else parents
        if name not in findings:
            err.add(where, "unknown finding (not under findings:)")
        elif not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            err.add(where, "refines a finding or a non-empty list of findings")
        elif [v for v in values if v not in findings]:
            unknown = ", ".join(repr(v) for v in values if v not in findings)
            err.add(where, f"unknown parent finding(s) {unknown} (not under findings:)")
        else:
            out[str(name)] = tuple(sorted(set(values)))
    for name in out:  # a cycle would make a finding its own parent: no target could read it
        seen, todo = set(), list(out[name])
        while todo:
            parent = todo.pop()
            if parent == name:
                err.add(f"refines.{name}", "is its own ancestor (a cycle of refinements)")
                break
            if parent not in seen:
                seen.add(parent)
                todo.extend(out.get(parent, ()))
    return out


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _reference(raw: object, where: str, classes: list[str], datasets: set[str], err: _Errors) -> Reference | None:
    """Published counts: every class and dataset must exist, and the totals must add up."""
    allowed = {"source", "images", "totals", "datasets"}
    if not isinstance(raw, dict):
        err.add(where, f"must be a mapping with {', '.join(sorted(allowed))}")
        return None
    for key in sorted(set(raw) - allowed, key=str):
        err.add(f"{where}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    ok = True

    def table(value: object, at: str) -> dict[str, int]:
        nonlocal ok
        if not isinstance(value, dict) or not value:
            err.add(at, "must be a non-empty mapping of class -> image count")
            ok = False
            return {}
        for cls, n in value.items():
            if cls not in classes:
                err.add(f"{at}.{cls}", "not one of the target's classes")
                ok = False
            elif not _count(n):
                err.add(f"{at}.{cls}", f"must be a whole number >= 0, got {n!r}")
                ok = False
        return {str(c): int(n) for c, n in value.items() if c in classes and _count(n)}

    if not _is_text(raw.get("source")):
        err.add(f"{where}.source", "needs the publication the numbers come from")
        ok = False
    totals = table(raw.get("totals"), f"{where}.totals")
    per_dataset: dict[str, dict[str, int]] = {}
    raw_datasets = raw.get("datasets", {})
    if not isinstance(raw_datasets, dict):
        err.add(f"{where}.datasets", "must be a mapping of dataset -> {class: image count}")
        ok = False
        raw_datasets = {}
    for dataset, cells in raw_datasets.items():
        if dataset not in datasets:
            err.add(f"{where}.datasets.{dataset}", "unknown dataset (not under sources:)")
            ok = False
            continue
        per_dataset[str(dataset)] = table(cells, f"{where}.datasets.{dataset}")
        for cls, n in per_dataset[str(dataset)].items():
            if cls in totals and n > totals[cls]:
                err.add(f"{where}.datasets.{dataset}.{cls}", f"{n} is more than the class total {totals[cls]}")
                ok = False
    images = raw.get("images")
    if images is not None:
        if not _count(images):
            err.add(f"{where}.images", f"must be a whole number >= 0, got {images!r}")
            ok = False
        elif totals and sum(totals.values()) != images:
            err.add(f"{where}.totals", f"add up to {sum(totals.values())}, not images: {images}")
            ok = False
    if not ok:
        return None
    return Reference(str(raw["source"]).strip(), totals, per_dataset, images)


TARGET_KEYS = ("description", "classes", "sources", "map")
NEWER_TARGET_KEYS = ("several_classes", "priority", "reference", "quality_classes")  # version 2


def _targets(
    raw: object,
    findings: dict[str, str],
    quality: frozenset[str],
    refines: dict[str, tuple[str, ...]],
    datasets: set[str],
    version: object,
    err: _Errors,
) -> dict[str, Target]:
    """Every well-formed target; a broken one is left out after all its problems are recorded, so
    one run names them all."""
    if not isinstance(raw, dict) or not raw:
        err.add("targets", "must be a non-empty mapping of target name -> definition")
        return {}
    out: dict[str, Target] = {}
    for name, spec in raw.items():
        target = _target(name, spec, findings, quality, refines, datasets, version, err)
        if target is not None:
            out[str(name)] = target
    return out


def _target(
    name: object,
    spec: object,
    findings: dict[str, str],
    quality: frozenset[str],
    refines: dict[str, tuple[str, ...]],
    datasets: set[str],
    version: object,
    err: _Errors,
) -> Target | None:
    """One target, checked key by key in the order the problems are reported; None when its
    classes or map are unusable (the checks that need them are skipped, not guessed)."""
    where = f"targets.{name}"
    if not isinstance(spec, dict):
        err.add(where, "must be a mapping with description, classes, map and optional sources")
        return None
    _unknown_target_keys(spec, where, version, err)
    description = spec.get("description")
    if not _is_text(description):
        err.add(f"{where}.description", "needs a description")
    classes, mapping = _classes_and_map(spec, where, findings, quality, refines, version, err)
    if not _valid_classes(classes, where, err):
        return None
    sources = _target_sources(spec.get("sources"), where, datasets, err)
    quality_classes = spec.get("quality_classes", False)
    if not isinstance(quality_classes, bool):
        err.add(f"{where}.quality_classes", f"must be true or false, got {quality_classes!r}")
        quality_classes = False
    if not _valid_map(mapping, where, classes, findings, quality, quality_classes, err):
        return None
    several, priority = _several_classes(spec, where, classes, err)
    reference = None
    if spec.get("reference") is not None:
        reference = _reference(spec["reference"], f"{where}.reference", [str(c) for c in classes], datasets, err)
    return Target(
        name=str(name),
        description=description.strip() if _is_text(description) else "",
        classes=[str(c) for c in classes],
        sources=list(sources) if sources is not None else None,
        map={str(f): str(c) for f, c in mapping.items()},
        several=str(several),
        priority=[str(c) for c in priority] if priority is not None else None,
        reference=reference,
        quality_classes=quality_classes,
    )


def _unknown_target_keys(spec: dict, where: str, version: object, err: _Errors) -> None:
    """A misspelt key would silently fall back to its default; a version 2 key in a version 1 file
    says which version it needs."""
    known = set(TARGET_KEYS) | set(NEWER_TARGET_KEYS) if version != 1 else set(TARGET_KEYS)
    for key in sorted(set(spec) - known, key=str):
        hint = " (needs version: 2)" if key in NEWER_TARGET_KEYS else ""
        err.add(f"{where}.{key}", f"unknown key{hint} (allowed: {', '.join(sorted(known))})")


def _classes_and_map(
    spec: dict,
    where: str,
    findings: dict[str, str],
    quality: frozenset[str],
    refines: dict[str, tuple[str, ...]],
    version: object,
    err: _Errors,
) -> tuple[object, object]:
    """The target's classes and map as written, or (``classes: every-finding``, version 2) one class
    per finding that is neither a quality flag nor a refinement, each mapped to itself."""
    classes = spec.get("classes")
    mapping = spec.get("map")
    if classes == EVERY_FINDING and version != 1:
        if mapping is not None:
            err.add(f"{where}.map", f"must be left out with classes: {EVERY_FINDING} (each finding is its own class)")
        classes = [f for f in findings if f not in quality and f not in refines]
        mapping = {f: f for f in classes}
    return classes, mapping


def _valid_classes(classes: object, where: str, err: _Errors) -> TypeGuard[list[str]]:
    """Class names become the split/training contract: no case-insensitive repeats (they would be
    one class downstream) and no ``|`` (it joins the classes of multi-label images)."""
    if not isinstance(classes, list) or not classes or not all(_is_text(c) for c in classes):
        err.add(f"{where}.classes", f"must be a non-empty list of class names (or {EVERY_FINDING})")
        return False
    lowered = [c.lower() for c in classes]
    dupes = sorted({c for c in lowered if lowered.count(c) > 1})
    if dupes:
        err.add(f"{where}.classes", f"repeated class(es) (case-insensitive): {', '.join(dupes)}")
    for cls in classes:
        if LABEL_SEP in cls:
            err.add(
                f"{where}.classes",
                f"class {cls!r} contains {LABEL_SEP!r} (it joins the classes of multi-label images)",
            )
    return True


def _target_sources(sources: object, where: str, datasets: set[str], err: _Errors) -> list[str] | None:
    """The datasets the target may draw from, as written (None: all); a malformed list counts as
    left out, so the rest of the target is still checked."""
    if sources is None:
        return None
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        err.add(f"{where}.sources", "must be a non-empty list of dataset names (or left out)")
        return None
    for dataset in sources:
        if dataset not in datasets:
            err.add(f"{where}.sources", f"unknown dataset {dataset!r} (not under sources:)")
    return sources


def _valid_map(
    mapping: object,
    where: str,
    classes: list[str],
    findings: dict[str, str],
    quality: frozenset[str],
    quality_classes: bool,
    err: _Errors,
) -> TypeGuard[dict]:
    """Every mapped finding exists and every class it maps to is the target's; a quality flag may
    decide a class only where the target says so."""
    if not isinstance(mapping, dict) or not mapping:
        err.add(f"{where}.map", "must be a non-empty mapping of finding -> class")
        return False
    for finding, cls in mapping.items():
        if finding not in findings:
            err.add(f"{where}.map.{finding}", "unknown finding (not under findings:)")
        elif finding in quality and not quality_classes:
            err.add(
                f"{where}.map.{finding}",
                "is a quality flag: quality flags never decide a class (unless quality_classes: true)",
            )
        if cls not in classes:
            err.add(f"{where}.map.{finding}", f"class {cls!r} is not one of the target's classes")
    return True


def _several_classes(spec: dict, where: str, classes: list[str], err: _Errors) -> tuple[str, list | None]:
    """The rule for an image reaching several classes (default exclude) and, for ``priority``, an
    order naming every class exactly once: a class missing from it could never win."""
    several = spec.get("several_classes", EXCLUDE)
    if several not in SEVERAL_RULES:
        err.add(f"{where}.several_classes", f"must be one of {', '.join(SEVERAL_RULES)}, got {several!r}")
        several = EXCLUDE
    priority = spec.get("priority")
    if several == PRIORITY:
        if (
            not isinstance(priority, list)
            or sorted(map(str, priority)) != sorted(classes)
            or len(set(priority)) != len(priority)
        ):
            err.add(f"{where}.priority", "must list every class of the target exactly once (first wins)")
            priority = None
    elif priority is not None:
        err.add(f"{where}.priority", f"only used with several_classes: {PRIORITY} (here {several})")
        priority = None
    return several, priority


TOP_LEVEL = ("version", "findings", "refines", "quality", "sources", "targets")
NEWER_TOP_LEVEL = ("refines", "quality")  # version 2


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy YAML (default: the packaged ``taxonomies/taxonomy-v2.yaml``).

    Validation happens here, once, so that a typo in the file (a finding that does not exist, a
    class a target does not have, a key given twice, a priority list missing a class, reference
    counts that do not add up) fails with the file and key named, instead of silently moving
    images between classes later. Version 1 files load unchanged (no quality flags; every target
    excludes images whose findings reach several classes). Raises ``ValueError``.
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
    version = raw.get("version")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        err.add("version", f"must be one of {list(SUPPORTED_VERSIONS)}, got {version!r}")
    allowed = [k for k in TOP_LEVEL if k not in NEWER_TOP_LEVEL or version != 1]
    for key in sorted(set(raw) - set(allowed), key=str):
        hint = " (needs version: 2)" if key in NEWER_TOP_LEVEL else ""
        err.add(str(key), f"unknown top-level key{hint} (allowed: {', '.join(allowed)})")
    findings = _findings(raw.get("findings"), err)
    refines = _refines(raw.get("refines"), findings, err) if version != 1 else {}
    quality = _quality(raw.get("quality"), findings, err) if version != 1 else frozenset()
    # a refinement of a quality flag is one too (ERS q02 refines blur)
    quality = frozenset(f for f in findings if f in quality or set(_ancestors(f, refines)) & quality)
    sources = _sources(raw.get("sources"), findings, err)
    targets = _targets(raw.get("targets"), findings, quality, refines, set(sources), version, err)
    err.raise_any()
    return Taxonomy(
        version=int(version), findings=findings, sources=sources, targets=targets, quality=quality, refines=refines
    )


def _ancestors(finding: str, refines: dict[str, tuple[str, ...]]) -> set[str]:
    seen: set[str] = set()
    todo = list(refines.get(finding, ()))
    while todo:
        parent = todo.pop()
        if parent not in seen:
            seen.add(parent)
            todo.extend(refines.get(parent, ()))
    return seen


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
    """A copy of ``manifest`` with ``findings``, ``target_class``, ``excluded`` and ``candidates``.

    ``manifest`` needs ``source`` and ``label`` (several labels joined by '|', or empty).
    ``formats`` maps manifest source names to taxonomy dataset keys (default and fallback: the
    source name itself). Every input row comes back, in order, with exactly one of
    ``target_class`` (a key of ``Target.class_mapping()``, or several joined by '|' for a
    multi-label target) or ``excluded`` (why) non-empty, so nothing disappears without a trace.
    ``findings`` are the row's findings as the target reads them: a refined finding the target does
    not map is its parent(s) (``Taxonomy.general``), so a refinement never changes an existing target.
    ``candidates`` lists every class the row's findings reach ('|'-joined, class order), so a
    report can count what the target's ``several_classes`` rule did. A label the taxonomy does not
    know raises one ``ValueError`` listing every such ``source: label`` pair: mapping a dataset
    wrongly must never look like a successful run. Work is done once per unique (source, label).
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

    read: dict[str, list[str]] = {}  # finding -> the finding(s) this target reads it as (refinements)
    for finding in taxonomy.findings:
        read[finding] = taxonomy.general([finding], keep=spec.map) if finding in taxonomy.refines else [finding]
    rank = {c: i for i, c in enumerate(spec.priority or spec.classes)}
    order = {c: i for i, c in enumerate(spec.classes)}
    results: list[tuple[str, str, str, str]] = []
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
                found.update(f for finding in lookup[part] for f in read[finding])
        results.append(_decide(spec, taxonomy.quality, allowed, order, rank, source, dataset, parts, sorted(found)))
    if unknown:
        raise _unknown_error(sorted(unknown))

    per_pair = np.array(results, dtype=object).reshape(len(results), len(MAPPED_COLUMNS))
    out = manifest.copy()
    for i, column in enumerate(MAPPED_COLUMNS):
        out[column] = per_pair[codes, i]
    return out


def _decide(
    spec: Target,
    quality: frozenset[str],
    allowed: set[str] | None,
    order: dict[str, int],
    rank: dict[str, int],
    source: str,
    dataset: str,
    parts: list[str],
    findings: list[str],
) -> tuple[str, str, str, str]:
    """(findings, target_class, excluded, candidates) for one unique (source, label) pair."""
    joined = LABEL_SEP.join(findings)
    if allowed is not None and dataset not in allowed:
        via = "" if dataset == source else f" (dataset {dataset!r})"
        return (
            joined,
            "",
            f"source {source!r}{via} not used by target {spec.name!r} (uses: {', '.join(spec.sources or [])})",
            "",
        )
    if not parts:
        return joined, "", UNLABELLED, ""
    content = findings if spec.quality_classes else [f for f in findings if f not in quality]
    if not content:
        return joined, "", f"{QUALITY_ONLY}: {', '.join(findings)}", ""
    classes = {f: spec.map[f] for f in content if f in spec.map}
    if not classes:
        return joined, "", f"no finding maps into target {spec.name!r}: {', '.join(findings)}", ""
    distinct = sorted(set(classes.values()), key=order.__getitem__)
    candidates = LABEL_SEP.join(c.lower() for c in distinct)
    if len(distinct) == 1 or spec.several == MULTI_LABEL:
        return joined, candidates, "", candidates
    if spec.several == PRIORITY:
        return joined, min(distinct, key=rank.__getitem__).lower(), "", candidates
    named = ", ".join(f"{f} -> {c}" for f, c in classes.items())
    return joined, "", f"ambiguous: findings map to several {spec.name!r} classes ({named})", candidates

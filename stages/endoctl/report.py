"""A static HTML report of a dataset: duplicates, frame sequences, label conflicts, leaks, image quality.

Everything endoctl decides about a dataset lives in CSV and JSON; curators want to *look*. This
module reads the files the other stages write (ingest manifests and their ``*.rejected.csv``,
dedupe's clusters, pairs and report, split folders, ``audit --json`` files) and writes a folder
that opens from disk in any browser: ``index.html`` (plain HTML and a little CSS, no script),
``thumbs/*.jpg`` (small JPEGs of the images shown, named by content) and CSVs with the full lists
behind every sampled gallery (clusters, sequences, conflicts, leaks, quality flags).

Flow: :func:`load_inputs` → analysis functions (tables → tables: :func:`cluster_members`,
:func:`sequence_chains`, :func:`conflict_pairs`, :func:`leak_checks`, ``quality.assess``) → what
each section shows (:mod:`endoctl.report_view`: tables → plain dicts and lists; its ``Gallery``
records the images they show) → :func:`make_thumbnails` for exactly those images → the page from
``templates/report.html.j2`` (:mod:`endoctl.pages`: Jinja2, autoescaped, stylesheet
``templates/report.css`` inlined) → :func:`write_report` writes the set into a temporary folder
beside ``out`` and swaps it in with renames. Same inputs and parameters give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from endoctl import report_view as view
from endoctl.grouping import components, stable_ids
from endoctl.hashing import from_hex, hamming
from endoctl.imaging import ImageRejected, open_rgb
from endoctl.io import (
    DEDUPE_REPORT_FILE,
    EXCLUDED_FILE,
    PAIRS_FILE,
    SPLIT_FILES,
    manifest_formats,
    read_csv,
    rejected_file,
    source_name,
)
from endoctl.pages import render
from endoctl.parallel import imap_chunks
from endoctl.params import MAX_PIXELS, SEQUENCE_PATTERN, QualityParams, ReportParams
from endoctl.published import counts, manifest_entries
from endoctl.quality import FLAGS, QualityResult

NEEDED_COLUMNS = [
    "image_id",
    "source",
    "path",
    "label",
    "patient_id",
    "official_split",
    "width",
    "height",
    "sha256",
    "phash",
]
THUMBS = "thumbs"
# everything a report folder holds: the page, its thumbnails, the tables behind the galleries
OUTPUT_FILES = (
    "index.html",
    THUMBS,
    "clusters.csv",
    "sequences.csv",
    "conflicts.csv",
    "leaks.csv",
    "leak_pairs.csv",
    "quality.csv",
)
THUMB_QUALITY = 82
THUMBS_PER_TASK = 16
SUSPECT_FLAGS = ("dark", "low_information")  # pHash of such frames is mostly noise: false clusters


# ----------------------------------------------------------------------------------------- inputs


@dataclass
class SplitFolder:
    name: str
    rows: pd.DataFrame  # image_id, source, label, target_class, group, bin ("fold k" | "test")
    excluded: pd.DataFrame  # image_id, source, reason


@dataclass
class Inputs:
    manifest: pd.DataFrame  # every ingested image + cluster, cluster_size; sorted by image_id
    rejected: dict[str, pd.DataFrame]  # manifest stem -> path, reason
    pairs: pd.DataFrame  # image_id_a, image_id_b, distance, kind
    sequence_pattern: str
    splits: list[SplitFolder]
    audits: list[tuple[str, dict]]  # (file stem, audit --json content)
    files: list[str]  # every input file, for the page's footer
    source_counts: dict | None = None  # endoctl.published.counts of the manifests
    notes: list[str] = field(default_factory=list)  # what was left out of the inputs, one line each


def _need(df: pd.DataFrame, columns: Sequence[str], file: Path, hint: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{file}: missing column(s) {missing} ({hint}); found {list(df.columns)}")


def load_inputs(
    manifests: Sequence[Path], duplicates: Path | None = None, splits: Sequence[Path] = (), audits: Sequence[Path] = ()
) -> Inputs:
    """Read and check every input; one-line ValueError/FileNotFoundError naming the file otherwise."""
    files: list[str] = []
    notes: list[str] = []
    manifest, rejected, source_counts = _read_manifests(manifests, files)
    pairs, pattern = _read_duplicates(duplicates, manifest, files, notes)
    folders = [_read_split_folder(folder, files) for folder in splits]
    loaded = [_read_audit(file, files) for file in audits]
    return Inputs(manifest, rejected, pairs, pattern, folders, loaded, files, source_counts, notes)


def _read_manifests(
    manifests: Sequence[Path], files: list[str]
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict | None]:
    """The manifests as one table sorted by image_id, each one's rejected files and the published
    counts; an image_id in two manifests is an error (every table here is keyed by it). Appends
    what it read to ``files``."""
    frames, rejected = [], {}
    for file in manifests:
        df = read_csv(file)
        _need(df, NEEDED_COLUMNS, file, "an endoctl ingest manifest")
        frames.append(df[NEEDED_COLUMNS])
        files.append(str(file))
        rej, name = rejected_file(file), source_name(file)
        if rej.is_file():
            rejected[name] = read_csv(rej)
            _need(rejected[name], ["path", "reason"], rej, "ingest's rejected files")
            files.append(str(rej))
    if not frames:
        raise ValueError("no manifests given")
    source_counts = counts(manifest_entries(manifests, frames, manifest_formats(manifests)))
    manifest = pd.concat(frames, ignore_index=True)
    dup = manifest["image_id"].duplicated()
    if dup.any():
        raise ValueError(f"image_id {manifest.loc[dup, 'image_id'].iloc[0]!r} appears in two manifests")
    return manifest.sort_values("image_id", kind="stable", ignore_index=True), rejected, source_counts


def _read_duplicates(
    duplicates: Path | None, manifest: pd.DataFrame, files: list[str], notes: list[str]
) -> tuple[pd.DataFrame, str]:
    """Sets ``cluster`` and ``cluster_size`` of ``manifest`` (in place; none without dedupe's
    clusters) and returns the pairs and sequence pattern beside the clusters file, when there.
    Appends what it read to ``files`` and what it left out to ``notes``."""
    manifest["cluster"], manifest["cluster_size"] = "", 1
    pairs = pd.DataFrame(columns=["image_id_a", "image_id_b", "distance", "kind"])
    pattern = SEQUENCE_PATTERN
    if duplicates is None:
        return pairs, pattern
    clusters = read_csv(duplicates)
    _need(clusters, ["image_id", "cluster", "cluster_size"], duplicates, "endoctl dedupe's clusters")
    files.append(str(duplicates))
    # dedupe's folder may cover more sources than the manifests given (one source's report
    # beside the shared folder): the report is about the given images, so their clusters are
    # cut down to the members given (sizes recounted) and pairs naming others are left out.
    inside = clusters["image_id"].isin(manifest["image_id"])
    if not inside.all():
        notes.append(
            f"{duplicates}: {int((~inside).sum()):,} of {len(clusters):,} clustered images are outside the given "
            "manifests: left out, cluster sizes count the given images only"
        )
    cluster = manifest["image_id"].map(clusters[inside].set_index("image_id")["cluster"]).fillna("")
    manifest["cluster"] = cluster
    manifest["cluster_size"] = cluster.map(cluster[cluster != ""].value_counts()).fillna(1).astype(int)
    pair_file = duplicates.with_name(PAIRS_FILE)
    if pair_file.is_file():
        pairs = _read_pairs(pair_file, manifest, files, notes)
    report_file = duplicates.with_name(DEDUPE_REPORT_FILE)
    if report_file.is_file():
        pattern = json.loads(report_file.read_text()).get("params", {}).get("sequence_pattern", pattern)
        files.append(str(report_file))
    return pairs, pattern


def _read_pairs(pair_file: Path, manifest: pd.DataFrame, files: list[str], notes: list[str]) -> pd.DataFrame:
    """dedupe's pairs between two of the given images (the others are left out, with a note)."""
    pairs = read_csv(pair_file)
    _need(pairs, ["image_id_a", "image_id_b", "distance", "kind"], pair_file, "endoctl dedupe's pairs")
    pairs["distance"] = pairs["distance"].astype(int)
    files.append(str(pair_file))
    known = pairs["image_id_a"].isin(manifest["image_id"]) & pairs["image_id_b"].isin(manifest["image_id"])
    if not known.all():
        notes.append(
            f"{pair_file}: {int((~known).sum()):,} of {len(pairs):,} duplicate pairs name images outside the "
            "given manifests: left out"
        )
        pairs = pairs[known].reset_index(drop=True)
    return pairs


def _read_split_folder(folder: Path, files: list[str]) -> SplitFolder:
    """One split folder's CSVs as rows with their bin (``fold k`` or ``test``) and its exclusions;
    a folder without a split CSV is an error, not an empty split. Appends what it read to ``files``."""
    parts = []
    for name in SPLIT_FILES:
        if (folder / name).is_file():
            df = read_csv(folder / name)
            _need(
                df,
                ["image_id", "source", "label", "target_class", "group", "fold"],
                folder / name,
                "an endoctl split CSV",
            )
            parts.append(df)
            files.append(str(folder / name))
    if not parts:
        raise FileNotFoundError(f"no {' or '.join(SPLIT_FILES)} in split folder {folder}")
    rows = pd.concat(parts, ignore_index=True)
    rows["bin"] = np.where(rows["fold"] == "", "test", "fold " + rows["fold"])
    excluded = (
        read_csv(folder / EXCLUDED_FILE)
        if (folder / EXCLUDED_FILE).is_file()
        else pd.DataFrame(columns=["image_id", "source", "reason"])
    )
    return SplitFolder(folder.name, rows.drop(columns=["fold"]), excluded)


def _read_audit(file: Path, files: list[str]) -> tuple[str, dict]:
    """An ``audit --json`` file as (its stem, its content); any other JSON is an error, since the
    leak section would silently show nothing. Appends it to ``files``."""
    try:
        content = json.loads(Path(file).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{file}: not an `endoctl audit --json` file ({exc})") from None
    if not {"straddling_groups", "cross_split_pair_list"} <= set(content):
        raise ValueError(f"{file}: not an `endoctl audit --json` file (no straddling_groups / cross_split_pair_list)")
    files.append(str(file))
    return Path(file).stem, content


# --------------------------------------------------------------------------------------- analysis


def placements(inputs: Inputs) -> pd.DataFrame:
    """Per image (index image_id) one column per split folder: ``fold k``, ``test``, ``excluded`` or ''."""
    out = pd.DataFrame(index=inputs.manifest["image_id"])
    for folder in inputs.splits:
        where = pd.concat(
            [folder.rows.set_index("image_id")["bin"], pd.Series("excluded", index=folder.excluded["image_id"])]
        )
        out[folder.name] = out.index.map(where[~where.index.duplicated()]).fillna("")
    return out


def _distances(phash: pd.Series, reference: pd.Series) -> np.ndarray:
    return hamming(from_hex(phash), from_hex(reference))


def cluster_members(manifest: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every member of a duplicate cluster (size > 1), clusters in display order.

    Order: clusters spanning sources first, then larger ones, then by id. Within a cluster the
    reference comes first: in a cluster across sources the first image of its closest pair across
    sources, followed by that copy; else the smallest image_id. Then the other members by pHash
    distance to the reference, so the closest copies come next.
    Columns: cluster, cluster_size, sources (``name n`` joined with ``, ``), cross_source,
    image_id, source, label, patient_id, distance (pHash bits to the reference).
    """
    columns = [
        "cluster",
        "cluster_size",
        "sources",
        "cross_source",
        "image_id",
        "source",
        "label",
        "patient_id",
        "distance",
    ]
    multi = manifest[manifest["cluster_size"] > 1].copy()
    if multi.empty:
        return pd.DataFrame(columns=columns)
    counts = multi.groupby(["cluster", "source"]).size().reset_index(name="n")
    names = (counts["source"] + " " + counts["n"].astype(str)).groupby(counts["cluster"]).agg(", ".join)
    n_sources = counts.groupby("cluster").size()
    multi["sources"] = multi["cluster"].map(names)
    multi["cross_source"] = multi["cluster"].map(n_sources > 1)
    reference = multi.groupby("cluster")["image_id"].min()
    partner = pd.Series(dtype=object)
    if pairs is not None and len(pairs):
        info = multi.set_index("image_id")[["cluster", "source"]]
        links = pairs[
            pairs["kind"].isin(["exact", "near"])
            & pairs["image_id_a"].isin(info.index)
            & pairs["image_id_b"].isin(info.index)
        ]
        links = links.assign(cluster=links["image_id_a"].map(info["cluster"]))
        links = links[links["image_id_a"].map(info["source"]) != links["image_id_b"].map(info["source"])]
        closest = (
            links.sort_values(["distance", "image_id_a", "image_id_b"]).drop_duplicates("cluster").set_index("cluster")
        )
        reference.update(closest["image_id_a"])
        partner = closest["image_id_b"]
    ref = multi["cluster"].map(reference)
    multi["rank"] = np.where(
        multi["image_id"] == ref, 0, np.where(multi["image_id"] == multi["cluster"].map(partner), 1, 2)
    )
    multi["distance"] = _distances(multi["phash"], ref.map(multi.set_index("image_id")["phash"]))
    multi = multi.sort_values(
        ["cross_source", "cluster_size", "cluster", "rank", "distance", "image_id"],
        ascending=[False, False, True, True, True, True],
        kind="stable",
    )
    return multi[columns].reset_index(drop=True)


def sequence_chains(manifest: pd.DataFrame, pairs: pd.DataFrame, pattern: str = SEQUENCE_PATTERN) -> pd.DataFrame:
    """Frames joined by dedupe's sequence links, one chain per connected component, longest first.

    Columns: chain, chain_size, position, frame (the number in the file name), image_id, source,
    label, patient_id, distance (pHash bits to the previous frame of the chain).
    """
    seq = pairs[pairs["kind"] == "sequence"]
    seq = seq[seq["image_id_a"].isin(manifest["image_id"]) & seq["image_id_b"].isin(manifest["image_id"])]
    ids = pd.Index(sorted(set(seq["image_id_a"]) | set(seq["image_id_b"])))
    columns = ["chain", "chain_size", "position", "frame", "image_id", "source", "label", "patient_id", "distance"]
    if ids.empty:
        return pd.DataFrame(columns=columns)
    labels = components(len(ids), ids.get_indexer(seq["image_id_a"]), ids.get_indexer(seq["image_id_b"]))
    frames = manifest.set_index("image_id").loc[ids].reset_index()
    frames["chain"] = stable_ids(ids.tolist(), labels, "s")
    frames["chain_size"] = np.bincount(labels)[labels]
    stems = frames["path"].str.rsplit("/", n=1).str[-1].str.rsplit(".", n=1).str[0]
    frames["frame"] = pd.to_numeric(stems.str.extract(pattern)["frame"], errors="coerce").fillna(-1).astype(np.int64)
    frames = frames.sort_values(
        ["chain_size", "chain", "frame", "image_id"],
        ascending=[False, True, True, True],
        kind="stable",
        ignore_index=True,
    )
    frames["position"] = frames.groupby("chain").cumcount()
    previous = frames.groupby("chain")["phash"].shift(1)
    first = previous.isna()
    frames["distance"] = 0
    frames.loc[~first, "distance"] = _distances(frames.loc[~first, "phash"], previous[~first])
    return frames[columns]


def conflict_pairs(manifest: pd.DataFrame, pairs: pd.DataFrame, splits: Sequence[SplitFolder] = ()) -> pd.DataFrame:
    """Exact or near duplicates labelled differently: same source and another label, or another
    target class in a split folder (labels of different sources are different vocabularies).

    Columns: cluster, kind, distance, basis, image_id_a, source_a, label_a, image_id_b, source_b,
    label_b; exact copies first, then by distance.
    """
    columns = [
        "cluster",
        "kind",
        "distance",
        "basis",
        "image_id_a",
        "source_a",
        "label_a",
        "image_id_b",
        "source_b",
        "label_b",
    ]
    links = pairs[pairs["kind"].isin(["exact", "near"])]
    info = manifest.set_index("image_id")[["source", "label", "cluster"]]
    links = links[links["image_id_a"].isin(info.index) & links["image_id_b"].isin(info.index)]
    a, b = info.loc[links["image_id_a"]].to_numpy(), info.loc[links["image_id_b"]].to_numpy()
    out = pd.DataFrame(
        {
            "cluster": a[:, 2],
            "kind": links["kind"].to_numpy(),
            "distance": links["distance"].to_numpy(),
            "basis": "",
            "image_id_a": links["image_id_a"].to_numpy(),
            "source_a": a[:, 0],
            "label_a": a[:, 1],
            "image_id_b": links["image_id_b"].to_numpy(),
            "source_b": b[:, 0],
            "label_b": b[:, 1],
        }
    )
    same = (out["source_a"] == out["source_b"]) & (out["label_a"] != out["label_b"])
    out.loc[same, "basis"] = "label in " + out.loc[same, "source_a"]
    for folder in splits:
        target = folder.rows.drop_duplicates("image_id").set_index("image_id")["target_class"]
        ta, tb = out["image_id_a"].map(target).fillna(""), out["image_id_b"].map(target).fillna("")
        differ = (out["basis"] == "") & (ta != "") & (tb != "") & (ta != tb)
        out.loc[differ, "basis"] = f"target class in {folder.name}"
    out = out[out["basis"] != ""]
    out = out.assign(rank=(out["kind"] != "exact").astype(int))
    out = out.sort_values(["rank", "distance", "image_id_a", "image_id_b"], kind="stable")
    return out[columns].reset_index(drop=True)


@dataclass
class LeakCheck:
    """One leak check: groups whose images sit in more than one split, and pairs across splits."""

    name: str
    what: str  # one line saying what was compared
    groups: pd.DataFrame  # group, images, sources, patients, splits ("name n" joined with ", ")
    pairs: pd.DataFrame  # image_id_a, image_id_b, distance, kind, split_a, split_b
    members: pd.DataFrame  # image_id, split, group: the listed images of the leaking groups


def _joined(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))


def _from_audit(name: str, what: str, report) -> LeakCheck:
    """A :class:`LeakCheck` from an ``audit.AuditReport``."""
    g = report.straddling_groups
    groups = pd.DataFrame(
        {
            "group": g["leak_group"],
            "images": g["images"].astype(int),
            "sources": g["sources"].map(", ".join),
            "patients": g["patients"].map(", ".join),
            "splits": g["splits"].map(_joined),
        }
    )
    p = report.cross_pairs
    pairs = pd.DataFrame(
        {
            "image_id_a": p["image_id_a"],
            "image_id_b": p["image_id_b"],
            "distance": p["distance"].astype(int),
            "kind": p["kind"],
            "split_a": p["splits_a"].map(", ".join),
            "split_b": p["splits_b"].map(", ".join),
        }
    )
    rows = report.rows
    members = rows[rows["leak_group"].isin(set(g["leak_group"]))][["image_id", "split", "leak_group"]]
    members = members.rename(columns={"leak_group": "group"}).drop_duplicates(["image_id", "split"])
    return LeakCheck(
        name,
        what,
        groups.sort_values(["images", "group"], ascending=[False, True], ignore_index=True),
        pairs.sort_values(["distance", "image_id_a", "image_id_b"], ignore_index=True),
        members.sort_values(["group", "split", "image_id"], ignore_index=True),
    )


def leak_checks(inputs: Inputs) -> list[LeakCheck]:
    """Each split folder's own check (its folds and test), each ``audit --json`` file, and each
    source's official split from the manifests, with the audit stage's group logic."""
    from endoctl.leaks import audit

    manifest = inputs.manifest
    patient = manifest.set_index("image_id")["patient_id"]
    checks = []
    for folder in inputs.splits:
        rows = folder.rows.assign(patient_id=folder.rows["image_id"].map(patient).fillna(""), path="")
        parts = {
            name: rows[rows["bin"] == name][["image_id", "source", "patient_id", "path", "group"]]
            for name in sorted(set(rows["bin"]))
        }
        if len(parts) > 1:
            what = f"split {folder.name}: {', '.join(parts)} against each other (patients, groups, duplicate pairs)"
            checks.append(_from_audit(folder.name, what, audit(parts, inputs.pairs)))
    for name, content in inputs.audits:
        groups = pd.DataFrame(
            [
                {
                    "group": g["group"],
                    "images": int(g["images"]),
                    "sources": ", ".join(g["sources"]),
                    "patients": ", ".join(g["patients"]),
                    "splits": _joined(g["splits"]),
                }
                for g in content["straddling_groups"]
            ],
            columns=["group", "images", "sources", "patients", "splits"],
        )
        pairs = pd.DataFrame(
            [
                {
                    "image_id_a": p["a"],
                    "image_id_b": p["b"],
                    "distance": int(p["distance"]),
                    "kind": p["kind"],
                    "split_a": ", ".join(p["splits_a"]),
                    "split_b": ", ".join(p["splits_b"]),
                }
                for p in content["cross_split_pair_list"]
            ],
            columns=["image_id_a", "image_id_b", "distance", "kind", "split_a", "split_b"],
        )
        checks.append(
            LeakCheck(
                name,
                f"endoctl audit report {name}.json: {', '.join(content.get('splits', {}))}",
                groups.sort_values(["images", "group"], ascending=[False, True], ignore_index=True),
                pairs,
                pd.DataFrame(columns=["image_id", "split", "group"]),
            )
        )
    official = manifest[manifest["official_split"] != ""]
    for source, rows in official.groupby("source", sort=True):
        names = sorted(set(rows["official_split"]))
        if len(names) < 2:
            continue
        rows = rows.assign(group="")
        parts = {
            n: rows[rows["official_split"] == n][["image_id", "source", "patient_id", "path", "group"]] for n in names
        }
        what = f"official split of {source} ({', '.join(names)}), as published"
        checks.append(_from_audit(f"{source} (official)", what, audit(parts, inputs.pairs)))
    return checks


def has_flag(flags: pd.Series, name: str) -> pd.Series:
    """Whether each ``|``-joined flags cell holds ``name``."""
    return flags.str.contains(rf"(?:^|\|){name}(?:\||$)", regex=True)


# ------------------------------------------------------------------------------------- thumbnails


def thumb_key(sha256: str, image_id: str) -> str:
    """Thumbnail file stem: the content hash, so copies share one file and names are stable (a
    manifest without a proper sha256 gets the hash of the image_id: never a path from the data)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        sha256 = hashlib.sha256(image_id.encode()).hexdigest()
    return sha256[:20]


def thumbnail_bytes(path: Path, size: int, max_pixels: int = MAX_PIXELS) -> tuple[bytes, int, int]:
    """A JPEG whose longer side is at most ``size`` (never enlarged), and its width and height."""
    im = open_rgb(path, max_pixels, draft=size)
    im.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue(), im.width, im.height


def _thumb_task(args: tuple[list[tuple[str, str]], str, int, int]) -> list[tuple[str, tuple[int, int] | str]]:
    items, folder, size, max_pixels = args
    done = []
    for key, path in items:
        try:
            data, width, height = thumbnail_bytes(Path(path), size, max_pixels)
        except ImageRejected as exc:
            done.append((key, str(exc)))
            continue
        (Path(folder) / f"{key}.jpg").write_bytes(data)
        done.append((key, (width, height)))
    return done


def make_thumbnails(
    items: Mapping[str, str],
    folder: Path,
    size: int,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> dict[str, tuple[int, int] | str]:
    """Write ``folder/<key>.jpg`` for each ``key: path``; per key (width, height) or why it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = sorted(items.items())
    jobs: Iterator = (
        (todo[i : i + THUMBS_PER_TASK], str(folder), size, max_pixels) for i in range(0, len(todo), THUMBS_PER_TASK)
    )
    result: dict[str, tuple[int, int] | str] = {}
    for part in imap_chunks(_thumb_task, jobs, workers if len(todo) > THUMBS_PER_TASK else 1):
        result.update(part)
        if on_progress:
            on_progress(len(result), len(todo))
    return result


# ------------------------------------------------------------------------------------------- core


@dataclass
class ReportResult:
    html: str
    tables: dict[str, pd.DataFrame]  # CSV file name -> table
    thumbnails: dict[str, bytes]  # file name below thumbs/ -> JPEG
    summary: dict[str, int]
    quality_seconds: float
    seconds: float


def _sample(ids: Sequence[str], k: int, rng: np.random.Generator) -> list[str]:
    """``k`` of ``ids`` drawn without replacement, in their given order."""
    if len(ids) <= k:
        return list(ids)
    return [ids[i] for i in sorted(rng.choice(len(ids), size=k, replace=False))]


@dataclass
class _Analysis:
    """The tables the sections, the CSVs and the counts are all drawn from, made once."""

    assessed: QualityResult
    place: pd.DataFrame  # placements()
    members: pd.DataFrame  # cluster_members()
    chains: pd.DataFrame  # sequence_chains()
    conflicts: pd.DataFrame  # conflict_pairs()
    checks: list[LeakCheck]
    dark_clusters: int  # clusters whose every member is dark or low-information
    flagged: pd.DataFrame  # the quality rows with a flag
    flag_counts: dict[str, int]  # images per quality flag

    @property
    def quality(self) -> pd.DataFrame:
        return self.assessed.table

    @property
    def n_clusters(self) -> int:
        return self.members["cluster"].nunique()

    @property
    def n_cross(self) -> int:
        return self.members.loc[self.members["cross_source"], "cluster"].nunique() if len(self.members) else 0


# what each CSV behind a gallery holds, for the page's file list
TABLE_NOTES = {
    "clusters.csv": "every member of every duplicate cluster, in display order, with its pHash distance to the "
    "reference",
    "sequences.csv": "every frame of every sequence, in order, with the distance to the previous frame",
    "conflicts.csv": "every duplicate pair with conflicting labels",
    "leaks.csv": "every leaking group of every check",
    "leak_pairs.csv": "every duplicate pair across splits of every check",
    "quality.csv": "every flagged image with its measures and flags",
}


def build_report(
    inputs: Inputs,
    params: ReportParams = ReportParams(),
    qparams: QualityParams = QualityParams(),
    data_root: str | Path = ".",
    workers: int = 1,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ReportResult:
    """Analyse, measure quality, pick the galleries, make their thumbnails and render the page."""
    start = time.perf_counter()
    tick = (lambda stage: lambda done, total: on_progress(stage, done, total)) if on_progress else (lambda stage: None)
    analysis = _analyse(inputs, qparams, data_root, workers, tick("quality"), params.max_pixels)
    gallery = view.Gallery(_images(inputs.manifest), analysis.place)
    sections = _sections(inputs, analysis, gallery, params, qparams)
    tables = _tables(analysis)
    sections["files"] = view.files([(name, len(df), TABLE_NOTES[name]) for name, df in tables.items()], inputs.files)
    made, thumbnails = _thumbnails(gallery, data_root, params, workers, tick("thumbnails"))
    summary = _summary(inputs, analysis, len(thumbnails))
    doc = _page(inputs, params, summary, made, sections)
    return ReportResult(doc, tables, thumbnails, summary, analysis.assessed.seconds, time.perf_counter() - start)


def _analyse(
    inputs: Inputs,
    qparams: QualityParams,
    data_root: str | Path,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
    max_pixels: int,
) -> _Analysis:
    """Quality measures and every analysis table, before anything is shown: the sections, CSVs
    and counts then agree because they read the same tables."""
    from endoctl.quality import assess

    m = inputs.manifest
    assessed = assess(m, qparams, data_root, workers, on_progress, max_pixels)
    quality = assessed.table
    members = cluster_members(m, inputs.pairs)
    return _Analysis(
        assessed,
        placements(inputs),
        members,
        sequence_chains(m, inputs.pairs, inputs.sequence_pattern),
        conflict_pairs(m, inputs.pairs, inputs.splits),
        leak_checks(inputs),
        _dark_clusters(members, quality),
        quality[quality["flags"] != ""],
        {f: int(has_flag(quality["flags"], f).sum()) for f in FLAGS},
    )


def _dark_clusters(members: pd.DataFrame, quality: pd.DataFrame) -> int:
    """Clusters whose every member is dark or low-information: the pHash of such frames is mostly
    noise, so the page warns that these clusters may be false."""
    flags = quality.set_index("image_id")["flags"]
    suspect = flags.str.contains("|".join(SUSPECT_FLAGS), regex=True)
    dark = (
        members.assign(s=members["image_id"].map(suspect)).groupby("cluster")["s"].all()
        if len(members)
        else pd.Series(dtype=bool)
    )
    return int(dark.sum())


def _quality_sample(flagged: pd.DataFrame, params: ReportParams) -> dict[str, list[str]]:
    """Per flag, the seeded sample of flagged images the quality gallery shows: the same images on
    every run with the same seed."""
    rng = np.random.default_rng(params.seed)
    return {
        f: _sample(flagged.loc[has_flag(flagged["flags"], f), "image_id"].tolist(), params.quality, rng) for f in FLAGS
    }


def _images(manifest: pd.DataFrame) -> pd.DataFrame:
    """Manifest rows by image_id with their thumbnail key, for the galleries."""
    images = manifest.set_index("image_id")
    images["key"] = [thumb_key(s, i) for s, i in zip(images["sha256"], images.index)]
    return images


def _sections(
    inputs: Inputs, analysis: _Analysis, gallery: view.Gallery, params: ReportParams, qparams: QualityParams
) -> dict:
    """What each section shows; building them records in ``gallery`` the images the page shows,
    in page order."""
    sample = _quality_sample(analysis.flagged, params)
    return {
        "overview": view.overview(
            inputs,
            analysis.n_clusters,
            analysis.n_cross,
            analysis.chains["chain"].nunique(),
            analysis.conflicts,
            analysis.checks,
            analysis.quality,
            analysis.dark_clusters,
        ),
        "duplicates": view.duplicates(analysis.members, gallery, params, analysis.dark_clusters),
        "sequences": view.sequences(analysis.chains, gallery, params),
        "conflicts": view.conflicts(analysis.conflicts, gallery, params),
        "leaks": view.leaks(analysis.checks, gallery, params),
        "quality": view.quality(
            analysis.quality, gallery, qparams, analysis.dark_clusters, sample, analysis.flag_counts
        ),
    }


def _tables(analysis: _Analysis) -> dict[str, pd.DataFrame]:
    """The full lists behind the sampled galleries, one CSV each; clusters and sequences with where
    each split folder put the image, leaks with the check first."""

    def by_check(attr: str) -> pd.DataFrame:
        if not analysis.checks:
            return pd.DataFrame(columns=["check"])
        return pd.concat([getattr(c, attr).assign(check=c.name) for c in analysis.checks], ignore_index=True)

    leak_groups, leak_pairs = by_check("groups"), by_check("pairs")
    return {
        "clusters.csv": analysis.members.join(analysis.place, on="image_id"),
        "sequences.csv": analysis.chains.join(analysis.place, on="image_id"),
        "conflicts.csv": analysis.conflicts,
        "leaks.csv": leak_groups[["check", *leak_groups.columns.drop("check")]],
        "leak_pairs.csv": leak_pairs[["check", *leak_pairs.columns.drop("check")]],
        "quality.csv": analysis.flagged.reset_index(drop=True),
    }


def _thumbnails(
    gallery: view.Gallery,
    data_root: str | Path,
    params: ReportParams,
    workers: int,
    on_progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, tuple[int, int] | str], dict[str, bytes]]:
    """Thumbnails for exactly the images the page shows: per key its size or why it failed (the
    page shows either), and the JPEGs made, by file name."""
    items = {key: str(Path(data_root) / path) for key, path in gallery.wanted.items()}
    with tempfile.TemporaryDirectory() as tmp:
        made = make_thumbnails(items, Path(tmp), params.thumb_size, workers, on_progress, params.max_pixels)
        thumbnails = {
            f"{k}.jpg": (Path(tmp) / f"{k}.jpg").read_bytes() for k, v in sorted(made.items()) if isinstance(v, tuple)
        }
    return made, thumbnails


def _summary(inputs: Inputs, analysis: _Analysis, thumbnails: int) -> dict[str, int]:
    """The report's counts, for the command's closing line and the navigation."""
    return {
        "images": len(inputs.manifest),
        "clusters": int(analysis.n_clusters),
        "cross_source": int(analysis.n_cross),
        "sequences": int(analysis.chains["chain"].nunique()),
        "conflicts": len(analysis.conflicts),
        "conflict_clusters": int(analysis.conflicts["cluster"].nunique()),
        "exact_conflicts": int((analysis.conflicts["kind"] == "exact").sum()),
        "leaking_groups": int(sum(len(c.groups) for c in analysis.checks)),
        "checks": len(analysis.checks),
        "flagged": len(analysis.flagged),
        "dark_clusters": analysis.dark_clusters,
        "thumbnails": thumbnails,
        "decoded": analysis.assessed.decoded,
        **analysis.flag_counts,
    }


def _page(
    inputs: Inputs,
    params: ReportParams,
    summary: dict[str, int],
    made: dict[str, tuple[int, int] | str],
    sections: dict,
) -> str:
    """``index.html``: the sections under a title naming the sources and split folders, with a
    count per section in the navigation."""
    counts = {
        "duplicates": summary["clusters"],
        "sequences": summary["sequences"],
        "conflicts": summary["conflict_clusters"],
        "leaks": summary["leaking_groups"],
        "quality": summary["flagged"],
    }
    m = inputs.manifest
    sources = ", ".join(sorted(m["source"].unique()))
    subtitle = (
        f"{len(m):,} images from {sources}; split folders: {', '.join(f.name for f in inputs.splits) or 'none'}. "
        "Generated by endoctl report."
    )
    return render(
        "report.html.j2",
        title="endoctl dataset report",
        subtitle=subtitle,
        nav=[(sid, name, counts.get(sid)) for sid, name in view.NAV],
        thumb_size=params.thumb_size,
        thumbs=made,
        **sections,
    )


def write_report(result: ReportResult, out: str | Path) -> Path:
    """Write the whole folder as one set (:func:`endoctl.io.atomic_dir`): ``out`` is always either
    the previous report or the new one, never a mix."""
    from endoctl.io import atomic_dir, write_csv, write_text

    out = Path(out)
    with atomic_dir(out, OUTPUT_FILES, what="report files") as tmp:
        (tmp / THUMBS).mkdir()
        for name, data in result.thumbnails.items():
            (tmp / THUMBS / name).write_bytes(data)
        for name, df in result.tables.items():
            write_csv(tmp / name, df)
        write_text(tmp / "index.html", result.html)
    return out / "index.html"

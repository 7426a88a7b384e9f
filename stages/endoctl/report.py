"""A static HTML report of a dataset: duplicates, frame sequences, label conflicts, leaks, image quality.

Everything endoctl decides about a dataset lives in CSV and JSON; curators want to *look*. This
module reads the files the other stages write (ingest manifests and their ``*.rejected.csv``,
dedupe's clusters, pairs and report, split folders, ``audit --json`` files) and writes a folder
that opens from disk in any browser: ``index.html`` (plain HTML and a little CSS, no script),
``thumbs/*.jpg`` (small JPEGs of the images shown, named by content) and CSVs with the full lists
behind every sampled gallery (clusters, sequences, conflicts, leaks, quality flags).

Flow: :func:`load_inputs` → analysis functions (tables → tables: :func:`cluster_members`,
:func:`sequence_chains`, :func:`conflict_pairs`, :func:`leak_checks`, ``quality.assess``) → section
builders (tables → HTML strings, every data string escaped; a :class:`Gallery` records the images
they show) → :func:`make_thumbnails` for exactly those images → :func:`write_report` writes the
set into a temporary folder beside ``out`` and swaps it in with renames. Same inputs and
parameters give byte-identical files.
"""

from __future__ import annotations

import hashlib
import html
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

from endoctl.grouping import components, stable_ids
from endoctl.hashing import from_hex, hamming
from endoctl.imaging import ImageRejected, open_rgb
from endoctl.io import (
    DEDUPE_REPORT_FILE,
    EXCLUDED_FILE,
    PAIRS_FILE,
    TEST_FILE,
    TRAIN_VAL_FILE,
    manifest_formats,
    read_csv,
    rejected_file,
    source_name,
)
from endoctl.parallel import imap_chunks
from endoctl.params import SEQUENCE_PATTERN, QualityParams, ReportParams
from endoctl.published import FEWER, MATCH, MORE, counts, explanation, manifest_entries, table_rows
from endoctl.published import HEADER as PUBLISHED_HEADER
from endoctl.quality import FLAGS

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
SPLIT_CSVS = (TRAIN_VAL_FILE, TEST_FILE)
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
e = html.escape


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
    frames, rejected, files, notes = [], {}, [], []
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
    manifest = manifest.sort_values("image_id", kind="stable", ignore_index=True)
    manifest["cluster"], manifest["cluster_size"] = "", 1
    pairs = pd.DataFrame(columns=["image_id_a", "image_id_b", "distance", "kind"])
    pattern = SEQUENCE_PATTERN
    if duplicates is not None:
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
        report_file = duplicates.with_name(DEDUPE_REPORT_FILE)
        if report_file.is_file():
            pattern = json.loads(report_file.read_text()).get("params", {}).get("sequence_pattern", pattern)
            files.append(str(report_file))
    folders = []
    for folder in splits:
        parts = []
        for name in SPLIT_CSVS:
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
            raise FileNotFoundError(f"no {' or '.join(SPLIT_CSVS)} in split folder {folder}")
        rows = pd.concat(parts, ignore_index=True)
        rows["bin"] = np.where(rows["fold"] == "", "test", "fold " + rows["fold"])
        excluded = (
            read_csv(folder / EXCLUDED_FILE)
            if (folder / EXCLUDED_FILE).is_file()
            else pd.DataFrame(columns=["image_id", "source", "reason"])
        )
        folders.append(SplitFolder(folder.name, rows.drop(columns=["fold"]), excluded))
    loaded = []
    for file in audits:
        try:
            content = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{file}: not an `endoctl audit --json` file ({exc})") from None
        if not {"straddling_groups", "cross_split_pair_list"} <= set(content):
            raise ValueError(
                f"{file}: not an `endoctl audit --json` file (no straddling_groups / cross_split_pair_list)"
            )
        loaded.append((Path(file).stem, content))
        files.append(str(file))
    return Inputs(manifest, rejected, pairs, pattern, folders, loaded, files, source_counts, notes)


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
    from endoctl.audit import audit

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


# ------------------------------------------------------------------------------------- thumbnails


def thumb_key(sha256: str, image_id: str) -> str:
    """Thumbnail file stem: the content hash, so copies share one file and names are stable (a
    manifest without a proper sha256 gets the hash of the image_id: never a path from the data)."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        sha256 = hashlib.sha256(image_id.encode()).hexdigest()
    return sha256[:20]


def thumbnail_bytes(path: Path, size: int) -> tuple[bytes, int, int]:
    """A JPEG whose longer side is at most ``size`` (never enlarged), and its width and height."""
    im = open_rgb(path, draft=size)
    im.thumbnail((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=THUMB_QUALITY)
    return out.getvalue(), im.width, im.height


def _thumb_task(args: tuple[list[tuple[str, str]], str, int]) -> list[tuple[str, tuple[int, int] | str]]:
    items, folder, size = args
    done = []
    for key, path in items:
        try:
            data, width, height = thumbnail_bytes(Path(path), size)
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
) -> dict[str, tuple[int, int] | str]:
    """Write ``folder/<key>.jpg`` for each ``key: path``; per key (width, height) or why it failed."""
    folder.mkdir(parents=True, exist_ok=True)
    todo = sorted(items.items())
    jobs: Iterator = ((todo[i : i + THUMBS_PER_TASK], str(folder), size) for i in range(0, len(todo), THUMBS_PER_TASK))
    result: dict[str, tuple[int, int] | str] = {}
    for part in imap_chunks(_thumb_task, jobs, workers if len(todo) > THUMBS_PER_TASK else 1):
        result.update(part)
        if on_progress:
            on_progress(len(result), len(todo))
    return result


# ------------------------------------------------------------------------------------------- HTML


@dataclass
class Gallery:
    """Figures for the sections. A figure's picture is first a placeholder: the page is rendered,
    thumbnails are made for exactly the images it shows (:attr:`wanted`), then :meth:`fill` puts
    each ``<img>`` (or the reason there is none) in its place."""

    images: pd.DataFrame  # manifest rows indexed by image_id, with the thumbnail ``key``
    placement: pd.DataFrame  # image_id -> one column per split folder
    size: int
    wanted: dict[str, str] = field(default_factory=dict)  # thumbnail key -> image path

    def known(self, image_id: str) -> bool:
        return image_id in self.images.index

    def figure(
        self, image_id: str, note: str = "", lines: Sequence[str] | None = None, strong_label: bool = False
    ) -> str:
        """One thumbnail with its caption: source, label, patient/video, where each split folder put
        it (``lines`` replaces the first three; all strings given are HTML already)."""
        if not self.known(image_id):
            return (
                f'<figure class="thumb"><div class="missing" style="height:{self.size}px">not in the '
                f'manifests</div><figcaption><span class="ln">{e(image_id)}</span>'
                + (f'<span class="ln">{note}</span>' if note else "")
                + "</figcaption></figure>"
            )
        row = self.images.loc[image_id]
        self.wanted[row["key"]] = row["path"]
        if lines is None:
            label = e(row["label"]) or "<i>no label</i>"
            lines = [f"<b>{e(row['source'])}</b>", f'<span class="label">{label}</span>' if strong_label else label]
            if row["patient_id"]:
                lines.append(f'<span class="cut">{e(row["patient_id"])}</span>')
        pills = "".join(_pill(name, where) for name, where in self.placement.loc[image_id].items() if where)
        body = "".join(f'<span class="ln">{x}</span>' for x in [*lines, pills, note] if x)
        return (
            f'<figure class="thumb" title="{e(image_id)}"><!--thumb:{e(row["key"])}:{e(image_id)}-->'
            f"<figcaption>{body}</figcaption></figure>"
        )

    def fill(self, html_text: str, thumbs: Mapping[str, tuple[int, int] | str]) -> str:
        """Replace every picture placeholder with its ``<img>``, or the reason it has none."""

        def picture(match: re.Match) -> str:
            key, alt = match.group(1), match.group(2)
            got = thumbs.get(html.unescape(key), "no thumbnail")
            if isinstance(got, tuple):
                return f'<img src="{THUMBS}/{key}.jpg" width="{got[0]}" height="{got[1]}" alt="{alt}">'
            return f'<div class="missing" style="height:{self.size}px">{e(got)}</div>'

        return re.sub(r"<!--thumb:([^:>]*):(.*?)-->", picture, html_text)


def _pill(split: str, where: str) -> str:
    kind = "test" if where == "test" else "excluded" if where == "excluded" else "train"
    return f'<span class="pill {kind}">{e(split)}: {e(where)}</span>'


def _table(
    header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[bool] | None = None, raw: bool = False
) -> str:
    """An HTML table; cells escaped unless ``raw`` (then the caller escaped them)."""
    numeric = numeric or [False] * len(header)
    cls = lambda i: ' class="n"' if numeric[i] else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c if raw else e(str(c))}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bar(parts: Sequence[tuple[str, int]], total_max: int) -> str:
    """A stacked horizontal bar (pure CSS): one coloured segment per (class, count)."""
    width = 100.0 * sum(n for _, n in parts) / max(total_max, 1)
    segs = "".join(f'<i class="{cls}" style="flex:{n}"></i>' for cls, n in parts if n)
    return f'<div class="bar"><div class="fill" style="width:{width:.1f}%">{segs}</div></div>'


def _more(shown: int, total: int, csv: str) -> str:
    return f'<p class="more">{shown} of {total} shown; all in <a href="{e(csv)}">{e(csv)}</a>.</p>' if total else ""


def _fmt(n: int) -> str:
    return f"{n:,}"


def overview_section(
    inputs: Inputs,
    n_clusters: int,
    n_cross: int,
    n_chains: int,
    conflicts: pd.DataFrame,
    checks: Sequence[LeakCheck],
    quality: pd.DataFrame,
    dark_clusters: int,
) -> str:
    """Counts: cards, sources, each split folder (by source, by class, exclusions, largest groups), rejections."""
    m = inputs.manifest
    n_rejected = sum(len(r) for r in inputs.rejected.values())
    flagged = int((quality["flags"] != "").sum()) if len(quality) else 0
    leaking = sum(len(c.groups) for c in checks)
    cards = [
        (_fmt(len(m)), f"images in {m['source'].nunique()} sources"),
        (_fmt(n_rejected), "rejected files"),
        (_fmt(n_clusters), f"duplicate clusters, {n_cross:,} across sources"),
        (_fmt(n_chains), "frame sequences"),
        (
            _fmt(conflicts["cluster"].nunique()),
            f"clusters with label conflicts; exact copies: {int((conflicts['kind'] == 'exact').sum()):,}",
        ),
        (_fmt(leaking), f"leaking groups in {sum(1 for c in checks if len(c.groups))} of {len(checks)} checks"),
        (_fmt(flagged), "images with quality flags"),
    ]
    out = ['<section id="overview"><h2>Overview</h2><div class="cards">']
    out += [f'<div class="card"><b>{v}</b><span>{e(t)}</span></div>' for v, t in cards]
    out.append("</div><h3>Sources</h3>")
    rows = []
    for source, grp in m.groupby("source", sort=True):
        official = grp["official_split"].value_counts()
        rows.append(
            [
                e(source),
                _fmt(len(grp)),
                _fmt(len(inputs.rejected.get(source, ()))),
                _fmt(int((grp["cluster_size"] > 1).sum())),
                _fmt(grp.loc[grp["patient_id"] != "", "patient_id"].nunique()),
                e(", ".join(f"{k} {v:,}" for k, v in sorted(official.items()) if k)) or "–",
            ]
        )
    out.append(
        _table(
            ["source", "images", "rejected", "in duplicate clusters", "patients/videos", "official split"],
            rows,
            [False, True, True, True, True, False],
            raw=True,
        )
    )
    out.append(published_section(inputs.source_counts))
    for folder in inputs.splits:
        out.append(_split_overview(folder))
    out.append("<h3>Rejected files by reason</h3>")
    rej_rows = []
    for source, rej in sorted(inputs.rejected.items()):
        kinds = rej["reason"].str.split(":", n=1).str[0]
        for kind, grp in rej.groupby(kinds, sort=True):
            rej_rows.append([source, kind, len(grp), f"{grp['path'].iloc[0]}: {grp['reason'].iloc[0]}"])
    out.append(
        _table(["source", "reason", "files", "first file"], rej_rows, [False, False, True, False])
        if rej_rows
        else "<p>No file was rejected.</p>"
    )
    if dark_clusters:
        out.append(
            f'<p class="warn">{dark_clusters} duplicate cluster(s) consist only of dark or near-uniform '
            f'frames: see <a href="#quality">Image quality</a>.</p>'
        )
    out.append("</section>")
    return "".join(out)


def published_section(source_counts: dict | None) -> str:
    """Found / accepted / rejected per source beside the published count, a difference flagged."""
    if not source_counts:
        return ""
    style = {MATCH: "ok", FEWER: "bad", MORE: "bad"}
    checks = [r["check"] for r in source_counts["datasets"]] + [source_counts["total"]["check"]]
    rows = []
    for cells, check in zip(table_rows(source_counts), checks):
        shown = [e(c) for c in cells]
        if check in style:
            shown[-2:] = [f'<span class="{style[check]}">{c}</span>' for c in shown[-2:]]
        rows.append(shown)
    numeric = [h in ("found", "accepted", "rejected", "published", "difference") for h in PUBLISHED_HEADER]
    head = f'<h3>Sources beside the published counts</h3><p class="more">{e(explanation(source_counts))}</p>'
    return head + _table(PUBLISHED_HEADER, rows, numeric, raw=True)


def _split_overview(folder: SplitFolder) -> str:
    rows, exc = folder.rows, folder.excluded
    split = np.where(rows["bin"] == "test", "test", "train_val")
    by_source = pd.crosstab(rows["source"], split).reindex(columns=["train_val", "test"], fill_value=0)
    by_source["excluded"] = exc.groupby("source").size().reindex(by_source.index, fill_value=0) if len(exc) else 0
    for source in sorted(set(exc["source"]) - set(by_source.index)):
        by_source.loc[source] = [0, 0, int((exc["source"] == source).sum())]
    by_source = by_source.sort_index()
    top = int(by_source.sum(axis=1).max()) if len(by_source) else 0
    legend = (
        '<p class="legend"><i class="train"></i>train_val <i class="test"></i>test <i class="excluded"></i>excluded</p>'
    )
    src_rows = [
        [
            e(s),
            _fmt(r.train_val),
            _fmt(r.test),
            _fmt(r.excluded),
            _fmt(r.train_val + r.test + r.excluded),
            _bar([("train", r.train_val), ("test", r.test), ("excluded", r.excluded)], top),
        ]
        for s, r in by_source.iterrows()
    ]
    by_class = pd.crosstab(rows["target_class"], split).reindex(columns=["train_val", "test"], fill_value=0)
    top_c = int(by_class.sum(axis=1).max()) if len(by_class) else 0
    cls_rows = [
        [
            e(c),
            _fmt(r.train_val),
            _fmt(r.test),
            f"{100 * r.test / max(r.train_val + r.test, 1):.1f}%",
            _bar([("train", r.train_val), ("test", r.test)], top_c),
        ]
        for c, r in by_class.iterrows()
    ]
    out = [
        f'<h3>Split {e(folder.name)}</h3>{legend}<div class="cols"><div>',
        _table(
            ["source", "train_val", "test", "excluded", "total", ""],
            src_rows,
            [False, True, True, True, True, False],
            raw=True,
        ),
        "</div><div>",
        _table(
            ["target class", "train_val", "test", "test share", ""],
            cls_rows,
            [False, True, True, True, False],
            raw=True,
        ),
        "</div></div>",
    ]
    reasons = exc["reason"].value_counts()
    reasons = reasons.sort_index().sort_values(ascending=False, kind="stable")
    if len(reasons):
        out.append(f"<h4>Excluded images by reason ({_fmt(len(exc))})</h4>")
        out.append(_table(["reason", "images"], [[r, _fmt(n)] for r, n in reasons.head(10).items()], [False, True]))
        if len(reasons) > 10:
            out.append(f'<p class="more">{len(reasons) - 10} more reasons in {e(folder.name)}/{EXCLUDED_FILE}.</p>')
    sizes = rows.groupby("group").size().reset_index(name="images")
    largest = sizes.sort_values(["images", "group"], ascending=[False, True]).head(5)
    table = []
    for g in largest.itertuples():
        part = rows[rows["group"] == g.group]
        where = sorted(set(np.where(part["bin"] == "test", "test", "train_val")))
        table.append(
            [
                g.group,
                _fmt(g.images),
                f"{100 * g.images / max(len(rows), 1):.1f}%",
                ", ".join(sorted(set(part["source"]))),
                ", ".join(where),
            ]
        )
    out.append("<h4>Largest groups (patients/videos joined by duplicate and sequence links)</h4>")
    out.append(_table(["group", "images", "share", "sources", "split"], table, [False, True, True, False, False]))
    return "".join(out)


def duplicates_section(members: pd.DataFrame, gallery: Gallery, params: ReportParams, dark_clusters: int) -> str:
    """Clusters across sources first, then the largest: a row of thumbnails each, pHash distances."""
    n = members["cluster"].nunique()
    cross = members.loc[members["cross_source"], "cluster"].nunique()
    out = [
        '<section id="duplicates"><h2>Duplicate clusters</h2>',
        f'<p class="lead">{_fmt(n)} clusters of exact or near-duplicate images ({_fmt(len(members))} images), '
        f"{_fmt(cross)} of them spanning sources. Clusters across sources come first, then the largest. "
        "Under each image: source, label, patient/video, where each split put it, and its pHash distance "
        "(bits of 64) to the first image of the row. Copies can only be kept out of leaks if they are "
        "found; a label that differs inside a cluster is listed under Label conflicts.</p>",
    ]
    if dark_clusters:
        out.append(
            f'<p class="warn">{dark_clusters} of these clusters consist only of dark or near-uniform frames, '
            "whose pHash is mostly noise: check them before trusting their links.</p>"
        )
    shown = list(dict.fromkeys(members["cluster"]))[: params.clusters]
    out.append('<div class="items">')
    for cid in shown:
        grp = members[members["cluster"] == cid]
        head = grp.iloc[0]
        figs = "".join(
            gallery.figure(r.image_id, f"pHash d={r.distance}" if k else "<i>reference</i>")
            for k, r in enumerate(grp.head(params.members).itertuples())
        )
        extra = f" · {len(grp) - params.members} more in clusters.csv" if len(grp) > params.members else ""
        tag = '<span class="tag">across sources</span> ' if head["cross_source"] else ""
        out.append(
            f'<div class="item"><h4>{tag}cluster {e(cid)}: {len(grp)} images ({e(head["sources"])}){extra}</h4>'
            f'<div class="row">{figs}</div></div>'
        )
    out.append("</div>")
    out.append(_more(len(shown), n, "clusters.csv") if n else "<p>No duplicate clusters.</p>")
    out.append("</section>")
    return "".join(out)


def _spaced(n: int, k: int) -> list[int]:
    """``k`` positions evenly spaced over 0..n-1, first and last included."""
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))})


def sequences_section(chains: pd.DataFrame, gallery: Gallery, params: ReportParams) -> str:
    """The longest frame sequences as film strips, frames evenly spaced along each."""
    n = chains["chain"].nunique()
    out = [
        '<section id="sequences"><h2>Frame sequences</h2>',
        f'<p class="lead">{_fmt(n)} sequences of video frames ({_fmt(len(chains))} frames) joined by '
        "dedupe's sequence links: frames of one video numbered close together whose pHashes are close. "
        "Neighbouring frames look alike even where their pHashes are too far apart to count as duplicates; "
        "linked, a sequence is one group and never straddles a split. Longest first; each strip shows "
        "frames evenly spaced along the sequence, with the frame number and the pHash distance to the "
        "previous frame shown.</p>",
    ]
    shown = list(dict.fromkeys(chains["chain"]))[: params.sequences]
    for cid in shown:
        grp = chains[chains["chain"] == cid].reset_index(drop=True)
        picks = _spaced(len(grp), params.frames)
        ph = gallery.images["phash"]
        figs, prev = [], None
        for k in picks:
            r = grp.iloc[k]
            jump = "" if prev is None else f" · Δ{int(hamming(from_hex([ph[prev]]), from_hex([ph[r['image_id']]]))[0])}"
            figs.append(
                gallery.figure(
                    r["image_id"], lines=[f"<b>frame {r['frame']}</b>{jump}", e(r["label"]) or "<i>no label</i>"]
                )
            )
            prev = r["image_id"]
        labels = grp["label"].value_counts().sort_index()
        first = grp.iloc[0]
        video = f"video {first['patient_id']}" if first["patient_id"] else "sequence"
        out.append(
            f'<div class="item"><h4>{e(video)} ({e(first["source"])}): {len(grp)} frames '
            f"{grp['frame'].min()}–{grp['frame'].max()}; labels "
            f"{e(', '.join(f'{k} {v}' for k, v in labels.items()))}</h4>"
            f'<div class="strip">{"".join(figs)}</div></div>'
        )
    out.append(_more(len(shown), n, "sequences.csv") if n else "<p>No frame sequences.</p>")
    out.append("</section>")
    return "".join(out)


def conflicts_section(conflicts: pd.DataFrame, gallery: Gallery, params: ReportParams) -> str:
    """The same image (or near copies) under different labels, side by side; one pair per cluster."""
    n = len(conflicts)
    exact = int((conflicts["kind"] == "exact").sum())
    per_cluster = conflicts.groupby("cluster", sort=False).size()
    first = conflicts.drop_duplicates("cluster")
    out = [
        '<section id="conflicts"><h2>Label conflicts</h2>',
        f'<p class="lead">{_fmt(n)} pairs of duplicates carry different labels, in {_fmt(len(first))} clusters '
        f"(exact copies, the same bytes: {_fmt(exact)}): one source's labels disagreeing with themselves, or "
        "two sources' labels mapping to different target classes. An exact copy under two labels is a "
        "labelling error; near duplicates, typically neighbouring video frames, may differ by a small "
        "finding: look whether it is there. Exact copies first, then the closest pairs; one pair per "
        'cluster.</p><div class="items">',
    ]
    for r in first.head(params.conflicts).itertuples():
        what = "same bytes (exact copy)" if r.kind == "exact" else f"near duplicates, pHash d={r.distance}"
        more = per_cluster[r.cluster] - 1
        note = f'<p class="more">{more} more conflicting pairs in this cluster</p>' if more else ""
        figs = "".join(gallery.figure(i, strong_label=True) for i in (r.image_id_a, r.image_id_b))
        out.append(f'<div class="item"><h4>{e(what)}: {e(r.basis)}</h4><div class="row">{figs}</div>{note}</div>')
    out.append("</div>")
    out.append(
        _more(min(params.conflicts, len(first)), len(first), "conflicts.csv") if n else "<p>No label conflicts.</p>"
    )
    out.append("</section>")
    return "".join(out)


LEAK_PER_SPLIT = 2  # images shown per split of a leaking group


def _leak_shown(check: LeakCheck, group: str) -> list[tuple[str, str]]:
    """(image_id, split) shown for a leaking group: the first few of each split it is in."""
    mem = check.members[check.members["group"] == group]
    return [
        (i, split) for split, part in mem.groupby("split", sort=True) for i in part["image_id"].head(LEAK_PER_SPLIT)
    ]


def leaks_section(checks: Sequence[LeakCheck], gallery: Gallery, params: ReportParams) -> str:
    """Per check: leaking groups (images per split side by side) and cross-split pairs (paired)."""
    out = [
        '<section id="leaks"><h2>Leaks</h2>',
        '<p class="lead">A leak is a group (a patient or video, joined with every duplicate and sequence '
        "link) with images in more than one split, or a duplicate pair whose two images sit in different "
        "splits. Checked here: each split folder (its folds and test against each other), each "
        "<code>endoctl audit --json</code> file given, and each source's official split as published.</p>",
    ]
    if not checks:
        out.append("<p>No split to check: give <code>--split</code> or <code>--audit</code>.</p>")
    for check in checks:
        ok = check.groups.empty and check.pairs.empty
        verdict = (
            '<span class="ok">no leak</span>'
            if ok
            else (
                f'<span class="bad">{len(check.groups):,} leaking groups, '
                f"{len(check.pairs):,} pairs across splits</span>"
            )
        )
        out.append(f"<h3>{e(check.name)}: {verdict}</h3><p>{e(check.what)}.</p>")
        if ok:
            continue
        out.append('<div class="items">')
        for g in check.groups.head(params.leaks).itertuples():
            figs = [
                gallery.figure(i, f'<span class="pill where">{e(split)}</span>')
                for i, split in _leak_shown(check, g.group)
            ]
            row = f'<div class="row">{"".join(figs)}</div>' if figs else ""
            patients = f"; {e(g.patients)}" if g.patients else ""
            out.append(
                f'<div class="item"><h4>group {e(g.group)}: {g.images:,} images ({e(g.splits)})</h4>'
                f'<p class="more">{e(g.sources)}{patients}</p>{row}</div>'
            )
        out.append("</div>")
        if len(check.groups) > params.leaks:
            out.append(_more(params.leaks, len(check.groups), "leaks.csv"))
        if len(check.pairs):
            out.append(
                f'<h4>Duplicate pairs across splits ({len(check.pairs):,}, closest first)</h4><div class="items">'
            )
            for p in check.pairs.head(params.leaks).itertuples():
                figs = "".join(
                    gallery.figure(i, f'<span class="pill where">{e(s)}</span>')
                    for i, s in ((p.image_id_a, p.split_a), (p.image_id_b, p.split_b))
                )
                out.append(
                    f'<div class="item"><h4>{e(p.kind)}, pHash d={p.distance}</h4><div class="row">{figs}</div></div>'
                )
            out.append("</div>")
            out.append(_more(min(params.leaks, len(check.pairs)), len(check.pairs), "leak_pairs.csv"))
    out.append("</section>")
    return "".join(out)


def quality_rules(q: QualityParams) -> dict[str, str]:
    return {
        "dark": f"brightness (mean luma of the content region, 0-255) < {q.dark:g}",
        "overexposed": f"brightness > {q.overexposed:g}",
        "low_information": f"contrast (standard deviation of luma) < {q.low_information:g}: near-uniform",
        "blurry": f"sharpness (mean |Laplacian| / mean |gradient|) < {q.blurry:g}, unless near-uniform",
        "odd_size": f"shorter side < {q.min_side} px, or size more than {q.size_factor:g}x off its source's median",
        "odd_aspect": f"longer side > {q.max_aspect:g} x shorter side",
        "unreadable": "the file could not be decoded now (moved, changed or corrupt since ingest)",
    }


def has_flag(flags: pd.Series, name: str) -> pd.Series:
    """Whether each ``|``-joined flags cell holds ``name``."""
    return flags.str.contains(rf"(?:^|\|){name}(?:\||$)", regex=True)


def quality_section(
    quality: pd.DataFrame, gallery: Gallery, qparams: QualityParams, dark_clusters: int, sample: Mapping[str, list[str]]
) -> str:
    """Flag counts with their rules, measure distributions per source, a sampled gallery per flag."""
    counts = {f: int(has_flag(quality["flags"], f).sum()) for f in FLAGS}
    total = max(len(quality), 1)
    rules = quality_rules(qparams)
    out = [
        '<section id="quality"><h2>Image quality</h2>',
        '<p class="lead">Every image is decoded once at a reduced scale and measured on its content region '
        "(black borders removed). Flags and measures of every flagged image are in "
        '<a href="quality.csv">quality.csv</a>, so they can be excluded (e.g. with pandas: rows whose '
        "<code>flags</code> is not empty). Thresholds are in params.yaml <code>report</code>.</p>",
        _table(
            ["flag", "rule", "images", "share"],
            [[f, rules[f], _fmt(counts[f]), f"{100 * counts[f] / total:.2f}%"] for f in FLAGS],
            [False, False, True, True],
        ),
        f"<p>{dark_clusters} duplicate cluster(s) consist only of dark or near-uniform frames (a known source "
        "of false pHash clusters).</p>",
    ]
    ok = quality[quality["reason"] == ""]
    if len(ok):
        rows = []
        for source, grp in ok.groupby("source", sort=True):
            cells = [e(source), _fmt(len(grp))]
            for col in ("brightness", "contrast", "sharpness"):
                p = np.percentile(grp[col].to_numpy(float), [1, 50, 99])
                cells.append(" / ".join(f"{v:.2f}" for v in p))
            rows.append(cells)
        out.append("<h3>Measures per source (1st percentile / median / 99th percentile)</h3>")
        out.append(
            _table(
                ["source", "images", "brightness", "contrast", "sharpness"],
                rows,
                [False, True, True, True, True],
                raw=True,
            )
        )
    by_id = quality.set_index("image_id")
    for f in FLAGS:
        ids = sample.get(f, [])
        if not ids:
            continue
        measure = {
            "dark": "brightness",
            "overexposed": "brightness",
            "low_information": "contrast",
            "blurry": "sharpness",
        }.get(f)
        figs = []
        for i in ids:
            r = by_id.loc[i]
            note = (
                f"{measure} {r[measure]:g}"
                if measure
                else f"{r['width']}x{r['height']}"
                if f != "unreadable"
                else e(r["reason"])
            )
            figs.append(gallery.figure(i, e(note)))
        out.append(f'<h3>{e(f)} ({_fmt(counts[f])})</h3><div class="row wrap">{"".join(figs)}</div>')
        out.append(_more(len(ids), counts[f], "quality.csv"))
    out.append("</section>")
    return "".join(out)


def files_section(files: Sequence[tuple[str, int, str]], inputs: Sequence[str]) -> str:
    rows = [[f'<a href="{e(name)}">{e(name)}</a>', _fmt(n), e(what)] for name, n, what in files]
    return (
        '<section id="files"><h2>Files</h2><p class="lead">The full lists behind every gallery, as CSV.</p>'
        + _table(["file", "rows", "what"], rows, [False, True, False], raw=True)
        + "<h3>Inputs</h3><ul>"
        + "".join(f"<li><code>{e(f)}</code></li>" for f in inputs)
        + "</ul></section>"
    )


NAV = [
    ("overview", "Overview"),
    ("duplicates", "Duplicates"),
    ("sequences", "Frame sequences"),
    ("conflicts", "Label conflicts"),
    ("leaks", "Leaks"),
    ("quality", "Image quality"),
    ("files", "Files"),
]

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d8dee4;--soft:#f6f8fa;--accent:#0969da;--train:#2da44e;--test:#cf222e;
--excluded:#afb8c1;--thumb:THUMBpx}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff}
header{padding:22px 32px 10px}
h1{font-size:26px;margin:0}
header p{margin:4px 0 0;color:var(--muted)}
nav{position:sticky;top:0;z-index:10;background:rgba(255,255,255,.97);border-bottom:1px solid var(--line);
padding:9px 32px;display:flex;flex-wrap:wrap;gap:6px 22px;box-shadow:0 1px 3px rgba(0,0,0,.05)}
nav a{color:var(--fg);text-decoration:none;font-weight:600;font-size:14px}
nav a:hover{color:var(--accent)}
nav a span{color:var(--muted);font-weight:400;margin-left:3px}
main{padding:0 32px 48px;max-width:1480px}
section{scroll-margin-top:46px}
h2{font-size:21px;margin:34px 0 8px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:22px 0 6px}
h4{font-size:13.5px;margin:0 0 6px;font-weight:600}
p.lead{color:var(--muted);max-width:88ch;margin-top:4px}
a{color:var(--accent)}
code{font-size:13px;background:var(--soft);padding:1px 4px;border-radius:4px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 14px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{background:var(--soft);font-weight:600}
tbody tr:hover{background:#fafbfc}
.n{text-align:right;font-variant-numeric:tabular-nums}
.cols{display:flex;flex-wrap:wrap;gap:0 40px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0 6px}
.card{flex:1 1 0;border:1px solid var(--line);border-radius:8px;padding:9px 14px;min-width:140px;background:var(--soft)}
.card b{display:block;font-size:22px;line-height:1.2}
.card span{color:var(--muted);font-size:12.5px}
.bar{width:220px;height:12px;background:var(--soft);border-radius:3px}
.bar .fill{display:flex;height:100%;border-radius:3px;overflow:hidden}
.bar i,.legend i{display:inline-block;height:100%}
.legend{font-size:12.5px;color:var(--muted);margin:0}
.legend i{width:11px;height:11px;border-radius:2px;margin:0 4px -1px 10px}
i.train{background:var(--train)}i.test{background:var(--test)}i.excluded{background:var(--excluded)}
.items{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;margin:10px 0}
.item{border:1px solid var(--line);border-radius:8px;padding:9px 12px 2px;max-width:100%}
section>.item{margin:10px 0}
.item p.more{margin:-3px 0 6px}
.tag{background:#fff8c5;color:#7d4e00;border-radius:4px;padding:0 5px;font-size:12px}
.row{display:flex;gap:10px;overflow-x:auto;padding:2px 0 8px;align-items:flex-start}
.row.wrap{flex-wrap:wrap}
figure.thumb{margin:0;flex:0 0 auto;width:calc(var(--thumb) + 8px);font-size:11.5px;line-height:1.35}
figure.thumb img{display:block;max-width:var(--thumb);border-radius:3px;background:#000}
.missing{display:flex;align-items:center;justify-content:center;text-align:center;background:#eaeef2;color:var(--muted);
border-radius:3px;font-size:11px;padding:6px;width:var(--thumb)}
figcaption{margin-top:3px;color:var(--muted);overflow-wrap:break-word}
figcaption .ln{display:block}
.cut{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
figcaption b{color:var(--fg)}
.label{font-size:12.5px;font-weight:700;color:#953800}
.pill{display:inline-block;border-radius:8px;padding:0 5px;margin:2px 2px 0 0;font-size:10.5px;background:#dafbe1;color:#116329}
.pill.test{background:#ffebe9;color:#a40e26}
.pill.excluded{background:#eaeef2;color:#57606a}
.pill.where{background:#ddf4ff;color:#0550ae}
.strip{display:flex;gap:8px;overflow-x:auto;background:#1c1c1c;padding:12px 10px 8px;border-radius:4px;
border-top:7px dotted #555;border-bottom:7px dotted #555;margin-bottom:8px}
.strip figcaption,.strip figcaption b{color:#d0d7de}
.strip .pill{opacity:.9}
.ok{color:var(--train)}.bad{color:var(--test)}
.warn{background:#fff8c5;border:1px solid #eac54f;border-radius:6px;padding:6px 10px;max-width:88ch}
.more{color:var(--muted);font-size:13px}
ul{padding-left:20px;font-size:13px}
"""  # noqa: E501 - one CSS rule per line, as the page carries it


def page(title: str, subtitle: str, sections: Sequence[str], counts: Mapping[str, int], thumb_size: int) -> str:
    """The whole document: sticky nav (section counts beside the names), sections, no script."""
    nav = "".join(
        f'<a href="#{sid}">{e(name)}' + (f"<span>{counts[sid]:,}</span>" if sid in counts else "") + "</a>"
        for sid, name in NAV
    )
    css = CSS.replace("THUMBpx", f"{thumb_size}px")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{e(title)}</title>'
        f"<style>{css}</style></head><body>"
        f"<header><h1>{e(title)}</h1><p>{e(subtitle)}</p></header><nav>{nav}</nav><main>"
        + "".join(sections)
        + "</main></body></html>\n"
    )


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


def build_report(
    inputs: Inputs,
    params: ReportParams = ReportParams(),
    qparams: QualityParams = QualityParams(),
    data_root: str | Path = ".",
    workers: int = 1,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> ReportResult:
    """Analyse, measure quality, pick the galleries, make their thumbnails and render the page."""
    from endoctl.quality import assess

    start = time.perf_counter()
    tick = (lambda stage: lambda done, total: on_progress(stage, done, total)) if on_progress else (lambda stage: None)
    m = inputs.manifest
    assessed = assess(m, qparams, data_root, workers, tick("quality"))
    quality = assessed.table
    place = placements(inputs)
    members = cluster_members(m, inputs.pairs)
    chains = sequence_chains(m, inputs.pairs, inputs.sequence_pattern)
    conflicts = conflict_pairs(m, inputs.pairs, inputs.splits)
    checks = leak_checks(inputs)

    flags = quality.set_index("image_id")["flags"]
    suspect = flags.str.contains("|".join(SUSPECT_FLAGS), regex=True)
    dark = (
        members.assign(s=members["image_id"].map(suspect)).groupby("cluster")["s"].all()
        if len(members)
        else pd.Series(dtype=bool)
    )
    dark_clusters = int(dark.sum())

    rng = np.random.default_rng(params.seed)
    flagged = quality[quality["flags"] != ""]
    sample = {
        f: _sample(flagged.loc[has_flag(flagged["flags"], f), "image_id"].tolist(), params.quality, rng) for f in FLAGS
    }

    images = m.set_index("image_id")
    images["key"] = [thumb_key(s, i) for s, i in zip(images["sha256"], images.index)]
    gallery = Gallery(images, place, params.thumb_size)

    n_clusters = members["cluster"].nunique()
    n_cross = members.loc[members["cross_source"], "cluster"].nunique() if len(members) else 0
    sections = [
        overview_section(
            inputs, n_clusters, n_cross, chains["chain"].nunique(), conflicts, checks, quality, dark_clusters
        ),
        duplicates_section(members, gallery, params, dark_clusters),
        sequences_section(chains, gallery, params),
        conflicts_section(conflicts, gallery, params),
        leaks_section(checks, gallery, params),
        quality_section(quality, gallery, qparams, dark_clusters, sample),
    ]

    def by_check(attr: str) -> pd.DataFrame:
        if not checks:
            return pd.DataFrame(columns=["check"])
        return pd.concat([getattr(c, attr).assign(check=c.name) for c in checks], ignore_index=True)

    leak_groups, leak_pairs = by_check("groups"), by_check("pairs")
    tables = {
        "clusters.csv": members.join(place, on="image_id"),  # + where each split folder put the image
        "sequences.csv": chains.join(place, on="image_id"),
        "conflicts.csv": conflicts,
        "leaks.csv": leak_groups[["check", *leak_groups.columns.drop("check")]],
        "leak_pairs.csv": leak_pairs[["check", *leak_pairs.columns.drop("check")]],
        "quality.csv": flagged.reset_index(drop=True),
    }
    what = {
        "clusters.csv": "every member of every duplicate cluster, in display order, with its pHash distance to the "
        "reference",
        "sequences.csv": "every frame of every sequence, in order, with the distance to the previous frame",
        "conflicts.csv": "every duplicate pair with conflicting labels",
        "leaks.csv": "every leaking group of every check",
        "leak_pairs.csv": "every duplicate pair across splits of every check",
        "quality.csv": "every flagged image with its measures and flags",
    }
    sections.append(files_section([(name, len(df), what[name]) for name, df in tables.items()], inputs.files))
    items = {key: str(Path(data_root) / path) for key, path in gallery.wanted.items()}
    with tempfile.TemporaryDirectory() as tmp:  # thumbnails for exactly the images the page shows
        made = make_thumbnails(items, Path(tmp), params.thumb_size, workers, tick("thumbnails"))
        thumbnails = {
            f"{k}.jpg": (Path(tmp) / f"{k}.jpg").read_bytes() for k, v in sorted(made.items()) if isinstance(v, tuple)
        }
    summary = {
        "images": len(m),
        "clusters": int(n_clusters),
        "cross_source": int(n_cross),
        "sequences": int(chains["chain"].nunique()),
        "conflicts": len(conflicts),
        "conflict_clusters": int(conflicts["cluster"].nunique()),
        "exact_conflicts": int((conflicts["kind"] == "exact").sum()),
        "leaking_groups": int(sum(len(c.groups) for c in checks)),
        "checks": len(checks),
        "flagged": len(flagged),
        "dark_clusters": dark_clusters,
        "thumbnails": len(thumbnails),
        "decoded": assessed.decoded,
        **{f: int(has_flag(flagged["flags"], f).sum()) for f in FLAGS},
    }
    counts = {
        "duplicates": summary["clusters"],
        "sequences": summary["sequences"],
        "conflicts": summary["conflict_clusters"],
        "leaks": summary["leaking_groups"],
        "quality": summary["flagged"],
    }
    sources = ", ".join(sorted(m["source"].unique()))
    subtitle = (
        f"{len(m):,} images from {sources}; split folders: {', '.join(f.name for f in inputs.splits) or 'none'}. "
        "Generated by endoctl report."
    )
    doc = gallery.fill(page("endoctl dataset report", subtitle, sections, counts, params.thumb_size), made)
    return ReportResult(doc, tables, thumbnails, summary, assessed.seconds, time.perf_counter() - start)


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

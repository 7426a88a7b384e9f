"""Which images of one split are tied to another: groups (patients/videos ∪ near-duplicates) across split files.

The leak logic `endoctl audit` reports and `endoctl evaluate --train` scores by (:func:`leak_free_rows`).

Every split file is normalised by :func:`read_split_file` to one row per listed image:
``image_id, source, patient_id, path, split, group``. Sources and patients come from the same
file-name rules the ingest adapters use (``kvasir_capsule.video_id``, ``ce24.ce24_patient``,
``ers.ers_patient``, ``limuc.limuc_patient``, ``medfmc.medfmc_patient``, ``kid.is_kid_name``), and
groups from the same :func:`endoctl.grouping.build_groups` the split stage uses, so ``audit`` and
``split`` can never disagree about what a group is.

``image_id`` is the image's identity: rows with the same id are the same image, wherever they are
listed. For datasets whose original file names identify an image within the dataset (CE24's
sub-sources KVASIR/KID/SEE-AI/AIIMS, Kvasir-Capsule, KID) it is ``<source>/<file name>``, so the
same SEE-AI image listed in training and validation straddles on its own; an endoctl split CSV
keeps its ``image_id``; any other file uses the path as listed.

Supported split files (detected from the columns, case-insensitive):

- endoctl split CSV (``image_id, source, path, group`` …): source and group as written; the group
  joins images across sources too.
- CE24 ground truth xlsx/csv (``image_path`` + ``Dataset``): source = the Dataset value (KVASIR,
  KID, SEE-AI, AIIMS), patient = ``ce24_patient(Dataset, stem)`` (``KVASIR/<videoid>``,
  ``AIIMS/ulcer1`` … ``AIIMS/worm3``; KID and SEE-AI names carry none).
- Kvasir-Capsule official split CSV (exactly ``filename, label``, names ``<videoid>_<frame>``):
  source ``kvasir-capsule``, patient = the video id.
- any table with a path-like column (``path``, ``image_path``, ``filename``, ``file``, ``image``),
  e.g. CE24's test xlsx: per row, ``training|validation/<Class>/<Source>/<file>`` → <Source> with
  ``ce24_patient``; else ``<hex>_<n>`` names → ``kvasir-capsule`` (video); ``<patient>/<samples|
  seq_NN>/frames/<file>`` → ``ers`` (patient folder); ``UC_patient_<id>_<n>`` → ``limuc`` (id);
  ``<5 digits>_<yyyy.mm>_<nnnn>_<n>`` → ``medfmc-endo`` (study id); KID names (``angioectasia-P0-2``,
  ``normaleso12``, …) → ``kid`` (no patient); else ``unknown`` (no patient). A patient column
  (``patient_id``, ``patient``, ``video_id``, ``video``), when present, wins over the name rule.

Frame adjacency (:func:`frame_adjacency`) needs no images: per source, the images of one split
numbered within ``frame_gap`` of an image of another split under the same name prefix (dedupe's
sequence rule: Kvasir-Capsule ``<video>_<frame>``, SEE-AI ``imageNNNNN``; here also CE24's AIIMS
``ulcer1_<frame>``/``worm1_<frame>``). It exposes numbered sequences whose video ids are unknown
(SEE-AI); it is a measure, not a group: ``--fail-on-leak`` looks at groups only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from endoctl.grouping import build_groups, edges_by_key
from endoctl.io import PAIR_COLUMNS, read_table
from endoctl.parallel import imap_chunks
from endoctl.params import DEDUPE, SEQUENCE_PATTERN
from endoctl.sources.ce24 import AIIMS_VIDEO, ce24_patient
from endoctl.sources.ce24 import SPLITS as CE24_SPLITS
from endoctl.sources.csv_labels import PATH_COLUMNS, PATIENT_COLUMNS
from endoctl.sources.ers import ers_patient
from endoctl.sources.kid import is_kid_name
from endoctl.sources.kvasir_capsule import video_id
from endoctl.sources.limuc import limuc_patient
from endoctl.sources.medfmc import MEDFMC_NAME, medfmc_patient

ROW_COLUMNS = ["image_id", "source", "patient_id", "path", "split", "group"]  # one audited image
# CE24's AIIMS frames (ulcer1_<frame>, worm2_<frame>), tried after dedupe's sequence pattern.
AIIMS_SEQUENCE_PATTERN = rf"(?:^|/)(?P<prefix>{AIIMS_VIDEO}_)(?P<frame>[0-9]+)$"
ADJACENCY_COLUMNS = ["split", "source", "images", "numbered", "adjacent"]
ENDOCTL_COLUMNS = ("image_id", "source", "path", "group")
UNKNOWN = "unknown"
FILES_PER_TASK = 64


# --------------------------------------------------------------------------- reading split files


def _posix(paths: pd.Series) -> pd.Series:
    return paths.str.replace("\\", "/", regex=False).str.replace(r"^(\./)+", "", regex=True)


def _name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _stem(name: str) -> str:
    return PurePosixPath(name).stem


def infer_source(path: str) -> tuple[str, str, str]:
    """``(source, patient_id, image_id)`` of one POSIX path from file-name rules alone."""
    parts = path.split("/")
    name = parts[-1]
    stem = _stem(name)
    if len(parts) >= 4 and parts[-4].lower() in CE24_SPLITS:
        sub_source = parts[-2]
        return sub_source, ce24_patient(sub_source, stem), f"{sub_source}/{name}"
    if video := video_id(stem):
        return "kvasir-capsule", video, f"kvasir-capsule/{name}"
    if patient := ers_patient(parts):  # frame names repeat per sequence: the id keeps the folders
        return "ers", patient, "ers/" + "/".join(parts[-4:])
    if patient := limuc_patient(stem):
        return "limuc", patient, f"limuc/{name}"
    if MEDFMC_NAME.fullmatch(stem):
        return "medfmc-endo", medfmc_patient(stem), f"medfmc-endo/{name}"
    if is_kid_name(stem):
        return "kid", "", f"kid/{name}"
    return UNKNOWN, "", path


def detect_table_format(columns: Sequence[str]) -> str | None:
    """``endoctl``, ``ce24``, ``kvasir-capsule`` or ``paths`` from a table's columns; None if unknown."""
    lower = {c.lower() for c in columns}
    if set(ENDOCTL_COLUMNS) <= lower:
        return "endoctl"
    if {"image_path", "dataset"} <= lower:
        return "ce24"
    if lower == {"filename", "label"}:
        return "kvasir-capsule"
    if lower & set(PATH_COLUMNS):
        return "paths"
    return None


def read_split_file(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """One split file in any supported format → ``image_id, source, patient_id, path, split, group``.

    ``split`` names the split (default: the file's stem). Raises ValueError with the file and the
    columns found when the format is not recognised, FileNotFoundError when the file is missing.
    """
    path = Path(path)
    df = read_table(path, "split file", key_columns=("image_id", "image_path", *PATH_COLUMNS)).reset_index(drop=True)
    if not len(df):
        raise ValueError(
            f"{path}: no rows (header only): an empty split cannot be audited"
            + (f" (columns {list(df.columns)})" if len(df.columns) else "")
        )
    fmt = detect_table_format(df.columns)
    column = {c.lower(): c for c in df.columns}
    split = split if split is not None else path.stem
    if fmt == "kvasir-capsule" and not df[column["filename"]].map(lambda n: bool(video_id(_stem(n)))).all():
        fmt = "paths"  # filename,label but not Kvasir-Capsule frame names: the generic rules decide
    if fmt is None:
        raise ValueError(
            f"{path}: unknown split file format: expected an endoctl split CSV (image_id, source, path, "
            f"group, …), CE24 xlsx (image_path, Dataset, …), Kvasir-Capsule (filename, label) or a "
            f"path column ({', '.join(PATH_COLUMNS)}); found columns {list(df.columns)}"
        )
    if fmt == "endoctl":
        paths = _posix(df[column["path"]])
        out = pd.DataFrame(
            {
                "image_id": df[column["image_id"]],
                "source": df[column["source"]],
                "patient_id": df[column["group"]],
                "path": paths,
                "group": df[column["group"]],
            }
        )
    elif fmt == "ce24":
        paths = _posix(df[column["image_path"]])
        inferred = [infer_source(p) for p in paths]
        source = df[column["dataset"]].where(df[column["dataset"]] != "", pd.Series([s for s, _, _ in inferred]))
        names = paths.map(_name)
        out = pd.DataFrame(
            {
                "image_id": source + "/" + names,
                "source": source,
                "patient_id": [ce24_patient(s, _stem(n)) for s, n in zip(source, names)],
                "path": paths,
                "group": "",
            }
        )
    elif fmt == "kvasir-capsule":
        paths = _posix(df[column["filename"]])
        names = paths.map(_name)
        out = pd.DataFrame(
            {
                "image_id": "kvasir-capsule/" + names,
                "source": "kvasir-capsule",
                "patient_id": names.map(lambda n: video_id(_stem(n))),
                "path": paths,
                "group": "",
            }
        )
    else:
        path_col = next(column[c] for c in PATH_COLUMNS if c in column)
        paths = _posix(df[path_col])
        inferred = pd.DataFrame([infer_source(p) for p in paths], columns=["source", "patient_id", "image_id"])
        patient_col = next((column[c] for c in PATIENT_COLUMNS if c in column), None)
        if patient_col is not None:
            inferred["patient_id"] = df[patient_col].where(df[patient_col] != "", inferred["patient_id"])
        out = inferred.assign(path=paths, group="")
    empty = out["path"] == ""
    if empty.any():
        raise ValueError(
            f"{path}: {int(empty.sum())} row(s) without an image path (first: data row {int(np.argmax(empty)) + 1})"
        )
    out["split"] = split
    return out[ROW_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------- the report


@dataclass
class AuditReport:
    """Everything ``audit`` found; :meth:`to_dict` is the JSON report."""

    split_names: list[str]
    rows: pd.DataFrame  # the input rows + ``leak_group`` (the build_groups id of their image)
    per_source: pd.DataFrame  # source, images, groups, straddling, straddling_images, cross_split_pairs
    per_split: pd.DataFrame  # split, source, rows, images, straddling_images
    straddling_groups: pd.DataFrame  # leak_group, sources, patients (first 10), images, splits ({split: images})
    cross_pairs: pd.DataFrame  # image_id_a, image_id_b, distance, kind, source_a, source_b, splits_a, splits_b
    hashed: bool = False
    max_distance: int | None = None
    unreadable: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["path", "reason"]))
    files: dict[str, list[str]] = field(default_factory=dict)
    adjacency: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=ADJACENCY_COLUMNS))
    frame_gap: int = 0  # 0: adjacency not measured

    def adjacent_images(self) -> dict[str, int]:
        """Per source: distinct images numbered within ``frame_gap`` of another split's image."""
        rows = self.rows[self.rows["adjacent"]] if "adjacent" in self.rows else self.rows.iloc[:0]
        counts = rows.drop_duplicates("image_id").groupby("source").size()
        return {src: int(counts.get(src, 0)) for src in self.per_source["source"]}

    @property
    def leaks(self) -> bool:
        return bool(len(self.straddling_groups))

    def notes(self) -> list[str]:
        """Sources whose images carry no patient/video id: what audit can and cannot match there."""
        nodes = _nodes(self.rows)
        out = []
        for source, part in nodes.groupby("source", sort=True):
            if (part["patient_id"] != "").any() or (part["group"] != "").any():
                continue
            key = "path" if source == UNKNOWN else "file name"
            what = (
                "no file-name rule recognises these paths (no patient/video id)"
                if source == UNKNOWN
                else "its file names carry no patient/video id"
            )
            matched = (
                "identical or near-identical pixels (--images-root)"
                if self.hashed
                else "nothing else; add --images-root to match copies by their pixels"
            )
            out.append(
                f"{source}: {len(part):,} images: {what}, so only the same {key} listed in two splits "
                f"can be matched, and {matched}"
            )
        return out

    def totals(self) -> dict[str, int]:
        nodes = self.rows.drop_duplicates("image_id")
        straddling = nodes["leak_group"].isin(self.straddling_groups["leak_group"])
        return {
            "images": int(len(nodes)),
            "groups": int(nodes["leak_group"].nunique()),
            "straddling": int(len(self.straddling_groups)),
            "straddling_images": int(straddling.sum()),
            "cross_split_pairs": int(len(self.cross_pairs)),
            "frame_adjacent_images": sum(self.adjacent_images().values()),
            "rows": int(len(self.rows)),
        }

    def to_dict(self) -> dict:
        by_source = self.per_source.set_index("source")
        column = lambda name: {src: int(n) for src, n in by_source[name].items()}  # noqa: E731
        splits: dict[str, dict] = {}
        for name in self.split_names:
            part = self.per_split[self.per_split["split"] == name].set_index("source")
            splits[name] = {
                "files": self.files.get(name, []),
                "rows": int(part["rows"].sum()),
                "images": int(part["images"].sum()),
                "straddling_images": int(part["straddling_images"].sum()),
                "by_source": {
                    src: {"rows": int(r.rows), "images": int(r.images), "straddling_images": int(r.straddling_images)}
                    for src, r in part.iterrows()
                },
            }
        groups = [
            {
                "group": r["leak_group"],
                "sources": r["sources"],
                "patients": r["patients"],
                "images": int(r["images"]),
                "splits": r["splits"],
            }
            for r in self.straddling_groups.to_dict("records")
        ]
        pairs = [
            {
                "a": r.image_id_a,
                "b": r.image_id_b,
                "distance": int(r.distance),
                "kind": r.kind,
                "splits_a": r.splits_a,
                "splits_b": r.splits_b,
            }
            for r in self.cross_pairs.itertuples(index=False)
        ]
        adjacency: dict[str, dict] = {}
        for r in self.adjacency.itertuples(index=False):
            adjacency.setdefault(r.split, {})[r.source] = {
                "images": int(r.images),
                "numbered": int(r.numbered),
                "adjacent": int(r.adjacent),
                "share": round(r.adjacent / r.images, 6) if r.images else 0.0,
            }
        adjacent = self.adjacent_images()
        return {
            "leak": self.leaks,
            "notes": self.notes(),
            "frame_adjacency": {
                "frame_gap": self.frame_gap,
                "adjacent_images": adjacent,
                "share": {src: round(adjacent[src] / int(n), 6) if n else 0.0 for src, n in column("images").items()},
                "splits": {name: adjacency.get(name, {}) for name in self.split_names},
            },
            "splits": splits,
            "images": column("images"),
            "groups": column("groups"),
            "straddling": column("straddling"),
            "straddling_images": column("straddling_images"),
            "cross_split_pairs": column("cross_split_pairs") if self.hashed else {},
            "cross_split_pair_kinds": {
                str(k): int(n) for k, n in self.cross_pairs["kind"].value_counts().sort_index().items()
            },
            "totals": self.totals(),
            "hashed": self.hashed,
            "max_distance": self.max_distance,
            "unreadable": {
                "count": int(len(self.unreadable)),
                "files": [f"{p}: {r}" for p, r in self.unreadable.itertuples(index=False)],
            },
            "straddling_groups": groups,
            "cross_split_pair_list": pairs,
        }


def _nodes(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per image_id (first listing), with the first non-empty patient and group."""
    first = rows.drop_duplicates("image_id").set_index("image_id")
    for col in ("patient_id", "group"):
        nonempty = rows[rows[col] != ""].drop_duplicates("image_id").set_index("image_id")[col]
        first[col] = nonempty.reindex(first.index).fillna("")
    return first.reset_index()


def _group_pairs(nodes: pd.DataFrame) -> pd.DataFrame:
    """Star edges joining images that an endoctl split put in one group (across sources too)."""
    a, b = edges_by_key(nodes["group"].reset_index(drop=True))
    keep = a != b
    ids = nodes["image_id"].to_numpy()
    return pd.DataFrame({"image_id_a": ids[a[keep]], "image_id_b": ids[b[keep]], "distance": 0, "kind": "group"})


def audit(splits: Mapping[str, pd.DataFrame], pairs: pd.DataFrame | None = None, frame_gap: int = 0) -> AuditReport:
    """Leak report for ``{split name: read_split_file(...) frame}`` plus optional duplicate pairs.

    Groups = ``build_groups`` over the distinct images (patients ∪ ``pairs`` ∪ endoctl groups); a
    group straddles when its images are listed in more than one split. ``pairs``
    (``image_id_a, image_id_b, distance, kind``, e.g. from ``dedupe.find_pairs``) that join images
    of different splits are the cross-split near-duplicate pairs. ``frame_gap`` > 0 measures
    :func:`frame_adjacency`.
    """
    rows = _listed_rows(splits)
    nodes = _nodes(rows)
    given = (
        pairs.reindex(columns=PAIR_COLUMNS) if pairs is not None and len(pairs) else pd.DataFrame(columns=PAIR_COLUMNS)
    )
    nodes["leak_group"] = _leak_groups(nodes, given)
    rows["leak_group"] = rows["image_id"].map(nodes.set_index("image_id")["leak_group"])
    # a group straddles when its images are listed in more than one split
    listed = rows.drop_duplicates(["leak_group", "split"])
    spread = listed.groupby("leak_group")["split"].nunique()
    straddle_ids = spread[spread > 1].index
    nodes["straddles"] = nodes["leak_group"].isin(straddle_ids)
    rows["straddles"] = rows["leak_group"].isin(straddle_ids)
    cross = _cross_pairs(rows, nodes, given)
    per_source = _per_source(nodes, cross)
    per_split = _per_split(rows)
    straddling_groups = _straddling_groups(rows, nodes)
    rows = rows.drop(columns=["straddles"])
    adjacency = _adjacency(rows, frame_gap)
    report = AuditReport(list(splits), rows, per_source, per_split, straddling_groups, cross)
    report.adjacency = adjacency[ADJACENCY_COLUMNS].astype({c: int for c in ADJACENCY_COLUMNS[2:]})
    report.frame_gap = frame_gap
    return report


def _listed_rows(splits: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Every listing as one row with its split; patient and group as text ('' for none), since
    empty and missing must compare the same when images are joined."""
    frames = [df.assign(split=name) for name, df in splits.items()]
    rows = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ROW_COLUMNS)).copy()
    if "group" not in rows:
        rows["group"] = ""
    rows[["patient_id", "group"]] = rows[["patient_id", "group"]].fillna("").astype(str)
    return rows


def _leak_groups(nodes: pd.DataFrame, given: pd.DataFrame) -> np.ndarray:
    """Per distinct image its ``build_groups`` id, from patients, the given pairs and the groups an
    endoctl split wrote: the same grouping the split stage uses, so the two never disagree."""
    edges = pd.concat([given, _group_pairs(nodes)], ignore_index=True)
    return build_groups(nodes[["image_id", "source", "patient_id"]], edges)["group"].to_numpy()


def _cross_pairs(rows: pd.DataFrame, nodes: pd.DataFrame, given: pd.DataFrame) -> pd.DataFrame:
    """The given pairs whose two images are listed in different splits (an image listed in several
    splits crosses with any partner), with both images' sources and splits."""
    paired = rows[rows["image_id"].isin(given["image_id_a"]) | rows["image_id"].isin(given["image_id_b"])]
    split_sets = paired.drop_duplicates(["image_id", "split"]).groupby("image_id")["split"].agg(sorted)
    source_of = nodes.set_index("image_id")["source"]
    cross = given[given["image_id_a"].isin(split_sets.index) & given["image_id_b"].isin(split_sets.index)].copy()
    cross["splits_a"] = cross["image_id_a"].map(split_sets)
    cross["splits_b"] = cross["image_id_b"].map(split_sets)
    if len(cross):
        crossing = [len(set(x) | set(y)) > 1 for x, y in zip(cross["splits_a"], cross["splits_b"])]
        cross = cross[crossing]
    cross = cross.assign(source_a=cross["image_id_a"].map(source_of), source_b=cross["image_id_b"].map(source_of))
    return cross.sort_values(["image_id_a", "image_id_b"]).reset_index(drop=True)


def _per_source(nodes: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    """Images, groups, straddling groups and images, and cross-split pairs per source (a pair
    between two sources counts for both, a pair within one source once)."""
    sources = sorted(nodes["source"].unique())
    pair_sources = pd.concat(
        [cross["source_a"], cross["source_b"].where(cross["source_b"] != cross["source_a"])]
    ).dropna()
    return pd.DataFrame(
        {
            "source": sources,
            "images": nodes.groupby("source").size().reindex(sources, fill_value=0).to_numpy(),
            "groups": nodes.groupby("source")["leak_group"].nunique().reindex(sources, fill_value=0).to_numpy(),
            "straddling": nodes[nodes["straddles"]]
            .groupby("source")["leak_group"]
            .nunique()
            .reindex(sources, fill_value=0)
            .to_numpy(),
            "straddling_images": nodes[nodes["straddles"]]
            .groupby("source")
            .size()
            .reindex(sources, fill_value=0)
            .to_numpy(),
            "cross_split_pairs": pair_sources.value_counts().reindex(sources, fill_value=0).to_numpy(),
        }
    )


def _per_split(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows, distinct images and straddling images per split and source: a split file may list an
    image twice, so rows and images differ."""
    return (
        rows.groupby(["split", "source"])
        .agg(rows=("image_id", "size"), images=("image_id", "nunique"))
        .join(rows[rows["straddles"]].groupby(["split", "source"])["image_id"].nunique().rename("straddling_images"))
        .fillna(0)
        .astype(int)
        .reset_index()
    )


def _straddling_groups(rows: pd.DataFrame, nodes: pd.DataFrame) -> pd.DataFrame:
    """One row per straddling group: its sources, first ten patients, images and images per split,
    what a curator needs to find and fix the leak."""
    straddling = nodes[nodes["straddles"]]
    patient_key = (straddling["source"] + "|" + straddling["patient_id"]).where(straddling["patient_id"] != "")
    members = (
        straddling.assign(patient=patient_key)
        .groupby("leak_group")
        .agg(
            sources=("source", lambda s: sorted(set(s))),
            patients=("patient", lambda s: sorted(set(s.dropna()))[:10]),
            images=("image_id", "size"),
        )
    )
    counts = rows[rows["straddles"]].drop_duplicates(["split", "image_id"]).groupby(["leak_group", "split"]).size()
    per_group: dict[str, dict[str, int]] = {}
    for (group, split), n in counts.items():
        per_group.setdefault(group, {})[split] = int(n)
    members["splits"] = [per_group[g] for g in members.index]
    return members.reset_index().sort_values("leak_group", ignore_index=True)


def _adjacency(rows: pd.DataFrame, frame_gap: int) -> pd.DataFrame:
    """With ``frame_gap`` > 0, marks each row ``adjacent`` (in place: the report keeps the column)
    and counts images, numbered images and adjacent images per split and source; else no table."""
    if frame_gap <= 0:
        return pd.DataFrame(columns=ADJACENCY_COLUMNS)
    rows["adjacent"] = frame_adjacency(rows, frame_gap)
    numbered = rows["adjacent"].notna()
    rows["adjacent"] = rows["adjacent"].fillna(False).astype(bool)
    per_image = rows.assign(numbered=numbered).groupby(["split", "source", "image_id"])[["numbered", "adjacent"]].any()
    return (
        per_image.groupby(["split", "source"])
        .agg(images=("numbered", "size"), numbered=("numbered", "sum"), adjacent=("adjacent", "sum"))
        .reset_index()
    )


def frame_numbers(rows: pd.DataFrame) -> pd.DataFrame:
    """``key`` (source + name prefix) and ``frame`` per row, NaN where the file name has no frame
    number: dedupe's sequence pattern first, then :data:`AIIMS_SEQUENCE_PATTERN`."""
    from endoctl.dedupe import frame_parts

    parts = frame_parts(rows["path"].astype(str), SEQUENCE_PATTERN)
    missing = parts["frame"].isna()
    if missing.any():
        parts.loc[missing] = frame_parts(rows.loc[missing, "path"].astype(str), AIIMS_SEQUENCE_PATTERN)
    return pd.DataFrame(
        {"key": rows["source"].astype(str) + "\0" + parts["prefix"], "frame": pd.to_numeric(parts["frame"])},
        index=rows.index,
    )


def frame_adjacency(rows: pd.DataFrame, gap: int) -> pd.Series:
    """Per listed row (``source, path, split``): True when a row of another split has the same
    source and name prefix and a frame number at most ``gap`` away (the same image listed in two
    splits counts, at distance 0); NaN for rows without a frame number.

    One sorted array per split of the other splits' ``key code * M + frame`` (M > frame range +
    2 gap keeps keys apart) and a binary search per row: O(n log n).
    """
    parsed = frame_numbers(rows)
    out = pd.Series(np.nan, index=rows.index, dtype=object)
    framed = parsed["frame"].notna()
    if not framed.any():
        return out
    codes, _ = pd.factorize(parsed.loc[framed, "key"], sort=True)
    frames = parsed.loc[framed, "frame"].to_numpy(dtype=np.int64)
    span = int(frames.max()) + 2 * gap + 2
    value = codes.astype(np.int64) * span + frames
    split = rows.loc[framed, "split"].to_numpy()
    adjacent = np.zeros(len(value), dtype=bool)
    for name in np.unique(split):
        mine = split == name
        others = np.sort(value[~mine])
        if not len(others):
            continue
        i = np.searchsorted(others, value[mine] - gap, side="left")
        found = i < len(others)
        adjacent[mine] = found & (others[np.minimum(i, len(others) - 1)] <= value[mine] + gap)
    out[framed] = adjacent
    return out


# --------------------------------------------------------------------------- hashing the images


def _name_index(root: Path) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for folder, _, files in os.walk(root):
        for file in files:
            index.setdefault(file, []).append(os.path.join(folder, file))
    return index


def resolve(paths: Sequence[str], root: Path) -> list[str | tuple[None, str]]:
    """Each listed path below ``root``; if missing, the one file of that name anywhere below ``root``.

    Split files often list bare file names (Kvasir-Capsule's ``filename``) or a different top folder
    than the image tree; a unique file name is then found by a single walk of ``root``.
    """
    out: list[str | tuple[None, str]] = []
    index: dict[str, list[str]] | None = None
    for path in paths:
        file = root / path
        if not os.path.lexists(file):
            if index is None:
                index = _name_index(root)
            found = index.get(_name(path), [])
            if len(found) != 1:
                many = f"ambiguous: {len(found)} files named {_name(path)} under {root}"
                out.append((None, many if found else f"not found under {root}"))
                continue
            file = Path(found[0])
        out.append(str(file))  # ingest's hashing reads it through imaging.read_image_file: regular files only
    return out


def _hash_chunk(files: list[str]) -> list[tuple | str]:
    from endoctl.ingest import hash_files

    return hash_files(files)


def hash_images(
    nodes: pd.DataFrame,
    root: Path,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(manifest of the readable images with ingest's hash columns, ``path, reason`` of the others)."""
    resolved = resolve(nodes["path"].tolist(), root)
    todo = [(i, f) for i, f in enumerate(resolved) if isinstance(f, str)]
    chunks = [todo[k : k + FILES_PER_TASK] for k in range(0, len(todo), FILES_PER_TASK)]
    results: dict[int, tuple | str] = {i: f[1] for i, f in enumerate(resolved) if not isinstance(f, str)}
    done = 0

    def collect(parts: Iterator[list[tuple | str]]) -> None:
        nonlocal done
        for chunk, part in zip(chunks, parts):
            results.update({i: r for (i, _), r in zip(chunk, part)})
            done += len(chunk)
            if on_progress:
                on_progress(done, len(todo))

    jobs = ([f for _, f in chunk] for chunk in chunks)
    collect(imap_chunks(_hash_chunk, jobs, min(workers, len(chunks))))
    good, bad = [], []
    for i, row in enumerate(nodes.itertuples(index=False)):
        result = results[i]
        if isinstance(result, str):
            bad.append((row.path, result))
        else:
            good.append((row.image_id, row.source, row.path, "", row.patient_id, row.split, *result))
    from endoctl.io import MANIFEST_COLUMNS

    manifest = pd.DataFrame(good, columns=MANIFEST_COLUMNS).sort_values("image_id", kind="stable", ignore_index=True)
    return manifest, pd.DataFrame(bad, columns=["path", "reason"]).sort_values(["path", "reason"], ignore_index=True)


def audit_files(
    split_files: Sequence[tuple[str, str | Path]],
    images_root: Path | None = None,
    max_distance: int = DEDUPE.max_distance,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    frame_gap: int = 0,
) -> AuditReport:
    """Read ``(split name, file)`` pairs (a name may repeat: its files are concatenated), hash the
    images when ``images_root`` is given, find near-duplicate pairs and audit (``frame_gap``: see
    :func:`frame_adjacency`)."""
    frames: dict[str, list[pd.DataFrame]] = {}
    files: dict[str, list[str]] = {}
    for name, file in split_files:
        frames.setdefault(name, []).append(read_split_file(file, name))
        files.setdefault(name, []).append(str(file))
    splits = {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}
    pairs = None
    unreadable = pd.DataFrame(columns=["path", "reason"])
    if images_root is not None:
        from endoctl.dedupe import find_pairs

        rows = pd.concat(list(splits.values()), ignore_index=True)
        manifest, unreadable = hash_images(_nodes(rows), images_root, workers, on_progress)
        params = replace(DEDUPE, max_distance=max_distance, workers=workers)  # the dedupe stage's defaults
        pairs = find_pairs(manifest, params) if len(manifest) else pd.DataFrame(columns=PAIR_COLUMNS)
    report = audit(splits, pairs, frame_gap)
    report.files = files
    report.unreadable = unreadable
    report.hashed = images_root is not None
    report.max_distance = max_distance if images_root is not None else None
    return report


TRUTH, TRAIN = "evaluated", "trained on"  # split names of :func:`leak_free_rows`


def leak_free_rows(
    truth_file: str | Path,
    train_files: Sequence[str | Path],
    images_root: Path | None = None,
    max_distance: int = DEDUPE.max_distance,
    workers: int = 1,
    on_progress: Callable[[int, int], None] | None = None,
    frame_gap: int = 0,
) -> pd.DataFrame:
    """Per row of ``truth_file`` (file order): ``image_id, source, path, group, group_trained,
    frame_adjacent, leak_free``. ``group_trained``: an image of its group (patient/video,
    duplicates: the grouping of :func:`audit`; with ``images_root`` near-duplicates too) is listed
    in ``train_files``; ``frame_adjacent``: a training image of its name prefix is numbered within
    ``frame_gap`` frames (:func:`frame_adjacency`; 0: off); leak-free = neither."""
    splits = [(TRUTH, Path(truth_file)), *((TRAIN, Path(f)) for f in train_files)]
    report = audit_files(splits, images_root, max_distance, workers, on_progress, frame_gap)
    rows = report.rows
    truth = rows[rows["split"] == TRUTH]
    trained = truth["leak_group"].isin(set(rows.loc[rows["split"] == TRAIN, "leak_group"]))
    adjacent = truth["adjacent"] if frame_gap > 0 else pd.Series(False, index=truth.index)
    return pd.DataFrame(
        {
            "image_id": truth["image_id"],
            "source": truth["source"],
            "path": truth["path"],
            "group": truth["leak_group"],
            "group_trained": trained,
            "frame_adjacent": adjacent,
            "leak_free": ~trained & ~adjacent,
        }
    ).reset_index(drop=True)

"""What the report page shows, as plain data for ``templates/report.html.j2``.

Each function here turns analysed tables (:mod:`endoctl.report`) into dicts, lists and strings: the
numbers already formatted, no markup anywhere. The template decides how they look and escapes
every string (:mod:`endoctl.pages`), so a name from the data can never become markup.

Shapes the template knows:

* a **table**: ``{"header": [...], "numeric": [bool, ...], "rows": [[cell, ...], ...]}``; a cell
  is a string, or a dict: ``{"bar": [(class, n), ...], "width": "12.3"}`` (a stacked bar),
  ``{"class": "ok", "text": ...}`` (coloured text), ``{"href": ..., "text": ...}`` (a link);
* a **figure** (:meth:`Gallery.figure`): ``{"id", "key", "lines"}``; ``key`` names the thumbnail
  (None: the image is not in the manifests), each line is a list of ``(style, text)`` segments
  (style ``""``, ``"b"``, ``"i"`` or a CSS class for a ``<span>``);
* **more**: ``{"shown", "total", "csv"}`` under a sampled gallery, or None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from endoctl.hashing import from_hex, hamming
from endoctl.io import EXCLUDED_FILE
from endoctl.params import QualityParams, ReportParams
from endoctl.published import FEWER, MATCH, MORE, explanation, table_rows
from endoctl.published import HEADER as PUBLISHED_HEADER
from endoctl.quality import FLAGS

if TYPE_CHECKING:
    from endoctl.report import Inputs, LeakCheck, SplitFolder

Line = list[tuple[str, str]]  # one caption line: (style, text) segments

NAV = [
    ("overview", "Overview"),
    ("duplicates", "Duplicates"),
    ("sequences", "Frame sequences"),
    ("conflicts", "Label conflicts"),
    ("leaks", "Leaks"),
    ("quality", "Image quality"),
    ("files", "Files"),
]
LEAK_PER_SPLIT = 2  # images shown per split of a leaking group


def _fmt(n: int) -> str:
    return f"{n:,}"


def _label(label: str, strong: bool = False) -> tuple[str, str]:
    if not label:
        return ("i", "no label")
    return ("label", label) if strong else ("", label)


@dataclass
class Gallery:
    """Figures for the sections. Building them records the images the page shows (:attr:`wanted`),
    so thumbnails are made for exactly those; the template then shows each thumbnail, or the
    reason there is none."""

    images: pd.DataFrame  # manifest rows indexed by image_id, with the thumbnail ``key``
    placement: pd.DataFrame  # image_id -> one column per split folder
    wanted: dict[str, str] = field(default_factory=dict)  # thumbnail key -> image path

    def figure(
        self, image_id: str, note: Line | str = "", lines: Sequence[Line] | None = None, strong_label: bool = False
    ) -> dict[str, Any]:
        """One thumbnail with its caption: source, label, patient/video (or ``lines``), where each
        split folder put it, and ``note``."""
        note_line = [("", note)] if isinstance(note, str) else note
        if image_id not in self.images.index:
            return {"id": image_id, "key": None, "lines": [[("", image_id)], note_line] if note else [[("", image_id)]]}
        row = self.images.loc[image_id]
        self.wanted[row["key"]] = row["path"]
        if lines is None:
            lines = [[("b", row["source"])], [_label(row["label"], strong_label)]]
            if row["patient_id"]:
                lines.append([("cut", row["patient_id"])])
        pills = [
            (_pill_class(where), f"{split}: {where}") for split, where in self.placement.loc[image_id].items() if where
        ]
        caption = [list(x) for x in [*lines, pills, note_line] if x and any(text for _, text in x)]
        return {"id": image_id, "key": row["key"], "lines": caption}


def _pill_class(where: str) -> str:
    return "pill " + ("test" if where == "test" else "excluded" if where == "excluded" else "train")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[bool] | None = None) -> dict:
    return {
        "header": list(header),
        "numeric": list(numeric or [False] * len(header)),
        "rows": [[c if isinstance(c, dict) else str(c) for c in r] for r in rows],
    }


def bar(parts: Sequence[tuple[str, int]], total_max: int) -> dict:
    """A stacked horizontal bar (pure CSS): one coloured segment per (class, count)."""
    width = 100.0 * sum(n for _, n in parts) / max(total_max, 1)
    return {"bar": [(cls, int(n)) for cls, n in parts if n], "width": f"{width:.1f}"}


def more(shown: int, total: int, csv: str) -> dict | None:
    return {"shown": shown, "total": total, "csv": csv} if total else None


# ------------------------------------------------------------------------------------------- sections


def overview(
    inputs: Inputs,
    n_clusters: int,
    n_cross: int,
    n_chains: int,
    conflicts: pd.DataFrame,
    checks: Sequence[LeakCheck],
    quality: pd.DataFrame,
    dark_clusters: int,
) -> dict:
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
    rows = []
    for source, grp in m.groupby("source", sort=True):
        official = grp["official_split"].value_counts()
        rows.append(
            [
                source,
                _fmt(len(grp)),
                _fmt(len(inputs.rejected.get(source, ()))),
                _fmt(int((grp["cluster_size"] > 1).sum())),
                _fmt(grp.loc[grp["patient_id"] != "", "patient_id"].nunique()),
                ", ".join(f"{k} {v:,}" for k, v in sorted(official.items()) if k) or "–",
            ]
        )
    rej_rows = []
    for source, rej in sorted(inputs.rejected.items()):
        kinds = rej["reason"].str.split(":", n=1).str[0]
        for kind, grp in rej.groupby(kinds, sort=True):
            rej_rows.append([source, kind, len(grp), f"{grp['path'].iloc[0]}: {grp['reason'].iloc[0]}"])
    return {
        "cards": cards,
        "sources": table(
            ["source", "images", "rejected", "in duplicate clusters", "patients/videos", "official split"],
            rows,
            [False, True, True, True, True, False],
        ),
        "published": published(inputs.source_counts),
        "splits": [split_overview(folder) for folder in inputs.splits],
        "rejected": table(["source", "reason", "files", "first file"], rej_rows, [False, False, True, False])
        if rej_rows
        else None,
        "dark_clusters": dark_clusters,
    }


def published(source_counts: dict | None) -> dict | None:
    """Found / accepted / rejected per source beside the published count, a difference flagged."""
    if not source_counts:
        return None
    style = {MATCH: "ok", FEWER: "bad", MORE: "bad"}
    checks = [r["check"] for r in source_counts["datasets"]] + [source_counts["total"]["check"]]
    rows = []
    for cells, check in zip(table_rows(source_counts), checks):
        shown: list[Any] = [str(c) for c in cells]
        if check in style:
            shown[-2:] = [{"class": style[check], "text": c} for c in shown[-2:]]
        rows.append(shown)
    numeric = [h in ("found", "accepted", "rejected", "published", "difference") for h in PUBLISHED_HEADER]
    return {"explanation": explanation(source_counts), "table": table(PUBLISHED_HEADER, rows, numeric)}


def split_overview(folder: SplitFolder) -> dict:
    rows, exc = folder.rows, folder.excluded
    split = np.where(rows["bin"] == "test", "test", "train_val")
    by_source = pd.crosstab(rows["source"], split).reindex(columns=["train_val", "test"], fill_value=0)
    by_source["excluded"] = exc.groupby("source").size().reindex(by_source.index, fill_value=0) if len(exc) else 0
    for source in sorted(set(exc["source"]) - set(by_source.index)):
        by_source.loc[source] = [0, 0, int((exc["source"] == source).sum())]
    by_source = by_source.sort_index()
    top = int(by_source.sum(axis=1).max()) if len(by_source) else 0
    src_rows = [
        [
            s,
            _fmt(r.train_val),
            _fmt(r.test),
            _fmt(r.excluded),
            _fmt(r.train_val + r.test + r.excluded),
            bar([("train", r.train_val), ("test", r.test), ("excluded", r.excluded)], top),
        ]
        for s, r in by_source.iterrows()
    ]
    by_class = pd.crosstab(rows["target_class"], split).reindex(columns=["train_val", "test"], fill_value=0)
    top_c = int(by_class.sum(axis=1).max()) if len(by_class) else 0
    cls_rows = [
        [
            c,
            _fmt(r.train_val),
            _fmt(r.test),
            f"{100 * r.test / max(r.train_val + r.test, 1):.1f}%",
            bar([("train", r.train_val), ("test", r.test)], top_c),
        ]
        for c, r in by_class.iterrows()
    ]
    reasons = exc["reason"].value_counts()
    reasons = reasons.sort_index().sort_values(ascending=False, kind="stable")
    sizes = rows.groupby("group").size().reset_index(name="images")
    largest = sizes.sort_values(["images", "group"], ascending=[False, True]).head(5)
    groups = []
    for g in largest.itertuples():
        part = rows[rows["group"] == g.group]
        where = sorted(set(np.where(part["bin"] == "test", "test", "train_val")))
        groups.append(
            [
                g.group,
                _fmt(g.images),
                f"{100 * g.images / max(len(rows), 1):.1f}%",
                ", ".join(sorted(set(part["source"]))),
                ", ".join(where),
            ]
        )
    return {
        "name": folder.name,
        "by_source": table(
            ["source", "train_val", "test", "excluded", "total", ""], src_rows, [False, True, True, True, True, False]
        ),
        "by_class": table(
            ["target class", "train_val", "test", "test share", ""], cls_rows, [False, True, True, True, False]
        ),
        "excluded": _fmt(len(exc)),
        "reasons": table(["reason", "images"], [[r, _fmt(n)] for r, n in reasons.head(10).items()], [False, True])
        if len(reasons)
        else None,
        "more_reasons": len(reasons) - 10 if len(reasons) > 10 else 0,
        "excluded_file": f"{folder.name}/{EXCLUDED_FILE}",
        "groups": table(["group", "images", "share", "sources", "split"], groups, [False, True, True, False, False]),
    }


def duplicates(members: pd.DataFrame, gallery: Gallery, params: ReportParams, dark_clusters: int) -> dict:
    """Clusters across sources first, then the largest: a row of thumbnails each, pHash distances."""
    n = members["cluster"].nunique()
    shown = list(dict.fromkeys(members["cluster"]))[: params.clusters]
    items = []
    for cid in shown:
        grp = members[members["cluster"] == cid]
        head = grp.iloc[0]
        figures = [
            gallery.figure(r.image_id, f"pHash d={r.distance}" if k else [("i", "reference")])
            for k, r in enumerate(grp.head(params.members).itertuples())
        ]
        items.append(
            {
                "cross_source": bool(head["cross_source"]),
                "cluster": cid,
                "size": len(grp),
                "sources": head["sources"],
                "hidden": len(grp) - params.members if len(grp) > params.members else 0,
                "figures": figures,
            }
        )
    return {
        "clusters": _fmt(n),
        "images": _fmt(len(members)),
        "cross": _fmt(members.loc[members["cross_source"], "cluster"].nunique()),
        "dark_clusters": dark_clusters,
        "items": items,
        "more": more(len(shown), n, "clusters.csv"),
    }


def _spaced(n: int, k: int) -> list[int]:
    """``k`` positions evenly spaced over 0..n-1, first and last included."""
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(min(k, n))})


def sequences(chains: pd.DataFrame, gallery: Gallery, params: ReportParams) -> dict:
    """The longest frame sequences as film strips, frames evenly spaced along each."""
    n = chains["chain"].nunique()
    shown = list(dict.fromkeys(chains["chain"]))[: params.sequences]
    ph = gallery.images["phash"]
    items = []
    for cid in shown:
        grp = chains[chains["chain"] == cid].reset_index(drop=True)
        figures, prev = [], None
        for k in _spaced(len(grp), params.frames):
            r = grp.iloc[k]
            frame: Line = [("b", f"frame {r['frame']}")]
            if prev is not None:
                frame.append(("", f" · Δ{int(hamming(from_hex([ph[prev]]), from_hex([ph[r['image_id']]]))[0])}"))
            figures.append(gallery.figure(r["image_id"], lines=[frame, [_label(r["label"])]]))
            prev = r["image_id"]
        labels = grp["label"].value_counts().sort_index()
        first = grp.iloc[0]
        items.append(
            {
                "video": f"video {first['patient_id']}" if first["patient_id"] else "sequence",
                "source": first["source"],
                "frames": len(grp),
                "first": grp["frame"].min(),
                "last": grp["frame"].max(),
                "labels": ", ".join(f"{k} {v}" for k, v in labels.items()),
                "figures": figures,
            }
        )
    return {
        "sequences": _fmt(n),
        "frames": _fmt(len(chains)),
        "items": items,
        "more": more(len(shown), n, "sequences.csv"),
    }


def conflicts(conflicts: pd.DataFrame, gallery: Gallery, params: ReportParams) -> dict:
    """The same image (or near copies) under different labels, side by side; one pair per cluster."""
    per_cluster = conflicts.groupby("cluster", sort=False).size()
    first = conflicts.drop_duplicates("cluster")
    items = [
        {
            "what": "same bytes (exact copy)" if r.kind == "exact" else f"near duplicates, pHash d={r.distance}",
            "basis": r.basis,
            "others": int(per_cluster[r.cluster] - 1),
            "figures": [gallery.figure(i, strong_label=True) for i in (r.image_id_a, r.image_id_b)],
        }
        for r in first.head(params.conflicts).itertuples()
    ]
    return {
        "pairs": _fmt(len(conflicts)),
        "clusters": _fmt(len(first)),
        "exact": _fmt(int((conflicts["kind"] == "exact").sum())),
        "items": items,
        "more": more(min(params.conflicts, len(first)), len(first), "conflicts.csv") if len(conflicts) else None,
    }


def _leak_shown(check: LeakCheck, group: str) -> list[tuple[str, str]]:
    """(image_id, split) shown for a leaking group: the first few of each split it is in."""
    mem = check.members[check.members["group"] == group]
    return [
        (i, split) for split, part in mem.groupby("split", sort=True) for i in part["image_id"].head(LEAK_PER_SPLIT)
    ]


def leaks(checks: Sequence[LeakCheck], gallery: Gallery, params: ReportParams) -> list[dict]:
    """Per check: leaking groups (images per split side by side) and cross-split pairs (paired)."""
    out = []
    for check in checks:
        item: dict[str, Any] = {
            "name": check.name,
            "what": check.what,
            "groups": _fmt(len(check.groups)),
            "pairs": _fmt(len(check.pairs)),
            "ok": check.groups.empty and check.pairs.empty,
        }
        item["group_items"] = [
            {
                "group": g.group,
                "images": _fmt(g.images),
                "splits": g.splits,
                "sources": g.sources,
                "patients": g.patients,
                "figures": [gallery.figure(i, [("pill where", split)]) for i, split in _leak_shown(check, g.group)],
            }
            for g in check.groups.head(params.leaks).itertuples()
        ]
        item["more_groups"] = (
            more(params.leaks, len(check.groups), "leaks.csv") if len(check.groups) > params.leaks else None
        )
        item["pair_items"] = [
            {
                "kind": p.kind,
                "distance": p.distance,
                "figures": [
                    gallery.figure(i, [("pill where", s)])
                    for i, s in ((p.image_id_a, p.split_a), (p.image_id_b, p.split_b))
                ],
            }
            for p in check.pairs.head(params.leaks).itertuples()
        ]
        item["more_pairs"] = more(min(params.leaks, len(check.pairs)), len(check.pairs), "leak_pairs.csv")
        out.append(item)
    return out


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


MEASURE = {"dark": "brightness", "overexposed": "brightness", "low_information": "contrast", "blurry": "sharpness"}


def quality(
    quality: pd.DataFrame,
    gallery: Gallery,
    qparams: QualityParams,
    dark_clusters: int,
    sample: Mapping[str, list[str]],
    counts: Mapping[str, int],
) -> dict:
    """Flag counts (``counts``: images per flag) with their rules, measure distributions per source,
    a sampled gallery per flag."""
    total = max(len(quality), 1)
    rules = quality_rules(qparams)
    ok = quality[quality["reason"] == ""]
    rows = []
    for source, grp in ok.groupby("source", sort=True):
        cells = [source, _fmt(len(grp))]
        for col in ("brightness", "contrast", "sharpness"):
            p = np.percentile(grp[col].to_numpy(float), [1, 50, 99])
            cells.append(" / ".join(f"{v:.2f}" for v in p))
        rows.append(cells)
    by_id = quality.set_index("image_id")
    galleries = []
    for f in FLAGS:
        ids = sample.get(f, [])
        if not ids:
            continue
        measure = MEASURE.get(f)
        figures = []
        for i in ids:
            r = by_id.loc[i]
            note = (
                f"{measure} {r[measure]:g}"
                if measure
                else f"{r['width']}x{r['height']}"
                if f != "unreadable"
                else r["reason"]
            )
            figures.append(gallery.figure(i, note))
        galleries.append(
            {"flag": f, "count": _fmt(counts[f]), "figures": figures, "more": more(len(ids), counts[f], "quality.csv")}
        )
    return {
        "flags": table(
            ["flag", "rule", "images", "share"],
            [[f, rules[f], _fmt(counts[f]), f"{100 * counts[f] / total:.2f}%"] for f in FLAGS],
            [False, False, True, True],
        ),
        "dark_clusters": dark_clusters,
        "measures": table(
            ["source", "images", "brightness", "contrast", "sharpness"], rows, [False, True, True, True, True]
        )
        if rows
        else None,
        "galleries": galleries,
    }


def files(tables: Sequence[tuple[str, int, str]], inputs: Sequence[str]) -> dict:
    rows = [[{"href": name, "text": name}, _fmt(n), what] for name, n, what in tables]
    return {"table": table(["file", "rows", "what"], rows, [False, True, False]), "inputs": list(inputs)}

"""Groups: images that must stay on one side of every split.

A group is a connected component of the graph whose edges are "same (source, patient/video)" and
"duplicate pair" (exact, near or sequence link from ``dedupe``). So all frames of a patient and
every copy of any of them, in any source, share one group. ``audit`` joins on every link (a leak
check must not explain one away); ``split`` weighs the links that are only evidence (near pairs,
and sequence links without a patient id) with a :class:`LinkRule`, so that chance links cannot
chain a merged dataset into one giant group, and reports the links it refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label (0..k-1) per node of an undirected graph with edges a[i]-b[i]."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (np.asarray(a), np.asarray(b))), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def stable_ids(keys: Sequence[str], labels: np.ndarray, prefix: str) -> np.ndarray:
    """Name each component after its smallest member key: ids survive re-ordering of the input.

    Sort-based (keys sorted once, first key per label): a groupby-min over text runs a Python loop
    per group in pandas, 15 s on 226k single-image components.
    """
    keys = np.asarray(keys, dtype=object)
    labels = np.asarray(labels)
    if len(keys) == 0:
        return np.zeros(0, dtype=object)
    order = np.argsort(keys, kind="stable")  # linear for already sorted keys
    uniq, first = np.unique(labels[order], return_index=True)
    names = np.empty(int(uniq.max()) + 1, dtype=object)
    names[uniq] = [prefix + hashlib.sha1(key.encode()).hexdigest()[:12] for key in keys[order[first]]]
    return names[labels]


def smallest_per_key(keys: Sequence[str], ids: Sequence[str]) -> np.ndarray:
    """Per row, the smallest of ``ids`` over the rows sharing its ``keys`` value.

    Sorted once, then integer codes: pandas' groupby-min over text runs a Python loop per group
    (14 s for the sha256 groups of 226k images; this takes ~0.2 s).
    """
    ids = np.asarray(ids, dtype=object)
    order = np.argsort(ids, kind="stable")  # linear when ``ids`` are already sorted
    codes, _ = pd.factorize(np.asarray(keys, dtype=object)[order])
    _, first = np.unique(codes, return_index=True)  # first occurrence in id order = smallest id
    head = np.empty(len(ids), dtype=object)
    head[order] = ids[order][first[codes]]
    return head


def edges_by_key(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every row to the first row with the same non-empty key (a star per key)."""
    codes = pd.Series(np.arange(len(keys)), index=keys.index)
    nonempty = keys != ""
    first = codes[nonempty].groupby(keys[nonempty]).transform("min")
    return first.to_numpy(), codes[nonempty].to_numpy()


def patient_keys(manifest: pd.DataFrame) -> pd.Series:
    """``source|patient_id`` per row; empty where the source has no patient id for the image."""
    patient = manifest["patient_id"].fillna("")
    return (manifest["source"] + "|" + patient).where(patient != "", "")


@dataclass(frozen=True)
class LinkRule:
    """When a near (or patient-less sequence) link may join two groups.

    Hash and pixel checks make a chance link rare, not impossible, and over the 10^10 image pairs
    of a merged dataset rare links chain unrelated groups into one giant group. So a link is
    evidence to be weighed: a singleton joins on one link, two groups of several images only on
    ``min_support`` links between them or one at ``strong_similarity``, and no link may grow a group
    past ``max_size`` images. Patient/video ids and byte-identical copies always join.
    """

    max_size: int
    strong_similarity: float = 0.97
    min_support: int = 2


REFUSED_COLUMNS = ["image_id_a", "image_id_b", "kind", "distance", "similarity", "reason"]
TOO_LARGE, TOO_WEAK = "group too large", "too little evidence"


def _weighed(manifest: pd.DataFrame, pairs: pd.DataFrame) -> pd.Series:
    """Per pair: True where the link must be weighed (near; sequence without a shared patient)."""
    if "kind" not in pairs:
        return pd.Series(False, index=pairs.index)
    keys = patient_keys(manifest.reset_index(drop=True)).to_numpy()
    ka, kb = keys[pairs["_a"].to_numpy()], keys[pairs["_b"].to_numpy()]
    same_patient = (ka == kb) & (ka != "")
    return (pairs["kind"] == "near") | ((pairs["kind"] == "sequence") & ~same_patient)


class _Merger:
    """Union of components with the evidence counted between every two current components."""

    def __init__(self, sizes: np.ndarray) -> None:
        self.parent = list(range(len(sizes)))
        self.size = [int(s) for s in sizes]
        self.support: list[dict[int, int]] = [{} for _ in sizes]

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def add(self, a: int, b: int) -> int:
        """Count one link between the components of a and b; the links between them so far."""
        n = self.support[a].get(b, 0) + 1
        self.support[a][b] = self.support[b][a] = n
        return n

    def union(self, a: int, b: int) -> None:
        if len(self.support[a]) < len(self.support[b]):
            a, b = b, a
        self.parent[b] = a
        self.size[a] += self.size[b]
        for other, n in self.support[b].items():
            del self.support[other][b]
            if other != a:
                total = self.support[a].get(other, 0) + n
                self.support[a][other] = self.support[other][a] = total
        self.support[b] = {}


def _merge_weighed(
    hard: np.ndarray, edges: pd.DataFrame, rule: LinkRule, rank: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Hard component labels joined by the weighed ``edges`` (``_a, _b, similarity``), strongest
    first, equal ones in the order of their images' ids (``rank`` per node), so the row order of
    the input never matters.

    Returns the final label per node and, per edge, the reason it was refused ('' = joined or inside).
    """
    merger = _Merger(np.bincount(hard) if len(hard) else np.zeros(0, np.int64))
    known = edges["similarity"] if "similarity" in edges else pd.Series(np.nan, index=edges.index)
    similarity = known.fillna(1.0).to_numpy(dtype=np.float64)  # pairs of older dedupe runs: strong
    ca, cb = hard[edges["_a"].to_numpy()], hard[edges["_b"].to_numpy()]
    ra, rb = rank[edges["_a"].to_numpy()], rank[edges["_b"].to_numpy()]
    order = np.lexsort((np.maximum(ra, rb), np.minimum(ra, rb), -similarity))
    for k in order:
        a, b = merger.find(int(ca[k])), merger.find(int(cb[k]))
        if a == b:
            continue
        support = merger.add(a, b)
        enough = similarity[k] >= rule.strong_similarity or min(merger.size[a], merger.size[b]) == 1
        if (enough or support >= rule.min_support) and merger.size[a] + merger.size[b] <= rule.max_size:
            merger.union(a, b)
    roots = np.array([merger.find(int(c)) for c in range(len(merger.parent))], dtype=np.int64)
    final = roots[hard] if len(hard) else hard
    fa, fb = roots[ca], roots[cb]
    sizes = np.array(merger.size, dtype=np.int64)
    reason = np.where(fa == fb, "", np.where(sizes[fa] + sizes[fb] > rule.max_size, TOO_LARGE, TOO_WEAK))
    return final, reason


@dataclass
class Grouping:
    groups: pd.DataFrame  # image_id, group, group_size per manifest row (same order)
    refused: pd.DataFrame  # REFUSED_COLUMNS: the weighed links left between two groups, and why


def group_images(manifest: pd.DataFrame, pairs: pd.DataFrame | None = None, rule: LinkRule | None = None) -> Grouping:
    """Groups of ``manifest`` (``image_id, source, patient_id``): patients ∪ duplicate pairs.

    ``pairs`` has ``image_id_a, image_id_b`` (and ``kind, distance, similarity`` from dedupe's
    duplicate_pairs.csv); pairs naming images absent from ``manifest`` are ignored. Without
    ``rule`` every pair joins; with it, near links are weighed (:class:`LinkRule`).
    """
    manifest = manifest.reset_index(drop=True)
    ids = manifest["image_id"]
    a, b = edges_by_key(patient_keys(manifest))
    edges = pd.DataFrame(columns=["_a", "_b"])
    if pairs is not None and len(pairs):
        index = pd.Series(np.arange(len(ids)), index=ids)
        edges = pairs.assign(_a=pairs["image_id_a"].map(index), _b=pairs["image_id_b"].map(index))
        edges = edges[edges["_a"].notna() & edges["_b"].notna()].astype({"_a": np.int64, "_b": np.int64})
    weighed = _weighed(manifest, edges) if rule is not None and len(edges) else pd.Series(False, edges.index)
    hard_edges = edges[~weighed]
    labels = components(
        len(ids), np.concatenate([a, hard_edges["_a"].to_numpy(np.int64)]), np.concatenate([b, hard_edges["_b"]])
    )
    refused = pd.DataFrame(columns=REFUSED_COLUMNS)
    if weighed.any():
        soft = edges[weighed].reset_index(drop=True)
        rank = np.argsort(np.argsort(ids.to_numpy(dtype=str), kind="stable"), kind="stable")
        labels, reason = _merge_weighed(labels, soft, rule, rank)
        refused = soft.assign(reason=reason)[reason != ""].reindex(columns=REFUSED_COLUMNS)
    groups = stable_ids(ids.tolist(), labels, "g")
    sizes = np.bincount(labels)[labels] if len(labels) else labels
    return Grouping(
        pd.DataFrame({"image_id": ids, "group": groups, "group_size": sizes}), refused.reset_index(drop=True)
    )


def build_groups(manifest: pd.DataFrame, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """``image_id, group, group_size`` per manifest row, every pair joining (see :func:`group_images`)."""
    return group_images(manifest, pairs).groups

"""Groups: links weighed as evidence (LinkRule), patients and exact copies always joined."""

from __future__ import annotations

import numpy as np
import pandas as pd
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

from endoctl.dedupe import find_pairs
from endoctl.grouping import TOO_LARGE, TOO_WEAK, LinkRule, build_groups, group_images
from endoctl.ingest import hash_files
from endoctl.io import PAIR_COLUMNS
from endoctl.params import DedupeParams

# Two patients of three images each and one image without a patient.
MANIFEST = pd.DataFrame({"image_id": list("abcdefs"), "source": "x", "patient_id": ["P", "P", "P", "Q", "Q", "Q", ""]})
RULE = LinkRule(max_size=100)


def links(*rows: tuple) -> pd.DataFrame:
    """(a, b, kind, similarity) rows as dedupe's pairs (distance 9)."""
    return pd.DataFrame([(a, b, 9, kind, sim) for a, b, kind, sim in rows], columns=PAIR_COLUMNS)


def sizes(grouping) -> dict[str, int]:
    return dict(zip(grouping.groups["image_id"], grouping.groups["group_size"]))


def test_one_weak_link_does_not_join_two_groups_of_several_images() -> None:
    g = group_images(MANIFEST, links(("a", "d", "near", 0.93)), RULE)
    assert sizes(g)["a"] == 3 and sizes(g)["d"] == 3
    assert g.refused[["image_id_a", "image_id_b", "reason"]].values.tolist() == [["a", "d", TOO_WEAK]]


def test_two_supporting_links_or_one_strong_link_join() -> None:
    two = group_images(MANIFEST, links(("a", "d", "near", 0.93), ("b", "e", "near", 0.92)), RULE)
    strong = group_images(MANIFEST, links(("a", "d", "near", RULE.strong_similarity)), RULE)
    for g in (two, strong):
        assert sizes(g)["a"] == 6 and len(g.refused) == 0


def test_a_single_image_joins_on_one_link_but_cannot_bridge_two_groups() -> None:
    g = group_images(MANIFEST, links(("a", "s", "near", 0.95), ("s", "d", "near", 0.92)), RULE)
    assert sizes(g) == {"a": 4, "b": 4, "c": 4, "s": 4, "d": 3, "e": 3, "f": 3}  # the stronger link won
    assert g.refused[["image_id_a", "image_id_b", "reason"]].values.tolist() == [["s", "d", TOO_WEAK]]


def test_no_link_grows_a_group_past_the_limit() -> None:
    g = group_images(MANIFEST, links(("a", "d", "near", 1.0)), LinkRule(max_size=5))
    assert sizes(g)["a"] == 3 and g.refused["reason"].tolist() == [TOO_LARGE]


def test_exact_copies_patients_and_same_patient_sequences_always_join() -> None:
    pairs = links(("a", "d", "exact", 1.0), ("c", "s", "sequence", 0.1))
    g = group_images(MANIFEST.assign(patient_id=["P", "P", "P", "Q", "Q", "Q", "P"]), pairs, LinkRule(max_size=2))
    assert set(sizes(g).values()) == {7} and len(g.refused) == 0
    # a sequence link without a shared patient (SEE-AI numbers frames across the whole dataset) is weighed
    g = group_images(MANIFEST, links(("c", "d", "sequence", 0.5)), RULE)
    assert sizes(g)["c"] == 3 and g.refused["reason"].tolist() == [TOO_WEAK]


def test_without_a_rule_every_link_joins() -> None:
    assert build_groups(MANIFEST, links(("a", "d", "near", 0.1)))["group_size"].tolist() == [6] * 6 + [1]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29), st.sampled_from([0.91, 0.95, 0.98])), max_size=60),
    st.integers(0, 2**32 - 1),
)
def test_groups_do_not_depend_on_row_order(edges: list, seed: int) -> None:
    manifest = pd.DataFrame(
        {"image_id": [f"i{k:02d}" for k in range(30)], "source": "x", "patient_id": [f"p{k // 4}" for k in range(30)]}
    )
    pairs = links(*[(f"i{min(a, b):02d}", f"i{max(a, b):02d}", "near", s) for a, b, s in edges if a != b])
    rule = LinkRule(max_size=9)
    first = group_images(manifest, pairs, rule)
    rng = np.random.default_rng(seed)
    shuffled = group_images(manifest.sample(frac=1, random_state=rng), pairs.sample(frac=1, random_state=rng), rule)
    assert sizes(first) == sizes(shuffled)
    assert max(sizes(first).values(), default=0) <= 9
    by_id = dict(zip(first.groups["image_id"], first.groups["group"]))
    assert dict(zip(shuffled.groups["image_id"], shuffled.groups["group"])) == by_id
    assert len(first.refused) == len(shuffled.refused)


def test_real_capsule_frames_numbered_without_a_video_id() -> None:
    """SEE-AI numbers its images across all 523 procedures with no procedure id: its sequence links
    are weighed. On the real 55-frame chain named that way, the chain keeps to a few groups (a
    weak link inside one video can be refused: a boundary between recordings looks the same)."""
    chain = sorted(shared_path("real_images", "kvasir_capsule_video_131368cc17e44240").glob("*.jpg"))
    rows = hash_files([str(f) for f in chain])
    names = [f"image{int(f.stem.split('_')[1]):05d}.jpg" for f in chain]
    manifest = pd.DataFrame(
        {
            "image_id": [f"see-ai/{n}" for n in names],
            "source": "see-ai",
            "path": names,
            "label": "",
            "patient_id": "",
            **dict(zip(["sha256", "phash", "dhash", "grid"], zip(*[r[3:] for r in rows]))),
        }
    )
    pairs = find_pairs(manifest, DedupeParams())
    weighed = group_images(manifest, pairs, LinkRule(max_size=len(manifest)))
    joined = group_images(manifest, pairs)
    counts = weighed.groups["group"].nunique(), joined.groups["group"].nunique()
    print(f"\n{len(chain)} real frames named as SEE-AI's: {counts[0]} groups weighed, {counts[1]} all links joined")
    assert counts[1] <= counts[0] <= 8
    assert weighed.groups["group_size"].max() >= 15

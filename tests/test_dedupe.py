"""Duplicate search: exactness against brute force, quality on real images, sequences, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import shared_path
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageEnhance
from typer.testing import CliRunner

from endoctl.cli import app
from endoctl.dedupe import dedupe, exact_pairs, find_pairs, layout, near_pairs
from endoctl.grouping import components
from endoctl.ingest import hash_files, ingest
from endoctl.io import PAIR_COLUMNS, read_csv
from endoctl.params import DedupeParams
from endoctl.sources import get_adapter
from endoctl.testing import brute_force_pairs, synthetic_hashes

runner = CliRunner()


@pytest.mark.parametrize("n,distance", [(20_000, 10), (20_000, 12), (3_000, 4), (3_000, 16)])
def test_index_search_equals_brute_force(n: int, distance: int) -> None:
    hashes = synthetic_hashes(n, seed=distance)
    fast = near_pairs(hashes, distance, workers=2)
    slow = brute_force_pairs(hashes, distance)
    assert len(fast[0]) > n // 10  # the data really has duplicate structure
    for a, b in zip(fast, slow):
        assert np.array_equal(a, b)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=60), st.integers(0, 20), st.integers(0, 2**32))
def test_index_search_property(values: list[int], distance: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = np.array(values, dtype=np.uint64)
    near = base ^ (np.uint64(1) << rng.integers(0, 64, len(base)).astype(np.uint64))  # guaranteed close pairs
    hashes = np.concatenate([base, near, base[:3]])  # and exact repeats
    for a, b in zip(near_pairs(hashes, distance), brute_force_pairs(hashes, distance)):
        assert np.array_equal(a, b)


def test_layout_satisfies_pigeonhole() -> None:
    for n in (100, 20_000, 226_000, 1_000_000):
        for d in range(0, 17):
            lay = layout(n, d)
            assert sum(w for _, w in lay.chunks) == 64
            assert len(lay.chunks) * (lay.radius + 1) > d  # some chunk is within radius


TRANSFORMS = {
    "resized 0.5x": lambda im: (im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), "JPEG", 90),
    "resized 224 px": lambda im: (im.resize((224, 224), Image.Resampling.LANCZOS), "JPEG", 90),
    "re-encoded q70": lambda im: (im, "JPEG", 70),
    "cropped 3%": lambda im: (
        im.crop(
            (
                round(im.width * 0.03),
                round(im.height * 0.03),
                im.width - round(im.width * 0.03),
                im.height - round(im.height * 0.03),
            )
        ),
        "JPEG",
        90,
    ),
    "brightened": lambda im: (ImageEnhance.Brightness(im).enhance(1.3), "JPEG", 90),
    "PNG": lambda im: (im, "PNG", None),
}


# Two Kvasir-SEG frames of one scene seconds apart (looked at): a true near-duplicate, not a false link.
SAME_SCENE = {frozenset({"cju1hhj6mxfp90835n3wofrap", "cju3x9lttikfb0818a0g104zn"})}


def test_planted_copies_of_real_images_are_found(tmp_path: Path) -> None:
    """>= 98% of planted copies found; links between distinct real images fall >= 100-fold with the pixel check."""
    originals = sorted(shared_path("real_images", "kvasir_seg").glob("*.jpg"))
    src = tmp_path / "src"
    (src / "original").mkdir(parents=True)
    planted = []
    for f in originals:
        (src / "original" / f.name).write_bytes(f.read_bytes())
        im = Image.open(f).convert("RGB")
        for t, (name, fn) in enumerate(TRANSFORMS.items()):
            copy, fmt, quality = fn(im)
            folder = src / f"copy{t}"
            folder.mkdir(exist_ok=True)
            target = folder / (f.stem + (".png" if fmt == "PNG" else ".jpg"))
            copy.save(target, fmt, **({"quality": quality} if quality else {"compress_level": 1}))
            planted.append((f"s/original/{f.name}", f"s/copy{t}/{target.name}", name))
    manifest = ingest(get_adapter("folder", src).scan(), "s", tmp_path, workers=2).manifest
    stem = {row.image_id: Path(row.image_id).stem for row in manifest.itertuples()}
    distinct_pairs = len(originals) * (len(originals) - 1) / 2 * (len(TRANSFORMS) + 1) ** 2
    rates = {}
    for check in (0.0, DedupeParams().min_similarity):  # hashes alone, then with the pixel check
        pairs = find_pairs(manifest, DedupeParams(workers=2, min_similarity=check))
        linked = set(zip(pairs["image_id_a"], pairs["image_id_b"]))
        found = pd.DataFrame([(n, (min(a, b), max(a, b)) in linked) for a, b, n in planted], columns=["t", "found"])
        per_transform = found.groupby("t")["found"].mean()
        # False links: pairs between two different originals (their copies included) out of all such pairs.
        false = sum(stem[a] != stem[b] and frozenset({stem[a], stem[b]}) not in SAME_SCENE for a, b in linked)
        rates[check] = false / distinct_pairs
        print(f"\nmin_similarity {check}: found {found['found'].mean():.2%}, per transform:")
        print(per_transform.to_string())
        print(f"false links: {false} ({rates[check]:.5%} of distinct-image pairs)")
        assert found["found"].mean() >= 0.98
        assert per_transform.min() >= 0.90
    assert rates[0.0] > 100 / distinct_pairs  # hashes alone link hundreds of distinct pairs ...
    assert rates[DedupeParams().min_similarity] <= rates[0.0] / 100  # ... the pixels confirm 100x fewer


def test_sequence_links_group_a_real_capsule_video(tmp_path: Path) -> None:
    chain = shared_path("real_images", "kvasir_capsule_video_131368cc17e44240")
    frames = sorted(chain.glob("*.jpg"))
    rows = hash_files([str(f) for f in frames])
    manifest = pd.DataFrame(
        {
            "image_id": [f"kc/{f.name}" for f in frames],
            "source": "kc",
            "path": [f"kc/{f.name}" for f in frames],
            "label": "",
            "sha256": [r[3] for r in rows],
            "phash": [r[4] for r in rows],
            "dhash": [r[5] for r in rows],
        }
    )
    counts = {}
    for gap in (0, DedupeParams().sequence_gap):
        pairs = find_pairs(manifest, DedupeParams(sequence_gap=gap))
        index = {iid: k for k, iid in enumerate(manifest["image_id"])}
        labels = components(
            len(manifest), pairs["image_id_a"].map(index).to_numpy(), pairs["image_id_b"].map(index).to_numpy()
        )
        counts[gap] = labels.max() + 1
    print(
        f"\n{len(frames)} consecutive real frames form {counts[0]} groups by hashes alone, "
        f"{counts[DedupeParams().sequence_gap]} with sequence links"
    )
    assert counts[0] >= 30  # hashes alone cannot group a moving capsule
    assert counts[DedupeParams().sequence_gap] <= 5


def test_sequence_pattern_only_links_named_frames() -> None:
    ph = ["0000000000000000", "0000000000000003", "00000000000000ff", "0000000000000001"]
    manifest = pd.DataFrame(
        {
            "image_id": ["s/a/image00010.jpg", "s/b/image00012.jpg", "s/a/image00030.jpg", "s/c/photo_11.jpg"],
            "source": "s",
            "label": "",
            "sha256": ["1", "2", "3", "4"],
            "phash": ph,
            "dhash": ["f" * 16] * 4,
        }
    )
    manifest["path"] = manifest["image_id"]
    pairs = find_pairs(manifest, DedupeParams(max_distance=0, sequence_gap=5, sequence_distance=4))
    assert pairs[["image_id_a", "image_id_b", "kind"]].values.tolist() == [
        ["s/a/image00010.jpg", "s/b/image00012.jpg", "sequence"],  # across folders, 2 frames apart
    ]


def test_sequence_keys_ers_sequence_folders_and_kvasir_video_names(tmp_path: Path) -> None:
    """ERS numbers frames afresh per <patient>/seq_NN/frames/: the folders key the sequence there, while a
    Kvasir-Capsule video's frames sit under different finding folders and still link by name."""
    paths = {
        "raw/ers/0001/seq_01/frames/000010.png": "0000000000000000",
        "raw/ers/0001/seq_01/frames/000012.png": "0000000000000003",  # same sequence, 2 apart: linked
        "raw/ers/0001/seq_02/frames/000011.png": "0000000000000005",  # another sequence of the patient
        "raw/ers/0002/seq_01/frames/000013.png": "0000000000000006",  # another patient
        "raw/ers/0001/samples/frames/000014.png": "0000000000000009",  # samples are not a video
        "raw/kc/labelled_images/Normal clean mucosa/0728084c8da942d9_100.jpg": "000000000000000a",
        "raw/kc/labelled_images/Ulcer/0728084c8da942d9_102.jpg": "000000000000000c",  # same video, other folder
        "raw/kc/labelled_images/Ulcer/1111111111111111_101.jpg": "0000000000000011",  # another video
        "raw/see-ai/SEE_AI_project_all_images/image00010.jpg": "0000000000000012",
        "raw/see-ai/SEE_AI_project_all_images/image00013.jpg": "0000000000000014",
    }
    manifest = pd.DataFrame({"path": list(paths), "phash": list(paths.values())})
    manifest["source"] = manifest["path"].str.split("/").str[1]
    manifest["image_id"] = manifest["path"].str.replace("raw/", "", regex=False)
    manifest = manifest.assign(label="x", sha256=[str(k) for k in range(len(paths))], dhash="f" * 16)
    manifest_csv = tmp_path / "m.csv"
    manifest.to_csv(manifest_csv, index=False)
    out = tmp_path / "dup"
    res = runner.invoke(
        app,
        [
            "dedupe",
            str(manifest_csv),
            "--out",
            str(out),
            "--max-distance",
            "0",
            "--sequence-distance",
            "4",
            "--workers",
            "1",
        ],
    )  # the default sequence pattern
    assert res.exit_code == 0, res.output
    pairs = read_csv(out / "duplicate_pairs.csv")
    assert sorted(zip(pairs["image_id_a"], pairs["image_id_b"], pairs["kind"])) == [
        ("ers/0001/seq_01/frames/000010.png", "ers/0001/seq_01/frames/000012.png", "sequence"),
        (
            "kc/labelled_images/Normal clean mucosa/0728084c8da942d9_100.jpg",
            "kc/labelled_images/Ulcer/0728084c8da942d9_102.jpg",
            "sequence",
        ),
        (
            "see-ai/SEE_AI_project_all_images/image00010.jpg",
            "see-ai/SEE_AI_project_all_images/image00013.jpg",
            "sequence",
        ),
    ]


def test_cli_writes_clusters_pairs_and_report(tmp_path: Path) -> None:
    """Two sources share a re-encoded copy; one source files an image under two labels."""
    rng = np.random.default_rng(0)
    for source in ("a", "b"):
        (tmp_path / source / "x").mkdir(parents=True)
        (tmp_path / source / "y").mkdir()
    scenes = []
    for _ in range(6):
        yy, xx = np.mgrid[0:200, 0:240] / 240
        f = rng.uniform(1, 5, 4)
        arr = np.stack([np.sin(f[0] * xx * 6 + f[1] * yy * 4), np.cos(f[2] * yy * 5), np.sin(f[3] * (xx + yy) * 3)], -1)
        scenes.append(Image.fromarray(((arr + 1) * 127).astype(np.uint8)))
    for k, im in enumerate(scenes[:4]):
        im.save(tmp_path / "a" / "x" / f"img{k}.jpg", quality=95)
    scenes[0].resize((120, 100)).save(tmp_path / "b" / "y" / "copy.jpg", quality=70)
    (tmp_path / "a" / "y" / "img1.jpg").write_bytes((tmp_path / "a" / "x" / "img1.jpg").read_bytes())
    scenes[5].save(tmp_path / "b" / "x" / "other.jpg", quality=95)
    manifests = []
    for source in ("a", "b"):
        out = tmp_path / "m" / source
        res = runner.invoke(
            app,
            [
                "ingest",
                str(tmp_path / source),
                "-f",
                "folder",
                "--source",
                source,
                "--out",
                str(out),
                "--data-root",
                str(tmp_path),
            ],
        )
        assert res.exit_code == 0, res.output
        manifests.append(str(out))
    out = tmp_path / "dups"
    res = runner.invoke(app, ["dedupe", *manifests, "--out", str(out)])
    assert res.exit_code == 0, res.output
    clusters = read_csv(out / "duplicates.csv").set_index("image_id")
    pairs = read_csv(out / "duplicate_pairs.csv")
    report = json.loads((out / "duplicates_report.json").read_text())
    assert len(clusters) == 7
    assert clusters.loc["a/x/img0.jpg", "cluster"] == clusters.loc["b/y/copy.jpg", "cluster"]
    assert clusters.loc["a/x/img1.jpg", "cluster"] == clusters.loc["a/y/img1.jpg", "cluster"]
    assert clusters.loc["a/x/img2.jpg", "cluster"] != clusters.loc["a/x/img3.jpg", "cluster"]
    assert clusters.loc["a/x/img0.jpg", "cluster_size"] == "2"
    assert set(pairs["kind"]) == {"exact", "near"}
    assert report["cross_source_clusters"] == 1 and report["conflicting_label_clusters"] == 1
    assert report["largest_cluster"]["size"] == 2
    assert "2 duplicate clusters" in res.output
    first = [p.read_bytes() for p in sorted(out.iterdir())]
    assert len(first) == 3
    assert runner.invoke(app, ["dedupe", *reversed(manifests), "--out", str(out), "--workers", "1"]).exit_code == 0
    assert [p.read_bytes() for p in sorted(out.iterdir())] == first  # order/workers never matter


def test_cli_rejects_manifests_without_hashes(tmp_path: Path) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("image_id,source,path,label\ns/a.jpg,s,a.jpg,x\n")
    res = runner.invoke(app, ["dedupe", str(bad), "--out", str(tmp_path / "d")])
    assert res.exit_code == 2 and f"{bad}: missing column(s)" in res.output and "phash" in res.output


def test_no_duplicates_at_all_is_an_empty_pair_list(tmp_path: Path) -> None:
    manifest = pd.DataFrame(
        {
            "image_id": ["s/a.jpg", "s/b.jpg"],
            "source": "s",
            "path": ["a.jpg", "b.jpg"],
            "label": "x",
            "sha256": ["1", "2"],
            "phash": ["0000000000000000", "ffffffffffffffff"],
            "dhash": ["0000000000000000", "ffffffffffffffff"],
        }
    )
    result = dedupe(manifest, DedupeParams(workers=1))
    assert len(result.pairs) == 0 and list(result.pairs.columns) == PAIR_COLUMNS
    assert result.report["duplicate_clusters"] == 0 and len(result.clusters) == 2


def test_cli_with_no_duplicate_and_no_sequence_pair(tmp_path: Path) -> None:
    """Distinct hashes, no frame names: empty pairs file, every image its own cluster, exit 0."""
    manifest = pd.DataFrame(
        {
            "image_id": ["s/a.jpg", "s/b.jpg", "t/c.jpg"],
            "source": ["s", "s", "t"],
            "path": ["a.jpg", "b.jpg", "c.jpg"],
            "label": ["x", "y", "x"],
            "sha256": ["1", "2", "3"],
            "phash": ["0000000000000000", "00000000ffffffff", "ffffffffffffffff"],
            "dhash": ["0" * 16] * 3,
        }
    )
    manifest.to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "d"
    res = runner.invoke(app, ["dedupe", str(tmp_path / "m.csv"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "duplicate_pairs.csv").read_text() == ",".join(PAIR_COLUMNS) + "\n"
    clusters = read_csv(out / "duplicates.csv")
    assert clusters["cluster_size"].tolist() == ["1"] * 3 and clusters["cluster"].nunique() == 3
    report = json.loads((out / "duplicates_report.json").read_text())
    assert report["pairs"] == {"exact": 0, "near": 0, "sequence": 0} and report["duplicate_clusters"] == 0
    assert report["largest_cluster"]["size"] == 1 and report["largest_cluster"]["cluster"] == clusters["cluster"].min()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.text("abc/", min_size=1, max_size=4), st.sampled_from("pqrs")),
        max_size=30,
        unique_by=lambda r: r[0],
    )
)
def test_exact_pairs_link_every_copy_to_the_smallest_id(rows: list[tuple[str, str]]) -> None:
    manifest = pd.DataFrame(rows, columns=["image_id", "sha256"]).sample(frac=1, random_state=0)
    smallest: dict[str, str] = {}
    for image_id, sha in rows:
        smallest[sha] = min(smallest.get(sha, image_id), image_id)
    expected = sorted((smallest[sha], image_id) for image_id, sha in rows if image_id != smallest[sha])
    got = exact_pairs(manifest)
    assert sorted(zip(got["image_id_a"], got["image_id_b"])) == expected
    assert (got["distance"] == 0).all() and (got["kind"] == "exact").all()

"""The demo figures README.md and the documentation pages (docs/*.md) quote come from the pipeline's
committed artifacts.

Each figure sits in a marked span, ``<!--fig:NAME-->0.764<!--/fig-->`` (invisible when rendered),
and :data:`FIGURES` says where NAME comes from. The test fails when a span disagrees with its
artifact; ``make readme-figures`` (``python tests/test_readme_figures.py --write``) rewrites every
span from the artifacts, touching nothing else. Run it after ``make repro`` changed the metrics.

Most figures come from files tracked in git (``metrics/``, ``dvc.lock``, ``params.yaml``), so a
fresh clone checks them. A few (the demo split's groups and training sizes) exist only in DVC
outputs (``manifests/<target>/train_val.csv``): they are checked, and written, where those files
exist (after ``make repro``), and skipped on a fresh clone.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]  # every page that may quote a figure
SPAN = re.compile(r"<!--fig:([a-z0-9_-]+)-->(.*?)<!--/fig-->", re.S)


class Absent(Exception):
    """The figure's artifact is a DVC output that this checkout does not have."""


def _json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text(encoding="utf-8"))


def _rows(root: Path, path: str) -> list[dict[str, str]]:
    with (root / path).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ratio(x: float) -> str:
    return f"{x:.3f}"


def _test(key: str) -> Callable[[Path], str]:
    return lambda root: _ratio(_json(root, "metrics/test/metrics.json")[key])


def _ci(key: str) -> Callable[[Path], str]:
    def value(root: Path) -> str:
        m = _json(root, "metrics/test/metrics.json")
        return f"{_ratio(m[f'{key}_ci_low'])}-{_ratio(m[f'{key}_ci_high'])}"

    return value


def _ci_groups(root: Path) -> str:
    boot = _json(root, "metrics/test/report.json")["bootstrap"]
    assert boot["unit"] == "group", "the README says the CI resamples groups"
    return str(boot["units"])


def _classes_present(root: Path) -> int:
    return sum(1 for c in _json(root, "metrics/test/report.json")["per_class"].values() if c["support"] > 0)


def _val_images(stage: str) -> Callable[[Path], str]:
    return lambda root: str(len(_rows(root, f"metrics/{stage}/val_predictions.csv")))


def _demo_files(root: Path) -> str:
    (out,) = yaml.safe_load((root / "dvc.lock").read_text())["stages"]["synth"]["outs"]
    assert out["path"] == "raw/demo"
    return f"{out['nfiles']:,}"


def _study_frames(root: Path) -> str:
    """Frames of the demo's study video, as synth plans it for params.yaml's seed."""
    from endoctl.synth import _study_frames as planned

    return str(len(planned(yaml.safe_load((root / "params.yaml").read_text())["synth"]["seed"])[1]))


def _split_rows(root: Path, target: str, stage: str, in_val: bool) -> list[dict[str, str]]:
    """Rows of ``manifests/<target>/train_val.csv`` in (or out of) the fold ``stage`` validates on."""
    path = root / "manifests" / target / "train_val.csv"
    if not path.is_file():
        raise Absent(str(path.relative_to(root)))
    from endoctl.train import load_config  # params.yaml's section over TrainConfig's defaults, as train reads it

    fold = str(load_config(stage, root / "params.yaml", {}).val_fold)
    return [r for r in _rows(root, str(path.relative_to(root))) if (r["fold"] == fold) == in_val]


# name -> the figure as README writes it, from the committed artifacts (or Absent)
FIGURES: dict[str, Callable[[Path], str]] = {
    "demo-files": _demo_files,
    "finetune-val-images": _val_images("finetune"),
    "finetune-val-groups": lambda root: str(len({r["group"] for r in _split_rows(root, "ce24", "finetune", True)})),
    "finetune-val-classes": lambda root: str(
        len({r["target_class"] for r in _split_rows(root, "ce24", "finetune", True)})
    ),
    "pretrain-train-images": lambda root: str(len(_split_rows(root, "ee24-ce24", "pretrain", False))),
    "pretrain-val-images": _val_images("pretrain"),
    "test-balanced-accuracy": _test("balanced_accuracy"),
    "test-balanced-accuracy-ci": _ci("balanced_accuracy"),
    "test-ci-groups": _ci_groups,
    "test-classes-present": lambda root: str(_classes_present(root)),
    "test-chance": lambda root: _ratio(1 / _classes_present(root)),
    "test-auc-macro": _test("auc_macro"),
    "test-images": lambda root: str(_json(root, "metrics/test/metrics.json")["n_images"]),
    "study-frames": _study_frames,
}
DVC_ONLY = {"finetune-val-groups", "finetune-val-classes", "pretrain-train-images"}


def values(root: Path = ROOT) -> dict[str, str | None]:
    """Every figure from ``root``'s artifacts; None where its DVC output is absent."""
    out: dict[str, str | None] = {}
    for name, compute in FIGURES.items():
        try:
            out[name] = compute(root)
        except Absent:
            out[name] = None
    return out


def render(text: str, figures: dict[str, str | None]) -> str:
    """``text`` with every marked span set to its figure (spans whose figure is None keep theirs)."""

    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in figures:
            raise KeyError(f"README marks an unknown figure {name!r} (known: {', '.join(figures)})")
        value = figures[name]
        return m.group(0) if value is None else f"<!--fig:{name}-->{value}<!--/fig-->"

    return SPAN.sub(one, text)


# ----------------------------------------------------------------------------- tests


def test_every_marked_figure_matches_the_artifacts():
    figures = values()
    wrong = []
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        spans = SPAN.findall(text)
        assert {name for name, _ in spans} <= set(figures), doc
        wrong += [
            f"{doc.relative_to(ROOT)}: {name}: quoted {quoted!r}, artifacts {figures[name]!r}"
            for name, quoted in spans
            if figures[name] is not None and figures[name] != quoted
        ]
        assert wrong or render(text, figures) == text, doc
    assert not wrong, "figures differ from the artifacts (run `make readme-figures`):\n" + "\n".join(wrong)
    absent = sorted(n for n, v in figures.items() if v is None)
    assert set(absent) <= DVC_ONLY, absent  # every git-tracked artifact is there on a fresh clone
    if absent:
        pytest.skip(f"DVC outputs absent (run `make repro` to check them too): {', '.join(absent)}")


def test_every_figure_is_quoted_and_every_span_is_known():
    names = [name for doc in DOCUMENTS for name, _ in SPAN.findall(doc.read_text(encoding="utf-8"))]
    assert set(names) == set(FIGURES), (sorted(set(FIGURES) - set(names)), sorted(set(names) - set(FIGURES)))


def test_render_touches_only_the_spans(tmp_path):
    text = "BA <!--fig:test-auc-macro-->0.954<!--/fig--> (CI <!--fig:test-images-->12<!--/fig-->), 0.954 stays.\n"
    out = render(text, {"test-auc-macro": "0.889", "test-images": None})
    assert (
        out == "BA <!--fig:test-auc-macro-->0.889<!--/fig--> (CI <!--fig:test-images-->12<!--/fig-->), 0.954 stays.\n"
    )
    with pytest.raises(KeyError, match="unknown figure 'nope'"):
        render("<!--fig:nope-->1<!--/fig-->", {})


def test_figures_come_from_the_files(tmp_path):
    """A changed artifact changes the figure: the values are read, not remembered."""
    (tmp_path / "metrics" / "test").mkdir(parents=True)
    metrics = json.loads((ROOT / "metrics/test/metrics.json").read_text())
    metrics.update(balanced_accuracy=0.5, balanced_accuracy_ci_low=0.25, balanced_accuracy_ci_high=0.75)
    (tmp_path / "metrics/test/metrics.json").write_text(json.dumps(metrics))
    assert FIGURES["test-balanced-accuracy"](tmp_path) == "0.500"
    assert FIGURES["test-balanced-accuracy-ci"](tmp_path) == "0.250-0.750"
    with pytest.raises(Absent):
        FIGURES["pretrain-train-images"](tmp_path)


def main(argv: list[str]) -> int:
    """``--write``: rewrite every page's marked spans from the artifacts; ``--check``: exit 1 if any differ."""
    if argv not in (["--write"], ["--check"]):
        print("usage: python tests/test_readme_figures.py --write | --check", file=sys.stderr)
        return 2
    figures = values()
    absent = sorted(n for n, v in figures.items() if v is None)
    note = f" (left as they are, DVC outputs absent: {', '.join(absent)})" if absent else ""
    differ = 0
    for doc in DOCUMENTS:
        text = doc.read_text(encoding="utf-8")
        new = render(text, figures)
        if new == text:
            continue
        differ += 1
        if argv == ["--write"]:
            doc.write_text(new, encoding="utf-8")
        print(f"{doc.relative_to(ROOT)}: figures {'rewritten' if argv == ['--write'] else 'differ: run --write'}")
    if not differ:
        print(f"figures in {len(DOCUMENTS)} pages are current{note}")
    return int(differ > 0 and argv == ["--check"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every dvc.yaml stage depends on exactly the endoctl code its command runs, so DVC reruns what changed.

The code a stage runs is computed statically: the module of the Typer command its ``cmd`` names
(``endoctl.cli.<module>``, imported lazily by the ``endoctl`` group, see ``endoctl.cli.COMMANDS``),
and transitively every endoctl module it imports anywhere (module level or inside a function: a lazy
import is still code the stage may run; ``endoctl.cli.common`` and ``endoctl.params`` for every
command), plus the parent packages (``stages/endoctl/__init__.py``, ``stages/endoctl/cli/__init__.py``,
...). Standard library and third-party imports are not code of this repository (requirements.lock pins
them). A data folder under ``stages/endoctl/`` (no Python files, e.g. ``taxonomies``) is a dependency
of a stage whose code names it.

A dvc.yaml ``deps`` entry may name a folder of modules (``stages/endoctl/sources``); it stands for every
``.py`` file in it, so it is right only when the stage imports all of them.
"""

from __future__ import annotations

import ast
import importlib.util
import shlex
from functools import cache
from pathlib import Path

import pytest
import typer.main
import yaml

from endoctl.cli import COMMANDS, command_app

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stages" / "endoctl"


def _file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"cannot locate module {module}"
    return Path(spec.origin).resolve()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def _imports(tree: ast.AST, package: str) -> set[str]:
    """endoctl modules imported anywhere in ``tree`` (``from endoctl import x`` counts x if a module)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "endoctl"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "endoctl":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")}
    return found


def _with_parents(modules: set[str]) -> set[str]:
    return {".".join(m.split(".")[:k]) for m in modules for k in range(1, len(m.split(".")) + 1)}


@cache
def _module_closure(module: str) -> frozenset[str]:
    """``module`` and every endoctl module it imports, transitively (with parent packages)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        path = _file(mod)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        todo += sorted(_with_parents(_imports(ast.parse(path.read_text()), package)) - seen)
    return frozenset(seen)


def command_module(words: list[str]) -> str:
    """The module defining ``endoctl <words>`` (e.g. ['train', 'pretrain']), checked to define it."""
    assert words and words[0] in COMMANDS, f"`endoctl {' '.join(words)}`: no such command"
    group, rest = command_app(words[0]), list(words)
    while rest:
        word = rest.pop(0)
        if any((i.name or typer.main.get_command_name(i.callback.__name__)) == word for i in group.registered_commands):
            assert not rest, f"`endoctl {' '.join(words)}`: {word} takes no sub-command"
            return f"endoctl.cli.{COMMANDS[words[0]]}"
        found = [i.typer_instance for i in group.registered_groups if i.name == word]
        assert found, f"`endoctl {' '.join(words)}`: no such command"
        group = found[0]
    raise AssertionError(f"`endoctl {' '.join(words)}` names a command group, not a command")


def command_code(words: list[str]) -> set[Path]:
    """Files of the code ``endoctl <words>`` runs: its module's closure with parent packages, data folders."""
    closure = set()
    for module in _with_parents({command_module(words)}):
        closure |= _module_closure(module)
    files = {_file(m) for m in closure}
    data = {d for d in PACKAGE.iterdir() if d.is_dir() and not list(d.rglob("*.py")) and d.name != "__pycache__"}
    for file in list(files):
        names = {n.value for n in ast.walk(ast.parse(file.read_text())) if isinstance(n, ast.Constant)}
        files |= {d for d in data if d.name in names}
    return files


def declared_code(deps: list[str]) -> set[Path]:
    """The ``stages/endoctl/`` entries of a stage's deps: module folders as their ``.py`` files, data folders as is."""
    out = set()
    for dep in deps:
        path = (ROOT / dep).resolve()
        if not path.is_relative_to(PACKAGE):
            continue
        assert path.exists(), f"dependency {dep} does not exist"
        py = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        out |= {p.resolve() for p in py} if py else {path}
    return out


def dvc_stages() -> dict[str, tuple[list[str], list[str]]]:
    """stage name -> (the endoctl command words, deps), foreach stages once (their template)."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        words = shlex.split(body["cmd"].replace("${", "").replace("}", ""))
        assert words[0] == "endoctl", f"stage {name}: cmd does not start with endoctl"
        options = [k for k, w in enumerate(words) if w.startswith("-")]
        positional = words[1 : options[0] if options else len(words)]
        groups = {g.name for g in command_app(positional[0]).registered_groups}
        command = positional[: 2 if positional[0] in groups else 1]
        out[name] = (command, [d if isinstance(d, str) else next(iter(d)) for d in body.get("deps", [])])
    return out


STAGES = dvc_stages()


def _rel(paths: set[Path]) -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for p in paths)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_exactly_the_code_it_runs(stage: str) -> None:
    words, deps = STAGES[stage]
    runs, declared = command_code(words), declared_code(deps)
    assert declared == runs, (
        f"dvc.yaml stage {stage} (endoctl {' '.join(words)}): deps lack {_rel(runs - declared)}, "
        f"list extra {_rel(declared - runs)}; the code it runs: {_rel(runs)}"
    )


def test_closure_sees_lazy_imports_helpers_and_packages() -> None:
    """Known facts of the code base: the analysis is not vacuous."""
    cache_code = _rel(command_code(["cache"]))
    assert cache_code == [
        f"stages/endoctl/{m}.py"
        for m in ("__init__", "cache", "cli/__init__", "cli/cache", "cli/common", "imaging", "io", "parallel", "params")
    ]
    predict_code = _rel(command_code(["predict"]))
    assert "stages/endoctl/model.py" in predict_code  # imported by predict.py at module level
    assert "stages/endoctl/taxonomy.py" in predict_code  # ... which imports it inside a function
    assert "stages/endoctl/taxonomy.py" in _rel(command_code(["split"]))  # a lazy import inside split.py
    assert "stages/endoctl/taxonomies" in _rel(command_code(["split"]))  # data folder named in taxonomy.py
    ingest_code = _rel(command_code(["ingest"]))
    assert "stages/endoctl/sources/__init__.py" in ingest_code and "stages/endoctl/sources/see_ai.py" in ingest_code
    assert "stages/endoctl/train.py" not in ingest_code
    assert "stages/endoctl/cli/study.py" not in ingest_code  # one command's module is not another's code
    build_code = _rel(command_code(["build-splits"]))  # its module imports the ingest, dedupe and split commands
    assert {f"stages/endoctl/cli/{m}.py" for m in ("ingest", "dedupe", "split")} <= set(build_code)
    assert "stages/endoctl/devices.py" in _rel(command_code(["train", "pretrain"]))  # train: amp_dtype, autocast


def test_dvc_lock_describes_the_committed_code_and_params() -> None:
    """No code or params dependency in dvc.lock is stale: a fresh clone's ``dvc status`` lists no
    modified code, so the lock says which code made the committed outputs. Data dependencies (other
    stages' outputs) are not checked: a fresh clone has none, and DVC calls a folder that holds only
    its tracked .gitignore "modified"."""
    import json
    import subprocess
    import sys

    dvc = Path(sys.executable).with_name("dvc")
    result = subprocess.run([str(dvc), "status", "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
    status = json.loads(result.stdout or "{}")
    stale = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                continue
            for path, how in change.get("changed deps", {}).items():
                params = isinstance(how, dict)  # a params file lists its changed keys
                if params or (how == "modified" and path.startswith("stages/")):
                    stale.append(f"{stage}: {path} {how}")
    assert not stale, "dvc.lock is stale (run `make repro` and commit dvc.lock): " + "; ".join(stale[:10])

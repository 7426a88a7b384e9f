"""requirements.lock pins every package `make` installs, consistently with pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def locked() -> dict[str, str]:
    lines = [ln for ln in (ROOT / "requirements.lock").read_text().splitlines() if ln and not ln.startswith("#")]
    bad = [ln for ln in lines if not PIN.match(ln)]
    assert not bad, f"requirements.lock: not a NAME==VERSION pin: {bad[:3]}"
    pins = [PIN.match(ln).groups() for ln in lines]
    names = [canonicalize_name(n) for n, _ in pins]
    assert len(set(names)) == len(names), "requirements.lock pins a package twice"
    assert names == sorted(names), "requirements.lock is not sorted (regenerate with `make lock`)"
    return {canonicalize_name(n): v for n, v in pins}


def test_every_pyproject_dependency_is_pinned_within_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    pins = locked()
    for text in wanted:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} (pyproject.toml) is not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside pyproject.toml's {text!r}: run `make lock`"
        )


def test_this_environment_was_installed_from_the_lock() -> None:
    """What `make` installed is what the lock says (a local build tag like +cpu matches, as in pip)."""
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {
        n: (v, installed[n])
        for n, v in pins.items()
        if n in installed and not SpecifierSet(f"=={v}").contains(installed[n], prereleases=True)
    }
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}"
    missing = sorted(
        canonicalize_name(Requirement(r).name)
        for r in metadata.requires("endoctl") or []
        if "extra ==" not in r and canonicalize_name(Requirement(r).name) not in installed
    )
    assert not missing, f"dependencies not installed: {missing}"

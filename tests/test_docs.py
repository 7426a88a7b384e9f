"""The README stays a short front door whose links into the documentation site resolve.

`make test` builds the site itself with ``mkdocs build --strict`` (a broken page, link or
API reference fails there); the README lives outside the site, so its links are checked here.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LINK = re.compile(r"\]\(((?!https?:)[^)#\s]+)(?:#([^)\s]+))?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)


def anchors(page: Path) -> set[str]:
    """The heading ids MkDocs gives ``page`` (Python-Markdown's toc slugify, as mkdocs.yml uses)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slugify(re.sub(r"[`*]", "", h), "-") for h in HEADING.findall(text)}


def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8")) < 30_000


def test_readme_links_resolve() -> None:
    links = LINK.findall(README.read_text(encoding="utf-8"))
    assert any(target.startswith("docs/") for target, _ in links)
    broken = []
    for target, anchor in links:
        page = ROOT / target
        if not page.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(page):
            broken.append(f"{target}#{anchor}: no such heading (has {sorted(anchors(page))[:8]}...)")
    assert not broken, broken


def test_every_page_is_in_the_navigation() -> None:
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    listed = {next(iter(entry.values())) for entry in nav}
    assert listed == {p.name for p in (ROOT / "docs").glob("*.md")}

"""Shared fixtures: the real reference data in ../shared, small image writers, a headless browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import browser  # noqa: F401 - the fixture, for every test module

from endoctl.testing import scene

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path below ../shared, or skip the test with the reason when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real reference data not available: {path} (../shared is absent)")
    return path


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    """An xlsx with these sheets (name -> rows, the first row being the header; [] = empty sheet)."""
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    book.save(path)
    return path


def special_files(folder: Path) -> list[str]:
    """Two readable images, a FIFO and a link to /dev/zero, all named like images; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        scene(i, (64, 60)).save(folder / f"ok_{i}.jpg", quality=90)
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    return ["fifo.jpg", "ok_0.jpg", "ok_1.jpg", "zero.jpg"]

"""Byte-reproducible xlsx: the same table always gives the same file.

openpyxl stamps ``docProps/core.xml`` (created, modified) with the wall clock, whatever the
workbook's properties say, and every zip member with the time it was written, so two runs of the
same command differ in a few bytes and DVC sees a changed output. :func:`xlsx_bytes` pins both to
:data:`XLSX_TIME`, and the members' permission bits too (a temp file would give the umask's), so
the file depends on the table alone.
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import datetime

import pandas as pd

XLSX_TIME = datetime(2024, 1, 1)  # core.xml created/modified and every zip member's date
_MEMBER_MODE = 0o600 << 16  # zip external_attr: a regular file, rw for the owner
_CORE = "docProps/core.xml"
_CORE_DATES = re.compile(r"(<dcterms:(created|modified)\b[^>]*>)[^<]*(</dcterms:\2>)")


def pin_zip(data: bytes, when: datetime = XLSX_TIME) -> bytes:
    """The xlsx (zip) ``data`` with every member dated ``when`` and, in core.xml, the created and
    modified properties set to ``when`` (openpyxl's save sets modified to now, whatever was asked);
    member order and all other content kept."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == _CORE:
                content = _CORE_DATES.sub(lambda m: f"{m[1]}{stamp}{m[3]}", content.decode("utf-8")).encode("utf-8")
            pinned = zipfile.ZipInfo(info.filename, date_time=when.timetuple()[:6])
            pinned.external_attr = _MEMBER_MODE
            dst.writestr(pinned, content, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def xlsx_bytes(table: pd.DataFrame, sheet: str = "Sheet1", when: datetime = XLSX_TIME) -> bytes:
    """``table`` as an xlsx workbook (one sheet, header row, no index), dated ``when`` throughout.

    Every text cell stays text: openpyxl stores a string starting with ``=`` as a formula, so a file
    named ``=HYPERLINK(1).jpg`` would become one (read back as empty, or run by a spreadsheet).
    """
    raw = io.BytesIO()
    with pd.ExcelWriter(raw, engine="openpyxl") as writer:
        table.to_excel(writer, index=False, sheet_name=sheet)
        for row in writer.sheets[sheet].iter_rows():
            for cell in row:
                if cell.data_type == "f":
                    cell.data_type = "s"
    return pin_zip(raw.getvalue(), when)

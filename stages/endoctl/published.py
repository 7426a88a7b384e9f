"""How many images each source was published with, beside how many arrived: did the download complete?

The counts are the EndoExtend24 paper's Table 1, keyed by ``--format`` (the adapter that reads the
source), so a source ingested under any name finds its count through the ``source.json`` its
ingest folder records (:func:`endoctl.io.source_info`). One format can stand for several published
datasets (``kid`` reads KID 2 and KID 1): its count is their sum. ``split`` puts the table in
``split_report.{json,md}``, ``report`` in the HTML overview.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

REFERENCE = "Roth et al. 2024, EndoExtend24 (arXiv 2410.21302), Table 1"
# --format -> the datasets it reads as the paper names them, with their published image counts
PUBLISHED: dict[str, tuple[tuple[str, int], ...]] = {
    "see-ai": (("SEE-AI", 18_481),),
    "kid": (("KID 2", 2_371), ("KID 1", 77)),
    "ers": (("ERS", 121_399),),
    "limuc": (("LIMUC", 11_276),),
    "medfmc-endo": (("MedFMC", 3_865),),
    "kvasir-capsule": (("Kvasir-Capsule", 47_238),),
    "hyperkvasir": (("HyperKvasir", 10_662),),
    "crohnipi": (("CrohnIPI", 3_498),),
    "gastrovision": (("GastroVision", 8_000),),
}
PAPER_TOTAL = 226_867  # the table's total over its ten datasets
if sum(n for parts in PUBLISHED.values() for _, n in parts) != PAPER_TOTAL:  # pragma: no cover - typo guard
    raise AssertionError("PUBLISHED does not add up to the paper's total")

MATCH, FEWER, MORE = "match", "fewer", "more"


def published(fmt: str) -> tuple[str, int] | None:
    """``("KID 2 + KID 1", 2448)``: the paper's name(s) and count for a format, None without one."""
    parts = PUBLISHED.get(fmt)
    if not parts:
        return None
    return " + ".join(name for name, _ in parts), sum(n for _, n in parts)


def manifest_entries(
    files: Sequence[Path], frames: Sequence[pd.DataFrame], formats: Mapping[str, str]
) -> list[tuple[str, str, int, int | None]]:
    """Per manifest ``(source, format, accepted, rejected)``: accepted = its rows, rejected = the rows
    of its rejected list (None where there is none, e.g. a flat CSV written by hand). The source is
    the name ingest recorded (else the rows' one source name, else the file's name); its format
    comes from ``formats`` (:func:`endoctl.io.manifest_formats`), else the name itself."""
    from endoctl.io import read_csv, rejected_file, source_info, source_name

    out = []
    for file, frame in zip(files, frames):
        info = source_info(file)
        names = frame["source"].unique() if "source" in frame.columns else []
        source = info["source"] if info else names[0] if len(names) == 1 else source_name(file)
        rej = rejected_file(file)
        rejected = len(read_csv(rej)) if rej.is_file() else None
        out.append((source, formats.get(source, source), len(frame), rejected))
    return out


def _check(difference: int | None) -> str | None:
    if difference is None:
        return None
    return MATCH if difference == 0 else FEWER if difference < 0 else MORE


def counts(entries: Sequence[tuple[str, str, int, int | None]]) -> dict:
    """Found / accepted / rejected per format beside the published count (JSON-ready).

    Formats in the paper's order, then the others by name; ``difference`` = found - published,
    ``check`` says match / fewer / more (None where either is unknown). The total's difference is
    the sum of the known ones.
    """
    by_format: dict[str, list[tuple[str, int, int | None]]] = {}
    for source, fmt, accepted, rejected in entries:
        by_format.setdefault(fmt, []).append((source, accepted, rejected))
    order = [f for f in PUBLISHED if f in by_format] + sorted(set(by_format) - set(PUBLISHED))
    rows = []
    for fmt in order:
        parts = by_format[fmt]
        accepted = sum(a for _, a, _ in parts)
        rejected = None if any(r is None for _, _, r in parts) else sum(r for _, _, r in parts)
        found = None if rejected is None else accepted + rejected
        paper = published(fmt)
        difference = None if paper is None or found is None else found - paper[1]
        rows.append(
            {
                "format": fmt,
                "published_as": paper[0] if paper else None,
                "sources": sorted({s for s, _, _ in parts}),
                "found": found,
                "accepted": accepted,
                "rejected": rejected,
                "published": paper[1] if paper else None,
                "difference": difference,
                "check": _check(difference),
            }
        )

    def total(key: str) -> int | None:
        known = [r[key] for r in rows if r[key] is not None]
        return sum(known) if known else None

    difference = total("difference")
    return {
        "reference": REFERENCE,
        "paper_total": PAPER_TOTAL,
        "datasets": rows,
        "total": {
            "found": total("found"),
            "accepted": total("accepted"),
            "rejected": total("rejected"),
            "published": total("published"),
            "difference": difference,
            "check": _check(difference),
        },
    }


def number(n: int | None, signed: bool = False) -> str:
    if n is None:
        return "-"
    return f"{n:+,}" if signed else f"{n:,}"


def check_text(check: str | None) -> str:
    """The flag shown beside a difference."""
    return {MATCH: "ok", FEWER: "⚠ fewer than published", MORE: "⚠ more than published"}.get(check, "-")


HEADER = ["format", "published as", "sources", "found", "accepted", "rejected", "published", "difference", "check"]


def table_rows(c: dict) -> list[list[str]]:
    """The rows of :data:`HEADER` (text cells), the total last."""
    rows = [
        [
            r["format"],
            r["published_as"] or "-",
            ", ".join(r["sources"]),
            number(r["found"]),
            number(r["accepted"]),
            number(r["rejected"]),
            number(r["published"]),
            number(r["difference"], signed=True),
            check_text(r["check"]),
        ]
        for r in c["datasets"]
    ]
    t = c["total"]
    rows.append(
        [
            "total",
            "",
            "",
            number(t["found"]),
            number(t["accepted"]),
            number(t["rejected"]),
            number(t["published"]),
            number(t["difference"], signed=True),
            check_text(t["check"]),
        ]
    )
    return rows


def explanation(c: dict) -> str:
    return (
        f"Reference: {c['reference']} (all ten datasets: {c['paper_total']:,} images), matched to each manifest by "
        "the format that read it. found = accepted (manifest rows) + rejected (rows of the ingest folder's "
        "rejected.csv); difference = found - published; '-' where the paper gives no count or a manifest has no "
        "rejected list."
    )


def markdown(c: dict | None) -> list[str]:
    """The ``split_report.md`` section."""
    if not c:
        return []
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(c)]
    return ["## Images per source beside the published counts", "", explanation(c), "", *lines, ""]

"""``endoctl audit``'s presentation: the table and the summary line of a :class:`~endoctl.leaks.AuditReport`.

The logic (reading split files of any format, groups across splits, near-duplicate hashing, frame
adjacency) is :mod:`endoctl.leaks`, which ``evaluate`` shares.
"""

from __future__ import annotations

from collections.abc import Mapping

from endoctl.leaks import AuditReport


def render_table(report: AuditReport):
    """A rich Table: one row per source, then the total; leaking counts in red."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    split_images = report.per_split.pivot_table(
        index="source", columns="split", values="images", aggfunc="sum", fill_value=0
    )
    headers = [*report.split_names, "images", "groups", "leaking\ngroups", "leaking\nimages"]
    headers += ["x-split\npairs"] if report.hashed else []
    headers += [f"within\n±{report.frame_gap} frames"] if report.frame_gap else []
    adjacent = report.adjacent_images()

    def numbers(images: Mapping[str, int], r: Mapping[str, int], near: int) -> list[int]:
        out = [int(images.get(n, 0)) for n in report.split_names]
        out += [r["images"], r["groups"], r["straddling"], r["straddling_images"]]
        return out + ([r["cross_split_pairs"]] if report.hashed else []) + ([near] if report.frame_gap else [])

    rows = []
    for r in report.per_source.to_dict("records"):
        images = split_images.loc[r["source"]].to_dict() if r["source"] in split_images.index else {}
        rows.append((escape(str(r["source"])), numbers(images, r, adjacent.get(r["source"], 0))))
    by_split = report.rows.drop_duplicates(["split", "image_id"]).groupby("split").size().to_dict()
    totals = report.totals()
    rows.append(("[bold]all[/bold]", numbers(by_split, totals, totals["frame_adjacent_images"])))
    leaking = len(report.split_names) + 2  # first red column

    table = Table(
        title="split audit: images per split; leaking = patient/video/duplicate groups in >1 split"
        + ("; within ±k frames = numbered within k frames of another split's image" if report.frame_gap else ""),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("source", no_wrap=True, min_width=max(len(label) for label, _ in rows[:-1] + [("all", [])]))
    for k, header in enumerate(headers):
        width = max([*map(len, header.split("\n")), *(len(f"{values[k]:,}") for _, values in rows)])
        table.add_column(escape(header), justify="right", no_wrap=True, min_width=width)
    for i, (label, values) in enumerate(rows):
        cells = [f"[red]{v:,}[/red]" if k >= leaking and v else f"{v:,}" for k, v in enumerate(values)]
        table.add_row(label, *cells, end_section=i == len(rows) - 2)
    return table


def summary(report: AuditReport) -> str:
    t = report.totals()
    images = report.per_split.groupby("split")["images"].sum()
    splits = ", ".join(f"{n} {int(images.get(n, 0)):,}" for n in report.split_names)
    by_source = ", ".join(f"{s} {n}" for s, n in zip(report.per_source["source"], report.per_source["straddling"]) if n)
    text = (
        f"audit: {len(report.split_names)} splits ({splits}), {t['images']:,} images in {t['groups']:,} groups; "
        f"{t['straddling']:,} groups straddle splits"
        + (f" ({by_source})" if by_source else "")
        + f", {t['straddling_images']:,} images in them"
    )
    if report.hashed:
        text += (
            f"; {t['cross_split_pairs']:,} cross-split duplicate pairs (max distance {report.max_distance}), "
            f"{len(report.unreadable)} unreadable"
        )
    if report.frame_gap:
        near = ", ".join(f"{s} {n:,}" for s, n in report.adjacent_images().items() if n)
        text += f"; {t['frame_adjacent_images']:,} images within ±{report.frame_gap} frames of another split's" + (
            f" ({near})" if near else ""
        )
    return text + ("; LEAK" if report.leaks else "; leak-free")

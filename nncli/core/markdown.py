"""Markdown tables that render on GitHub whatever the cells hold (a `|` in a note, a line break in an error)."""

from __future__ import annotations


def cell(value) -> str:
    """One table cell: `|` escaped, line breaks folded to spaces (both would end the cell or the row)."""
    text = "" if value is None else str(value)
    return " ".join(text.replace("\\|", "|").replace("|", "\\|").split())


def row(cells) -> str:
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def table(header, rows) -> list[str]:
    """The lines of a table: header, separator, one line per row (each row as many cells as the header)."""
    return [row(header), "|" + "---|" * len(header)] + [row(r) for r in rows]


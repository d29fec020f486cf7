"""Tables kept as tables: the HTML structure a partitioner gives a table (``text_as_html``)
becomes a Markdown table (first row = header), so that the chunker can split a large table by
groups of whole rows with the header repeated (chunking/service.py), and every cell stays
searchable as a word of its chunk."""

from __future__ import annotations

import re

_SPACES = re.compile(r"\s+")


def _cell(text: str) -> str:
    # spreadsheet cells come with their line breaks escaped ("\\n" as two characters)
    return _SPACES.sub(" ", text.replace("\\n", " ")).strip().replace("|", "\\|")


def html_table_to_markdown(html: str) -> str:
    """``<table>`` HTML -> Markdown table; "" when there is no row with content."""
    if not html or "<t" not in html:
        return ""
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except Exception:
        return ""
    rows: list[list[str]] = []
    for tr in root.iter("tr"):
        cells: list[str] = []
        for td in tr:
            if not isinstance(td.tag, str) or td.tag.lower() not in {"td", "th"}:
                continue
            cells.append(_cell(td.text_content()))
            span = td.get("colspan", "1")
            cells.extend([""] * (max(1, min(int(span) if span.isdigit() else 1, 64)) - 1))
        if any(cells):
            rows.append(cells)
    if not rows:
        return ""
    # columns that are empty in every row (spreadsheet padding) are dropped
    width = max(len(r) for r in rows)
    rows = [r + [""] * (width - len(r)) for r in rows]
    keep = [i for i in range(width) if any(r[i] for r in rows)]
    rows = [[r[i] for i in keep] for r in rows]
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    lines.insert(1, "|" + "|".join(" --- " for _ in keep) + "|")
    return "\n".join(lines)

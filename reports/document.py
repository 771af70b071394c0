"""A report as a list of blocks (headings, paragraphs, bullet lists, tables, images), rendered two ways.

`Document.markdown()` gives the markdown report; `Document.html()` a self-contained page: images embedded as data
URIs, a table of contents of every section, tables sortable by a click on a column header (a few lines of inline
script), and a layout that reads at laptop width (tables scroll sideways inside their box instead of widening the
page). Inline markup in texts is markdown's `code`, *emphasis* and **strong**.
"""

from __future__ import annotations

import base64
import html
import re
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5rem 2rem 4rem; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
nav { background: #f5f5f7; padding: .6rem 1rem; border-radius: 6px; }
nav ol { margin: .2rem 0; padding-left: 1.4rem; columns: 2; }
.scroll { overflow-x: auto; margin: .8rem 0; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e5e5e5; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
td.label, th.label { text-align: left; }
td.text, th.text { text-align: left; white-space: normal; min-width: 16em; max-width: 26em; }
th { cursor: pointer; background: #fafafa; position: sticky; top: 0; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
tr:hover td { background: #f0f6ff; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; font-size: 90%; }
"""

SORT_SCRIPT = """
const value = cell => { const text = cell.textContent.trim();
  const number = text.match(/^[+-]?\\d+(\\.\\d+)?/);  // "40.8 ± 0.8", "-9.5 [-14.7, -4.1]", "7/53"
  return text === "" || text === "—" ? null : number ? parseFloat(number[0]) : text.toLowerCase(); };
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => {
  const body = th.closest("table").tBodies[0], col = th.cellIndex;
  const up = th.getAttribute("aria-sort") !== "ascending";
  th.closest("tr").querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", up ? "ascending" : "descending");
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = value(a.cells[col]), y = value(b.cells[col]);
    if (x === null || y === null) return (x === null) - (y === null);  // blanks last either way
    if (typeof x !== typeof y) return typeof x === "number" ? -1 : 1;
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
  rows.forEach(r => body.appendChild(r)); }));
"""


def inline_html(text: str) -> str:
    """Markdown's inline `code`, **strong** and *emphasis* as HTML; everything else escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        escaped = html.escape(part)
        escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
        out.append(re.sub(r"\*([^*]+)\*", r"<em>\1</em>", escaped))
    return "".join(out)


def _numeric(column: pd.Series) -> bool:
    """Whether a column reads as numbers ("40.8 ± 0.8", "-9.5 [-14.7, -4.1]", "7/53", "—"): right-aligned."""
    return all(re.match(r"^\s*([+-]?\d|—|nan$|$)", str(v)) for v in column)


def _column_class(column: pd.Series) -> str:
    """Numbers right-aligned (no class), short labels left-aligned, long texts left-aligned and wrapped."""
    if _numeric(column):
        return ""
    return ' class="text"' if column.astype(str).str.len().max() > 30 else ' class="label"'


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


@dataclass
class Document:
    """Blocks in order; `title` is the page's first heading."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def paragraph(self, text: str) -> None:
        if text.strip():
            self.blocks.append(("p", text.strip()))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, frame: pd.DataFrame) -> None:
        self.blocks.append(("table", frame))

    def image(self, path: Path | Future, alt: str) -> None:
        """An image file, or a Future of one (a plot still being drawn; None: no image), resolved by `ready`."""
        self.blocks.append(("img", path if isinstance(path, Future) else Path(path), alt))

    def ready(self) -> None:
        """Wait for the images still being drawn; leave out those that came to nothing."""
        blocks = []
        for block in self.blocks:
            if block[0] == "img" and isinstance(block[1], Future):
                path = block[1].result()
                if path is None:
                    continue
                block = ("img", Path(path), block[2])
            blocks.append(block)
        self.blocks = blocks

    def markdown(self) -> str:
        out = [f"# {self.title}"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                out.append(f"## {block[1]}")
            elif kind == "p":
                out.append(block[1])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in block[1]))
            elif kind == "table":
                out.append(block[1].to_markdown(index=False))
            else:
                out.append(f"![{block[2]}]({block[1].name})")
        return "\n\n".join(out) + "\n"

    def html(self) -> str:
        sections = [text for kind, text, *_ in self.blocks if kind == "h2"]
        toc = "".join(f'<li><a href="#{slug(s)}">{inline_html(s)}</a></li>' for s in sections)
        body = [f"<h1>{inline_html(self.title)}</h1>", f'<nav aria-label="contents"><strong>Contents</strong>'
                f"<ol>{toc}</ol></nav>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                body.append(f'<h2 id="{slug(block[1])}">{inline_html(block[1])}</h2>')
            elif kind == "p":
                body.append(f"<p>{inline_html(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{inline_html(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "table":
                frame = block[1]
                kinds = [_column_class(frame[c]) if i else "" for i, c in enumerate(frame.columns)]
                head = "".join(f"<th{k}>{inline_html(str(c))}</th>" for k, c in zip(kinds, frame.columns, strict=True))
                rows = "".join("<tr>" + "".join(f"<td{k}>{inline_html(str(v))}</td>"
                                                 for k, v in zip(kinds, row, strict=True)) + "</tr>"
                               for row in frame.itertuples(index=False))
                body.append(f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
            else:
                data = base64.b64encode(block[1].read_bytes()).decode()
                body.append(f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}"></p>')
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>"
                f"<body><main>{''.join(body)}</main><script>{SORT_SCRIPT}</script></body></html>\n")

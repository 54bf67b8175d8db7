"""A self-contained HTML document: headings, text, tables and PNG figures embedded as data URIs.

Nothing in the page refers to the network (no scripts, fonts or style sheets from elsewhere), so
it opens from disk, attaches to an e-mail and survives being copied; every figure is also
written beside it as a PNG file for slides and papers. All text is escaped.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DIGITS = 4  # how every metric is shown; tests compare table cells to sources at this precision
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.6em;overflow-wrap:anywhere}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em}table{border-collapse:collapse;margin:.6em 0;font-size:.85em;max-width:100%}
th,td{border:1px solid #ccc;padding:.2em .5em;overflow-wrap:anywhere}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap;overflow-wrap:normal}
th{background:#f3f3f3}tr.group td{background:#eef0f7}
img{max-width:100%;height:auto;margin:.4em 0}p.note{color:#666;font-size:.9em}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;font-size:.8em;white-space:pre-wrap;overflow-wrap:anywhere}
.scroll{overflow-x:auto}
"""

HUGE = 1e15  # from here the decimals are noise (floats 0.125 apart) and 1e300 in full is 301 digits: 1.0000e+300


def number(value: Any, digits: int = DIGITS) -> str:
    """A metric as the report shows it: fixed digits; NaN as 'n/a'; -0.0 as 0 (a sign on nothing
    reads as a negative result); past ``HUGE`` in exponent form, so one diverged loss does not
    widen its table past the page."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= HUGE:
        return f"{value:.{digits}e}"
    return f"{value + 0.0:.{digits}f}"  # + 0.0 turns -0.0 into 0.0 and leaves every other value as it is


SLUG_MAX = 100  # characters of a figure's file name before ".png": file systems refuse names past 255 bytes


def slug(text: str) -> str:
    """A file name from a figure's title: ASCII letters, digits, ``_.-`` only (no ``/``, so no
    path; no leading dot, so no hidden file), cut to ``SLUG_MAX``; titles that then coincide are
    told apart by :meth:`Document.figure`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:SLUG_MAX].strip("-.").lower() or "figure"


@dataclass
class Document:
    title: str
    parts: list[str] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)  # file name -> PNG bytes

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[Any]], table_id: str | None = None,
              group_rows: frozenset[int] = frozenset()) -> None:
        """Numbers right-aligned at ``DIGITS`` digits; ``table_id`` lets tests find a table; rows
        whose index is in ``group_rows`` are shaded (a group's summary line). Long text wraps
        inside its cell, so a table fits the page at common widths instead of being cut off."""
        ident = f' id="{html.escape(table_id)}"' if table_id else ""
        out = [f'<div class="scroll"><table{ident}><thead><tr>']
        out += [f"<th>{html.escape(str(h))}</th>" for h in header]
        out.append("</tr></thead><tbody>")
        for index, row in enumerate(rows):
            cells = []
            for cell in row:
                numeric = isinstance(cell, (int, float)) and not isinstance(cell, bool)
                cells.append(f'<td class="num">{number(cell)}</td>' if numeric else f"<td>{html.escape(str(cell))}</td>")
            out.append(('<tr class="group">' if index in group_rows else "<tr>") + "".join(cells) + "</tr>")
        out.append("</tbody></table></div>")
        self.parts.append("".join(out))

    def code(self, text: str, block_id: str | None = None) -> None:
        """Preformatted text (a recipe, a manifest), wrapped at the page's width."""
        ident = f' id="{html.escape(block_id)}"' if block_id else ""
        self.parts.append(f"<pre{ident}>{html.escape(text)}</pre>")

    def figure(self, name: str, png: bytes, caption: str = "") -> None:
        """Embed a PNG and keep it for writing beside the page as ``<name>.png``."""
        file = f"{slug(name)}.png"
        k = 2
        while file in self.figures:
            file, k = f"{slug(name)}-{k}.png", k + 1
        self.figures[file] = png
        data = base64.b64encode(png).decode("ascii")
        alt = html.escape(caption or name)
        self.parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}" data-file="{file}">'
                          + (f"<figcaption>{alt}</figcaption>" if caption else "") + "</figure>")

    def render(self) -> str:
        body = "\n".join(self.parts)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(self.title)}</h1>\n{body}\n</body></html>\n")

    def write(self, out: Path) -> list[Path]:
        """The page at ``out`` and its figures beside it in ``<stem>_figures/``; returns the files."""
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.render(), encoding="utf-8")
        written = [out]
        if self.figures:
            folder = out.parent / f"{out.stem}_figures"
            folder.mkdir(exist_ok=True)
            for file, png in self.figures.items():
                (folder / file).write_bytes(png)
                written.append(folder / file)
        return written

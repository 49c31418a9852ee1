"""A report as neutral blocks, rendered to Markdown (for pull requests) or to one HTML page.

The HTML is self-contained: styles inline, images as data URIs, no external link or asset,
so it opens offline; tables scroll sideways and images scale, so it reads on a phone.
Text may use `**bold**`, `*italic*` and `` `code` `` (the Markdown subset both renderers know).
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Block", "Bullets", "Heading", "Image", "Paragraph", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """Cells are inline text; a cell that reads `NO` is highlighted in HTML."""

    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Image:
    alt: str
    path: Path


Block = Heading | Paragraph | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], image_dir: str = "plots") -> str:
    """Markdown; images are linked relative to the report (`plots/<name>.png`)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            out.append("|" + "---|" * len(block.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        else:
            out += [f"![{block.alt}]({image_dir}/{block.path.name})", ""]
    return "\n".join(out).rstrip() + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*(.+?)\*")


def _inline(text: str) -> str:
    """Escape, then turn the Markdown subset into tags."""
    out, last = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[last : match.start()]))
        code, bold, italic = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<b>{_inline(bold)}</b>")
        else:
            out.append(f"<i>{_inline(italic)}</i>")
        last = match.end()
    out.append(html.escape(text[last:]))
    return "".join(out)


_STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;margin:1rem auto;max-width:75rem;
padding:0 .8rem;color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;font-size:.82rem}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:right;white-space:nowrap}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
td.text{text-align:left;white-space:normal;min-width:14rem}
img{max-width:100%;height:auto;display:block;margin:.5rem 0}figure{margin:0}
code{background:#f4f4f4;padding:0 .2rem}
.bad{color:#b00;font-weight:bold}
"""


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{_inline(h)}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        cells = []
        for cell in row:
            if cell == "NO":
                cells.append("<td class='bad'>NO</td>")
            elif len(cell) > 40:
                cells.append(f"<td class='text'>{_inline(cell)}</td>")
            else:
                cells.append(f"<td>{_inline(cell)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<div class='scroll'><table><tr>{head}</tr>{''.join(rows)}</table></div>"


def _data_uri(path: Path) -> str:
    kind = "svg+xml" if path.suffix == ".svg" else path.suffix.lstrip(".") or "png"
    return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def to_html(title: str, blocks: list[Block]) -> str:
    """One self-contained page; opens offline."""
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            out.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            out.append(_html_table(block))
        else:
            alt = html.escape(block.alt, quote=True)
            out.append(f'<figure><img alt="{alt}" src="{_data_uri(block.path)}"></figure>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"

"""Report pages shared by every rewardkit report (eval-rm, rl): blocks in, HTML and Markdown out.

A report is built once as a list of blocks (headings, paragraphs, tables, figures) and rendered to a self-contained
HTML page (plots embedded as base64 PNG), to Markdown with PNG files beside it, or to plain text for the terminal, so
the formats always say the same thing. Plots are matplotlib figures turned into PNG bytes by `png`.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------------ document blocks

@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # plain text; **bold** is rendered in both formats


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    text_columns: int = 1  # leading label columns, left-aligned; the rest are figures, right-aligned


@dataclass
class Figure:
    filename: str
    png: bytes
    title: str
    caption: str
    wide: bool = True  # narrow figures sit side by side in the HTML page


Block = Heading | Paragraph | Table | Figure


def fmt(value: Any, digits: int = 3) -> str:
    """A figure for a table cell: fixed digits, an em dash for a missing (undefined) value."""
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return f"{value:.{digits}f}"


def fmt_scale(value: float | None, signed: bool = False) -> str:
    """A figure in the model's reward units (margins, temperatures): 3 significant digits, any magnitude."""
    if value is None:
        return "—"
    return f"{value:+.3g}" if signed else f"{value:.3g}"


def fmt_ci(figures: dict, key: str = "accuracy", ci_key: str = "ci95") -> str:
    lo, hi = figures.get(ci_key) or (None, None)
    if lo is None:
        return fmt(figures.get(key))
    return f"{fmt(figures.get(key))} [{fmt(lo)}, {fmt(hi)}]"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "dataset"


# ------------------------------------------------------------------------------------------------------- plotting

def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # no mathtext: a dataset, subset or model named with "$" is drawn as written, and "$\\x$" cannot crash a report
    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
                         "axes.titlesize": 11, "figure.dpi": 100, "text.parse_math": False})
    return plt


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------------ rendering

def _inline_html(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text, quote=False))


def _markdown_text(text: str) -> str:
    """Text from data (dataset, subset and model names, prompts) as Markdown shows it: HTML characters escaped (a
    subset named <img onerror=...> is text, not markup), on one line (a newline would end a heading or a table row)."""
    return " ".join(html.escape(text, quote=False).split("\n"))


def render_markdown(title: str, subtitle: str, blocks: list[Block]) -> str:
    lines = [f"# {_markdown_text(title)}", "", _markdown_text(subtitle), ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + _markdown_text(block.text), ""]
        elif isinstance(block, Paragraph):
            lines += [_markdown_text(block.text), ""]
        elif isinstance(block, Table):
            escape = lambda cell: _markdown_text(cell).replace("\\", "\\\\").replace("|", "\\|")  # noqa: E731
            lines.append("| " + " | ".join(map(escape, block.header)) + " |")
            lines.append("|" + "|".join(["---"] * block.text_columns
                                        + ["---:"] * (len(block.header) - block.text_columns)) + "|")
            lines += ["| " + " | ".join(map(escape, row)) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            title = _markdown_text(block.title)
            lines += [f"### {title}", "", f"![{title}]({block.filename})", "", f"*{_markdown_text(block.caption)}*", ""]
    return "\n".join(lines)



def render_text(blocks: list[Block]) -> str:
    """Plain text for a terminal: headings, paragraphs and aligned tables (figures are left out)."""
    lines = []
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["", block.text]
        elif isinstance(block, Paragraph):
            lines += ["", block.text.replace("**", "")]
        elif isinstance(block, Table):
            widths = [max(len(cell) for cell in column) for column in zip(block.header, *block.rows)]
            for row in [block.header] + block.rows:
                cells = [c.ljust(w) if i < block.text_columns else c.rjust(w)
                         for i, (c, w) in enumerate(zip(row, widths))]
                lines.append("  ".join(cells).rstrip())
            lines.append("")
    return "\n".join(lines).strip("\n") + "\n"


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f7f9; line-height: 1.5; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 32px 48px; background: #fff; }
h1 { font-size: 26px; margin: 8px 0 4px; }
.subtitle { color: #555; margin: 0 0 18px; font-size: 14px; }
h2 { font-size: 20px; border-bottom: 2px solid #e3e6ea; padding-bottom: 4px; margin-top: 36px; }
h3 { font-size: 16px; margin: 24px 0 6px; }
p { margin: 8px 0 12px; max-width: 1000px; }
table { border-collapse: collapse; margin: 10px 0 18px; font-size: 13px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e3e6ea; text-align: right; white-space: nowrap; }
th { background: #eef1f5; font-weight: 600; }
th.l, td.l { text-align: left; }
tbody tr:nth-child(even) { background: #fafbfc; }
.table-wrap { overflow-x: auto; }
figure { margin: 14px 0 26px; }
figure img { max-width: 100%; border: 1px solid #e3e6ea; border-radius: 4px; }
figcaption { color: #333; font-size: 14px; max-width: 1000px; margin-top: 6px; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; align-items: start; }
.pair figure { margin-top: 14px; }
"""


def render_html(title: str, subtitle: str, blocks: list[Block]) -> str:
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="subtitle">{_inline_html(subtitle)}</p>']
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline_html(block.text)}</p>")
        elif isinstance(block, Table):
            def cell(tag: str, i: int, text: str) -> str:
                return f'<{tag}{" class=l" if i < block.text_columns else ""}>{html.escape(text)}</{tag}>'

            head = "".join(cell("th", i, h) for i, h in enumerate(block.header))
            rows = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>"
                           for row in block.rows)
            body.append(f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody>'
                        f"</table></div>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            figure = (f"<figure><h3>{html.escape(block.title)}</h3>"
                      f'<img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                      f"<figcaption>{_inline_html(block.caption)}</figcaption></figure>")
            if block.wide:
                body.append(figure)
            elif body and body[-1].startswith('<div class="pair">') and body[-1].count("<figure>") < 2:
                body[-1] = body[-1][:-len("</div>")] + figure + "</div>"
            else:
                body.append(f'<div class="pair">{figure}</div>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>'
            f"<body><main>{''.join(body)}</main></body></html>\n")


def _unique_filenames(blocks: list[Block]) -> list[Block]:
    """The blocks with every figure's file name made unique: two datasets whose names slug alike ("a b" and "a-b")
    would otherwise write one file, and report.md would show one dataset's plots for both."""
    taken: set[str] = set()
    unique: list[Block] = []
    for block in blocks:
        if isinstance(block, Figure):
            stem, dot, suffix = block.filename.rpartition(".")
            name, n = block.filename, 1
            while name in taken:
                n += 1
                name = f"{stem}-{n}{dot}{suffix}"
            taken.add(name)
            block = replace(block, filename=name)
        unique.append(block)
    return unique


def write_pages(directory: str | Path, title: str, subtitle: str, blocks: list[Block]) -> tuple[Path, Path]:
    """Write DIR/report.html (self-contained), DIR/report.md and the PNG files it references; return both paths.

    Shared by every rewardkit report (eval-rm, rl): build the blocks, then call this.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blocks = _unique_filenames(blocks)
    for block in blocks:
        if isinstance(block, Figure):
            (directory / block.filename).write_bytes(block.png)
    html_path, markdown_path = directory / "report.html", directory / "report.md"
    html_path.write_text(render_html(title, subtitle, blocks), encoding="utf-8")
    markdown_path.write_text(render_markdown(title, subtitle, blocks), encoding="utf-8")
    return html_path, markdown_path


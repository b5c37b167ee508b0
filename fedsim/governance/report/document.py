"""A report as blocks (headings, paragraphs, lists, tables, figures, warnings), rendered to Markdown and HTML.

Two kinds of text. Headings, table cells and captions are plain text, escaped by
each renderer. Paragraphs, list items and warnings are the report's own Markdown
(``**bold**`` and ```code```, nothing else), into which every string from the
log goes through ``user`` (or ``code``): names, settings, anything that a user
or a forger chose adds no structure, markup or link to either page.
"""

import base64
import html
import io
import math
import numbers
import re
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd

NA = "not available"
ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "[": "&#91;", "]": "&#93;", **{c: "\\" + c for c in "\\`*|~$@"}}
# Escaped in context: what makes GFM link a bare address, and an underscore that could open or close emphasis
# (one inside a word, as in max_epsilon, cannot).
CONTEXTUAL = re.compile(r"(?i)(?<=www)\.|:(?=//)|_(?![^\W_])|(?<![^\W_])_")
OPENING = re.compile(r"^\s*([#+=>-]|\d+(?=[.)]))")  # a block marker opening a line
INLINE = re.compile(r"\\(.)|\*\*|`|&(?:amp|lt|gt|#91|#93);")  # what ``_inline`` reads in the report's Markdown


def user(text) -> str:
    """``text`` (anything) as literal Markdown: one line, with every character that would be markup escaped
    (``& < > [ ]`` as entities), so it renders as written and adds no structure, markup or link."""
    text = "".join(ESCAPES.get(c, c) for c in " ".join(str(text).splitlines()))
    return CONTEXTUAL.sub(lambda m: "\\" + m.group(), text)


def _opening(line: str) -> str:
    """A paragraph's or item's Markdown, escaped where it would open another block (a heading, a list...)."""
    return OPENING.sub(lambda m: m.group(1) + "\\" if m.group(1)[0].isdigit() else "\\" + m.group(1), line)


def code(text) -> str:
    """``text`` as a ``code`` span when it can be one literally (printable, none of `` ` < > & [ ]``), else as
    ``user`` text."""
    text = str(text)
    return f"`{text}`" if text and text.isprintable() and not any(c in text for c in "`<>&[]") else user(text)


def known(value) -> str:
    """``value`` as ``user`` text, or "not available" for None."""
    return NA if value is None else user(value)


def number(value, fmt: str) -> str:
    """A number formatted with ``fmt``, or "not available" when it is missing or not finite."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    return format(value, fmt) if ok else NA


def span(values: pd.Series, fmt: str) -> str:
    """``min-max`` of the finite ``values``, formatted with ``fmt``; "not available" when there are none."""
    finite = values[values.map(math.isfinite).astype(bool)]
    return f"{finite.min():{fmt}}-{finite.max():{fmt}}" if len(finite) else NA


@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML."""

    title: str
    blocks: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h(self, text: str, level: int = 2):
        """A heading (plain text)."""
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        """A paragraph (the report's Markdown)."""
        self.blocks.append(("p", text))

    def items(self, lines: list[str]):
        """A bulleted list (each line the report's Markdown)."""
        self.blocks.append(("ul", lines))

    def warning(self, text: str, lines: list[str]):
        """A prominent warning: a paragraph and a list (the report's Markdown)."""
        self.blocks.append(("warning", text, lines))

    def table(self, frame: pd.DataFrame, empty: str = "none"):
        """A table (plain-text cells); ``empty`` is shown when it has no rows."""
        self.blocks.append(("table", frame, empty))

    def figure(self, name: str, fig, caption: str):
        """A matplotlib figure, kept as PNG, with its caption (plain text)."""
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.figures[name] = buffer.getvalue()
        self.blocks.append(("fig", name, caption))

    def markdown(self) -> str:
        """The report as Markdown (figures linked from ``figures/``)."""
        out = [f"# {user(self.title)}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + user(block[2]), ""]
            elif kind == "p":
                out += [_opening(block[1]), ""]
            elif kind == "ul":
                out += [f"- {_opening(line)}" for line in block[1]] + [""]
            elif kind == "warning":
                out += [f"> {_opening(block[1])}", ">"] + [f"> - {_opening(line)}" for line in block[2]] + [""]
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    out += [f"*{user(block[2])}*", ""]
                    continue
                cells = frame.astype(object).map(_cell)
                out.append("| " + " | ".join(user(c) for c in frame.columns) + " |")
                out.append("| " + " | ".join("---" for _ in frame.columns) + " |")
                out += ["| " + " | ".join(user(c) for c in row) + " |" for row in cells.itertuples(index=False)]
                out.append("")
            elif kind == "fig":
                out += [f"![{user(block[2])}](figures/{block[1]}.png)", "", f"*{user(block[2])}*", ""]
        return "\n".join(out)

    def html(self) -> str:
        """The report as one self-contained HTML page (figures embedded as base64 PNG)."""
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h{block[1]}>{e(block[2])}</h{block[1]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in block[1]) + "</ul>")
            elif kind == "warning":
                body.append(f'<div class="warning" role="alert"><p>{_inline(block[1])}</p><ul>'
                            + "".join(f"<li>{_inline(x)}</li>" for x in block[2]) + "</ul></div>")
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    body.append(f"<p><em>{e(block[2])}</em></p>")
                    continue
                head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
                rows = "".join("<tr>" + "".join(f"<td>{e(str(_cell(v)))}</td>" for v in row) + "</tr>"
                               for row in frame.astype(object).itertuples(index=False))
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "fig":
                data = base64.b64encode(self.figures[block[1]]).decode()
                body.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(block[2])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto}"
                 "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
                 "th{background:#f3f3f3}img{max-width:100%}figcaption{font-style:italic;color:#555}"
                 "code{background:#f3f3f3;padding:0 .2em}"
                 ".warning{border:3px solid #c0392b;background:#fdecea;padding:.2em 1em;margin:1em 0}")
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(self.title)}</title>'
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cell(value):
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return "" if math.isnan(value) else f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return value


def _inline(text: str) -> str:
    """HTML for a line of the report's Markdown: **bold**, `code` (literal inside), backslash escapes and the
    entities ``user`` writes; everything else escaped."""
    out, bold, in_code, pos = [], False, False, 0
    for match in INLINE.finditer(text):
        token = match.group()
        if in_code and token != "`":
            continue
        out.append(html.escape(text[pos:match.start()], quote=False))
        pos = match.end()
        if token == "`":
            out.append("</code>" if in_code else "<code>")
            in_code = not in_code
        elif token == "**":
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
        else:
            out.append(token if token.startswith("&") else html.escape(match.group(1), quote=False))
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out) + ("</code>" if in_code else "") + ("</strong>" if bold else "")

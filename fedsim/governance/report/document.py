"""A report as blocks (headings, paragraphs, lists, tables, figures), rendered to Markdown and to HTML."""

import base64
import html
import io
import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import pandas as pd


@dataclass
class Doc:
    """A report as blocks, rendered to Markdown and to HTML."""

    title: str
    blocks: list[tuple] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)

    def h(self, text: str, level: int = 2):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def items(self, lines: list[str]):
        self.blocks.append(("ul", lines))

    def table(self, frame: pd.DataFrame, empty: str = "none"):
        self.blocks.append(("table", frame, empty))

    def figure(self, name: str, fig, caption: str):
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.figures[name] = buffer.getvalue()
        self.blocks.append(("fig", name, caption))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += ["#" * block[1] + " " + block[2], ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {line}" for line in block[1]] + [""]
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    out += [f"*{block[2]}*", ""]
                    continue
                cells = frame.astype(object).map(_cell)
                out.append("| " + " | ".join(map(str, frame.columns)) + " |")
                out.append("| " + " | ".join("---" for _ in frame.columns) + " |")
                out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"
                        for row in cells.itertuples(index=False)]
                out.append("")
            elif kind == "fig":
                out += [f"![{block[2]}](figures/{block[1]}.png)", "", f"*{block[2]}*", ""]
        return "\n".join(out)

    def html(self) -> str:
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
            elif kind == "table":
                frame = block[1]
                if frame.empty:
                    body.append(f"<p><em>{e(block[2])}</em></p>")
                    continue
                head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
                rows = "".join("<tr>" + "".join(f"<td>{_inline(str(_cell(v)))}</td>" for v in row) + "</tr>"
                               for row in frame.astype(object).itertuples(index=False))
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif kind == "fig":
                data = base64.b64encode(self.figures[block[1]]).decode()
                body.append(f'<figure><img alt="{e(block[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(block[2])}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
                 "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.9em}"
                 "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
                 "th{background:#f3f3f3}img{max-width:100%}figcaption{font-style:italic;color:#555}"
                 "code{background:#f3f3f3;padding:0 .2em}")
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
    """HTML for a line of Markdown-ish text: escapes, then **bold** and `code`."""
    out = html.escape(text)
    for marker, tag in (("**", "strong"), ("`", "code")):
        parts = out.split(marker)
        if len(parts) > 2 and len(parts) % 2 == 1:
            out = "".join(f"<{tag}>{p}</{tag}>" if i % 2 else p for i, p in enumerate(parts))
    return out

"""One report per analysis run: ``report.md`` (tables of headline statistics, links to the PNGs) and a
self-contained ``report.html`` rendered from the same blocks (figures embedded as data URIs, no links out, so
the file opens from anywhere), both in out_dir."""
from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

# Characters that can start Markdown or HTML in running text: emphasis, code, links and images, raw HTML
# and entities, table cells, strikethrough, headings. CommonMark renders a backslash-escaped one as itself.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~#])")


def md_text(value: Any) -> str:
    """Text (a model name, a note) made inert in Markdown: one line, every special character escaped."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short text; None/NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return "–"
    if v != 0 and (abs(v) < 10 ** -digits or abs(v) >= 10 ** 5):
        return f"{v:.{digits}g}"
    return f"{v:.{digits}f}"


P_FLOOR, P_FLOOR_TEXT = 1e-4, "1e-4"
NBSP = "\u00a0"


def fmt_p(p: Any) -> str:
    """A p-value: three decimals, or '< 1e-4' below that (a test's p is never exactly 0; 0.000 reads as if it were)."""
    if p is None:
        return "–"
    v = float(p)
    if not math.isfinite(v):
        return "–"
    if v < P_FLOOR:
        return f"<{NBSP}{P_FLOOR_TEXT}"
    return f"{v:.4f}" if v < 1e-3 else f"{v:.3f}"


def fmt_ci(value: Any, lo: Any, hi: Any, digits: int = 3) -> str:
    """'value [lo, hi]' held together by non-breaking spaces, so a table never wraps an interval."""
    return f"{fmt(value, digits)}{NBSP}[{fmt(lo, digits)},{NBSP}{fmt(hi, digits)}]"


@dataclass
class Report:
    """An ordered list of blocks: ('h', level, text), ('p', text), ('table', headers, rows), ('img', path, caption)."""
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        cells = [[fmt(c) if not isinstance(c, str) else c for c in r] for r in rows]
        self.blocks.append(("table", list(headers), cells))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("img", Path(path), caption))

    def markdown(self, base: Path) -> str:
        """Every text is escaped (md_text): names and notes come from users and data, never markup."""
        t = md_text
        out = [f"# {t(self.title)}", ""]
        for b in self.blocks:
            if b[0] == "h":
                out += ["#" * b[1] + " " + t(b[2]), ""]
            elif b[0] == "p":
                out += [t(b[1]), ""]
            elif b[0] == "ul":
                out += [f"- {t(item)}" for item in b[1]] + [""]
            elif b[0] == "table":
                out.append("| " + " | ".join(t(h) for h in b[1]) + " |")
                out.append("|" + "---|" * len(b[1]))
                out += ["| " + " | ".join(t(c) for c in r) + " |" for r in b[2]]
                out.append("")
            elif b[0] == "img":
                out += [f"![{t(b[2])}]({quote(_rel(b[1], base), safe='/')})", "", f"*{t(b[2])}*", ""]
        return "\n".join(out)

    def html(self, base: Path) -> str:
        """The same blocks as one self-contained page: PNGs inlined as base64 data URIs, nothing fetched."""
        e = html.escape
        out = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>", f"<title>{e(self.title)}</title>",
               f"<style>{_CSS}</style></head><body>", f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{e(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{e(b[1])}</p>")
            elif b[0] == "ul":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif b[0] == "table":
                out.append("<div class='wide'><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
                out += ["<tr>" + "".join(_td(str(c)) for c in r) + "</tr>" for r in b[2]]
                out.append("</table></div>")
            elif b[0] == "img":
                out.append(f"<figure><img src='{_data_uri(b[1])}' alt='{e(b[2])}'>"
                           f"<figcaption>{e(b[2])}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, out_dir: Path) -> Path:
        """Write report.md and report.html into ``out_dir``; returns the Markdown path."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        md = out_dir / "report.md"
        md.write_text(self.markdown(out_dir), encoding="utf-8")
        (out_dir / "report.html").write_text(self.html(out_dir), encoding="utf-8")
        return md


def _rel(path: Path, base: Path) -> str:
    try:
        return Path(path).resolve().relative_to(Path(base).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


# Text cells left-aligned and free to wrap; numbers, intervals and p-values right-aligned and never wrapped.
# A table wider than the window scrolls sideways inside its own box instead of running off the page.
_CSS = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:0 1em;line-height:1.4}"
        "div.wide{overflow-x:auto;margin:0.5em 0 1em}table{border-collapse:collapse;font-size:0.85em}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left;vertical-align:top}"
        "th{background:#f2f2f2}td.num{text-align:right;white-space:nowrap}td.range{white-space:nowrap}"
        "figure{margin:1.5em 0}img{display:block;max-width:100%;height:auto}figcaption{font-size:0.95em;color:#333}")
_NUMBER = r"[-+−]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|–|<\s?1e-4"
_NUMERIC = re.compile(rf"(?:{_NUMBER})?\s*(?:\[(?:{_NUMBER}),\s*(?:{_NUMBER})[\])])?", re.IGNORECASE)


_RANGE = re.compile(rf"\[(?:{_NUMBER}),\s*(?:{_NUMBER})\)")


def _td(text: str) -> str:
    """Numbers and intervals of a statistic right-aligned, a bin's range '[a, b)' left like the words beside it."""
    t = text.strip()
    kind = "range" if _RANGE.fullmatch(t) else "num" if t and _NUMERIC.fullmatch(t) else ""
    return f"<td class='{kind}'>{html.escape(text)}</td>" if kind else f"<td>{html.escape(text)}</td>"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")

"""A report that opens offline in any browser: one HTML file, figures embedded as base64 PNG."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1rem 2rem; color: #222; }
nav a { margin-right: 1rem; }
section { border-top: 1px solid #ddd; padding-top: .5rem; margin-top: 1.5rem; }
table { border-collapse: collapse; font-size: .9rem; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
figure { display: inline-block; margin: .5rem; vertical-align: top; }
figcaption { font-size: .85rem; color: #555; max-width: 520px; }
.note { background: #fff8e1; padding: .5rem; border-left: 4px solid #f0c000; }
pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; font-size: .8rem; }
"""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    body: str  # HTML


def figure(path: str | Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    if not rows:
        return "<p>(none)</p>"
    columns = columns or list(rows[0])

    def cell(value) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paragraph(text: str, note: bool = False) -> str:
    return f"<p{' class=note' if note else ''}>{html.escape(text)}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def write_report(path: str | Path, title: str, sections: list[Section]) -> Path:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>{body}</body></html>
"""
    path = Path(path)
    path.write_text(page)
    return path

"""Server-rendered SVG charts for the statistics page.

Each chart is plain SVG with presentation attributes only (the content security policy
allows no inline style or script), ``role="img"`` with a title and a description, and
is always shown beside a table of the same numbers, which is the accessible version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

#: Distinguishable colours with at least 3:1 contrast on white (WCAG 1.4.11).
PALETTE = ("#1a5a96", "#b00020", "#2e7d32", "#6a1b9a", "#8a4b00", "#00695c", "#1a1a1a")
WIDTH = 720


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple[int, ...]


def bar_chart(chart_id: str, title: str, desc: str, items: Sequence[tuple[str, int]]) -> Markup:
    """Horizontal bars, one per (label, value), longest scale at the largest value."""
    row = 28
    height = 20 + row * max(len(items), 1)
    top = max((value for _, value in items), default=0) or 1
    parts = [_open(chart_id, title, desc, height)]
    for n, (label, value) in enumerate(items):
        y = 10 + n * row
        length = round(400 * value / top)
        parts.append(
            f'<text x="230" y="{y + 17}" text-anchor="end" font-size="13" fill="#1a1a1a">'
            f"{escape(_short(label, 32))}</text>"
            f'<rect x="240" y="{y + 4}" width="{max(length, 1)}" height="18" '
            f'fill="{PALETTE[0]}"></rect>'
            f'<text x="{246 + length}" y="{y + 17}" font-size="13" fill="#1a1a1a">{value}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def line_chart(
    chart_id: str, title: str, desc: str, labels: Sequence[str], series: Sequence[Series]
) -> Markup:
    """One line per series over the x ``labels`` (weeks), with a legend below."""
    plot_left, plot_top, plot_width, plot_height = 60, 20, WIDTH - 90, 200
    legend_rows = len(series)
    height = plot_top + plot_height + 40 + 20 * legend_rows
    top = max((v for s in series for v in s.values), default=0) or 1
    steps = max(len(labels) - 1, 1)

    def x(i: int) -> float:
        return round(plot_left + plot_width * i / steps, 1)

    def y(v: int) -> float:
        return round(plot_top + plot_height - plot_height * v / top, 1)

    bottom = plot_top + plot_height
    parts = [
        _open(chart_id, title, desc, height),
        f'<line x1="{plot_left}" y1="{bottom}" x2="{plot_left + plot_width}" y2="{bottom}" '
        'stroke="#1a1a1a"></line>',
        f'<line x1="{plot_left}" y1="{plot_top}" x2="{plot_left}" y2="{bottom}" '
        'stroke="#1a1a1a"></line>',
        f'<text x="{plot_left - 6}" y="{plot_top + 5}" text-anchor="end" font-size="12" '
        f'fill="#1a1a1a">{top}</text>',
        f'<text x="{plot_left - 6}" y="{bottom}" text-anchor="end" font-size="12" '
        'fill="#1a1a1a">0</text>',
    ]
    if labels:
        parts.append(
            f'<text x="{plot_left}" y="{bottom + 18}" font-size="12" fill="#1a1a1a">'
            f"{escape(labels[0])}</text>"
        )
        if len(labels) > 1:
            parts.append(
                f'<text x="{plot_left + plot_width}" y="{bottom + 18}" text-anchor="end" '
                f'font-size="12" fill="#1a1a1a">{escape(labels[-1])}</text>'
            )
    for n, s in enumerate(series):
        colour = PALETTE[n % len(PALETTE)]
        points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(s.values))
        dash = ' stroke-dasharray="6 4"' if n % 2 else ""
        parts.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}>'
            "</polyline>"
        )
        for i, v in enumerate(s.values):
            parts.append(f'<circle cx="{x(i)}" cy="{y(v)}" r="3" fill="{colour}"></circle>')
        ly = bottom + 40 + 20 * n
        parts.append(
            f'<line x1="{plot_left}" y1="{ly - 4}" x2="{plot_left + 24}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="3"{dash}></line>'
            f'<text x="{plot_left + 30}" y="{ly}" font-size="13" fill="#1a1a1a">'
            f"{escape(_short(s.name, 60))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text in it went through escape()


def _open(chart_id: str, title: str, desc: str, height: int) -> str:
    return (
        f'<svg role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>'
    )


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"

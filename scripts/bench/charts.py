"""Plain SVG charts for docs/performance.md: grouped bars with a spread, and lines.

No plotting library: a few dozen SVG elements render the same on GitHub, offline, in any
browser, and keep the benchmarks' dependencies to the project's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 340
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 40, 72
COLOURS = ("#2f6db5", "#e08a2c", "#4c9a52", "#b8423c", "#7a5aa6", "#6b6b6b")


@dataclass(frozen=True)
class Bar:
    """One bar: its median, and the lowest and highest round (the spread)."""

    value: float
    low: float | None = None
    high: float | None = None


def _scale_max(values: Sequence[float]) -> float:
    top = max([v for v in values if v == v] or [1.0])
    step = 10 ** len(str(int(top))) / 10 if top >= 1 else 0.1
    for factor in (1, 2, 2.5, 5, 10):
        if top <= step * factor * 1.0001:
            return step * factor if step * factor > 0 else 1.0
    return top


def _frame(title: str, unit: str, top: float) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<text x="14" y="{TOP + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 14 {TOP + plot_h / 2})">{escape(unit)}</text>',
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{value:g}</text>"
        )
    return parts


def bar_chart(
    title: str,
    unit: str,
    groups: Sequence[str],
    series: Sequence[str],
    bars: Sequence[Sequence[Bar | None]],
) -> str:
    """``bars[g][s]``: series ``s`` in group ``g``; whiskers from low to high."""
    everything = [
        x for row in bars for b in row if b for x in (b.value, b.high or b.value) if x is not None
    ]
    top = _scale_max(everything)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, unit, top)
    group_w = plot_w / max(1, len(groups))
    bar_w = group_w * 0.7 / max(1, len(series))

    def y(value: float) -> float:
        return TOP + plot_h - plot_h * min(value, top) / top

    for g, (group, row) in enumerate(zip(groups, bars, strict=True)):
        x0 = LEFT + g * group_w + group_w * 0.15
        for s, bar in enumerate(row):
            if bar is None:
                continue
            x = x0 + s * bar_w
            parts.append(
                f'<rect x="{x:.1f}" y="{y(bar.value):.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{TOP + plot_h - y(bar.value):.1f}" fill="{COLOURS[s % len(COLOURS)]}"/>'
            )
            parts.append(
                f'<text x="{x + bar_w * 0.46:.1f}" y="{y(bar.value) - 4:.1f}" '
                f'text-anchor="middle" font-size="10">{_number(bar.value)}</text>'
            )
            if bar.low is not None and bar.high is not None and bar.high > bar.low:
                cx = x + bar_w * 0.46
                parts.append(
                    f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(bar.low):.1f}" '
                    f'y2="{y(bar.high):.1f}" stroke="black"/>'
                )
        parts.append(
            f'<text x="{LEFT + (g + 0.5) * group_w:.1f}" y="{HEIGHT - BOTTOM + 16}" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
    parts += _legend(series)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def line_chart(
    title: str,
    unit: str,
    x_label: str,
    lines: Sequence[tuple[str, Sequence[tuple[float, float]]]],
) -> str:
    """Each line: its name and (x, y) points."""
    xs = [x for _, points in lines for x, _ in points] or [1.0]
    ys = [y for _, points in lines for _, y in points] or [1.0]
    top, right = _scale_max(ys), _scale_max(xs)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(title, unit, top)
    for i in range(5):
        value = right * i / 4
        x = LEFT + plot_w * i / 4
        parts.append(
            f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{value:g}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - BOTTOM + 32}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    for n, (_, points) in enumerate(lines):
        path = " ".join(
            f"{LEFT + plot_w * x / right:.1f},{TOP + plot_h - plot_h * y / top:.1f}"
            for x, y in points
        )
        parts.append(
            f'<polyline points="{path}" fill="none" stroke="{COLOURS[n % len(COLOURS)]}" '
            f'stroke-width="2"/>'
        )
    parts += _legend([name for name, _ in lines])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = LEFT
    for n, name in enumerate(names):
        y = HEIGHT - 10
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{COLOURS[n % len(COLOURS)]}"/>'
            f'<text x="{x + 14}" y="{y}">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return parts

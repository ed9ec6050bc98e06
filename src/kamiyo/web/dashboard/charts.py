"""Charts drawn on the server as inline SVG: no chart library and no script (the pages' CSP
allows none inline), readable by screen readers (``<title>``, ``<desc>``, a title per bar) and
always next to a table with the same numbers.

Built with ``xml.etree`` so every text is escaped; colours are presentation attributes, which
the CSP's ``style-src 'self'`` does not govern.
"""

import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence

from markupsafe import Markup

# Colour-blind-safe (Okabe-Ito) for the three groups, in stacking order, bottom first.
COLOURS = {"ok": "#009e73", "refused": "#e69f00", "error": "#d55e00"}
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 12, 36  # room for the axis labels


def _nice_top(peak: int) -> int:
    """A round number at or above ``peak`` for the value axis (1, 2, 5, 10, 20, 50, ...)."""
    magnitude = 1
    while True:
        for multiple in (1, 2, 5):
            if multiple * magnitude >= peak:
                return multiple * magnitude
        magnitude *= 10


def stacked_days(
    chart_id: str,
    title: str,
    days: Sequence[dt.date],
    counts: Mapping[dt.date, Mapping[str, int]],
) -> Markup:
    """A bar per day in ``days``, stacked by group (``COLOURS``'s keys) from ``counts``."""
    totals = [sum(counts.get(day, {}).values()) for day in days]
    top = _nice_top(max(totals, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "role": "img",
            "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
            "class": "chart",
            "id": chart_id,
        },
    )
    ET.SubElement(svg, "title", {"id": f"{chart_id}-title"}).text = title
    busiest = max(range(len(days)), key=lambda i: totals[i]) if days else None
    summary = f"{sum(totals)} calls from {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}" if days else ""
    if busiest is not None and totals[busiest]:
        summary += f"; the busiest day was {days[busiest]:%Y-%m-%d} with {totals[busiest]} calls"
    ET.SubElement(svg, "desc", {"id": f"{chart_id}-desc"}).text = summary + "."
    for value in sorted({0, top // 2, top}):  # value axis: three gridlines with their labels
        y = TOP + plot_h - plot_h * value / top
        ET.SubElement(
            svg,
            "line",
            {"x1": str(LEFT), "x2": str(WIDTH - RIGHT), "y1": f"{y:.1f}", "y2": f"{y:.1f}"},
            stroke="#c8c8c8",
        )
        label = ET.SubElement(
            svg, "text", {"x": str(LEFT - 6), "y": f"{y + 4:.1f}", "text-anchor": "end"}
        )
        label.text = str(value)
        label.set("font-size", "11")
    for index, day in enumerate(days):
        group = ET.SubElement(svg, "g", {"class": "day", "data-day": day.isoformat()})
        x = LEFT + index * slot + slot * 0.15
        base = float(TOP + plot_h)
        for name, colour in COLOURS.items():
            calls = counts.get(day, {}).get(name, 0)
            if not calls:
                continue
            height = plot_h * calls / top
            base -= height
            bar = ET.SubElement(
                group,
                "rect",
                {
                    "class": "bar",
                    "data-status": name,
                    "x": f"{x:.1f}",
                    "y": f"{base:.1f}",
                    "width": f"{slot * 0.7:.1f}",
                    "height": f"{height:.1f}",
                    "fill": colour,
                },
            )
            ET.SubElement(bar, "title").text = f"{day:%Y-%m-%d}: {calls} {name}"
        if (len(days) - 1 - index) % 7 == 0:  # today's date, and a date a week before it
            label = ET.SubElement(
                svg,
                "text",
                {"x": f"{x + slot * 0.35:.1f}", "y": str(HEIGHT - 14), "text-anchor": "middle"},
            )
            label.text = f"{day:%m-%d}"
            label.set("font-size", "11")
    return Markup(ET.tostring(svg, encoding="unicode"))  # noqa: S704 (built by ElementTree)

"""The two pictures operators look at, drawn with matplotlib (a tool of the command line, never
shipped to Lambda): the stability plot of a time series, and the production counter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

BAND_COLOURS = {
    "B2": "#1f5fd6", "B3": "#2a9d3a", "B4": "#d62a2a", "B5": "#b5524c", "B6": "#9c4f8f",
    "B7": "#7b4fb0", "B8": "#6b3d1f", "B8A": "#a8662e", "B11": "#6f6f6f", "B12": "#2b2b2b",
}  # fmt: skip
PLATFORM_COLOURS = {"sentinel-2a": "#3b7dd8", "sentinel-2b": "#62b0f0", "sentinel-2c": "#1b4f9c",
                    "landsat-8": "#e08a2c"}  # fmt: skip


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def stability_plot(document: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """Reflectance against time, one colour per band, clear dates filled and cloudy dates
    hollow; the aerosol optical thickness below (`document`: the time series JSON)."""
    plt = _pyplot()
    observations = document["observations"]
    when = [datetime.fromisoformat(o["datetime"].replace("Z", "+00:00")) for o in observations]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    for band in document["bands"]:
        colour = BAND_COLOURS.get(band, "black")
        points = [
            (t, o["reflectance"].get(band), o["clear"])
            for t, o in zip(when, observations, strict=True)
        ]
        kept = [(t, v, c) for t, v, c in points if v is not None]
        clear_line = [(t, v) for t, v, c in kept if c]  # the line joins the clear dates
        top.plot([t for t, _ in clear_line], [v for _, v in clear_line], color=colour, lw=0.8)
        for clear in (True, False):
            part = [(t, v) for t, v, c in kept if c is clear]
            top.scatter(
                [t for t, _ in part], [v for _, v in part], s=22, label=band if clear else None,
                facecolors=colour if clear else "none", edgecolors=colour, linewidths=1.2,
            )  # fmt: skip
    top.set_ylabel("surface reflectance")
    top.legend(ncol=len(document["bands"]), fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    aot = [
        (t, o["aot"], o["clear"])
        for t, o in zip(when, observations, strict=True)
        if o["aot"] is not None
    ]
    clear_aot = [(t, a) for t, a, c in aot if c]
    bottom.plot([t for t, _ in clear_aot], [a for _, a in clear_aot], color="#555", lw=0.8)
    for clear in (True, False):
        part = [(t, a) for t, a, c in aot if c is clear]
        bottom.scatter(
            [t for t, _ in part], [a for _, a in part], s=16,
            facecolors="#555" if clear else "none", edgecolors="#555",
        )  # fmt: skip
    bottom.set_ylabel("AOT")
    bottom.grid(alpha=0.3)
    top.set_title(title or "Surface reflectance (filled: clear, hollow: cloudy)")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def production_plot(document: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """Daily bars of products acquired per platform (over 90 % cloud left out, stacked) and
    a line for each month's average of daily counts."""
    plt = _pyplot()
    days = [date.fromisoformat(d["date"]) for d in document["days"]]
    platforms = sorted({p for d in document["days"] for p in d["acquired"]})
    figure, axes = plt.subplots(figsize=(10, 4.5))
    base = [0] * len(days)
    for platform in platforms:
        values = [d["acquired"].get(platform, 0) for d in document["days"]]
        axes.bar(days, values, bottom=base, width=0.9, label=platform,
                 color=PLATFORM_COLOURS.get(platform))  # fmt: skip
        base = [b + v for b, v in zip(base, values, strict=True)]
    for month in document["monthly"]:
        inside = [d for d in days if d.isoformat().startswith(month["month"])]
        axes.plot([inside[0], inside[-1]], [month["daily_average"]] * 2, color="black", lw=2,
                  label="monthly average" if month is document["monthly"][0] else None)  # fmt: skip
    axes.set_ylabel("products a day (≤ 90 % cloud)")
    axes.legend(fontsize=8, loc="upper left")
    axes.set_title(title or f"Products acquired, {document['from']} to {document['to']}")
    axes.grid(alpha=0.3, axis="y")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def series_table(document: Mapping[str, Any]) -> Sequence[str]:
    """The time series as lines of text for a terminal."""
    bands = document["bands"]
    lines = [
        "datetime              platform     clear "
        + " ".join(f"{b:>7}" for b in bands)
        + "     AOT  product"
    ]
    for o in document["observations"]:
        values = " ".join(
            f"{o['reflectance'][b]:7.4f}" if o["reflectance"].get(b) is not None else "      -"
            for b in bands
        )
        aot = f"{o['aot']:7.3f}" if o["aot"] is not None else "      -"
        lines.append(f"{o['datetime'][:19]:21} {o['platform']:12} {'yes' if o['clear'] else 'no':5} "
                     f"{values} {aot}  {o['product']}")  # fmt: skip
    return lines


def season_plot(document: Mapping[str, Any], path: Path, title: str = "") -> Path:
    """The snow-covered share per day of a season: the gap-filled curve, and the observed
    share on each observation day (Sentinel-2 dots, Landsat-8 squares; size by how clear the
    area was that day). `document`: the season curve JSON (`processing.season_curve`)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(10, 4))
    days = [date.fromisoformat(d["date"]) for d in document["daily"]]
    axes.plot(days, [d["snow"] for d in document["daily"]], color="#1f5fd6", lw=1.4,
              label="gap-filled (daily)")  # fmt: skip
    for sensor, marker, colour in (("sentinel-2", "o", "#3b7dd8"), ("landsat-8", "s", "#e08a2c")):
        seen = [
            o for o in document["observations"]
            if o["snow"] is not None and any(p.startswith(sensor) for p in o["platforms"])
        ]  # fmt: skip
        axes.scatter(
            [date.fromisoformat(o["date"]) for o in seen], [o["snow"] for o in seen],
            s=[8 + 40 * o["clear"] for o in seen], marker=marker, color=colour,
            edgecolors="black", linewidths=0.4, label=f"{sensor} (observed, clear part)",
        )  # fmt: skip
    axes.axvspan(date.fromisoformat(document["start"]), date.fromisoformat(document["end"]),
                 color="#eef3fb", zorder=0)  # fmt: skip
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("snow-covered share")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper right")
    axes.set_title(title or "Snow season")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path

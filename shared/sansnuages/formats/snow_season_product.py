"""The snow-season product: its five layers, as the Item, the viewer and the COGs describe them.

One definition of each layer (data type, no data, title, description, unit, colour map, the
resampling of its overviews), so that the writer, the Item builder and the legend agree. The
values follow FORMATS.md section 3 and `processing.snow_season` (whose `NODATA` a test holds
equal to the no data here; this folder may not import `processing/`).

Let-It-Snow's first annual map had two layers, SNOW_OCCURENCE (the snow cover duration: SCD
here) and CLOUD_OCCURENCE. SOD, SMOD, NOBS and NSP are additions: onset and melt of the main
snow period, the clear observations behind each pixel (what CLOUD_OCCURENCE hinted at, counted
directly), and the number of snow periods. The COGs carry no colour table: the scale is the
colour map named here, which the previews and the web map tiles apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from sansnuages.formats.colour_maps import OBSERVATIONS, PERIODS, SNOW_DAYS, ColourMap

DAYS_NODATA = 65535
NSP_NODATA = 255


@dataclass(frozen=True)
class SeasonLayer:
    name: str
    dtype: str
    nodata: int | None
    title: str
    description: str
    unit: str
    colour_map: ColourMap
    overview_resampling: str
    """AVERAGE for quantities whose mean means something at a coarser scale (durations,
    counts of observations); NEAREST for days of the year and small counts, as for dates."""
    addition: bool
    """Not in Let-It-Snow's first annual map (SNOW_OCCURENCE and CLOUD_OCCURENCE only)."""


_NEVER_CLEAR = "No data where the pixel was never seen clear during the season and its margins."
_DATED = (
    "Only where that period lasts more than 10 days, and the pixel was seen clear at least "
    "once; no data elsewhere."
)

LAYERS: dict[str, SeasonLayer] = {
    layer.name: layer
    for layer in (
        SeasonLayer(
            "SCD",
            "uint16",
            DAYS_NODATA,
            "Snow cover duration",
            "Days of the hydrological year (1 September to 31 August) that are snow-covered in "
            "the gap-filled daily series: clear observations of Sentinel-2 and Landsat-8 fused "
            "per day, interpolated linearly to daily steps over cloudy and missing days, "
            "thresholded at one half (Let-It-Snow's SNOW_OCCURENCE). " + _NEVER_CLEAR,
            "days",
            SNOW_DAYS,
            "AVERAGE",
            addition=False,
        ),
        SeasonLayer(
            "SOD",
            "uint16",
            DAYS_NODATA,
            "Snow onset date",
            "First day of the longest snow period of the year (the earliest of equals), in "
            "days since 1 September. " + _DATED,
            "days since 1 September",
            SNOW_DAYS,
            "NEAREST",
            addition=True,
        ),
        SeasonLayer(
            "SMOD",
            "uint16",
            DAYS_NODATA,
            "Snow melt-out date",
            "Last day of the longest snow period of the year, in days since 1 September. " + _DATED,
            "days since 1 September",
            SNOW_DAYS,
            "NEAREST",
            addition=True,
        ),
        SeasonLayer(
            "NOBS",
            "uint16",
            None,
            "Clear observations",
            "Days with a clear observation (snow or no snow) after the same-day fusion, the "
            "15-day margins included: how much the gap filling had to go on. 0 means never "
            "seen clear, so the layer has no no-data value.",
            "observations",
            OBSERVATIONS,
            "AVERAGE",
            addition=True,
        ),
        SeasonLayer(
            "NSP",
            "uint8",
            NSP_NODATA,
            "Snow periods",
            "Number of snow periods (runs of snow days) in the year's gap-filled daily series, "
            "one already under way on 1 September included. " + _NEVER_CLEAR,
            "periods",
            PERIODS,
            "NEAREST",
            addition=True,
        ),
    )
}

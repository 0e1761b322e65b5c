"""Rebuilding a month's mosaic on another grid or with another codec (the `mosaic` command)."""

from __future__ import annotations

from rasterio.crs import CRS
from rasterio.errors import CRSError

from sansnuages import areas
from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.period import SynthesisPeriod
from sansnuages.processing.mosaic import DEFAULT_CODEC, codec_named
from sansnuages.stages.mosaic import Mosaicker
from sansnuages.stores.jobs import job_id_for


def rebuild_mosaic(
    mosaicker: Mosaicker,
    month: str,
    area_spec: str,
    resolution: float | None = None,
    crs: str | None = None,
    codec: str | None = None,
) -> str | None:
    """Mosaic a month's job over an area again, on another grid or with another codec.

    The job must exist (its syntheses are the inputs); bad options are refused before any
    work, so a finished job is not marked failed by a typo. Returns the main Item's key.
    """
    period = SynthesisPeriod.parse(month)
    area = areas.area_geometry(area_spec)
    codec_named(codec or DEFAULT_CODEC)
    if crs is not None:
        try:
            CRS.from_user_input(crs)
        except CRSError as error:
            raise InvalidRequest(f"unknown CRS {crs!r}") from error
    if resolution is not None and resolution <= 0:
        raise InvalidRequest(f"resolution must be positive, got {resolution}")
    job = mosaicker.jobs.get(job_id_for(period.label, area.id))
    if job is None:
        raise NoInputs(
            f"no job of {period.label} over {area.name}: "
            f"run `sansnuages month {period.label} --area ...` first"
        )
    key = mosaicker.run(job.job_id, resolution, crs, codec)
    if key is None and not mosaicker.fan_out:
        failed = mosaicker.jobs.get(job.job_id)
        raise NoInputs(f"the mosaic failed: {failed.reason if failed else 'job gone'}")
    return key

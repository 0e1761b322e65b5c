"""The fan-in stage: the month's L3A tiles of a job, mosaicked over its area, described, recorded."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import rasterio
from aws_lambda_powertools import Logger
from shapely.geometry import mapping

from . import areas, grid, stac_items, storage
from .catalog import Catalog
from .composite import L3A_COLLECTION, _ref
from .errors import NoInputs
from .jobs import JobState, JobStore
from .mosaic import MosaicInput, build_mosaic, write_preview_png
from .period import SynthesisPeriod
from .publish import publish_item
from .settings import Settings
from .storage import DataBucket

logger = Logger(child=True)

MOSAIC_COLLECTION = "mosaics"
DEFAULT_CRS = "EPSG:3035"


def mosaic_id(area_id: str, period: SynthesisPeriod) -> str:
    return f"mosaic-{area_id}-{period.label}"


def mosaic_input(item: dict[str, Any]) -> MosaicInput:
    tile = stac_items.tile_of(item) or ""
    centre = grid.tile(tile).centre_lonlat
    return MosaicInput(
        tile=tile,
        red=_ref(item, "FRC_B4"),
        green=_ref(item, "FRC_B3"),
        blue=_ref(item, "FRC_B2"),
        flags=_ref(item, "FLG_R1") if "FLG_R1" in item["assets"] else None,
        centre_lonlat=(float(centre[0]), float(centre[1])),
    )


def l3a_items(
    catalog: Catalog, period: SynthesisPeriod, bounds: tuple[float, ...]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = catalog.search(
            collections=[L3A_COLLECTION],
            bbox=bounds,
            datetime_range=(period.centre_datetime, period.centre_datetime),
            ids=None,
            limit=500,
            token=token,
        )
        items.extend(page.items)
        token = page.next_token
        if not token:
            return items


@dataclass
class Mosaicker:
    settings: Settings
    bucket: DataBucket
    catalog: Catalog
    jobs: JobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> Mosaicker:
        return cls(
            settings,
            DataBucket(settings),
            Catalog(settings.catalog_table, settings=settings),
            JobStore(settings),
        )

    def run(self, job_id: str, resolution: float | None = None) -> str | None:
        job = self.jobs.get(job_id)
        if job is None:
            raise NoInputs(f"unknown job {job_id}")
        if job.state == JobState.DONE and job.mosaic_item:
            return job.mosaic_item
        try:
            item_key = self.build(job.area, SynthesisPeriod.parse(job.month), job_id, resolution)
        except NoInputs as error:
            self.jobs.finish(job_id, JobState.FAILED, reason=str(error))
            logger.warning("mosaic failed", extra={"job": job_id, "reason": str(error)})
            return None
        self.jobs.finish(job_id, JobState.DONE, item=item_key)
        return item_key

    def build(
        self, area_spec: str, period: SynthesisPeriod, job_id: str, resolution: float | None
    ) -> str:
        area = areas.area_geometry(area_spec)
        items = [
            i
            for i in l3a_items(self.catalog, period, area.geometry.bounds)
            if i["properties"].get("sansnuages:job", job_id) == job_id
        ]
        if not items:
            raise NoInputs(f"no synthesis of {period.label} over {area.name}")
        resolution = resolution or max(
            10.0, max(abs(i["assets"]["FRC_B4"]["proj:transform"][0]) for i in items)
        )
        prefix = storage.mosaic_prefix(area.id, period.year, period.month)
        product_id = mosaic_id(area.id, period)
        cog_key, png_key = f"{prefix}{product_id}.tif", f"{prefix}{product_id}.png"
        with rasterio.Env(**self.settings.gdal_options()):
            result = build_mosaic(
                [mosaic_input(i) for i in items],
                area.geometry,
                storage.vsi_path(self.bucket.name, cog_key),
                crs=DEFAULT_CRS,
                resolution=resolution,
            )
            with tempfile.TemporaryDirectory() as folder:
                png = Path(folder) / "preview.png"
                write_preview_png(storage.vsi_path(self.bucket.name, cog_key), str(png))
                self.bucket.put_bytes(png_key, png.read_bytes(), "image/png")
        item = self._item(
            area, period, product_id, prefix, items, result, cog_key, png_key, resolution
        )
        item_key = f"{prefix}{product_id}.json"
        publish_item(self.bucket, self.catalog, item, item_key)
        logger.info("mosaic written", extra={"job": job_id, "item": item_key, "tiles": len(items)})
        return item_key

    def _item(
        self,
        area: areas.Area,
        period: SynthesisPeriod,
        product_id: str,
        prefix: str,
        items: list[dict[str, Any]],
        result: Any,
        cog_key: str,
        png_key: str,
        resolution: float,
    ) -> pystac.Item:
        epsg = int(result.crs.split(":")[1])
        left, bottom, right, top = result.bounds
        visual = stac_items.RasterAsset(
            key="visual",
            href=storage.s3_href(self.bucket.name, cog_key),
            title="True colour (B4, B3, B2)",
            roles=("visual", "data"),
            shape=tuple(result.shape),
            transform=(resolution, 0.0, left, 0.0, -resolution, top),
            epsg=epsg,
            data_type="uint8",
            nodata=0,
            scales=(None, None, None),
            size_bytes=self.bucket.size(cog_key),
        )
        preview = stac_items.FileAsset(
            "thumbnail",
            storage.s3_href(self.bucket.name, png_key),
            "image/png",
            ("thumbnail",),
            "Preview",
        )
        facts = stac_items.ItemFacts(
            id=product_id,
            collection=MOSAIC_COLLECTION,
            geometry=mapping(area.geometry.simplify(0.01, preserve_topology=True)),
            bbox=list(area.geometry.bounds),
            datetime=period.centre_datetime,
            start=period.start,
            end=period.end,
            properties={
                "sansnuages:area": area.name,
                "sansnuages:area_id": area.id,
                "sansnuages:tiles": sorted(stac_items.tile_of(i) or "" for i in items),
                "sansnuages:valid_fraction": round(float(result.valid_fraction), 4),
            },
        )
        derived = [
            i["assets"]["FRC_B4"]["href"].rsplit("/", 1)[0] + f"/{i['id']}.json" for i in items
        ]
        return stac_items.build_item(facts, [visual], [preview], derived_from=derived)

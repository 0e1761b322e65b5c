"""One tile of a snow-season job: gather its snow maps, make the season, describe, record.

The composite stage calls this for a tile task whose period is a hydrological year; the fan-in,
the retries and the sweeper are the monthly jobs' own. The snow maps' Items are adapted here
into the season's inputs, so the season knows nothing of STAC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import rasterio
from aws_lambda_powertools import Logger

from sansnuages import layout
from sansnuages.errors import NoInputs
from sansnuages.formats.snow_season_product import LAYERS
from sansnuages.period import HydrologicalYear
from sansnuages.processing.season_curve import curve_document
from sansnuages.processing.season_inputs import season_grid, snow_map_input
from sansnuages.processing.snow_season import FRACTION_SNOW_FROM
from sansnuages.processing.snow_season_tile import SEASON_GDAL_OPTIONS, preview_png, season_tile
from sansnuages.processing.synthesis import OutputGrid
from sansnuages.settings import Settings
from sansnuages.stac.collections import SNOW_SEASONS
from sansnuages.stac.common import FileAsset, RasterAsset, Source
from sansnuages.stac.snow_season import SeasonRun, season_item
from sansnuages.stages.publish import publish_item, retire_older_versions
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.seasons import CURVE_ASSET, snow_items
from sansnuages.stores.usage import Meter

logger = Logger(child=True)


def season_product_id(tile: str, year: HydrologicalYear, version: int) -> str:
    """`SNOW-SEASON_T31TCH_20170901_20180831_V1-0`: Let-It-Snow's tile and dates, and the run."""
    return f"SNOW-SEASON_T{tile}_{year.tag}_V1-{version}"


@dataclass
class TileSeason:
    settings: Settings
    bucket: DataBucket
    catalog: Catalog

    def make(
        self,
        job_id: str,
        tile: str,
        year: HydrologicalYear,
        version: int,
        meter: Meter | None = None,
    ) -> str:
        """Make the tile's season (run `version`) and record it; returns the Item key.

        Idempotent: a retry that finds the Item file (written last of the files) finishes
        what follows it, indexing and retiring older runs."""
        items = snow_items(self.catalog, tile, year)
        if not items:
            raise NoInputs(f"no snow map of tile {tile} in the season {year.label}")
        product_id = season_product_id(tile, year, version)
        prefix = layout.season_prefix(tile, year.year, product_id)
        item_key = f"{prefix}{product_id}.json"
        written = self.bucket.get_json_or_none(item_key)
        if written is None:
            sizes = self._make(job_id, tile, year, version, items, product_id, prefix, item_key)
            if meter is not None:
                meter.add_gdal(items, sizes)
        else:
            self.catalog.put_item(written)
        retire_older_versions(self.catalog, SNOW_SEASONS, year.start_datetime, tile, version)
        return item_key

    def _make(
        self,
        job_id: str,
        tile: str,
        year: HydrologicalYear,
        version: int,
        items: list[dict[str, Any]],
        product_id: str,
        prefix: str,
        item_key: str,
    ) -> list[int]:
        """Make and publish the season; the sizes of the rasters written."""
        grid_ = season_grid(tile, items)
        outputs = {name: self._path(prefix, product_id, name) for name in LAYERS}
        with rasterio.Env(**SEASON_GDAL_OPTIONS):
            summary = season_tile([snow_map_input(i) for i in items], year, grid_, outputs)
            files = self._previews(prefix, product_id, outputs)
        files.append(self._curve(prefix, product_id, curve_document({"tile": tile}, year, summary)))
        used = set(summary.used)
        inputs = [i for i in items if i["id"] in used]
        run = SeasonRun(
            product_id=product_id,
            tile=tile,
            year=year,
            job_id=job_id,
            version=version,
            sentinel2_observations=summary.sentinel2_observations,
            landsat8_observations=summary.landsat8_observations,
            snow_from=FRACTION_SNOW_FROM,
            pixels=summary.pixels,
        )
        rasters = [self._asset(name, prefix, product_id, grid_) for name in LAYERS]
        derived = [Source.of(layout.item_href(self.bucket.name, i), i) for i in inputs]
        item = season_item(run, inputs or items, derived, rasters, files)
        publish_item(self.bucket, self.catalog, item, item_key)
        checkpoint("season.after-publish")
        logger.info(
            "season made",
            extra={"tile": tile, "season": year.label, "inputs": len(inputs), "id": product_id},
        )
        return [raster.size_bytes or 0 for raster in rasters]

    def _previews(
        self, prefix: str, product_id: str, outputs: Mapping[str, str]
    ) -> list[FileAsset]:
        """A PNG preview of each layer, coloured as its legend says."""
        files = []
        for name, path in outputs.items():
            key = f"{prefix}{product_id}_{name}_preview.png"
            self.bucket.put_bytes(key, preview_png(path, name), "image/png")
            roles = ("thumbnail", "overview") if name == "SCD" else ("overview",)
            files.append(
                FileAsset(
                    "thumbnail" if name == "SCD" else f"{name}_preview",
                    layout.s3_href(self.bucket.name, key),
                    "image/png",
                    roles,
                    f"{LAYERS[name].title}, preview",
                )
            )
        return files

    def _curve(self, prefix: str, product_id: str, document: dict[str, Any]) -> FileAsset:
        key = f"{prefix}{product_id}_curve.json"
        body = json.dumps(document, separators=(",", ":")).encode()
        self.bucket.put_bytes(key, body, "application/json")
        return FileAsset(
            CURVE_ASSET,
            layout.s3_href(self.bucket.name, key),
            "application/json",
            ("metadata",),
            "Snow-covered share of the tile per day, gap-filled and observed",
            size_bytes=len(body),
        )

    def _path(self, prefix: str, product_id: str, name: str) -> str:
        return layout.vsi_path(self.bucket.name, f"{prefix}{product_id}_{name}.tif")

    def _asset(self, name: str, prefix: str, product_id: str, grid_: OutputGrid) -> RasterAsset:
        key = f"{prefix}{product_id}_{name}.tif"
        layer = LAYERS[name]
        return RasterAsset(
            key=name,
            href=layout.s3_href(self.bucket.name, key),
            title=layer.title,
            roles=("data",),
            shape=(grid_.height, grid_.width),
            transform=tuple(grid_.transform)[:6],
            epsg=int(grid_.crs.split(":")[1]),
            data_type=layer.dtype,
            nodata=layer.nodata,
            size_bytes=self.bucket.size(key),
        )

"""What a mosaic leaves: its preview, the description of its rasters, its Item published."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from rasterio.crs import CRS

from sansnuages import layout
from sansnuages.processing.mosaic import (
    write_preview_png,
)
from sansnuages.processing.mosaic_plan import (
    TRUE_COLOUR_PRODUCT,
    PieceSpec,
)
from sansnuages.stac.common import FileAsset, RasterAsset
from sansnuages.stac.mosaic import MosaicPiece, mosaic_item
from sansnuages.stages.publish import publish_item
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog

logger = Logger(child=True)


@dataclass
class MosaicOutputs:
    """Writes the outputs shared by a single-COG mosaic and an assembled one."""

    bucket: DataBucket
    catalog: Catalog

    def thumbnail(self, spec: PieceSpec, cog_key: str) -> str:
        png_key = f"{spec.prefix}{spec.product_id}.png"
        with tempfile.TemporaryDirectory() as folder:
            png = Path(folder) / "preview.png"
            write_preview_png(
                layout.vsi_path(self.bucket.name, cog_key),
                str(png),
                colour_map=spec.layer.colour_map,
            )
            self.bucket.put_bytes(png_key, png.read_bytes(), "image/png")
        return png_key

    def raster(
        self,
        key: str,
        object_key: str,
        title: str,
        roles: tuple[str, ...],
        spec: PieceSpec,
        shape_hw: tuple[int, int],
        transform: tuple[float, ...],
    ) -> RasterAsset:
        layer = spec.layer
        return RasterAsset(
            key=key,
            href=layout.s3_href(self.bucket.name, object_key),
            title=title,
            roles=roles,
            shape=shape_hw,
            transform=transform,
            epsg=int(CRS.from_user_input(spec.crs).to_epsg() or 0),
            data_type=layer.dtype,
            nodata=None if spec.lossy else layer.nodata,
            scales=(None,) * layer.count,
            size_bytes=self.bucket.size(object_key),
        )

    def publish(
        self,
        spec: PieceSpec,
        items: list[dict[str, Any]],
        rasters: list[RasterAsset],
        png_key: str,
        facts: dict[str, Any],
        vrt: bool = False,
    ) -> str:
        kind = spec.kind
        colour_map = kind.layer.colour_map
        piece = MosaicPiece(
            spec.product_id, spec.area_id, spec.area_name, spec.piece, spec.job_id, spec.month,
            spec.geometry, product=kind.name, unit=kind.unit,
            colour_map=colour_map.name if colour_map else None,
        )  # fmt: skip
        preview = FileAsset(
            "thumbnail",
            layout.s3_href(self.bucket.name, png_key),
            "image/png",
            ("thumbnail",),
            "Preview",
        )
        derived = [_href_of(self.bucket.name, i, kind is not TRUE_COLOUR_PRODUCT) for i in items]
        item = mosaic_item(piece, items, derived, rasters, preview, facts, vrt=vrt)
        item_key = f"{spec.prefix}{spec.product_id}.json"
        publish_item(self.bucket, self.catalog, item, item_key)
        logger.info("mosaic written", extra={"job": spec.job_id, "item": item_key})
        return item_key


def _href_of(bucket: str, item: dict[str, Any], own_link: bool) -> str:
    """Where an input Item lives: with `own_link`, its `self` link when it came with one (the
    key its tile recorded, `Mosaicker._recorded_items`); else the key `layout` gives it."""
    links = item.get("links", []) if own_link else []
    for link in links:
        if link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return layout.item_href(bucket, item)

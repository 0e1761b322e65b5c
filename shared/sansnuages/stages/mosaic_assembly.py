"""A large mosaic's parts: each written on its own, then assembled (VRT, overview, Item)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from rasterio.crs import CRS
from shapely.geometry import shape

from sansnuages import layout
from sansnuages.errors import NoInputs
from sansnuages.processing import mosaic_parts
from sansnuages.processing.mosaic import (
    build_mosaic,
    cog_overrides,
)
from sansnuages.processing.mosaic_plan import (
    TRUE_COLOUR_PRODUCT,
    PieceSpec,
)
from sansnuages.stac.common import RasterAsset
from sansnuages.stages.mosaic_outputs import MosaicOutputs
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.jobs import JobState, JobStore


@dataclass
class MosaicAssembly:
    """Part writing and assembly of a mosaic planned in parts."""

    bucket: DataBucket
    jobs: JobStore
    outputs: MosaicOutputs

    def write_part(
        self,
        spec: PieceSpec,
        items: list[dict[str, Any]],
        folder: str,
        name: str,
        bounds: tuple[float, ...],
    ) -> None:
        left, bottom, right, top = bounds
        try:
            build_mosaic(
                [spec.kind.tile_input(i) for i in items],
                shape(spec.geometry),
                layout.vsi_path(self.bucket.name, f"{folder}{name}.tif"),
                crs=spec.crs,
                resolution=spec.resolution,
                cell=(left, bottom, right, top),
                codec=spec.codec,
                layer=spec.layer,
            )
        except NoInputs:  # the cell meets the area's bounds but no tile: a marker, no COG
            self.bucket.put_bytes(f"{folder}{name}.empty", b"", "text/plain")

    def assemble(self, spec: PieceSpec, items: list[dict[str, Any]], part_keys: list[str]) -> str:
        """VRT of the parts, overview COG, thumbnail and Item (idempotent: same inputs, same
        outputs, so two invocations finishing together do no harm)."""
        vsi = layout.vsi_path(self.bucket.name, spec.prefix).rstrip("/")
        vrt_key = f"{spec.prefix}{spec.product_id}.vrt"
        overview_key = f"{spec.prefix}{spec.product_id}-overview.tif"
        parts = [mosaic_parts.part_source(layout.vsi_path(self.bucket.name, k)) for k in part_keys]
        transform, width, height = mosaic_parts.union_grid(parts)
        wkt = CRS.from_user_input(spec.crs).to_wkt()
        layer = spec.layer
        vrt = mosaic_parts.vrt_xml(parts, wkt, vsi, masked=spec.lossy, layer=layer)
        self.bucket.put_bytes(vrt_key, vrt.encode(), "application/xml")
        factor = mosaic_parts.overview_factor(width, height)
        mosaic_parts.write_overview(
            layout.vsi_path(self.bucket.name, vrt_key),
            layout.vsi_path(self.bucket.name, overview_key),
            factor,
            options=tuple(cog_overrides(layer, spec.codec).items()),
            masked=spec.lossy,
            layer=layer,
        )
        png_key = self.outputs.thumbnail(spec, overview_key)
        res = spec.resolution
        kind = spec.kind
        name = "True colour" if kind is TRUE_COLOUR_PRODUCT else kind.title
        main = self.outputs.raster(
            kind.asset, vrt_key, f"{kind.title}, VRT of the parts", kind.roles,
            spec, (height, width), (res, 0.0, transform.c, 0.0, -res, transform.f),
        )  # fmt: skip
        overview = self.outputs.raster(
            "overview", overview_key, f"{name} at 1/{factor} resolution", ("overview",),
            spec, (-(-height // factor), -(-width // factor)),
            (res * factor, 0.0, transform.c, 0.0, -res * factor, transform.f),
        )  # fmt: skip
        rasters = [main, overview] + [
            self._part_asset(spec, p, k) for p, k in zip(parts, part_keys, strict=True)
        ]
        facts = {"sansnuages:parts": len(parts), "sansnuages:overview_factor": factor}
        item_key = self.outputs.publish(spec, items, rasters, png_key, facts, vrt=True)
        if spec.piece == 0:
            self.jobs.finish(spec.job_id, JobState.DONE, item=item_key)
        return item_key

    def _part_asset(self, spec: PieceSpec, part: mosaic_parts.PartSource, key: str) -> RasterAsset:
        name = posixpath.basename(key).rsplit(".", 1)[0]
        t = part.transform
        return self.outputs.raster(
            f"part-{name}", key, f"Part {name}", ("data",), spec, (part.height, part.width),
            (t.a, 0.0, t.c, 0.0, t.e, t.f),
        )  # fmt: skip

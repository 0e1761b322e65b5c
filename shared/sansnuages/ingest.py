"""Ingest one uploaded MUSCATE product: validate, convert to COGs, describe as STAC, index.

The upload is streamed from S3 (the zip's central directory through s3fs, the rasters through
GDAL's `/vsizip//vsis3/`), never downloaded whole. Every outcome leaves the upload somewhere a
person can find it: archived beside its Item, or in `quarantine/` with a reason.
"""

from __future__ import annotations

import enum
import os
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import rasterio
import s3fs
from aws_lambda_powertools import Logger
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from . import cog, errors, stac_items, storage
from .catalog import Catalog
from .muscate import MuscateMetadata, ProductLayout, parse_metadata
from .publish import publish_item
from .settings import Settings
from .storage import DataBucket

logger = Logger(child=True)

MAX_UNCOMPRESSED_BYTES = 40 * 1024**3
MAX_COMPRESSION_RATIO = 1000
MAX_METADATA_BYTES = 64 * 1024**2
FOOTPRINT_MAX_PIXELS = 1024
CONVERSION_THREADS = 4


class Outcome(enum.StrEnum):
    INGESTED = "ingested"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    IGNORED = "ignored"


@dataclass(frozen=True)
class IngestResult:
    key: str
    outcome: Outcome
    product_id: str | None = None
    item_key: str | None = None
    reason: str | None = None


@dataclass
class Ingestor:
    settings: Settings
    bucket: DataBucket
    catalog: Catalog

    @classmethod
    def from_settings(cls, settings: Settings) -> Ingestor:
        return cls(
            settings, DataBucket(settings), Catalog(settings.catalog_table, settings=settings)
        )

    def ingest(self, key: str) -> IngestResult:
        """Ingest `key`; invalid products are quarantined, other errors propagate (retry)."""
        if not key.startswith(storage.INCOMING_PREFIX) or key.endswith("/"):
            return IngestResult(key, Outcome.IGNORED, reason="not an upload under incoming/")
        if not self.bucket.exists(key):
            return IngestResult(
                key, Outcome.IGNORED, reason="already moved (duplicate notification)"
            )
        product_id: str | None = None
        try:
            with self._open_zip(key) as archive:
                layout = ProductLayout.from_members(archive.namelist())
                product_id = layout.product_id
                _check_sizes(archive)
                meta = parse_metadata(_read_member(archive, layout.metadata))
                return self._ingest_product(key, archive, layout, meta)
        except errors.InvalidProduct as error:
            reason = str(error)
            self.bucket.quarantine(key, reason, type(error).__name__, product_id)
            logger.warning(
                "quarantined upload", extra={"key": key, "product": product_id, "reason": reason}
            )
            return IngestResult(key, Outcome.QUARANTINED, product_id=product_id, reason=reason)

    def _open_zip(self, key: str) -> zipfile.ZipFile:
        fs = s3fs.S3FileSystem(
            endpoint_url=self.settings.endpoint_url,
            client_kwargs={"region_name": self.settings.region},
        )
        handle = fs.open(f"{self.bucket.name}/{key}", "rb", block_size=2 * 1024**2)
        try:
            return zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
            handle.close()
            raise errors.NotAZip(f"{key} is not a readable zip archive: {error}") from error

    def _ingest_product(
        self, key: str, archive: zipfile.ZipFile, layout: ProductLayout, meta: MuscateMetadata
    ) -> IngestResult:
        if meta.product_id != layout.product_id:
            raise errors.InconsistentMetadata(
                f"metadata names product {meta.product_id} but the archive holds {layout.product_id}"
            )
        collection = stac_items.collection_for(meta.platform)
        prefix = storage.l2a_prefix(collection, meta.tile, meta.acquired, meta.product_id)
        item_key = f"{prefix}{meta.product_id}.json"
        if self.bucket.exists(item_key):
            self._archive_upload(key, prefix, meta.product_id)
            return IngestResult(key, Outcome.DUPLICATE, meta.product_id, item_key)
        rasters = self._convert_rasters(key, layout, meta, prefix)
        files = self._copy_files(archive, layout, prefix)
        item = self._build_item(meta, collection, prefix, rasters, files)
        publish_item(self.bucket, self.catalog, item, item_key)
        self._archive_upload(key, prefix, meta.product_id)
        logger.info("ingested product", extra={"product": meta.product_id, "item": item_key})
        return IngestResult(key, Outcome.INGESTED, meta.product_id, item_key)

    def _convert_rasters(
        self, key: str, layout: ProductLayout, meta: MuscateMetadata, prefix: str
    ) -> list[stac_items.RasterAsset]:
        zip_path = f"/vsizip/{storage.vsi_path(self.bucket.name, key)}"
        jobs = [
            (asset_key, f"{zip_path}/{member}", f"{prefix}{meta.product_id}_{asset_key}.tif")
            for asset_key, member in sorted(layout.rasters.items())
        ]
        with ThreadPoolExecutor(CONVERSION_THREADS) as pool:
            return list(pool.map(lambda job: self._convert_one(meta, *job), jobs))

    def _convert_one(
        self, meta: MuscateMetadata, asset_key: str, src: str, dst_key: str
    ) -> stac_items.RasterAsset:
        """Read from the zip on S3, write the COG to local scratch space, upload it whole.

        The local copy (Lambda's ephemeral storage) lets boto3 upload in parallel parts and
        tells the file size without another request.
        """
        with rasterio.Env(**self.settings.gdal_options()):
            try:
                dataset = rasterio.open(src)
            except rasterio.errors.RasterioIOError as error:
                raise errors.InvalidProduct(f"{asset_key}: unreadable raster ({error})") from error
            with dataset, tempfile.TemporaryDirectory() as scratch:
                _check_against_metadata(asset_key, dataset, meta)
                local = os.path.join(scratch, "cog.tif")
                cog.copy_as_cog(dataset, local, nodata=dataset.nodata)
                facts = _raster_facts(asset_key, dataset, meta)
                size = os.path.getsize(local)
                self.bucket.client.upload_file(
                    local, self.bucket.name, dst_key, ExtraArgs={"ContentType": stac_items.COG}
                )
        return stac_items.RasterAsset(
            **facts, href=storage.s3_href(self.bucket.name, dst_key), size_bytes=size
        )

    def _copy_files(
        self, archive: zipfile.ZipFile, layout: ProductLayout, prefix: str
    ) -> list[stac_items.FileAsset]:
        files: list[tuple[str, str, str, tuple[str, ...], str]] = [
            (
                "metadata",
                layout.metadata,
                "application/xml",
                ("metadata",),
                "MUSCATE metadata",
            )
        ]
        if layout.quicklook:
            files.append(
                (
                    "thumbnail",
                    layout.quicklook,
                    "image/jpeg",
                    ("thumbnail", "overview"),
                    "Quicklook",
                )
            )
        assets = []
        for asset_key, member, media_type, roles, title in files:
            target = prefix + member.rsplit("/", 1)[-1]
            self.bucket.put_bytes(target, _read_member(archive, member), media_type)
            assets.append(
                stac_items.FileAsset(
                    asset_key, storage.s3_href(self.bucket.name, target), media_type, roles, title
                )
            )
        return assets

    def _build_item(
        self,
        meta: MuscateMetadata,
        collection: str,
        prefix: str,
        rasters: list[stac_items.RasterAsset],
        files: list[stac_items.FileAsset],
    ) -> pystac.Item:
        edge = next(r for r in sorted(rasters, key=lambda r: r.shape) if r.key.startswith("EDG_"))
        geometry = footprint(edge.href.replace("s3://", "/vsis3/", 1), self.settings)
        facts = stac_items.ItemFacts(
            id=meta.product_id,
            collection=collection,
            geometry=geometry,
            bbox=list(shape(geometry).bounds),
            datetime=meta.acquired,
        )
        archive = stac_items.FileAsset(
            "product",
            storage.s3_href(self.bucket.name, f"{prefix}{meta.product_id}.zip"),
            "application/zip",
            ("archive",),
            "Original MUSCATE product",
        )
        item = stac_items.build_item(facts, rasters, [*files, archive], platform=meta.platform)
        stac_items.describe_l2a(item, meta, meta.cloud_percent)
        return item

    def _archive_upload(self, key: str, prefix: str, product_id: str) -> None:
        """Keep the original beside its Item, then clear it from the drop zone."""
        target = f"{prefix}{product_id}.zip"
        if not self.bucket.exists(key):
            return
        self.bucket.client.copy({"Bucket": self.bucket.name, "Key": key}, self.bucket.name, target)
        self.bucket.delete(key)


def _read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    info = archive.getinfo(member)
    if info.file_size > MAX_METADATA_BYTES:
        raise errors.UnsafeArchive(
            f"{member} declares {info.file_size} bytes, more than any metadata file"
        )
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise errors.NotAZip(f"{member} cannot be read from the archive: {error}") from error


def _check_sizes(archive: zipfile.ZipFile) -> None:
    """Refuse zip bombs from the central directory, before anything is decompressed."""
    total = 0
    for info in archive.infolist():
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 64 * 1024**2 and ratio > MAX_COMPRESSION_RATIO:
            raise errors.UnsafeArchive(
                f"{info.filename} expands {ratio:.0f} times: refused as a zip bomb"
            )
    if total > MAX_UNCOMPRESSED_BYTES:
        raise errors.UnsafeArchive(f"archive declares {total} bytes uncompressed, over the limit")


def _check_against_metadata(asset_key: str, dataset: Any, meta: MuscateMetadata) -> None:
    group = asset_key.rsplit("_", 1)[-1]
    if asset_key.startswith(("FRE_", "SRE_")):
        group = next((g for g, geo in meta.groups.items() if geo.ncols == dataset.width), group)
    geo = meta.groups.get(group)
    if geo is None:
        raise errors.InconsistentMetadata(f"{asset_key}: no group {group} in the metadata")
    if (dataset.width, dataset.height) != (geo.ncols, geo.nrows):
        raise errors.InconsistentMetadata(
            f"{asset_key}: raster is {dataset.width}x{dataset.height} px, metadata says {geo.ncols}x{geo.nrows}"
        )
    epsg = dataset.crs.to_epsg() if dataset.crs else None
    if epsg != meta.epsg:
        raise errors.InconsistentMetadata(
            f"{asset_key}: raster CRS EPSG:{epsg}, metadata EPSG:{meta.epsg}"
        )


ROLES = {"FRE": ("data", "reflectance"), "SRE": ("data", "reflectance"), "ATB": ("data",)}
TITLES = {
    "FRE": "Flat reflectance (slope corrected)",
    "SRE": "Surface reflectance",
    "ATB": "Water vapour and aerosol optical thickness",
    "CLM": "Cloud mask",
    "MG2": "Geophysical mask",
    "EDG": "No-data mask",
    "SAT": "Saturation mask",
    "DFP": "Defective pixels mask",
}


def _raster_facts(asset_key: str, dataset: Any, meta: MuscateMetadata) -> dict[str, Any]:
    kind, _, suffix = asset_key.partition("_")
    if kind in ("FRE", "SRE"):
        scales: tuple[float | None, ...] = (meta.reflectance_scale,)
        band_names: tuple[str, ...] = (suffix,)
    elif kind == "ATB":
        scales, band_names = (meta.wvc_scale, meta.aot_scale), ()
    else:
        scales, band_names = (None,) * dataset.count, ()
    return {
        "key": asset_key,
        "title": f"{TITLES.get(kind, kind)} {suffix}",
        "roles": ROLES.get(kind, ("cloud",) if kind == "CLM" else ("data", "mask")),
        "shape": (dataset.height, dataset.width),
        "transform": tuple(dataset.transform)[:6],
        "epsg": meta.epsg,
        "data_type": dataset.dtypes[0],
        "nodata": dataset.nodata,
        "scales": scales,
        "band_names": band_names,
    }


def footprint(edge_path: str, settings: Settings) -> dict[str, Any]:
    """The valid-data area (EDG == 0) in lon/lat, not the tile square."""
    with rasterio.Env(**settings.gdal_options()), rasterio.open(edge_path) as dataset:
        factor = max(1, int(np.ceil(max(dataset.width, dataset.height) / FOOTPRINT_MAX_PIXELS)))
        out_shape = (dataset.height // factor, dataset.width // factor)
        edge = dataset.read(1, out_shape=out_shape, resampling=Resampling.nearest)
        transform = dataset.transform @ dataset.transform.scale(
            dataset.width / out_shape[1], dataset.height / out_shape[0]
        )
        crs = dataset.crs
    valid = (edge == 0).astype("uint8")
    polygons = [
        shape(geom)
        for geom, value in shapes(valid, mask=valid.astype(bool), transform=transform)
        if value
    ]
    if not polygons:
        raise errors.InvalidProduct("the product has no valid pixel (EDG is 1 everywhere)")
    area = unary_union(polygons).simplify(abs(transform.a), preserve_topology=True)
    return dict(
        transform_geom(crs, "EPSG:4326", mapping(area), antimeridian_cutting=True, precision=6)
    )

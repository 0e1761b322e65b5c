"""Ingest one uploaded MUSCATE product: validate, convert to COGs, describe as STAC, index.

The upload is streamed from S3 (the zip's central directory through s3fs, the rasters through
GDAL's `/vsizip//vsis3/`), never downloaded whole. Every outcome leaves the upload somewhere a
person can find it: archived beside its Item, or in `quarantine/` with a reason.

Accepted: Sentinel-2A/2B/2C and Landsat-8 L2A (any flag, any version, zip named with or
without it, members with or without "./", ATB uint8 or uint16, DFP masks or not) and
Let-It-Snow L2B-SNOW products. Several versions of one acquisition are all kept; their Items
link to each other and all but the newest are marked `deprecated`.
"""

from __future__ import annotations

import enum
import os
import tempfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pystac
from aws_lambda_powertools import Logger

from sansnuages import errors
from sansnuages import layout as keys
from sansnuages.formats import grid, snow
from sansnuages.formats.archive import check_shape, check_sizes, read_member
from sansnuages.formats.muscate import (
    MuscateMetadata,
    ProductLayout,
    check_agrees_with_name,
    parse_metadata,
    vsi_member,
)
from sansnuages.raster import cog
from sansnuages.raster.conversion import (
    RASTER_ERRORS,
    ProductGrid,
    decode_whole,
    is_tiff,
    member_to_cog,
    open_geotiff,
)
from sansnuages.raster.encode import png_bytes
from sansnuages.raster.footprints import decimated, footprint, footprint_raster
from sansnuages.raster.thread_env import in_thread_env
from sansnuages.settings import Settings
from sansnuages.stac.collections import collection_for
from sansnuages.stac.common import (
    COG,
    FileAsset,
    RasterAsset,
    multihash_sha256,
)
from sansnuages.stac.l2a import l2a_item
from sansnuages.stac.versions import set_version_links
from sansnuages.stages.publish import (
    link_versions,
    publish_item,
    published_versions,
    widen_collection,
)
from sansnuages.stages.staleness import mark_stale_syntheses
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.catalog.stats import INGESTED_PROPERTY
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.uploads import Uploads

logger = Logger(child=True)

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
    error: str | None = None


@dataclass
class Outputs:
    """The objects one ingest attempt wrote under its product's folder. An attempt that ends in
    quarantine removes exactly these, so that no COG is left without an Item; never another
    version's (another folder) nor those of an Item published meanwhile (the same keys,
    rewritten by a concurrent upload of the product)."""

    item_key: str | None = None
    keys: list[str] = field(default_factory=list)


@dataclass
class Ingestor:
    """The orchestration of one upload: check, convert, describe, publish, archive."""

    settings: Settings
    bucket: DataBucket
    catalog: Catalog

    @classmethod
    def from_settings(cls, settings: Settings) -> Ingestor:
        return cls(
            settings, DataBucket(settings), Catalog(settings.catalog_table, settings=settings)
        )

    @property
    def uploads(self) -> Uploads:
        return Uploads(self.settings, self.bucket)

    def ingest(self, key: str) -> IngestResult:
        """Ingest `key`; invalid products are quarantined, other errors propagate (retry)."""
        if not key.startswith(keys.INCOMING_PREFIX) or key.endswith("/"):
            return IngestResult(key, Outcome.IGNORED, reason="not an upload under incoming/")
        if not self.bucket.exists(key):
            return IngestResult(
                key, Outcome.IGNORED, reason="already moved (duplicate notification)"
            )
        product_id: str | None = None
        outputs = Outputs()
        try:
            with self.uploads.open_zip(key) as archive:
                layout = ProductLayout.from_members(archive.namelist())
                product_id = layout.product_id
                check_shape(archive)
                check_sizes(archive)
                meta = parse_metadata(read_member(archive, layout.metadata))
                check_agrees_with_name(meta, layout.name)
                return self._ingest_product(key, archive, layout, meta, outputs)
        except errors.InvalidProduct as error:
            self._discard(outputs, product_id)  # first: should it fail, the retry redoes both
            return self._quarantine(key, error, product_id)

    def _discard(self, outputs: Outputs, product_id: str | None) -> None:
        if not outputs.keys or (outputs.item_key and self.bucket.exists(outputs.item_key)):
            return
        self.bucket.delete_many(outputs.keys)
        logger.info(
            "removed the outputs of a quarantined attempt",
            extra={"product": product_id, "keys": len(outputs.keys)},
        )

    def _quarantine(
        self, key: str, error: errors.InvalidProduct, product_id: str | None
    ) -> IngestResult:
        reason, kind = str(error), type(error).__name__
        self.bucket.quarantine(key, reason, kind, product_id)
        self.catalog.count_quarantined(datetime.now(UTC).date().isoformat())
        logger.warning(
            "quarantined upload",
            extra={"key": key, "product": product_id, "error": kind, "reason": reason},
        )
        return IngestResult(key, Outcome.QUARANTINED, product_id, reason=reason, error=kind)

    def _ingest_product(
        self,
        key: str,
        archive: zipfile.ZipFile,
        layout: ProductLayout,
        meta: MuscateMetadata,
        outputs: Outputs,
    ) -> IngestResult:
        collection = collection_for(meta.platform, meta.level)
        month_prefix = keys.l2a_month_prefix(collection, meta.tile, meta.acquired)
        prefix = f"{month_prefix}{meta.product_id}/"
        item_key = outputs.item_key = f"{prefix}{meta.product_id}.json"
        published = self.bucket.get_json_or_none(item_key)
        if published is not None:
            if self._is_published_upload(key, prefix, meta.product_id, published):
                # A repeated upload, or a retry after a failure past the Item: finish its effects.
                widen_collection(self.bucket, collection, published)
                link_versions(self.bucket, self.catalog, month_prefix, layout.name)
                mark_stale_syntheses(self.bucket, self.catalog, published)
                self._archive_upload(key, prefix, meta.product_id)
                logger.info("duplicate upload", extra={"key": key, "product": meta.product_id})
                return IngestResult(key, Outcome.DUPLICATE, meta.product_id, item_key)
            # Other bytes under a published id: every raster is checked and decoded before
            # anything of the published product is replaced.
            self._verify_rasters(key, layout, meta)
            logger.info("replacing a published product", extra={"product": meta.product_id})
        rasters = self._convert_rasters(key, layout, meta, prefix, outputs)
        files = self._copy_files(archive, layout, prefix, outputs)
        item = self._build_item(key, layout, meta, collection, prefix, rasters, files, outputs)
        item.properties[INGESTED_PROPERTY] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        siblings = published_versions(self.bucket, month_prefix, layout.name)
        set_version_links(
            item, item_key, {d["id"]: k for k, d in siblings.items()} | {item.id: item_key}
        )
        document = publish_item(self.bucket, self.catalog, item, item_key)
        checkpoint("ingest.after-publish")
        relinked = link_versions(self.bucket, self.catalog, month_prefix, layout.name)
        if relinked:
            logger.info(
                "version links updated", extra={"product": meta.product_id, "items": relinked}
            )
        stale = mark_stale_syntheses(self.bucket, self.catalog, document)
        if stale:
            logger.info("syntheses made stale", extra={"product": meta.product_id, "stale": stale})
        self._archive_upload(key, prefix, meta.product_id)
        logger.info("ingested product", extra={"product": meta.product_id, "item": item_key})
        return IngestResult(key, Outcome.INGESTED, meta.product_id, item_key)

    # --- rasters ------------------------------------------------------------------------

    def _is_published_upload(
        self, key: str, prefix: str, product_id: str, published: dict[str, Any]
    ) -> bool:
        """Whether `key` holds the bytes the published Item was made from: those archived
        beside it, or (a retry that failed before archiving) an upload of its recorded size."""
        archived = f"{prefix}{product_id}.zip"
        if self.bucket.exists(archived):
            return self.uploads.is_archived(key, archived)
        recorded = (published.get("assets", {}).get("product") or {}).get("file:size")
        return recorded is not None and int(recorded) == self.uploads.fingerprint(key)[0]

    def _verify_rasters(self, key: str, layout: ProductLayout, meta: MuscateMetadata) -> None:
        """Convert every raster to local scratch space and drop it: the checks and the full
        decode of an ingest, with nothing written to the bucket."""
        zip_path = f"/vsizip/{keys.vsi_path(self.bucket.name, key)}"
        grid_ = self._grid(meta)

        def verify(job: tuple[str, str]) -> None:
            asset_key, member = job
            with tempfile.TemporaryDirectory() as scratch:
                source = f"{zip_path}/{vsi_member(member)}"
                try:
                    member_to_cog(
                        source, os.path.join(scratch, "cog.tif"), asset_key, layout, meta, grid_
                    )
                except RASTER_ERRORS as error:
                    self._raise_if_corrupt(key, asset_key, member, error)
                    raise

        with ThreadPoolExecutor(CONVERSION_THREADS) as pool:
            list(pool.map(in_thread_env(verify), sorted(layout.rasters.items())))

    def _convert_rasters(
        self, key: str, layout: ProductLayout, meta: MuscateMetadata, prefix: str, outputs: Outputs
    ) -> list[RasterAsset]:
        zip_path = f"/vsizip/{keys.vsi_path(self.bucket.name, key)}"
        jobs = [
            (asset_key, member, f"{prefix}{meta.product_id}_{asset_key}.tif")
            for asset_key, member in sorted(layout.rasters.items())
        ]

        def convert(job: tuple[str, str, str]) -> RasterAsset:
            asset_key, member, dst_key = job
            try:
                asset = self._convert_one(layout, meta, asset_key, zip_path, member, dst_key)
            except RASTER_ERRORS as error:
                self._raise_if_corrupt(key, asset_key, member, error)
                raise  # the member decodes from a local copy: a read failure, retried
            outputs.keys.append(dst_key)
            return asset

        with ThreadPoolExecutor(CONVERSION_THREADS) as pool:
            return list(pool.map(in_thread_env(convert), jobs))

    def _convert_one(
        self,
        layout: ProductLayout,
        meta: MuscateMetadata,
        asset_key: str,
        zip_path: str,
        member: str,
        dst_key: str,
    ) -> RasterAsset:
        """Read from the zip on S3, write the COG to local scratch space, upload it whole."""
        with tempfile.TemporaryDirectory() as scratch:
            source = f"{zip_path}/{vsi_member(member)}"
            target = os.path.join(scratch, "cog.tif")
            local = member_to_cog(source, target, asset_key, layout, meta, self._grid(meta))
            self.bucket.client.upload_file(
                local.path, self.bucket.name, dst_key, ExtraArgs={"ContentType": COG}
            )
        return RasterAsset(
            **local.facts,
            href=keys.s3_href(self.bucket.name, dst_key),
            size_bytes=local.size_bytes,
            checksum=local.checksum,
        )

    def _grid(self, meta: MuscateMetadata) -> ProductGrid:
        """The tile the product's rasters must lie on (the metadata agrees with the name)."""
        try:
            tile = grid.tile(meta.tile)
        except ValueError as error:
            raise errors.OffGrid(f"tile {meta.tile}: {error}") from error
        return ProductGrid(tile, self.settings.reduced_resolutions)

    def _raise_if_corrupt(self, key: str, asset_key: str, member: str, error: Exception) -> None:
        """Tell a broken raster from a failed read: copy the member out of the zip (streamed,
        through another client) and decode it locally, window by window. A member that fails
        there is a bad product; one that decodes was a read failure worth a retry."""
        with tempfile.TemporaryDirectory() as scratch:
            local = os.path.join(scratch, "member.tif")
            try:
                self.uploads.copy_member(key, member, local)
            except (zipfile.BadZipFile, zlib.error, EOFError) as broken:
                raise errors.CorruptRaster(
                    f"{asset_key}: {member} cannot be extracted ({broken})"
                ) from error
            with open(local, "rb") as head:
                if not is_tiff(head.read(4)):
                    raise errors.UnexpectedFormat(
                        f"{asset_key}: {member} is not a GeoTIFF"
                    ) from error
            try:
                decode_whole(local)
            except RASTER_ERRORS as broken:
                raise errors.CorruptRaster(
                    f"{asset_key}: the raster cannot be decoded ({broken})"
                ) from error
        logger.warning(
            "raster read failed, the member is sound: retrying",
            extra={"key": key, "asset": asset_key, "error": str(error)},
        )

    # --- other files ----------------------------------------------------------------------

    def _copy_files(
        self, archive: zipfile.ZipFile, layout: ProductLayout, prefix: str, outputs: Outputs
    ) -> list[FileAsset]:
        files: list[tuple[str, str, str, tuple[str, ...], str]] = [
            ("metadata", layout.metadata, "application/xml", ("metadata",), "Metadata")
        ]
        if layout.quicklook:
            preview = ("thumbnail", "overview")
            files.append(("thumbnail", layout.quicklook, "image/jpeg", preview, "Quicklook"))
        assets = []
        for asset_key, member, media_type, roles, title in files:
            target = prefix + member.rsplit("/", 1)[-1]
            body = read_member(archive, member)
            self.bucket.put_bytes(target, body, media_type)
            outputs.keys.append(target)
            href = keys.s3_href(self.bucket.name, target)
            assets.append(
                FileAsset(
                    asset_key,
                    href,
                    media_type,
                    roles,
                    title,
                    size_bytes=len(body),
                    checksum=multihash_sha256(body),
                )
            )
        return assets

    def _snow_thumbnail(
        self, snow_map: str, prefix: str, product_id: str, outputs: Outputs
    ) -> FileAsset:
        """A PNG preview of the snow classes: Let-It-Snow products carry no quicklook."""
        with open_geotiff(snow_map) as dataset:
            classes = decimated(dataset)
        body = png_bytes(snow.preview(classes))
        target = f"{prefix}{product_id}_SNW_preview.png"
        self.bucket.put_bytes(target, body, "image/png")
        outputs.keys.append(target)
        return FileAsset(
            "thumbnail",
            keys.s3_href(self.bucket.name, target),
            "image/png",
            ("thumbnail", "overview"),
            "Snow map preview",
            size_bytes=len(body),
            checksum=multihash_sha256(body),
        )

    # --- the Item -----------------------------------------------------------------------

    def _build_item(
        self,
        key: str,
        layout: ProductLayout,
        meta: MuscateMetadata,
        collection: str,
        prefix: str,
        rasters: list[RasterAsset],
        files: list[FileAsset],
        outputs: Outputs,
    ) -> pystac.Item:
        is_snow = meta.level.startswith("L2B")
        mask = footprint_raster(rasters, "SNW_" if is_snow else "EDG_")
        mask_path = cog.s3_to_vsi(mask.href)
        geometry = footprint(mask_path, snow=is_snow, nodata=mask.nodata)
        if is_snow and layout.quicklook is None:
            thumbnail = self._snow_thumbnail(mask_path, prefix, meta.product_id, outputs)
            files = [*files, thumbnail]
        archive = FileAsset(
            "product",
            keys.s3_href(self.bucket.name, f"{prefix}{meta.product_id}.zip"),
            "application/zip",
            ("archive",),
            "Original product",
            size_bytes=self.bucket.size(key),
        )
        return l2a_item(meta, collection, geometry, rasters, [*files, archive])

    def _archive_upload(self, key: str, prefix: str, product_id: str) -> None:
        self.uploads.archive(key, f"{prefix}{product_id}.zip")

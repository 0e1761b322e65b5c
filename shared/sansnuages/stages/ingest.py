"""Ingest one uploaded MUSCATE product: validate, convert to COGs, describe as STAC, index.

An upload of at most `DOWNLOAD_LIMIT_BYTES` is downloaded whole, in one request, to scratch
space and read there: a product at 610 m pixels is 30 rasters of a few KB, and reading each
through GDAL's `/vsizip//vsis3/` costs ranged requests and set-up far above its pixels. A larger
upload is streamed from S3 (the zip's central directory through s3fs, the rasters through
`/vsizip//vsis3/`), never downloaded whole. Every outcome leaves the upload somewhere a person
can find it: archived beside its Item, or in `quarantine/` with a reason; the scratch space
goes whatever the outcome.

Accepted: Sentinel-2A/2B/2C and Landsat-8 L2A (any flag, any version, zip named with or
without it, members with or without "./", ATB uint8 or uint16, DFP masks or not) and
Let-It-Snow L2B-SNOW products. Several versions of one acquisition are all kept; their Items
link to each other and all but the newest are marked `deprecated`.
"""

from __future__ import annotations

import contextlib
import enum
import os
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

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
from sansnuages.raster.encode import file_multihash, png_bytes
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
    SINGLE_PUT_BYTES,
    link_versions,
    publish_item,
    published_versions,
    upload_file,
    widen_collection,
)
from sansnuages.stages.staleness import mark_stale_syntheses
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.catalog.stats import INGESTED_PROPERTY
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.uploads import UploadHead, Uploads

logger = Logger(child=True)
_J = TypeVar("_J")
_R = TypeVar("_R")

CONVERSION_THREADS = 4
DOWNLOAD_LIMIT_BYTES = 64 * 1024**2
"""Uploads up to this size are downloaded whole to scratch space, larger ones are streamed.
Measured with `bench/ingest.py` (both routes, same zip): the downloaded route took less CPU
(ours and the S3 server's), less wall time and less memory at every size tried, 0.2 MB
(100 px) to 51 MB (1800 px); no cross-over showed, so the bound sits just above the largest
size measured. It keeps the copy and the COGs made from it (about as large
again) far inside the ingest function's ephemeral storage (10,240 MB in the template); the
full-size product (1.7 GB) keeps the streamed route, whose memory and scratch space do not
grow with the upload."""
SEQUENTIAL_BYTES = 2 * 1024**2
"""A downloaded upload up to this size is converted in the caller's thread: its rasters are
small (one 512 px block at most), and threads cost CPU there (opening one of 30 rasters of
180 px takes 1.4 ms of CPU in one thread, 2.5 ms in two, 3.8 ms in four: they contend for the
GIL and GDAL's locks), which two workers sharing two cores cannot spare. Larger ones (600 px
at 183 m: 6 MB) are converted in `CONVERSION_THREADS` threads, whose wall time they save."""


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


def in_threads(task: Callable[[_J], _R], jobs: list[_J], threads: int) -> list[_R]:
    """`task` over `jobs` in `threads` threads, results in the jobs' order. Each thread takes
    jobs until none is left, inside one GDAL environment: entering one costs about 2 ms of CPU,
    as much as opening a small raster. A failed job stops its thread, the others finish
    theirs, and the first failure (in thread order) is raised. One thread is the caller's."""
    if threads <= 1:
        return [task(job) for job in jobs]
    pending = iter(enumerate(jobs))
    lock = threading.Lock()
    results: dict[int, _R] = {}

    def drain(_: int) -> None:
        while True:
            with lock:
                taken = next(pending, None)
            if taken is None:
                return
            results[taken[0]] = task(taken[1])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(in_thread_env(drain), range(min(threads, len(jobs)))))
    return [results[index] for index in range(len(jobs))]


@dataclass(frozen=True)
class UploadSource:
    """Where one ingest reads its upload: the object on S3, or its copy in `scratch` (then
    `local_zip`), and the scratch folder its COGs are written to. COGs made from a local copy
    stay there until the Item is built, so that its footprint is read without a request."""

    key: str
    head: UploadHead
    scratch: str
    zip_path: str
    """The GDAL path of the zip: `/vsizip//vsis3/bucket/key` or `/vsizip/<local copy>`."""
    local_zip: str | None = None

    @property
    def threads(self) -> int:
        small = self.local_zip is not None and self.head.size <= SEQUENTIAL_BYTES
        return 1 if small else CONVERSION_THREADS

    def member(self, member: str) -> str:
        return f"{self.zip_path}/{vsi_member(member)}"

    def cog_path(self, asset_key: str) -> str:
        return os.path.join(self.scratch, f"{asset_key}.tif")


@dataclass
class Ingestor:
    """The orchestration of one upload: check, convert, describe, publish, archive."""

    settings: Settings
    bucket: DataBucket
    catalog: Catalog
    download_limit: int = DOWNLOAD_LIMIT_BYTES
    """Uploads up to this size are downloaded whole; 0 streams every upload."""

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
        head = self.uploads.head(key)
        if head is None:
            return IngestResult(
                key, Outcome.IGNORED, reason="already moved (duplicate notification)"
            )
        product_id: str | None = None
        outputs = Outputs()
        try:
            with contextlib.ExitStack() as stack:
                source = self._source(key, head, stack)
                archive = stack.enter_context(self.uploads.open_zip(key, source.local_zip))
                layout = ProductLayout.from_members(archive.namelist())
                product_id = layout.product_id
                check_shape(archive)
                check_sizes(archive)
                meta = parse_metadata(read_member(archive, layout.metadata))
                check_agrees_with_name(meta, layout.name)
                return self._ingest_product(source, archive, layout, meta, outputs)
        except errors.InvalidProduct as error:
            self._discard(outputs, product_id)  # first: should it fail, the retry redoes both
            return self._quarantine(key, error, product_id)

    def _source(self, key: str, head: UploadHead, stack: contextlib.ExitStack) -> UploadSource:
        """A scratch folder (removed when `stack` closes, whatever happens) and where to read
        the upload: downloaded there when small enough, else on S3."""
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="ingest-"))
        if head.size > self.download_limit:
            zip_path = f"/vsizip/{keys.vsi_path(self.bucket.name, key)}"
            return UploadSource(key, head, scratch, zip_path)
        local = os.path.join(scratch, "upload.zip")
        self.uploads.download(key, head, local, self.download_limit)
        return UploadSource(key, head, scratch, f"/vsizip/{local}", local)

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
        source: UploadSource,
        archive: zipfile.ZipFile,
        layout: ProductLayout,
        meta: MuscateMetadata,
        outputs: Outputs,
    ) -> IngestResult:
        key = source.key
        collection = collection_for(meta.platform, meta.level)
        month_prefix = keys.l2a_month_prefix(collection, meta.tile, meta.acquired)
        prefix = f"{month_prefix}{meta.product_id}/"
        item_key = outputs.item_key = f"{prefix}{meta.product_id}.json"
        published = self.bucket.get_json_or_none(item_key)
        if published is not None:
            if self._is_published_upload(source, prefix, meta.product_id, published):
                # A repeated upload, or a retry after a failure past the Item: finish its effects.
                widen_collection(self.bucket, collection, published)
                link_versions(self.bucket, self.catalog, month_prefix, layout.name)
                mark_stale_syntheses(self.bucket, self.catalog, published)
                self._archive_upload(source, prefix, meta.product_id)
                logger.info("duplicate upload", extra={"key": key, "product": meta.product_id})
                return IngestResult(key, Outcome.DUPLICATE, meta.product_id, item_key)
            # Other bytes under a published id: every raster is checked and decoded before
            # anything of the published product is replaced.
            self._verify_rasters(source, layout, meta)
            logger.info("replacing a published product", extra={"product": meta.product_id})
        rasters = self._convert_rasters(source, layout, meta, prefix, outputs)
        files = self._copy_files(archive, layout, prefix, outputs)
        item = self._build_item(source, layout, meta, collection, prefix, rasters, files, outputs)
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
        self._archive_upload(source, prefix, meta.product_id)
        logger.info("ingested product", extra={"product": meta.product_id, "item": item_key})
        return IngestResult(key, Outcome.INGESTED, meta.product_id, item_key)

    # --- rasters ------------------------------------------------------------------------

    def _is_published_upload(
        self, source: UploadSource, prefix: str, product_id: str, published: dict[str, Any]
    ) -> bool:
        """Whether the upload holds the bytes the published Item was made from: those archived
        beside it, or (a retry that failed before archiving) an upload of its recorded size."""
        archived = f"{prefix}{product_id}.zip"
        if self.bucket.exists(archived):
            return self.uploads.is_archived(source.key, archived, source.head)
        recorded = (published.get("assets", {}).get("product") or {}).get("file:size")
        return recorded is not None and int(recorded) == source.head.size

    def _verify_rasters(
        self, source: UploadSource, layout: ProductLayout, meta: MuscateMetadata
    ) -> None:
        """Convert every raster to local scratch space and drop it: the checks and the full
        decode of an ingest, with nothing written to the bucket."""
        grid_ = self._grid(meta)

        def verify(job: tuple[str, str]) -> None:
            asset_key, member = job
            target = os.path.join(source.scratch, f"verify-{asset_key}.tif")
            try:
                member_to_cog(source.member(member), target, asset_key, layout, meta, grid_)
            except RASTER_ERRORS as error:
                self._raise_if_corrupt(source, asset_key, member, error)
                raise
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(target)

        in_threads(verify, sorted(layout.rasters.items()), source.threads)

    def _convert_rasters(
        self,
        source: UploadSource,
        layout: ProductLayout,
        meta: MuscateMetadata,
        prefix: str,
        outputs: Outputs,
    ) -> list[RasterAsset]:
        jobs = [
            (asset_key, member, f"{prefix}{meta.product_id}_{asset_key}.tif")
            for asset_key, member in sorted(layout.rasters.items())
        ]

        def convert(job: tuple[str, str, str]) -> RasterAsset:
            asset_key, member, dst_key = job
            try:
                asset = self._convert_one(layout, meta, asset_key, source, member, dst_key)
            except RASTER_ERRORS as error:
                self._raise_if_corrupt(source, asset_key, member, error)
                raise  # the member decodes from a local copy: a read failure, retried
            outputs.keys.append(dst_key)
            return asset

        return in_threads(convert, jobs, source.threads)

    def _convert_one(
        self,
        layout: ProductLayout,
        meta: MuscateMetadata,
        asset_key: str,
        source: UploadSource,
        member: str,
        dst_key: str,
    ) -> RasterAsset:
        """Read from the zip (on S3 or its local copy), write the COG to scratch space, upload
        it whole. A streamed product's COG goes as soon as it is sent: scratch space holds one
        per thread whatever the product's size."""
        target = source.cog_path(asset_key)
        try:
            local = member_to_cog(
                source.member(member), target, asset_key, layout, meta, self._grid(meta)
            )
            checksum = self._upload_cog(local.path, local.size_bytes, dst_key)
        finally:
            if source.local_zip is None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(target)
        return RasterAsset(
            **local.facts,
            href=keys.s3_href(self.bucket.name, dst_key),
            size_bytes=local.size_bytes,
            checksum=checksum,
        )

    def _upload_cog(self, path: str, size: int, dst_key: str) -> str:
        """Send a COG and return its checksum: a small one in one PUT from memory, hashed from
        the bytes sent; a large one by `publish.upload_file` (in parts), hashed from the file."""
        if size > SINGLE_PUT_BYTES:
            upload_file(self.bucket, path, dst_key)
            return file_multihash(path)
        with open(path, "rb") as handle:
            body = handle.read()
        self.bucket.put_bytes(dst_key, body, COG)
        return multihash_sha256(body)

    def _grid(self, meta: MuscateMetadata) -> ProductGrid:
        """The tile the product's rasters must lie on (the metadata agrees with the name)."""
        try:
            tile = grid.tile(meta.tile)
        except ValueError as error:
            raise errors.OffGrid(f"tile {meta.tile}: {error}") from error
        return ProductGrid(tile, self.settings.reduced_resolutions)

    def _raise_if_corrupt(
        self, source: UploadSource, asset_key: str, member: str, error: Exception
    ) -> None:
        """Tell a broken raster from a failed read: copy the member out of the zip (streamed
        through another client, or from the local copy with Python's zipfile) and decode it
        locally, window by window. A member that fails there is a bad product; one that
        decodes was a read failure worth a retry."""
        key = source.key
        with tempfile.TemporaryDirectory(dir=source.scratch) as scratch:
            local = os.path.join(scratch, "member.tif")
            try:
                self.uploads.copy_member(key, member, local, source.local_zip)
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
        source: UploadSource,
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
        mask_path = source.cog_path(mask.key) if source.local_zip else cog.s3_to_vsi(mask.href)
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
            size_bytes=source.head.size,
        )
        return l2a_item(meta, collection, geometry, rasters, [*files, archive])

    def _archive_upload(self, source: UploadSource, prefix: str, product_id: str) -> None:
        self.uploads.archive(source.key, f"{prefix}{product_id}.zip", source.head)

"""One tile of a job: gather its Items, make its product, describe, record, fan in.

A month's tile is synthesised here; a snow season's tile is made by `stages.season`. Items are
adapted here into the synthesis' own inputs, so the synthesis knows nothing of STAC.
"""

from __future__ import annotations

import contextlib
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import rasterio
from aws_lambda_powertools import Logger
from rasterio.session import DummySession

from sansnuages import layout
from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.formats import muscate
from sansnuages.formats.bands import SENTINEL2_GROUPS
from sansnuages.formats.l3a_product import (
    SynthesisFacts,
    l3a_product_id,
    metadata_xml,
    quicklook_jpeg,
)
from sansnuages.period import HydrologicalYear, SynthesisPeriod
from sansnuages.processing.synthesis import (
    SYNTHESIS_GDAL_OPTIONS,
    GroupOutputs,
    GroupStats,
    Observation,
    OpenDatasets,
    OutputGrid,
    synthesize_group,
)
from sansnuages.processing.tile_inputs import (
    METHOD_PARAMETERS,
    OutputLayer,
    newest_versions,
    observation_from_item,
    output_grids,
    output_layers,
)
from sansnuages.raster.brdf import AngleGrid
from sansnuages.settings import Settings
from sansnuages.stac.collections import L2A_REFLECTANCE, SENTINEL2_L3A
from sansnuages.stac.common import FileAsset, RasterAsset, Source
from sansnuages.stac.l3a import SynthesisRun, l3a_item
from sansnuages.stages.outcomes import decide
from sansnuages.stages.outcomes import is_last_attempt as is_last_attempt
from sansnuages.stages.publish import publish_item, retire_older_versions, upload_file
from sansnuages.stages.season import TileSeason
from sansnuages.stores import aws
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.jobs import JobStore, TileState
from sansnuages.stores.messages import MosaicJob, TileTask
from sansnuages.stores.usage import Meter

logger = Logger(child=True)

TRANSFER_THREADS = 8
"""Requests to S3 in flight at once for a tile's small, independent objects (the view angles of
its inputs, its output COGs): each waits on the network, not on the CPU."""


def tile_items(catalog: Catalog, tile: str, period: SynthesisPeriod) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    items.extend(
        catalog.iter_items(
            list(L2A_REFLECTANCE),
            datetime_range=(period.start, period.end),
            filters={"grid:code": f"MGRS-{tile}"},
        )
    )
    return newest_versions(items)


def _percent(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {name: round(100 * count / total, 2) for name, count in counts.items()}


@dataclass(frozen=True)
class MonthTile:
    """A tile task whose period is a month: what the synthesis reads of it."""

    job_id: str
    tile: str
    period: SynthesisPeriod
    version: int

    @classmethod
    def of(cls, task: TileTask) -> MonthTile:
        if not isinstance(task.period, SynthesisPeriod):
            raise InvalidRequest(f"tile {task.tile}: {task.period.label} is not a month")
        return cls(task.job_id, task.tile, task.period, task.version)


@dataclass
class TileCompositor:
    settings: Settings
    bucket: DataBucket
    catalog: Catalog
    jobs: JobStore

    @classmethod
    def from_settings(cls, settings: Settings) -> TileCompositor:
        return cls(
            settings,
            DataBucket(settings),
            Catalog(settings.catalog_table, settings=settings),
            JobStore(settings),
        )

    def produce(self, task: TileTask, meter: Meter | None = None) -> str:
        """The tile's product for its job's period; returns its Item key. GDAL's requests to
        S3 are estimated into `meter` (boto3's it counts itself)."""
        meter = meter or Meter()
        if isinstance(task.period, HydrologicalYear):
            season = TileSeason(self.settings, self.bucket, self.catalog)
            return season.make(task.job_id, task.tile, task.period, task.version, meter)
        return self.synthesise(task, meter)

    def run(self, task: TileTask, last_attempt: bool = False) -> str | None:
        """Synthesise the tile and record it; returns the Item key (None if it failed for good).

        What an error does is `outcomes.decide`'s: invalid input (no inputs, a bad request)
        fails the tile at once; anything else is raised so that the queue delivers the message
        again, and on its `last_attempt` (the queue's maxReceiveCount) the tile is marked failed
        with the error first, so the job ends instead of waiting for it.
        """
        meter = Meter.start()
        try:
            return self._run(task, last_attempt, meter)
        finally:
            meter.close()
            self.jobs.add_usage(task.job_id, meter.total())

    def _run(self, task: TileTask, last_attempt: bool, meter: Meter) -> str | None:
        self.jobs.start_tile(task.job_id, task.tile)
        try:
            item_key = self.produce(task, meter)
        except Exception as error:
            outcome = decide(error, last_attempt)
            if outcome.fails_unit:
                self._fail(task, outcome.reason)
            if outcome.raises:
                raise
            return None
        self.jobs.finish_tile(task.job_id, task.tile, TileState.DONE, item=item_key)
        checkpoint("composite.after-finish-tile")
        self.fan_in(task.job_id, task.tile)
        return item_key

    def _fail(self, task: TileTask, reason: str) -> None:
        logger.warning(
            "tile failed", extra={"job": task.job_id, "tile": task.tile, "reason": reason}
        )
        self.jobs.finish_tile(task.job_id, task.tile, TileState.FAILED, reason=reason)
        self.fan_in(task.job_id, task.tile)

    def synthesise(self, tile_task: TileTask, meter: Meter | None = None) -> str:
        task = MonthTile.of(tile_task)
        items = tile_items(self.catalog, task.tile, task.period)
        if not items:
            raise NoInputs(
                f"no L2A product of tile {task.tile} in the window of {task.period.label}"
            )
        platforms = [i["properties"].get("platform", "") for i in items]
        product_id = l3a_product_id(task.tile, task.period.centre, platforms, task.version)
        prefix = layout.l3a_prefix(task.tile, task.period.year, task.period.month, product_id)
        item_key = f"{prefix}{product_id}.json"
        written = self.bucket.get_json_or_none(item_key)
        if written is not None:
            # A duplicate delivery, or a retry after a crash past the Item file (written last
            # of the files): finish what follows it, indexing and retiring older versions.
            self.catalog.put_item(written)
            retire_older_versions(
                self.catalog, SENTINEL2_L3A, task.period.centre_datetime, task.tile, task.version
            )
            return item_key
        nadir = self.settings.nadir_normalisation
        grids = self._angle_grids(items) if nadir else [None] * len(items)
        observations = [
            observation_from_item(item, nadir, angles)
            for item, angles in zip(items, grids, strict=True)
        ]
        rasters, stats, files = self._rasters(task, items, observations, prefix, product_id)
        item = self._item(task, product_id, items, rasters, stats["R1"].pixel_counts, files)
        if meter is not None:
            meter.add_gdal(items, [])  # the outputs went through boto3, which counts itself
        publish_item(self.bucket, self.catalog, item, item_key)
        checkpoint("composite.after-publish")
        retire_older_versions(
            self.catalog, SENTINEL2_L3A, task.period.centre_datetime, task.tile, task.version
        )
        return item_key

    def _rasters(
        self,
        task: MonthTile,
        items: list[dict[str, Any]],
        observations: list[Observation],
        prefix: str,
        product_id: str,
    ) -> tuple[list[RasterAsset], dict[str, GroupStats], list[FileAsset]]:
        """Synthesise each group into a local folder, store its layers under `prefix`, then the
        side files; the raster assets, each group's statistics and the side files' assets."""
        rasters: list[RasterAsset] = []
        stats: dict[str, GroupStats] = {}
        # the session: no boto3 one made for each tile (credentials are the process's options)
        with (
            rasterio.Env(session=DummySession(), **SYNTHESIS_GDAL_OPTIONS),
            tempfile.TemporaryDirectory(prefix="l3a-") as folder,
            contextlib.ExitStack() as opened,
        ):
            local, datasets = Path(folder), OpenDatasets(opened)  # inputs open for both groups
            for group, grid_ in output_grids(task.tile, items).items():
                outputs = self._outputs(group, local, product_id)
                stats[group] = synthesize_group(
                    observations, SENTINEL2_GROUPS[group], grid_, task.period.centre,
                    task.period.half_window_days, outputs, datasets=datasets,
                )  # fmt: skip
                layers = output_layers(group, SENTINEL2_GROUPS[group], stats[group].band_subsets)
                sizes = self._upload(local, prefix, product_id, layers)
                rasters.extend(
                    self._asset(layer, prefix, product_id, grid_, size)
                    for layer, size in zip(layers, sizes, strict=True)
                )
            files = self._side_files(task, product_id, prefix, items, stats, local)
        return rasters, stats, files

    def _outputs(self, group: str, local: Path, product_id: str) -> GroupOutputs:
        """Where the group's layers are written: COGs in the `local` folder, which `_upload`
        stores (`publish.upload_file` says why)."""
        bands = SENTINEL2_GROUPS[group]
        return GroupOutputs(
            frc={band: self._local(local, product_id, f"FRC_{band}") for band in bands},
            flags=self._local(local, product_id, f"FLG_{group}"),
            weights=self._local(local, product_id, f"WGT_{group}"),
            dates=self._local(local, product_id, f"DTS_{group}"),
        )

    def _side_files(
        self,
        task: MonthTile,
        product_id: str,
        prefix: str,
        items: list[dict[str, Any]],
        stats: dict[str, GroupStats],
        local: Path,
    ) -> list[FileAsset]:
        """The metadata document and the quicklook (from the `local` copies of the rasters),
        stored next to the rasters."""
        contributing = {p for group in stats.values() for p in group.contributing}
        facts = SynthesisFacts(
            product_id=product_id,
            tile=task.tile,
            centre=task.period.centre,
            start=task.period.start.date(),
            end=task.period.end.date(),
            half_window_days=task.period.half_window_days,
            inputs=[i["id"] for i in items],
            contributing=[i["id"] for i in items if i["id"] in contributing],
            flag_percent=_percent(stats["R1"].pixel_counts),
            parameters=METHOD_PARAMETERS,
        )
        mtd_key = f"{prefix}{product_id}_MTD_ALL.xml"
        qkl_key = f"{prefix}{product_id}_QKL_ALL.jpg"
        self.bucket.put_bytes(mtd_key, metadata_xml(facts), "application/xml")
        rgb = [self._local(local, product_id, f"FRC_{b}") for b in ("B4", "B3", "B2")]
        self.bucket.put_bytes(qkl_key, quicklook_jpeg(rgb), "image/jpeg")
        return [
            FileAsset(
                "metadata",
                layout.s3_href(self.bucket.name, mtd_key),
                "application/xml",
                ("metadata",),
                "Synthesis metadata: period, parameters, input products",
            ),
            FileAsset(
                "thumbnail",
                layout.s3_href(self.bucket.name, qkl_key),
                "image/jpeg",
                ("thumbnail", "overview"),
                "Quicklook, true colour",
            ),
        ]

    def _angle_grids(self, items: list[dict[str, Any]]) -> list[AngleGrid | None]:
        """`_angle_grid` of each Item, their metadata files fetched a few at a time."""
        with ThreadPoolExecutor(TRANSFER_THREADS, "angles") as pool:
            return list(pool.map(self._angle_grid, items))

    def _angle_grid(self, item: dict[str, Any]) -> AngleGrid | None:
        """The view angle grid of an L2A product, from its metadata file (None without)."""
        asset = item["assets"].get("metadata")
        if asset is None:
            return None
        bucket, key = layout.split_s3_href(asset["href"])
        if bucket != self.bucket.name:
            return None
        return muscate.view_angle_grid(self.bucket.get_bytes(key))

    @staticmethod
    def _local(local: Path, product_id: str, name: str) -> str:
        return str(local / f"{product_id}_{name}.tif")

    def _upload(
        self, local: Path, prefix: str, product_id: str, layers: list[OutputLayer]
    ) -> list[int]:
        """Store the `layers` written in `local` under `prefix`, a few at a time; their sizes
        in bytes, in order."""

        def one(layer: OutputLayer) -> int:
            path = self._local(local, product_id, layer.name)
            return upload_file(self.bucket, path, f"{prefix}{product_id}_{layer.name}.tif")

        with ThreadPoolExecutor(TRANSFER_THREADS, "upload") as pool:
            return list(pool.map(one, layers))

    def _asset(
        self, layer: OutputLayer, prefix: str, product_id: str, grid_: OutputGrid, size: int
    ) -> RasterAsset:
        key = f"{prefix}{product_id}_{layer.name}.tif"
        return RasterAsset(
            key=layer.name,
            href=layout.s3_href(self.bucket.name, key),
            title=layer.title,
            roles=layer.roles,
            shape=(grid_.height, grid_.width),
            transform=tuple(grid_.transform)[:6],
            epsg=int(grid_.crs.split(":")[1]),
            data_type=layer.data_type,
            nodata=layer.nodata,
            scales=(layer.scale,),
            band_names=layer.band_names,
            size_bytes=size,
        )

    def _item(
        self,
        task: MonthTile,
        product_id: str,
        inputs: list[dict[str, Any]],
        rasters: list[RasterAsset],
        flag_counts: dict[str, int],
        files: list[FileAsset],
    ) -> pystac.Item:
        run = SynthesisRun(
            product_id=product_id,
            tile=task.tile,
            period=task.period,
            job_id=task.job_id,
            version=task.version,
            nadir_normalisation=self.settings.nadir_normalisation,
            flag_percent=_percent(flag_counts),
        )
        derived = [Source.of(layout.item_href(self.bucket.name, i), i) for i in inputs]
        return l3a_item(run, inputs, derived, rasters, files)

    def fan_in(self, job_id: str, tile: str) -> None:
        """The last tile to finish enqueues the mosaic (exactly once, whatever the deliveries):
        the claim names the tile, so a retry of its message after a crash between the claim
        and the send claims again and sends; once sent, the job records it."""
        if self.jobs.claim_mosaic(job_id, by=tile):
            checkpoint("composite.before-mosaic-send")
            aws.client("sqs", self.settings).send_message(
                QueueUrl=self.settings.mosaic_queue_url, MessageBody=MosaicJob(job_id).body()
            )
            checkpoint("composite.after-mosaic-send")
            self.jobs.record_mosaic_sent(job_id)
            logger.info("mosaic enqueued", extra={"job": job_id})

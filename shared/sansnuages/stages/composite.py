"""One tile of a monthly job: gather its L2A Items, synthesise, describe, record, fan in.

Items are adapted here into the synthesis' own inputs, so the synthesis knows nothing of STAC.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import pystac
import rasterio
from affine import Affine
from aws_lambda_powertools import Logger
from shapely.geometry import mapping, shape
from shapely.ops import unary_union

from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.formats import grid, muscate
from sansnuages.formats.bands import LANDSAT8_TO_SENTINEL2, SENTINEL2_GROUPS, is_landsat
from sansnuages.formats.l3a_product import (
    SynthesisFacts,
    l3a_product_id,
    metadata_xml,
    quicklook_jpeg,
)
from sansnuages.period import SynthesisPeriod
from sansnuages.processing.synthesis import (
    AOT_MAX,
    AOT_MIN_WEIGHT,
    CLOUD_CELL_M,
    DATE_MIN_WEIGHT,
    DTS_NODATA,
    LANDSAT8_WEIGHT,
    SENTINEL2_WEIGHT,
    SYNTHESIS_GDAL_OPTIONS,
    GroupOutputs,
    GroupStats,
    Observation,
    OutputGrid,
    RasterRef,
    synthesize_group,
)
from sansnuages.raster.brdf import AngleGrid, NadirNormalisation, ViewGeometry
from sansnuages.raster.gdal import gdal_env
from sansnuages.settings import Settings
from sansnuages.stac.collections import L2A_REFLECTANCE, SENTINEL2_L3A
from sansnuages.stac.common import FileAsset, ItemFacts, RasterAsset, build_item, set_processing
from sansnuages.stages.publish import publish_item
from sansnuages.stores import aws
from sansnuages.stores import bucket as storage
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobStore, TileState

logger = Logger(child=True)

SENSOR_WEIGHTS = {"sentinel-2": SENTINEL2_WEIGHT, "landsat": LANDSAT8_WEIGHT}
METHOD_PARAMETERS = {
    "aot_max": AOT_MAX,
    "aot_min_weight": AOT_MIN_WEIGHT,
    "date_min_weight": DATE_MIN_WEIGHT,
    "cloud_cell_m": CLOUD_CELL_M,
    "sentinel2_weight": SENTINEL2_WEIGHT,
    "landsat8_weight": LANDSAT8_WEIGHT,
}


@dataclass(frozen=True)
class OutputLayer:
    """One synthesis output as the Item describes it."""

    name: str
    title: str
    roles: tuple[str, ...]
    data_type: str
    nodata: float | None
    scale: float | None = None
    band_names: tuple[str, ...] = ()


def output_layers(
    group: str, bands: tuple[str, ...], subsets: tuple[tuple[str, ...], ...] = ()
) -> list[OutputLayer]:
    reflectance = [
        OutputLayer(
            f"FRC_{b}",
            f"Composite reflectance {b}",
            ("data", "reflectance"),
            "int16",
            -10000,
            1e-4,
            (b,),
        )
        for b in bands
    ]
    quality = []
    for members in ((), *subsets):
        name = group + ("_" + "".join(members) if members else "")
        about = f"{group} ({' '.join(members)})" if members else group
        quality += [
            OutputLayer(
                f"FLG_{name}",
                f"Flags {about}: 0 no data, 1 cloud, 2 snow, 3 water, 4 clear land",
                ("data", "cloud"),
                "uint8",
                None,
            ),
            OutputLayer(f"WGT_{name}", f"Total weight x 1000 {about}", ("data",), "int16", None),
            OutputLayer(
                f"DTS_{name}",
                f"Weighted mean date {about}, days from the 15th",
                ("data",),
                "int16",
                DTS_NODATA,
            ),
        ]
    return [*reflectance, *quality]


@dataclass(frozen=True)
class TileTask:
    job_id: str
    tile: str
    period: SynthesisPeriod
    version: int = 0
    """Run of the month (0 first): each run writes its own product, never over another."""

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> TileTask:
        try:
            return cls(
                str(body["job_id"]),
                str(body["tile"]),
                SynthesisPeriod.parse(str(body["month"])),
                int(body.get("version") or 0),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InvalidRequest(f"not a tile message: {error!r}") from error


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


def newest_versions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of several products for one platform and date, keep every piece of the newest version."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for item in items:
        props = item["properties"]
        groups[(props.get("platform", ""), props["datetime"][:10])].append(item)

    def version(item: dict[str, Any]) -> tuple[int, ...]:
        text = str(item["properties"].get("processing:version", "0"))
        return tuple(int(part) for part in text.replace(".", "-").split("-") if part.isdigit())

    kept: list[dict[str, Any]] = []
    for group in groups.values():
        newest = max(version(item) for item in group)
        kept.extend(item for item in group if version(item) == newest)
    return sorted(kept, key=lambda item: (item["properties"]["datetime"], item["id"]))


def _ref(item: dict[str, Any], key: str, band: int = 1) -> RasterRef:
    asset = item["assets"][key]
    raster_bands = asset.get("raster:bands", [{}])
    info = raster_bands[band - 1] if len(raster_bands) >= band else {}
    return RasterRef(
        path=asset["href"].replace("s3://", "/vsis3/", 1),
        band=band,
        scale=float(info.get("scale") or 1.0),
        nodata=info.get("nodata"),
    )


def view_geometry(properties: dict[str, Any]) -> ViewGeometry | None:
    """The mean sun and view angles an L2A Item carries (`view:*`); None if one is missing."""
    names = ("view:sun_elevation", "view:sun_azimuth", "view:incidence_angle", "view:azimuth")
    values = [float(properties[name]) for name in names if properties.get(name) is not None]
    if len(values) < len(names):
        return None
    elevation, sun_azimuth, incidence, azimuth = values
    return ViewGeometry(90.0 - elevation, sun_azimuth, incidence, azimuth)


def observation_from_item(
    item: dict[str, Any], nadir: bool = False, grid: AngleGrid | None = None
) -> Observation:
    """`nadir`: normalise the observation to nadir view with the Item's mean angles, and the
    product's view angle `grid` where it has one (an Item without angles is used as it is)."""
    platform = item["properties"].get("platform", "")
    landsat = is_landsat(platform)
    reflectance, cloud, edge, aot = {}, {}, {}, {}
    for group, bands in SENTINEL2_GROUPS.items():
        for band in bands:
            source_band = LANDSAT8_TO_SENTINEL2.get(band) if landsat else band
            source_group = "XS" if landsat else group
            if source_band is None or f"FRE_{source_band}" not in item["assets"]:
                continue
            reflectance[band] = _ref(item, f"FRE_{source_band}")
            cloud[band] = _ref(item, f"CLM_{source_group}")
            edge[band] = _ref(item, f"EDG_{source_group}")
            aot[band] = _ref(item, f"ATB_{source_group}", band=2)
    return Observation(
        product_id=item["id"],
        platform=platform,
        acquired=datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00")),
        sensor_weight=SENSOR_WEIGHTS["landsat" if landsat else "sentinel-2"],
        reflectance=reflectance,
        cloud=cloud,
        edge=edge,
        aot=aot,
        nadir=NadirNormalisation(replace(geometry, grid=grid))
        if nadir and (geometry := view_geometry(item["properties"]))
        else None,
    )


def output_grids(tile: str, items: list[dict[str, Any]]) -> dict[str, OutputGrid]:
    """The Sentinel-2 10/20 m grids of the tile, at the resolution the products carry."""
    sentinel = next((i for i in items if not is_landsat(i["properties"].get("platform", ""))), None)
    if sentinel is not None:
        return {
            group: _grid_of(sentinel["assets"][f"FRE_{bands[0]}"])
            for group, bands in SENTINEL2_GROUPS.items()
        }
    landsat = items[0]["assets"]["FRE_B2"]
    res = abs(landsat["proj:transform"][0]) / 3
    square = grid.tile(tile)
    size = round(square.size_m / res)
    crs = f"EPSG:{square.epsg}"
    return {
        "R1": OutputGrid(crs, Affine(res, 0, square.ulx, 0, -res, square.uly), size, size),
        "R2": OutputGrid(
            crs, Affine(2 * res, 0, square.ulx, 0, -2 * res, square.uly), size // 2, size // 2
        ),
    }


def _grid_of(asset: dict[str, Any]) -> OutputGrid:
    height, width = asset["proj:shape"]
    return OutputGrid(asset["proj:code"], Affine(*asset["proj:transform"][:6]), width, height)


def _percent(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {name: round(100 * count / total, 2) for name, count in counts.items()}


def _version(product_id: str) -> int:
    """The run number of an L3A id (`..._V1-3` -> 3); 0 when it carries none."""
    _, _, tail = product_id.rpartition("_V")
    minor = tail.rpartition("-")[2]
    return int(minor) if minor.isdigit() else 0


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

    def run(self, task: TileTask, last_attempt: bool = False) -> str | None:
        """Synthesise the tile and record it; returns the Item key (None if it failed for good).

        NoInputs fails the tile at once. Any other error is raised so that the queue delivers
        the message again; on its `last_attempt` (the queue's maxReceiveCount) the tile is
        marked failed with the error first, so the job ends instead of waiting for it.
        """
        try:
            item_key = self.synthesise(task)
        except NoInputs as error:
            self._fail(task, str(error))
            return None
        except Exception as error:
            if last_attempt:
                self._fail(task, f"gave up after the last retry: {type(error).__name__}: {error}")
            raise
        self.jobs.finish_tile(task.job_id, task.tile, TileState.DONE, item=item_key)
        self.fan_in(task.job_id)
        return item_key

    def _fail(self, task: TileTask, reason: str) -> None:
        logger.warning(
            "tile failed", extra={"job": task.job_id, "tile": task.tile, "reason": reason}
        )
        self.jobs.finish_tile(task.job_id, task.tile, TileState.FAILED, reason=reason)
        self.fan_in(task.job_id)

    def synthesise(self, task: TileTask) -> str:
        items = tile_items(self.catalog, task.tile, task.period)
        if not items:
            raise NoInputs(
                f"no L2A product of tile {task.tile} in the window of {task.period.label}"
            )
        platforms = [i["properties"].get("platform", "") for i in items]
        product_id = l3a_product_id(task.tile, task.period.centre, platforms, task.version)
        prefix = storage.l3a_prefix(task.tile, task.period.year, task.period.month, product_id)
        item_key = f"{prefix}{product_id}.json"
        if self.bucket.exists(item_key):
            return item_key  # a duplicate delivery: the Item is written last, so all is there
        nadir = self.settings.nadir_normalisation
        observations = [
            observation_from_item(item, nadir, self._angle_grid(item) if nadir else None)
            for item in items
        ]
        rasters: list[RasterAsset] = []
        stats: dict[str, GroupStats] = {}
        with gdal_env(self.settings), rasterio.Env(**SYNTHESIS_GDAL_OPTIONS):
            for group, grid_ in output_grids(task.tile, items).items():
                stats[group] = self._group(task, observations, group, grid_, prefix, product_id)
                layers = output_layers(group, SENTINEL2_GROUPS[group], stats[group].band_subsets)
                rasters.extend(self._asset(layer, prefix, product_id, grid_) for layer in layers)
            files = self._side_files(task, product_id, prefix, items, stats)
        item = self._item(task, product_id, items, rasters, stats["R1"].pixel_counts, files)
        publish_item(self.bucket, self.catalog, item, item_key)
        self._retire_older_versions(task, product_id)
        return item_key

    def _group(
        self,
        task: TileTask,
        observations: list[Observation],
        group: str,
        grid_: OutputGrid,
        prefix: str,
        product_id: str,
    ) -> GroupStats:
        bands = SENTINEL2_GROUPS[group]
        outputs = GroupOutputs(
            frc={band: self._path(prefix, product_id, f"FRC_{band}") for band in bands},
            flags=self._path(prefix, product_id, f"FLG_{group}"),
            weights=self._path(prefix, product_id, f"WGT_{group}"),
            dates=self._path(prefix, product_id, f"DTS_{group}"),
        )
        return synthesize_group(
            observations, bands, grid_, task.period.centre, task.period.half_window_days, outputs
        )

    def _side_files(
        self,
        task: TileTask,
        product_id: str,
        prefix: str,
        items: list[dict[str, Any]],
        stats: dict[str, GroupStats],
    ) -> list[FileAsset]:
        """The metadata document and the quicklook, stored next to the rasters."""
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
        rgb = [self._path(prefix, product_id, f"FRC_{b}") for b in ("B4", "B3", "B2")]
        self.bucket.put_bytes(qkl_key, quicklook_jpeg(rgb), "image/jpeg")
        return [
            FileAsset(
                "metadata",
                storage.s3_href(self.bucket.name, mtd_key),
                "application/xml",
                ("metadata",),
                "Synthesis metadata: period, parameters, input products",
            ),
            FileAsset(
                "thumbnail",
                storage.s3_href(self.bucket.name, qkl_key),
                "image/jpeg",
                ("thumbnail", "overview"),
                "Quicklook, true colour",
            ),
        ]

    def _retire_older_versions(self, task: TileTask, product_id: str) -> None:
        """Once the new version is indexed, earlier runs leave the index (their files stay at
        their keys until purged), so a search never mixes two runs of one tile and month."""
        page = self.catalog.search(
            collections=[SENTINEL2_L3A],
            bbox=None,
            datetime_range=(task.period.centre_datetime, task.period.centre_datetime),
            ids=None,
            limit=100,
            token=None,
            filters={"grid:code": f"MGRS-{task.tile}"},
        )
        for old in page.items:
            if old["id"] != product_id and _version(old["id"]) < task.version:
                self.catalog.delete_item(SENTINEL2_L3A, old["id"])

    def _angle_grid(self, item: dict[str, Any]) -> AngleGrid | None:
        """The view angle grid of an L2A product, from its metadata file (None without)."""
        asset = item["assets"].get("metadata")
        if asset is None:
            return None
        bucket, key = storage.split_s3_href(asset["href"])
        if bucket != self.bucket.name:
            return None
        return muscate.view_angle_grid(self.bucket.get_bytes(key))

    def _path(self, prefix: str, product_id: str, name: str) -> str:
        return storage.vsi_path(self.bucket.name, f"{prefix}{product_id}_{name}.tif")

    def _asset(
        self, layer: OutputLayer, prefix: str, product_id: str, grid_: OutputGrid
    ) -> RasterAsset:
        key = f"{prefix}{product_id}_{layer.name}.tif"
        return RasterAsset(
            key=layer.name,
            href=storage.s3_href(self.bucket.name, key),
            title=layer.title,
            roles=layer.roles,
            shape=(grid_.height, grid_.width),
            transform=tuple(grid_.transform)[:6],
            epsg=int(grid_.crs.split(":")[1]),
            data_type=layer.data_type,
            nodata=layer.nodata,
            scales=(layer.scale,),
            band_names=layer.band_names,
            size_bytes=self.bucket.size(key),
        )

    def _item(
        self,
        task: TileTask,
        product_id: str,
        inputs: list[dict[str, Any]],
        rasters: list[RasterAsset],
        flag_counts: dict[str, int],
        files: list[FileAsset],
    ) -> pystac.Item:
        footprint = unary_union([shape(item["geometry"]) for item in inputs])
        facts = ItemFacts(
            id=product_id,
            collection=SENTINEL2_L3A,
            geometry=mapping(footprint),
            bbox=list(footprint.bounds),
            datetime=task.period.centre_datetime,
            start=task.period.start,
            end=task.period.end,
            properties={
                "grid:code": f"MGRS-{task.tile}",
                "sansnuages:platforms": sorted(
                    {i["properties"].get("platform", "") for i in inputs}
                ),
                "sansnuages:job": task.job_id,
                "sansnuages:inputs": len(inputs),
                "sansnuages:version": task.version,
                "sansnuages:nadir_normalisation": self.settings.nadir_normalisation,
                **{
                    f"sansnuages:{name}_percent": value
                    for name, value in _percent(flag_counts).items()
                },
            },
        )
        derived = [
            i["assets"]["metadata"]["href"].rsplit("/", 1)[0] + f"/{i['id']}.json" for i in inputs
        ]
        item = build_item(facts, rasters, files, derived_from=derived)
        set_processing(item, level="L3A", version=f"1.{task.version}")
        return item

    def fan_in(self, job_id: str) -> None:
        """The last tile to finish enqueues the mosaic (exactly once, whatever the deliveries)."""
        if self.jobs.claim_mosaic(job_id):
            aws.client("sqs", self.settings).send_message(
                QueueUrl=self.settings.mosaic_queue_url, MessageBody=json.dumps({"job_id": job_id})
            )
            logger.info("mosaic enqueued", extra={"job": job_id})


def is_last_attempt(receive_count: str | int | None, max_receive_count: str | int | None) -> bool:
    """Whether this delivery is the queue's last before the dead-letter queue (the redrive
    policy's maxReceiveCount, which the template also passes to the function)."""
    try:
        return int(receive_count or 0) >= int(max_receive_count or 0) > 0
    except ValueError:
        return False

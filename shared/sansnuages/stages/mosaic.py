"""The fan-in stage: a job's tiles, mosaicked over its area, described, recorded.

A month's job mosaics the true colour of its L3A syntheses; a snow season's job (`snow-2018`)
the days of snow cover (`SCD`, uint16, kept exactly) of its snow-season tiles, on the same
grids, pieces and parts (`mosaic_plan.product_of`).

An area is split into its far-apart pieces (mainland France, French Guiana, ...); only the
pieces with syntheses are mosaicked, each on its own grid and CRS, each as one Item (the
largest is the job's mosaic). A piece that fits one part is written as one COG at once; a
larger one is planned as parts on a fixed grid (`mosaic_parts`): the plan goes to S3, one
message per part goes back to the mosaic queue, and whichever invocation writes the last part
assembles the VRT, the overview COG, the thumbnail and the Item.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger
from shapely.geometry import mapping, shape

from sansnuages import areas, layout
from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.period import HydrologicalYear, SynthesisPeriod, parse_job_period
from sansnuages.processing import mosaic_parts
from sansnuages.processing.mosaic import (
    DEFAULT_CODEC,
    build_mosaic,
    codec_named,
)
from sansnuages.processing.mosaic_layers import TileInput
from sansnuages.processing.mosaic_plan import (
    TRUE_COLOUR_PRODUCT,
    PieceSpec,
    native_resolution,
    part_cells,
    pieces_with_data,
    product_of,
)
from sansnuages.settings import Settings
from sansnuages.stac.collections import SENTINEL2_L3A
from sansnuages.stages.mosaic_assembly import MosaicAssembly
from sansnuages.stages.mosaic_outputs import MosaicOutputs
from sansnuages.stages.outcomes import Action, decide, reason_of
from sansnuages.stores import aws
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.faults import checkpoint
from sansnuages.stores.jobs import Job, JobState, JobStore
from sansnuages.stores.messages import MosaicJob, MosaicPart, parse_mosaic_message, send_all
from sansnuages.stores.usage import Meter

logger = Logger(child=True)

READ_THREADS = 8
"""Item files of a job's tiles fetched at once: each GET waits on the network."""


def l3a_items(
    catalog: Catalog, period: SynthesisPeriod, bounds: tuple[float, ...]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    items.extend(
        catalog.iter_items(
            [SENTINEL2_L3A],
            bbox=bounds,
            datetime_range=(period.centre_datetime, period.centre_datetime),
        )
    )
    return items


def input_items(
    catalog: Catalog,
    period: SynthesisPeriod | HydrologicalYear,
    bounds: tuple[float, ...],
) -> list[dict[str, Any]]:
    """The tile Items of a period over `bounds`: a month's syntheses, a season's snow tiles."""
    if isinstance(period, SynthesisPeriod):
        return l3a_items(catalog, period, bounds)
    product = product_of(period)
    return list(
        catalog.iter_items(
            [product.collection],
            bbox=bounds,
            datetime_range=(period.start_datetime, period.end_datetime),
        )
    )


@dataclass
class Mosaicker:
    """The mosaic stage: a finished job's pieces, each one COG or planned in parts."""

    settings: Settings
    bucket: DataBucket
    catalog: Catalog
    jobs: JobStore
    part_pixels: int = mosaic_parts.PART_PIXELS
    fan_out: bool = True
    """Send parts to the mosaic queue (parallel invocations); False builds them in this call."""

    def __post_init__(self) -> None:
        self.outputs = MosaicOutputs(self.bucket, self.catalog)
        self.parts = MosaicAssembly(self.bucket, self.jobs, self.outputs)

    @classmethod
    def from_settings(cls, settings: Settings) -> Mosaicker:
        return cls(
            settings,
            DataBucket(settings),
            Catalog(settings.catalog_table, settings=settings),
            JobStore(settings),
        )

    # ---------------------------------------------------------------- messages

    def handle(self, message: str | dict[str, Any], last_attempt: bool = False) -> str | None:
        """One mosaic queue message: a job to mosaic, or one part of a planned mosaic.

        Errors go through `outcomes.decide`: an invalid request fails its job at once; others
        are raised for a retry, and on the last delivery fail the job with the reason first.
        A message that names no unit to fail (unreadable, or a part no plan holds) is raised
        and changes nothing: it ends in the dead-letter queue, for an operator to see."""
        job_id: str | None = None
        parsed: MosaicJob | MosaicPart | None = None
        meter = Meter.start()
        try:
            parsed = parse_mosaic_message(message)
            if isinstance(parsed, MosaicPart):
                job_id = self._job_of_plan(parsed.plan)
                if job_id is not None:
                    self.jobs.start_mosaic(job_id, attempt=False)  # parts at work: not overdue
                return self.run_part(parsed.plan, parsed.part)
            job_id = parsed.job_id
            return self.run(job_id, parsed.resolution, parsed.crs, parsed.codec)
        except Exception as error:
            outcome = decide(error, last_attempt)
            poison = parsed is None or (
                isinstance(parsed, MosaicPart) and outcome.action == Action.FAIL
            )
            if poison:
                logger.error("mosaic message refused", extra={"reason": outcome.reason})
                raise
            job = self.jobs.get(job_id) if job_id is not None else None
            if outcome.fails_unit and job is not None and not job.finished:
                self.jobs.finish(job.job_id, JobState.FAILED, reason=outcome.reason)
            logger.warning(
                "mosaic message failed",
                extra={"job": job_id, "action": str(outcome.action), "reason": outcome.reason},
            )
            if outcome.raises:
                raise
            return None
        finally:
            meter.close()
            if job_id is not None:  # its reads of the syntheses by GDAL are not estimated
                self.jobs.add_usage(job_id, meter.total())

    def _job_of_plan(self, plan_key: str) -> str | None:
        plan = self.bucket.get_json_or_none(plan_key)
        return str(plan["spec"]["job_id"]) if plan else None

    def run(
        self,
        job_id: str,
        resolution: float | None = None,
        crs: str | None = None,
        codec: str | None = None,
    ) -> str | None:
        """Mosaic a finished job; the Item key of its main piece, or None if that is in parts.

        `resolution`, `crs` and `codec` override the defaults (and ask for a rebuild). Bad
        inputs (no synthesis, a bad grid or codec) fail the job with the reason."""
        job = self.jobs.get(job_id)
        if job is None:
            logger.warning("mosaic of an unknown job refused", extra={"job": job_id})
            return None
        explicit = resolution is not None or crs is not None or codec is not None
        if job.state == JobState.DONE and job.mosaic_item and not explicit:
            return job.mosaic_item  # a repeated message; an explicit grid asks for a rebuild
        self.jobs.start_mosaic(job_id)
        try:
            item_key = self.build(
                job.area, parse_job_period(job.month), job_id, resolution, crs,
                recorded=self._recorded_items(job), codec=codec, run=job.run,
            )  # fmt: skip
        except (NoInputs, InvalidRequest) as error:
            self.jobs.finish(job_id, JobState.FAILED, reason=reason_of(error))
            logger.warning("mosaic failed", extra={"job": job_id, "reason": str(error)})
            return None
        if item_key is not None:
            self.jobs.finish(job_id, JobState.DONE, item=item_key)
        return item_key

    def build(
        self,
        area_spec: str,
        period: SynthesisPeriod | HydrologicalYear,
        job_id: str,
        resolution: float | None = None,
        crs: str | None = None,
        recorded: list[dict[str, Any]] | None = None,
        codec: str | None = None,
        run: int = 1,
    ) -> str | None:
        """Mosaic every piece of the area that has data; the main piece's Item key if written.

        `recorded`: the tile Items the job's tiles recorded, used as they are; without them,
        the job's Items are searched in the catalog. The period says the product."""
        product = product_of(period)
        codec = (codec or DEFAULT_CODEC).lower()
        product.layer.check_codec(codec, codec_named(codec).lossy)  # fails before any work
        area = areas.area_geometry(area_spec)
        items = recorded or [
            i
            for i in input_items(self.catalog, period, area.geometry.bounds)
            if i["properties"].get("sansnuages:job", job_id) == job_id
        ]
        items = [i for i in items if product.input_asset in i.get("assets", {})]
        found = pieces_with_data(areas.area_parts(area, crs), items)
        if not found:
            raise NoInputs(f"no {product.inputs} of {period.label} over {area.name}")
        resolution = resolution or native_resolution(items, product.input_asset)
        main: str | None = None
        for rank, (piece, piece_items) in enumerate(found):
            spec = PieceSpec(
                area.id,
                area.name,
                rank,
                mapping(piece.geometry),
                piece.crs,
                float(resolution),
                period.label,
                job_id,
                codec,
                product.name,
            )
            key = self.build_piece(spec, piece_items, run)
            if rank == 0:
                main = key
        return main

    def _recorded_items(self, job: Job) -> list[dict[str, Any]]:
        """The Items the job's tiles finished with. A tile whose synthesis of the month
        already existed (made by a job over another area sharing the tile) records that Item,
        so the mosaic takes it rather than searching for Items made by this job only.

        A season's Items get a `self` link to the key their tile recorded: its mosaic's
        `derived_from` links point there, wherever the season's writer put them."""
        season = isinstance(parse_job_period(job.month), HydrologicalYear)
        keys = [tile.item for tile in job.tiles if tile.item]
        with ThreadPoolExecutor(READ_THREADS, "items") as pool:  # a GET each, a few at once
            items = list(pool.map(self.bucket.get_json, keys))
        if season:
            for key, item in zip(keys, items, strict=True):
                href = layout.s3_href(self.bucket.name, key)
                links = [k for k in item.get("links", []) if k.get("rel") != "self"]
                item["links"] = [*links, {"rel": "self", "href": href}]
        return items

    # ---------------------------------------------------------------- one piece

    def build_piece(self, spec: PieceSpec, items: list[dict[str, Any]], run: int = 1) -> str | None:
        """One COG and its Item when the piece is small; else plan parts (Item key is None)."""
        inputs = [spec.kind.tile_input(i) for i in items]
        cells = part_cells(spec, inputs, self.part_pixels)
        if cells is None:
            return self._single(spec, items, inputs)
        plan_key = f"{parts_folder(spec, run)}plan.json"
        self.bucket.put_json(
            plan_key,
            {
                "spec": asdict(spec),
                "items": items,
                "cells": [{"name": c.name, "bounds": list(c.bounds)} for c in cells],
            },
        )
        checkpoint("mosaic.after-plan")
        logger.info("mosaic planned in parts", extra={"plan": plan_key, "parts": len(cells)})
        if self.fan_out and self.settings.mosaic_queue_url:
            self._send_parts(plan_key, [c.name for c in cells])
            return None
        result = None
        for cell in cells:
            result = self.run_part(plan_key, cell.name) or result
        return result

    def _single(self, spec: PieceSpec, items: list[dict[str, Any]], inputs: list[TileInput]) -> str:
        cog_key = f"{spec.prefix}{spec.product_id}.tif"
        result = build_mosaic(
            inputs,
            shape(spec.geometry),
            layout.vsi_path(self.bucket.name, cog_key),
            crs=spec.crs,
            resolution=spec.resolution,
            codec=spec.codec,
            layer=spec.layer,
        )
        png_key = self.outputs.thumbnail(spec, cog_key)
        left, _, _, top = result.bounds
        kind = spec.kind
        main = self.outputs.raster(
            kind.asset, cog_key, kind.title, kind.roles, spec, result.shape,
            (spec.resolution, 0.0, left, 0.0, -spec.resolution, top),
        )  # fmt: skip
        facts = {"sansnuages:valid_fraction": round(float(result.valid_fraction), 4)}
        return self.outputs.publish(spec, items, [main], png_key, facts)

    # ---------------------------------------------------------------- parts

    def _send_parts(self, plan_key: str, names: list[str]) -> None:
        bodies = [MosaicPart(plan_key, name).body() for name in names]
        checkpoint("mosaic.before-parts-send")
        send_all(aws.client("sqs", self.settings), self.settings.mosaic_queue_url, bodies)
        checkpoint("mosaic.after-parts-send")

    def run_part(self, plan_key: str, name: str) -> str | None:
        """Write one part (unless already written); the one that finds every part of the plan
        written assembles the mosaic from those parts only (the folder is the run's, CRS's,
        resolution's and codec's own, and anything else in it is ignored)."""
        plan = self.bucket.get_json_or_none(plan_key)
        if plan is None:
            raise InvalidRequest(f"no mosaic plan at {plan_key}")
        spec = PieceSpec(**plan["spec"])
        cells = {c["name"]: tuple(c["bounds"]) for c in plan["cells"]}
        if name not in cells:
            raise InvalidRequest(f"no part {name!r} in {plan_key}")
        folder = plan_key.rsplit("/", 1)[0] + "/"
        done = set(self.bucket.list_keys(folder))
        if f"{folder}{name}.tif" not in done and f"{folder}{name}.empty" not in done:
            self.parts.write_part(spec, plan["items"], folder, name, cells[name])
            checkpoint("mosaic.after-part")
            done = set(self.bucket.list_keys(folder))
        written = [cell for cell in sorted(cells) if f"{folder}{cell}.tif" in done]
        empty = {cell for cell in cells if f"{folder}{cell}.empty" in done}
        if set(written) | empty >= set(cells):
            return self.parts.assemble(spec, plan["items"], [f"{folder}{c}.tif" for c in written])
        return None


def parts_folder(spec: PieceSpec, run: int) -> str:
    """Where a piece's parts live: one folder per run of the job, CRS, resolution and codec,
    so a re-run or a rebuild on another grid never takes another's parts. A season's mosaic
    shares its month's folder (that of the season's start): its parts' folder names it."""
    crs = spec.crs.replace(":", "").lower()
    product = "" if spec.kind is TRUE_COLOUR_PRODUCT else f"{spec.month}-"
    return f"{spec.prefix}parts/{product}run{run}-{crs}-{spec.resolution:g}m-{spec.codec}/"

"""The fan-in stage: the month's L3A tiles of a job, mosaicked over its area, described, recorded.

An area is split into its far-apart pieces (mainland France, French Guiana, ...); only the
pieces with syntheses are mosaicked, each on its own grid and CRS, each as one Item (the
largest is the job's mosaic). A piece that fits one part is written as one COG at once; a
larger one is planned as parts on a fixed grid (`mosaic_parts`): the plan goes to S3, one
message per part goes back to the mosaic queue, and whichever invocation writes the last part
assembles the VRT, the overview COG, the thumbnail and the Item.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from aws_lambda_powertools import Logger
from shapely.geometry import mapping, shape

from sansnuages import areas, layout
from sansnuages.errors import InvalidRequest, NoInputs
from sansnuages.period import SynthesisPeriod
from sansnuages.processing import mosaic_parts
from sansnuages.processing.mosaic import (
    DEFAULT_CODEC,
    MosaicInput,
    build_mosaic,
    codec_named,
)
from sansnuages.processing.mosaic_plan import (
    PieceSpec,
    mosaic_input,
    native_resolution,
    part_cells,
    pieces_with_data,
)
from sansnuages.settings import Settings
from sansnuages.stac.collections import SENTINEL2_L3A
from sansnuages.stages.mosaic_assembly import MosaicAssembly
from sansnuages.stages.mosaic_outputs import MosaicOutputs
from sansnuages.stores import aws
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import Job, JobState, JobStore

logger = Logger(child=True)


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

    def handle(self, message: dict[str, Any]) -> str | None:
        """One mosaic queue message: a job to mosaic, or one part of a planned mosaic."""
        if "part" in message:
            return self.run_part(message["plan"], message["part"])
        return self.run(
            message["job_id"], message.get("resolution"), message.get("crs"), message.get("codec")
        )

    def run(
        self,
        job_id: str,
        resolution: float | None = None,
        crs: str | None = None,
        codec: str | None = None,
    ) -> str | None:
        """Mosaic a finished job; the Item key of its main piece, or None if that is in parts.

        `resolution`, `crs` and `codec` override the defaults (and ask for a rebuild)."""
        job = self.jobs.get(job_id)
        if job is None:
            raise NoInputs(f"unknown job {job_id}")
        explicit = resolution is not None or crs is not None or codec is not None
        if job.state == JobState.DONE and job.mosaic_item and not explicit:
            return job.mosaic_item  # a repeated message; an explicit grid asks for a rebuild
        try:
            item_key = self.build(
                job.area, SynthesisPeriod.parse(job.month), job_id, resolution, crs,
                recorded=self._recorded_items(job), codec=codec,
            )  # fmt: skip
        except (NoInputs, InvalidRequest) as error:
            self.jobs.finish(job_id, JobState.FAILED, reason=str(error))
            logger.warning("mosaic failed", extra={"job": job_id, "reason": str(error)})
            return None
        if item_key is not None:
            self.jobs.finish(job_id, JobState.DONE, item=item_key)
        return item_key

    def build(
        self,
        area_spec: str,
        period: SynthesisPeriod,
        job_id: str,
        resolution: float | None = None,
        crs: str | None = None,
        recorded: list[dict[str, Any]] | None = None,
        codec: str | None = None,
    ) -> str | None:
        """Mosaic every piece of the area that has data; the main piece's Item key if written.

        `recorded`: the L3A Items the job's tiles recorded, used as they are; without them, the
        job's Items are searched in the catalog."""
        codec = (codec or DEFAULT_CODEC).lower()
        codec_named(codec)  # an unknown codec fails here, before any work
        area = areas.area_geometry(area_spec)
        items = recorded or [
            i
            for i in l3a_items(self.catalog, period, area.geometry.bounds)
            if i["properties"].get("sansnuages:job", job_id) == job_id
        ]
        found = pieces_with_data(areas.area_parts(area, crs), items)
        if not found:
            raise NoInputs(f"no synthesis of {period.label} over {area.name}")
        resolution = resolution or native_resolution(items)
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
            )
            key = self.build_piece(spec, piece_items)
            if rank == 0:
                main = key
        return main

    def _recorded_items(self, job: Job) -> list[dict[str, Any]]:
        """The Items the job's tiles finished with. A tile whose synthesis of the month
        already existed (made by a job over another area sharing the tile) records that Item,
        so the mosaic takes it rather than searching for Items made by this job only."""
        return [self.bucket.get_json(t.item) for t in job.tiles if t.item]

    # ---------------------------------------------------------------- one piece

    def build_piece(self, spec: PieceSpec, items: list[dict[str, Any]]) -> str | None:
        """One COG and its Item when the piece is small; else plan parts (Item key is None)."""
        inputs = [mosaic_input(i) for i in items]
        cells = part_cells(spec, inputs, self.part_pixels)
        if cells is None:
            return self._single(spec, items, inputs)
        plan_key = f"{spec.prefix}parts/plan.json"
        self.bucket.put_json(
            plan_key,
            {
                "spec": asdict(spec),
                "items": items,
                "cells": [{"name": c.name, "bounds": list(c.bounds)} for c in cells],
            },
        )
        logger.info("mosaic planned in parts", extra={"plan": plan_key, "parts": len(cells)})
        if self.fan_out and self.settings.mosaic_queue_url:
            self._send_parts(plan_key, [c.name for c in cells])
            return None
        result = None
        for cell in cells:
            result = self.run_part(plan_key, cell.name) or result
        return result

    def _single(
        self, spec: PieceSpec, items: list[dict[str, Any]], inputs: list[MosaicInput]
    ) -> str:
        cog_key = f"{spec.prefix}{spec.product_id}.tif"
        result = build_mosaic(
            inputs,
            shape(spec.geometry),
            layout.vsi_path(self.bucket.name, cog_key),
            crs=spec.crs,
            resolution=spec.resolution,
            codec=spec.codec,
        )
        png_key = self.outputs.thumbnail(spec, cog_key)
        left, _, _, top = result.bounds
        visual = self.outputs.raster(
            "visual", cog_key, "True colour (B4, B3, B2)", ("visual", "data"), spec, result.shape,
            (spec.resolution, 0.0, left, 0.0, -spec.resolution, top),
        )  # fmt: skip
        facts = {"sansnuages:valid_fraction": round(float(result.valid_fraction), 4)}
        return self.outputs.publish(spec, items, [visual], png_key, facts)

    # ---------------------------------------------------------------- parts

    def _send_parts(self, plan_key: str, names: list[str]) -> None:
        sqs = aws.client("sqs", self.settings)
        for start in range(0, len(names), 10):
            entries = [
                {"Id": str(n), "MessageBody": json.dumps({"plan": plan_key, "part": name})}
                for n, name in enumerate(names[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=self.settings.mosaic_queue_url, Entries=entries)

    def run_part(self, plan_key: str, name: str) -> str | None:
        """Write one part (unless already written); the last one assembles the mosaic."""
        plan = self.bucket.get_json(plan_key)
        spec = PieceSpec(**plan["spec"])
        cells = {c["name"]: tuple(c["bounds"]) for c in plan["cells"]}
        if name not in cells:
            raise InvalidRequest(f"no part {name!r} in {plan_key}")
        folder = f"{spec.prefix}parts/"
        done = set(self.bucket.list_keys(folder))
        if f"{folder}{name}.tif" not in done and f"{folder}{name}.empty" not in done:
            self.parts.write_part(spec, plan["items"], folder, name, cells[name])
            done = set(self.bucket.list_keys(folder))
        finished = {
            k.rsplit("/", 1)[-1].rsplit(".", 1)[0] for k in done if k.endswith((".tif", ".empty"))
        }
        if finished >= set(cells):
            return self.parts.assemble(
                spec, plan["items"], sorted(k for k in done if k.endswith(".tif"))
            )
        return None

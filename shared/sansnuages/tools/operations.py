"""What an operator does to a running stack: look at its failures, send work back, purge.

Every function takes the stores and clients it acts on (made by the CLI from a `Deployment`),
so that the same code runs against a deployed stack and the local runtime.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sansnuages import areas, layout
from sansnuages.errors import InvalidProduct, InvalidRequest, NotFound
from sansnuages.formats.muscate import ProductName
from sansnuages.stac.collections import L2A_REFLECTANCE, MOSAICS, SENTINEL2_L3A, SNOW_L2B
from sansnuages.stac.extents import parse_datetime
from sansnuages.stages.publish import link_versions
from sansnuages.stages.staleness import derived_ids
from sansnuages.stores.bucket import DataBucket, decode_event_key
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import Job, JobStore, TileState, job_id_for

REASON_SUFFIX = ".reason.json"
PEEK_VISIBILITY_S = 30
"""Dead letters are received with this visibility, then made visible again at once."""
SYNTHESIS_MARGIN = timedelta(days=62)
"""A product can be an input of the syntheses of the months this close to its date."""
ITEM_COLLECTIONS = (*L2A_REFLECTANCE, SNOW_L2B, SENTINEL2_L3A, MOSAICS)


# --- failures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    body: str
    receive_count: int
    sent: str
    what: str
    """What the message is about: an upload's key, a job's tile, a job's mosaic."""
    reason: str | None = None


@dataclass(frozen=True)
class QuarantinedUpload:
    key: str
    original: str | None
    error: str | None
    reason: str | None
    product: str | None
    at: str | None


def peek(sqs: Any, queue_url: str, limit: int = 100) -> list[dict[str, Any]]:
    """Up to `limit` messages of a queue, left in it: each is received (with a short
    visibility, so that the next receive returns others), then made visible again."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    expected = min(limit, int(attributes.get("ApproximateNumberOfMessages", 0)))
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    empty = 0
    try:
        while len(seen) < expected and empty < 3:
            batch = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=PEEK_VISIBILITY_S,
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            empty = 0 if batch else empty + 1
            for message in batch:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], message)
    finally:
        _release(sqs, queue_url, handles)
    return list(seen.values())


def _release(sqs: Any, queue_url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for index, handle in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)


def describe_message(body: str) -> tuple[str, tuple[str, str | None] | None]:
    """A line saying what a queue message is about, and the (job, tile) it names (tile None
    for a mosaic), if any."""
    try:
        message = json.loads(body)
    except ValueError:
        return f"unreadable message: {body[:80]!r}", None
    if not isinstance(message, dict):
        return f"unreadable message: {body[:80]!r}", None
    if "Records" in message:
        keys = [
            decode_event_key(str(record.get("s3", {}).get("object", {}).get("key", "?")))
            for record in message["Records"]
            if isinstance(record, dict)
        ]
        return "upload " + ", ".join(keys), None
    if "job_id" in message and "tile" in message:
        return f"tile {message['tile']} of job {message['job_id']}", (
            str(message["job_id"]),
            str(message["tile"]),
        )
    if "job_id" in message:
        return f"mosaic of job {message['job_id']}", (str(message["job_id"]), None)
    if "plan" in message and "part" in message:
        return f"mosaic part {message['part']} of {message['plan']}", None
    if message.get("Event") == "s3:TestEvent":
        return "S3 test event", None
    return f"message {body[:80]}", None


def _job_reason(jobs: JobStore, named: tuple[str, str | None] | None) -> str | None:
    if named is None:
        return None
    job = jobs.get(named[0])
    if job is None:
        return f"job {named[0]} is gone"
    if named[1] is None:
        return job.reason
    tile = next((t for t in job.tiles if t.tile == named[1]), None)
    return tile.reason if tile is not None else f"tile not in job {job.job_id}"


def dead_letters(sqs: Any, queues: Iterable[tuple[str, str]], jobs: JobStore) -> list[DeadLetter]:
    """The messages of every dead-letter queue (`(name, url)`), peeked, each with what it
    names and, for a job's tile or mosaic, the reason the job recorded."""
    letters = []
    for name, url in queues:
        for message in peek(sqs, url):
            what, named = describe_message(message["Body"])
            attributes = message.get("Attributes", {})
            letters.append(
                DeadLetter(
                    queue=name,
                    message_id=message["MessageId"],
                    body=message["Body"],
                    receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
                    sent=_epoch_ms(attributes.get("SentTimestamp")),
                    what=what,
                    reason=_job_reason(jobs, named),
                )
            )
    return letters


def _epoch_ms(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromtimestamp(int(value) / 1000).astimezone().isoformat(timespec="seconds")


def quarantined(bucket: DataBucket) -> list[QuarantinedUpload]:
    """Every upload under `quarantine/`, with the reason recorded beside it (None when the
    reason file is missing)."""
    keys = set(bucket.list_keys(layout.QUARANTINE_PREFIX))
    uploads = []
    for key in sorted(k for k in keys if not k.endswith(REASON_SUFFIX)):
        reason = bucket.get_json_or_none(key + REASON_SUFFIX) if key + REASON_SUFFIX in keys else {}
        reason = reason or {}
        uploads.append(
            QuarantinedUpload(
                key=key,
                original=reason.get("key"),
                error=reason.get("error"),
                reason=reason.get("reason"),
                product=reason.get("product"),
                at=reason.get("at"),
            )
        )
    return uploads


# --- re-ingest -----------------------------------------------------------------------------


def reingest(bucket: DataBucket, key: str) -> str:
    """Put a quarantined upload, or the archived original of a product, back under
    `incoming/`, where the bucket's notification ingests it again; returns the new key.

    A quarantined upload goes back to the key it was uploaded as, and leaves the quarantine
    (reason included): if it is refused again, ingest quarantines it again with the new
    reason. An archive is copied, and stays beside its Item."""
    key = key.removeprefix(f"s3://{bucket.name}/").removesuffix(REASON_SUFFIX)
    if key.startswith(layout.QUARANTINE_PREFIX):
        reason = bucket.get_json_or_none(key + REASON_SUFFIX) or {}
        original = str(reason.get("key") or "")
        target = (
            original
            if original.startswith(layout.INCOMING_PREFIX)
            else layout.INCOMING_PREFIX + key.removeprefix(layout.QUARANTINE_PREFIX)
        )
    elif key.startswith("l2a/") and key.endswith(".zip"):
        target = layout.INCOMING_PREFIX + posixpath.basename(key)
    else:
        raise InvalidRequest(
            f"{key} is neither a quarantined upload (quarantine/...) nor an archived product"
            " (l2a/.../<id>.zip)"
        )
    if not bucket.exists(key):
        raise NotFound(f"no object {key} in bucket {bucket.name}")
    bucket.client.copy({"Bucket": bucket.name, "Key": key}, bucket.name, target)
    if key.startswith(layout.QUARANTINE_PREFIX):
        bucket.delete_many([key, key + REASON_SUFFIX])
    return target


# --- re-run --------------------------------------------------------------------------------


def plan_event(month: str, area: str, geojson_text: str | None = None) -> dict[str, Any]:
    """The plan function's event for a month over a country, or over a polygon sent with it
    (a GeoJSON file is read here: the function cannot read this machine's files)."""
    if geojson_text is not None:
        return {"month": month, "area_geojson": geojson_text}
    return {"month": month, "area": area}


def tile_message(job: Job, tile: str) -> str:
    """The composite message of one tile of `job`, as the plan sends it."""
    return job.task(tile).body()


def area_job_id(month: str, area: str) -> str:
    """The id of the job of `month` over `area` (a country, or a polygon's area spec)."""
    return job_id_for(month, areas.area_geometry(area).id)


def rerun_tile(jobs: JobStore, sqs: Any, queue_url: str, job_id: str, tile: str) -> str:
    """Send one tile of a job to the composite queue again; returns what was done.

    A failed tile is reopened first (its job back to running, so that the mosaic is made
    again); a pending one is sent again (a repeated message is an idempotent re-delivery); a
    done one is left alone: its synthesis exists, and a new version takes a re-run of the
    month."""
    job = jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    status = next((t for t in job.tiles if t.tile == tile), None)
    if status is None:
        known = ", ".join(t.tile for t in job.tiles)
        raise NotFound(f"tile {tile} is not in job {job_id} (tiles: {known})")
    if status.state == TileState.DONE:
        raise InvalidRequest(
            f"tile {tile} of job {job_id} is done; re-run the whole month for a new version"
        )
    reopened = status.state == TileState.FAILED and jobs.reopen_tile(job_id, tile)
    sqs.send_message(QueueUrl=queue_url, MessageBody=tile_message(job, tile))
    return f"tile {tile} of job {job_id} {'reopened and ' if reopened else ''}sent again"


# --- purge ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doomed:
    """One Item that a purge removes, with its files and whether it is indexed."""

    collection: str
    item_id: str
    item_key: str
    keys: tuple[str, ...]
    indexed: bool


@dataclass
class PurgePlan:
    bucket: str
    product: Doomed
    syntheses: list[Doomed] = field(default_factory=list)
    mosaics: list[Doomed] = field(default_factory=list)

    @property
    def items(self) -> list[Doomed]:
        """In the order they go: what was made from the product first, the product last."""
        return [*self.mosaics, *self.syntheses, self.product]

    def describe(self) -> str:
        lines = []
        for title, doomed in (
            ("product", [self.product]),
            ("syntheses derived from it", self.syntheses),
            ("mosaics derived from those", self.mosaics),
        ):
            lines.append(f"{title}: {len(doomed)}")
            for item in doomed:
                index = "index record" if item.indexed else "not indexed"
                lines.append(f"  {item.collection}/{item.item_id}  ({index})")
                lines.extend(f"    s3://{self.bucket}/{key}" for key in item.keys)
        keys = sum(len(item.keys) for item in self.items)
        records = sum(1 for item in self.items if item.indexed)
        lines.append(f"in all: {len(self.items)} Items, {keys} keys, {records} index records")
        return "\n".join(lines)


def find_item(catalog: Catalog, item_id: str) -> dict[str, Any]:
    for collection in ITEM_COLLECTIONS:
        try:
            return catalog.get_item(collection, item_id)
        except NotFound:
            continue
    raise NotFound(
        f"no Item {item_id} in the catalog index (if its files exist, `sansnuages reindex` first)"
    )


def _indexed(catalog: Catalog, collection: str, item_id: str) -> bool:
    try:
        catalog.get_item(collection, item_id)
    except NotFound:
        return False
    return True


def _doomed(bucket: DataBucket, catalog: Catalog, item: dict[str, Any]) -> Doomed:
    item_key = layout.item_key(item)
    keys = {item_key}
    for asset in item.get("assets", {}).values():
        href = str(asset.get("href", ""))
        if href.startswith(f"s3://{bucket.name}/"):
            keys.add(layout.split_s3_href(href)[1])
    if not item_key.startswith("mosaics/"):  # a product's folder is its own
        keys.update(bucket.list_keys(posixpath.dirname(item_key) + "/"))
    collection, item_id = str(item["collection"]), str(item["id"])
    return Doomed(
        collection,
        item_id,
        item_key,
        tuple(sorted(keys)),
        _indexed(catalog, collection, item_id),
    )


def _months_around(when: datetime, margin: timedelta) -> list[tuple[int, int]]:
    months: list[tuple[int, int]] = []
    day = when - margin
    while day <= when + margin:
        if (day.year, day.month) not in months:
            months.append((day.year, day.month))
        day += timedelta(days=1)
    return months


def _item_files(bucket: DataBucket, prefix: str) -> list[dict[str, Any]]:
    documents = []
    for key in bucket.list_keys(prefix):
        if key.endswith(".json") and not key.endswith(REASON_SUFFIX):
            document = bucket.get_json_or_none(key)
            if document and document.get("type") == "Feature" and document.get("collection"):
                documents.append(document)
    return documents


def derived_syntheses(bucket: DataBucket, product: dict[str, Any]) -> list[dict[str, Any]]:
    """The synthesis Item files (every version, retired ones included) of the product's tile
    whose `derived_from` names it."""
    tile = str(product["properties"].get("grid:code", "")).removeprefix("MGRS-")
    when = parse_datetime(str(product["properties"]["datetime"]))
    found = []
    for year, month in _months_around(when, SYNTHESIS_MARGIN):
        for document in _item_files(bucket, f"l3a/{tile}/{year:04d}/{month:02d}/"):
            if product["id"] in derived_ids(document):
                found.append(document)
    return found


def derived_mosaics(bucket: DataBucket, syntheses: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The mosaic Item files of every area whose `derived_from` names one of `syntheses`."""
    ids = {str(s["id"]) for s in syntheses}
    months = {
        (when.year, when.month)
        for when in (parse_datetime(str(s["properties"]["datetime"])) for s in syntheses)
    }
    found = []
    for area in bucket.list_folders("mosaics/"):
        for year, month in sorted(months):
            for document in _item_files(bucket, f"{area}{year:04d}/{month:02d}/"):
                if document.get("collection") == MOSAICS and ids & derived_ids(document):
                    found.append(document)
    return found


def plan_purge(bucket: DataBucket, catalog: Catalog, product_id: str) -> PurgePlan:
    """What purging `product_id` removes: its Item, files and index record, and those of the
    syntheses made from it and of the mosaics made from those. Nothing is removed here."""
    product = find_item(catalog, product_id)
    syntheses: list[dict[str, Any]] = []
    if product["collection"] in L2A_REFLECTANCE:
        syntheses = derived_syntheses(bucket, product)
    sources = [product] if product["collection"] == SENTINEL2_L3A else syntheses
    mosaics = derived_mosaics(bucket, sources) if sources else []
    return PurgePlan(
        bucket=bucket.name,
        product=_doomed(bucket, catalog, product),
        syntheses=[_doomed(bucket, catalog, s) for s in syntheses],
        mosaics=[_doomed(bucket, catalog, m) for m in mosaics],
    )


def apply_purge(bucket: DataBucket, catalog: Catalog, plan: PurgePlan) -> None:
    """Remove what `plan` lists: for each Item, its files, then its Item file, then its index
    record, so that a purge stopped half-way can be run again (the product is found through
    the index until the very end). The versions left of the product's acquisition are
    relinked."""
    for doomed in plan.items:
        bucket.delete_many([key for key in doomed.keys if key != doomed.item_key])
        bucket.delete_many([doomed.item_key])
        if doomed.indexed:
            catalog.delete_item(doomed.collection, doomed.item_id)
    product = plan.product
    if product.collection in (*L2A_REFLECTANCE, SNOW_L2B):
        try:
            name = ProductName.parse(product.item_id)
        except InvalidProduct:
            return
        month_prefix = posixpath.dirname(posixpath.dirname(product.item_key)) + "/"
        link_versions(bucket, catalog, month_prefix, name)

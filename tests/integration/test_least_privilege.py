"""Least privilege, measured: the AWS calls each function makes on the local runtime, against
the grants of its role in the template.

The moto server logs every request it answers; each local function signs with an access key id
of its own, so every call is put down to its function, GDAL's `/vsis3/` reads and writes included
(they never pass through botocore). A small month runs end to end (uploads, good and bad; the
schedule; syntheses; mosaic; the API, presigned asset links followed), then:

- every call must be allowed by the function's role (expanded by SAM, resolved for the stack);
- every grant of a role must have been used, or be listed below with the reason it was not.
"""

from __future__ import annotations

import copy
import io
import json
import time
import urllib.request
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_for

from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.jobs import JobState, JobStore
from sansnuages.tools.local import calls
from sansnuages.tools.local.calls import Call, Grant, Permission
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import REGION, LocalRuntime
from sansnuages.tools.local.template import (
    LOCAL_ACCOUNT_ID,
    Resolver,
    Stack,
    expand,
    parse_template,
)
from sansnuages.tools.simulate import simulate_month

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TILES = ["31UFS"]
RESOLUTION = 1098.0
FUNCTIONS = (
    "IngestFunction",
    "PlanFunction",
    "CompositeFunction",
    "MosaicFunction",
    "SweeperFunction",
    "ApiFunction",
)

UNUSED_GRANTS = {
    ("IngestFunction", "s3:AbortMultipartUpload DataBucket/l2a/*"): (
        "a failed upload (multipart above 8 MB) of a COG or of the archived zip"
    ),
    ("IngestFunction", "s3:AbortMultipartUpload DataBucket/quarantine/*"): (
        "a failed copy (multipart above 8 MB) of an upload into quarantine"
    ),
    ("IngestFunction", "s3:PutObject DataBucket/dead-letters/*"): (
        "an upload still failing on its last delivery leaves its reason"
        " (tests/integration/test_ingest_delivery.py)"
    ),
    ("IngestFunction", "dynamodb:DeleteItem CatalogTable"): (
        "an Item indexed again under another date or tile: its old records go"
        " (CatalogIndex.put_item)"
    ),
    ("PlanFunction", "dynamodb:DeleteItem JobsTable"): (
        "a month run again over fewer tiles: the records of the tiles no longer planned go"
        " (a run over the same tiles writes over them)"
    ),
    ("CompositeFunction", "s3:AbortMultipartUpload DataBucket/l3a/*"): (
        "GDAL aborts its multipart upload only when writing a COG fails"
    ),
    ("CompositeFunction", "s3:DeleteObject DataBucket/l3a/*"): (
        "a tile retried after failing part-way: GDAL deletes each COG it writes again (the"
        " mosaic's second run here shows the same)"
    ),
    ("MosaicFunction", "s3:AbortMultipartUpload DataBucket/mosaics/*"): (
        "GDAL aborts its multipart upload only when writing a COG fails"
    ),
    **{
        (function, f"sqs:ChangeMessageVisibility {queue}"): (
            "a record failing on an error its handler caught is released early"
            " (tests/integration/test_early_release.py); the run here has no such failure"
        )
        for function, queue in (
            ("IngestFunction", "IngestQueue"),
            ("CompositeFunction", "CompositeQueue"),
            ("MosaicFunction", "MosaicQueue"),
        )
    },
    **{
        (function, grant): "a snow season (tests/integration/test_snow_season_job.py)"
        for function, grant in (
            ("IngestFunction", "s3:GetObject DataBucket/snow-seasons/*"),
            ("IngestFunction", "s3:PutObject DataBucket/snow-seasons/*"),
            ("CompositeFunction", "s3:GetObject DataBucket/snow-seasons/*"),
            ("CompositeFunction", "s3:ListBucket DataBucket [s3:prefix StringLike snow-seasons/*]"),
            ("CompositeFunction", "s3:PutObject DataBucket/snow-seasons/*"),
            ("CompositeFunction", "s3:AbortMultipartUpload DataBucket/snow-seasons/*"),
            ("CompositeFunction", "s3:DeleteObject DataBucket/snow-seasons/*"),
            ("MosaicFunction", "s3:GetObject DataBucket/snow-seasons/*"),
            ("ApiFunction", "s3:GetObject DataBucket/snow-seasons/*"),
        )
    },
    **{
        ("SweeperFunction", grant): (
            "a unit overdue: re-driven or failed (tests/integration/test_sweeper.py); the sweep"
            " here finds every job finished"
        )
        for grant in (
            "dynamodb:UpdateItem JobsTable",
            "sqs:SendMessage CompositeQueue",
            "sqs:SendMessage MosaicQueue",
        )
    },
    ("MosaicFunction", "sqs:SendMessage MosaicQueue"): (
        "an area wider than 8192 px is built in parts, one message each"
        " (tests/integration/test_mosaic_job.py)"
    ),
}
"""(function, grant) -> why the month run here does not use it. A grant is one action on one
resource pattern, written with logical ids for physical names (`DataBucket/l2a/*`)."""


# ------------------------------------------------------------------------ the run


def _truncated_band(source: Path) -> bytes:
    """The product with one band cut short: it opens, its pixels cannot be read, so ingest
    writes the other bands' COGs, then quarantines the upload and removes what it wrote."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(buffer, "w") as copy_:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("_FRE_B4.tif"):
                data = data[: len(data) * 2 // 3]
            copy_.writestr(info, data)
    return buffer.getvalue()


def _get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 (loopback)
        url, data=data, headers={"content-type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def _use_the_api(api: str, job_id: str, mosaic_item: str) -> list[int]:
    """Every kind of route, and the presigned HTTPS alternate of one asset per collection."""
    statuses = []
    paths = [
        "/",
        "/conformance",
        "/collections",
        "/collections/sentinel2-l2a",
        "/collections/sentinel2-l2a/items?limit=2",
        "/collections/sentinel2-l2a/items/NO-SUCH-ITEM",
        "/search?collections=sentinel2-l3a&datetime=2018-07",
        "/search?ids=NO-SUCH-ITEM",
        f"/jobs/{job_id}",
        "/jobs?limit=5",
        "/map/areas/Belgium",
        f"/map/{mosaic_item}/tilejson.json",
        "/viewer/Belgium",
    ]
    for path in paths:
        statuses.append(_get(api + path)[0])
    status, body = _get(
        api + "/search", json.dumps({"bbox": [4.5, 50.0, 6.5, 51.5], "limit": 3}).encode()
    )
    statuses.append(status)
    tilejson = json.loads(_get(f"{api}/map/{mosaic_item}/tilejson.json")[1])
    z = int(tilejson["minzoom"])
    lon, lat = tilejson["center"][:2]
    x, y = _tile_of(lon, lat, z)
    statuses.append(_get(f"{api}/map/{mosaic_item}/tiles/{z}/{x}/{y}.png")[0])
    followed = 0
    for collection in ("sentinel2-l2a", "sentinel2-l3a", "mosaics"):
        items = json.loads(_get(f"{api}/collections/{collection}/items?limit=1")[1])
        for asset in items["features"][0]["assets"].values():
            href = asset.get("alternate", {}).get("https", {}).get("href")
            if href:
                statuses.append(_get(href)[0])
                followed += 1
                break
    assert followed == 3, "no presigned alternate to follow"
    return statuses


def _tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    import math

    n = 2**z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def _notification(bucket: str, key: str) -> str:
    """An S3 notification of `key`, as the ingest queue receives it (see events/)."""
    event = json.loads((ROOT / "events/ingest-upload.json").read_text())
    body = json.loads(event["Records"][0]["body"])
    body["Records"][0]["s3"]["bucket"]["name"] = bucket
    body["Records"][0]["s3"]["object"]["key"] = key
    return json.dumps(body)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRuntime, list[Call]]]:
    """The month, on a runtime whose moto server logs every call: the recorded calls."""
    workdir = tmp_path_factory.mktemp("least-privilege")
    products = simulate_month(TILES, 2018, 7, workdir / "products", resolution=RESOLUTION, seed=5)
    log = workdir / "calls.jsonl"
    runtime = LocalRuntime(TEMPLATE, workdir, concurrency=2, call_log=log).start()
    try:
        assert runtime.stack is not None
        client = RuntimeClient(runtime.facts())
        settings = client.settings()
        bucket = DataBucket(settings)

        def settled(queue: str) -> bool:
            status = runtime.status()
            counts = status["queues"][queue]
            return not status["busy"] and counts["visible"] == counts["in_flight"] == 0

        # uploads: sound ones, one twice, one that is no zip, one whose band fails when read;
        # one product is held back, to arrive after the month's synthesis
        cut, late, sound = products[0], products[1], products[2:]
        for path in sound:
            bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
        bucket.client.upload_file(str(sound[0]), bucket.name, f"incoming/again/{sound[0].name}")
        bucket.put_bytes("incoming/notes.zip", b"not a zip", "application/zip")
        bucket.put_bytes("incoming/cut/band.zip", _truncated_band(cut), "application/zip")
        wait_for(lambda: settled("IngestQueue") and not bucket.list_keys("incoming/"), "uploads")
        quarantined = [k for k in bucket.list_keys("quarantine/") if k.endswith(".reason.json")]
        assert len(quarantined) == 2, quarantined
        # a second notification of an upload already ingested and moved
        runtime.client("sqs").send_message(
            QueueUrl=runtime.stack.queue("IngestQueue").url,
            MessageBody=_notification(bucket.name, f"incoming/{sound[1].name}"),
        )
        time.sleep(1)
        wait_for(lambda: settled("IngestQueue"), "the second notification")

        # the monthly job, then the same month again (a new version of every output)
        schedule = "PlanFunctionMonthly"
        assert schedule in runtime.status()["schedules"]
        jobs = JobStore(settings)
        for run_number in (1, 2):
            fired = client.fire_schedule(schedule, "2018-08-10T03:00:00+00:00")
            assert fired["ok"], fired["error_message"]
            job_id = fired["payload"]["job_id"]

            def finished(run_number: int = run_number, job_id: str = job_id) -> bool:
                job = jobs.get(job_id)
                return job is not None and job.run == run_number and job.finished

            wait_for(finished, f"run {run_number} of the monthly job")
            if run_number == 1:  # a late product: the synthesis it misses is flagged stale
                bucket.client.upload_file(str(late), bucket.name, f"incoming/{late.name}")
                time.sleep(1)
                wait_for(
                    lambda: settled("IngestQueue") and not bucket.list_keys("incoming/"), "late"
                )
        job = jobs.get(job_id)
        assert job is not None and job.state == JobState.DONE, job
        mosaic_item = str(bucket.get_json(str(job.mosaic_item))["id"])
        swept = client.fire_schedule("SweeperFunctionSweep")  # what its schedule runs
        assert swept["ok"], swept.get("error_message")

        statuses = _use_the_api(runtime.facts()["stac_api_url"], job_id, mosaic_item)
        assert not [s for s in statuses if s >= 500], statuses
        time.sleep(1)  # the last answers reach the log
        lines = [json.loads(line) for line in log.read_text().splitlines() if line]
        yield runtime, [Call.from_line(line) for line in lines]
    finally:
        runtime.stop()


# ------------------------------------------------------------------------ the roles


def _role_grants(stack: Stack) -> dict[str, list[Grant]]:
    """The Allow statements of each function's role, as CloudFormation would deploy them for
    this stack (SAM's policy templates expanded, intrinsics resolved)."""
    cfn = expand(copy.deepcopy(parse_template(TEMPLATE.read_text())))
    resolver = Resolver(cfn, stack.name, {}, REGION, LOCAL_ACCOUNT_ID, stack.endpoint_url)
    roles = {}
    for function in FUNCTIONS:
        props = resolver.resolve(cfn["Resources"][f"{function}Role"]["Properties"])
        statements = [
            statement
            for policy in props.get("Policies", [])
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        roles[function] = calls.grants(statements)
    return roles


def _named(stack: Stack, text: str) -> str:
    """`text` with the stack's physical names replaced by logical ids."""
    names = (
        {f"arn:aws:s3:::{b.name}": b.logical_id for b in stack.buckets}
        | {
            f"arn:aws:dynamodb:{REGION}:{LOCAL_ACCOUNT_ID}:table/{t.name}": t.logical_id
            for t in stack.tables
        }
        | {q.arn: q.logical_id for q in stack.queues}
    )
    for physical in sorted(names, key=len, reverse=True):
        text = text.replace(physical, names[physical])
    return text


@pytest.fixture(scope="module")
def needed(run: tuple[LocalRuntime, list[Call]]) -> dict[str, set[Permission]]:
    _, recorded = run
    by_function: dict[str, set[Permission]] = defaultdict(set)
    for call in recorded:
        if call.function is not None:
            by_function[call.function].update(calls.permissions(call, REGION, LOCAL_ACCOUNT_ID))
    return by_function


# ------------------------------------------------------------------------ the tests


def test_every_function_is_recorded_gdal_included(run: tuple[LocalRuntime, list[Call]]) -> None:
    """Each function's calls reach the log under its own name, including the requests that
    GDAL makes itself and the presigned links the API hands out (signed with its key)."""
    runtime, recorded = run
    counts = Counter(call.function for call in recorded)
    assert set(FUNCTIONS) <= set(counts), counts
    bucket = runtime.facts()["data_bucket"]
    gdal_writes = [
        c
        for c in recorded
        if c.function == "MosaicFunction"  # the syntheses store their COGs through boto3
        and c.method in ("PUT", "POST")
        and c.path.startswith(f"/{bucket}/mosaics/")
        and c.path.endswith(".tif")
        and c.agent.startswith("GDAL")
    ]
    assert gdal_writes, "GDAL's COG uploads were not recorded"
    presigned = [c for c in recorded if c.function == "ApiFunction" and c.agent.startswith("Py")]
    assert len(presigned) == 3, "the presigned links followed were not put down to the API"
    print()
    for function in FUNCTIONS:
        own = [c for c in recorded if c.function == function]
        clients = Counter(c.agent.split("/")[0] for c in own)
        actions = Counter(
            p.action for c in own for p in calls.permissions(c, REGION, LOCAL_ACCOUNT_ID)
        )
        print(f"{function}: {len(own)} calls {dict(clients)}: {dict(sorted(actions.items()))}")


def test_every_call_is_granted(
    run: tuple[LocalRuntime, list[Call]], needed: dict[str, set[Permission]]
) -> None:
    runtime, _ = run
    assert runtime.stack is not None
    roles = _role_grants(runtime.stack)
    refused = {
        function: sorted(
            _named(runtime.stack, str(p))
            for p in permissions
            if not calls.allows(roles[function], p)
        )
        for function, permissions in needed.items()
    }
    assert {f: r for f, r in refused.items() if r} == {}


def test_every_grant_is_used_or_explained(
    run: tuple[LocalRuntime, list[Call]], needed: dict[str, set[Permission]]
) -> None:
    runtime, _ = run
    assert runtime.stack is not None
    roles = _role_grants(runtime.stack)
    unused = set()
    for function, role in roles.items():
        used = calls.used_grants(role, needed.get(function, set()))
        unused |= {(function, _named(runtime.stack, str(g))) for g in role if g not in used}
    every = {(f, _named(runtime.stack, str(g))) for f, role in roles.items() for g in role}
    print("\nunused grants:")
    for function, grant in sorted(unused):
        print(f"  {function}: {grant}: {UNUSED_GRANTS.get((function, grant), 'UNEXPLAINED')}")
    assert unused - set(UNUSED_GRANTS) == set(), "grants no call used: remove them, or explain"
    assert set(UNUSED_GRANTS) - every == set(), "explained grants that the template no longer has"


# ------------------------------------------------------------------------ the mapping, alone

BUCKET = "arn:aws:s3:::data"
SIGV4 = "AWS4-HMAC-SHA256 Credential=LOCALIngestFunction/20180710/us-east-1/{}/aws4_request, x"


def _s3_call(method: str, path: str, query: str = "", status: int = 200, **more: Any) -> Call:
    return Call("LOCALIngestFunction", "s3", method, path, query, status=status, **more)


def _needs(call: Call) -> list[str]:
    return [str(p) for p in calls.permissions(call, "us-east-1", "123456789012")]


def test_the_signer_is_read_from_header_or_presigned_query() -> None:
    environ = {"HTTP_AUTHORIZATION": SIGV4.format("dynamodb"), "REQUEST_METHOD": "POST"}
    assert calls.request_line(environ, None)["key"] == "LOCALIngestFunction"
    assert calls.request_line(environ, None)["service"] == "dynamodb"
    v4 = "X-Amz-Credential=LOCALApiFunction%2F20180710%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Ex=1"
    assert calls.signer("", v4) == ("LOCALApiFunction", "s3")
    assert calls.signer("", "AWSAccessKeyId=LOCALApiFunction&Signature=x") == (
        "LOCALApiFunction",
        "s3",
    )
    assert calls.signer("", "") == ("", "")
    assert calls.function_of("LOCALApiFunction") == "ApiFunction"
    assert calls.function_of("testing") is None


def test_gdal_multipart_writes_and_aborts_are_put_and_abort() -> None:
    key = "/data/l3a/T/FRC_B4.tif"
    steps = [
        _s3_call("POST", key, "uploads="),
        _s3_call("PUT", key, "partNumber=1&uploadId=u"),
        _s3_call("POST", key, "uploadId=u"),
        _s3_call("DELETE", key, "uploadId=u"),
        _s3_call("DELETE", key),
    ]
    assert [n for step in steps for n in _needs(step)] == [
        f"s3:PutObject {BUCKET}/l3a/T/FRC_B4.tif",
        f"s3:PutObject {BUCKET}/l3a/T/FRC_B4.tif",
        f"s3:PutObject {BUCKET}/l3a/T/FRC_B4.tif",
        f"s3:AbortMultipartUpload {BUCKET}/l3a/T/FRC_B4.tif",
        f"s3:DeleteObject {BUCKET}/l3a/T/FRC_B4.tif",
    ]


def test_reads_lists_copies_and_batch_deletes() -> None:
    assert _needs(_s3_call("HEAD", "/data/incoming/a.zip")) == [
        f"s3:GetObject {BUCKET}/incoming/a.zip"
    ]
    # a missing key answers 404 only to a caller that may list it
    assert _needs(_s3_call("HEAD", "/data/incoming/a.zip", status=404)) == [
        f"s3:GetObject {BUCKET}/incoming/a.zip",
        f"s3:ListBucket {BUCKET} [s3:prefix=incoming/a.zip]",
    ]
    assert _needs(_s3_call("GET", "/data", "list-type=2&prefix=l2a%2Fx%2F")) == [
        f"s3:ListBucket {BUCKET} [s3:prefix=l2a/x/]"
    ]
    assert _needs(_s3_call("GET", "/data", "list-type=2")) == [f"s3:ListBucket {BUCKET}"]
    copy_ = _s3_call("PUT", "/data/quarantine/a.zip", copy_source="data/incoming/a%20b.zip")
    assert _needs(copy_) == [
        f"s3:PutObject {BUCKET}/quarantine/a.zip",
        f"s3:GetObject {BUCKET}/incoming/a b.zip",
    ]
    body = b"<Delete><Object><Key>l2a/1.tif</Key></Object><Object><Key>l2a/2.tif</Key></Object>"
    targets = calls.body_targets("s3", "application/xml", body + b"</Delete>")
    batch = _s3_call("POST", "/data", "delete=", targets=targets)
    assert _needs(batch) == [
        f"s3:DeleteObject {BUCKET}/l2a/1.tif",
        f"s3:DeleteObject {BUCKET}/l2a/2.tif",
    ]
    with pytest.raises(calls.UnknownCall):
        _needs(_s3_call("PUT", "/data/l2a/1.tif", "tagging="))


def test_transactions_batches_and_indexes_are_their_parts() -> None:
    table = "arn:aws:dynamodb:us-east-1:123456789012:table"
    transact = json.dumps(
        {
            "TransactItems": [
                {"Put": {"TableName": "catalog", "Item": {}}},
                {"Update": {"TableName": "catalog", "Key": {}}},
                {"ConditionCheck": {"TableName": "jobs", "Key": {}}},
            ]
        }
    ).encode()
    call = Call(
        "LOCALIngestFunction",
        "dynamodb",
        "POST",
        "/",
        target="DynamoDB_20120810.TransactWriteItems",
        targets=calls.body_targets("dynamodb", "application/x-amz-json-1.0", transact),
    )
    assert _needs(call) == [
        f"dynamodb:PutItem {table}/catalog",
        f"dynamodb:UpdateItem {table}/catalog",
        f"dynamodb:ConditionCheckItem {table}/jobs",
    ]
    query = calls.body_targets(
        "dynamodb", "", json.dumps({"TableName": "catalog", "IndexName": "by_id"}).encode()
    )
    call = Call("k", "dynamodb", "POST", "/", target="DynamoDB_20120810.Query", targets=query)
    assert _needs(call) == [f"dynamodb:Query {table}/catalog/index/by_id"]
    batch = calls.body_targets("sqs", "", json.dumps({"QueueUrl": "http://h/1/q"}).encode())
    call = Call("k", "sqs", "POST", "/", target="AmazonSQS.SendMessageBatch", targets=batch)
    assert _needs(call) == ["sqs:SendMessage arn:aws:sqs:us-east-1:123456789012:q"]


def test_grants_are_matched_as_iam_matches_them() -> None:
    role = calls.grants(
        [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": BUCKET,
                "Condition": {"StringLike": {"s3:prefix": ["l2a/*", "collections/*"]}},
            },
            {"Effect": "Allow", "Action": ["S3:GetObject"], "Resource": [f"{BUCKET}/l2a/*"]},
        ]
    )
    assert [str(g) for g in role] == [
        f"s3:ListBucket {BUCKET} [s3:prefix StringLike l2a/*]",
        f"s3:ListBucket {BUCKET} [s3:prefix StringLike collections/*]",
        f"S3:GetObject {BUCKET}/l2a/*",
    ]

    def allowed(action: str, resource: str, *context: tuple[str, str]) -> bool:
        return calls.allows(role, Permission(action, resource, tuple(context)))

    assert allowed("s3:GetObject", f"{BUCKET}/l2a/x/y.tif")  # actions ignore case
    assert not allowed("s3:GetObject", f"{BUCKET}/l2b/x.tif")
    assert not allowed("s3:GetObject", f"{BUCKET}x/l2a/x.tif")
    assert allowed("s3:ListBucket", BUCKET, ("s3:prefix", "collections/mosaics.json"))
    assert not allowed("s3:ListBucket", BUCKET, ("s3:prefix", "incoming/a.zip"))
    assert not allowed("s3:ListBucket", BUCKET)  # no prefix: the condition cannot hold
    used = calls.used_grants(role, [Permission("s3:GetObject", f"{BUCKET}/l2a/1.tif")])
    assert [str(g) for g in used] == [f"S3:GetObject {BUCKET}/l2a/*"]
    with pytest.raises(calls.UnknownCall):
        calls.grants(
            [
                {
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "*",
                    "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}},
                }
            ]
        )

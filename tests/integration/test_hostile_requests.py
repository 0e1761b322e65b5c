"""Hostile requests against the API function's handler (functions/api/app.py) over real HTTP.

The corpus sends every request limit at its value (answered) and just past it (a 400 that names
it), the requests that used to stall the handler (a CQL2 filter nested 200 levels deep), crash
it (deep JSON, deep parentheses, long runs of signs) or fail it (ids longer than DynamoDB keys,
tiles outside the tile matrix), and reads jobs whose stored reasons hold what a stage may have
kept of an exception: a local path, a bucket key of another prefix, a credential. A canary
secret is planted in the handler's environment and as a local file (an area file a job names);
neither may appear in any response. Every hostile request must get a 4xx within 2 s of handler
time, none a 500, and the server must answer normal requests correctly afterwards.

A second part checks the read budget of a search on a catalog of thousands of Items over five
years of monthly partitions: a filter that matches nothing reads a bounded part per request and
pages on with `next` links, and budgeted pages neither skip nor repeat an Item.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import re
import secrets
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import pytest
from pystac_client import Client
from test_stac_api import L8, S2, TILES, make_collection, make_item, make_table, sample_items

from sansnuages.api.limits import LIMITS
from sansnuages.api.stac import make_resolver
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.local.http_front import HttpFront
from sansnuages.tools.local.provision import local_environment, provision
from sansnuages.tools.local.template import load_stack

ROOT = Path(__file__).resolve().parents[2]
CANARY_VARIABLE = "SANSNUAGES_CANARY_TOKEN"
HANDLER_SECONDS = 2.0


@dataclass
class Served:
    url: str
    catalog: Catalog
    items: list[dict[str, Any]]
    canary: str
    canary_file: Path
    job_ids: dict[str, str]
    handler_seconds: list[float] = field(default_factory=list)


def timed(handler: Callable[[Any, Any], Any], seconds: list[float]) -> Callable[[Any, Any], Any]:
    def run(event: Any, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            seconds.append(time.perf_counter() - start)

    return run


def fetch(
    url: str, body: bytes | None = None, method: str = "", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    method = method or ("POST" if body is not None else "GET")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if body is not None and "content-type" not in {k.lower() for k in headers or {}}:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def plant_jobs(store: JobStore, canary: str, canary_file: Path) -> dict[str, str]:
    """Jobs whose reasons hold what stages may keep of an exception, and one whose area is the
    canary file: the API must show none of it."""
    tiles = ["31UES", "31UFS", "31UGS"]
    job, _ = store.create("2018-07", "Belgium", "BEL", tiles)
    store.finish_tile(
        job.job_id,
        "31UES",
        TileState.FAILED,
        reason="gave up after the last retry: FileNotFoundError: [Errno 2] No such file or "
        f"directory: '{canary_file}'",
    )
    store.finish_tile(
        job.job_id,
        "31UFS",
        TileState.FAILED,
        reason="gave up after the last retry: ClientError: An error occurred "
        f"(SignatureDoesNotMatch): key {canary} refused for "
        "s3://sansnuages-data-123456789012/incoming/someone-else/upload.zip",
    )
    store.finish_tile(
        job.job_id,
        "31UGS",
        TileState.FAILED,
        reason="Traceback (most recent call last):\n"
        '  File "/var/task/sansnuages/stages/composite.py", line 120, in run\n'
        "    item_key = self.synthesise(task)\n"
        "NoInputs: no product of tile 31UGS under quarantine/31UGS/2018/07/",
    )
    assert store.claim_mosaic(job.job_id)
    store.finish(
        job.job_id, JobState.FAILED, reason=f"RasterioIOError: /vsis3/other/{canary_file.name}"
    )
    area_job, _ = store.create("2018-08", str(canary_file), "canary-area", ["31UES"])
    return {"reasons": job.job_id, "file area": area_job.job_id}


@pytest.fixture(scope="module")
def served(moto_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The deployed handler over a freshly provisioned stack, with canaries planted."""
    canary = f"Cnry{secrets.token_hex(12)}Q7x{secrets.token_hex(4).upper()}"
    canary_file = tmp_path_factory.mktemp("canary") / "canary-area.geojson"
    ring = [[4.0, 50.0], [5.0, 50.0], [5.0, 51.0], [4.0, 51.0], [4.0, 50.0]]
    canary_file.write_text(
        json.dumps(
            {
                "type": "Feature",
                "properties": {"name": canary},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
        )
    )
    stack = load_stack(
        ROOT / "template.yaml",
        stack_name=f"t-{uuid.uuid4().hex[:12]}",
        endpoint_url=moto_server.url,
    )
    provision(stack, endpoint_url=moto_server.url)
    environment = local_environment(stack, "ApiFunction", moto_server.url)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**environment, CANARY_VARIABLE: canary}.items():
            patch.setenv(name, value)
        spec = importlib.util.spec_from_file_location(
            f"api_app_{uuid.uuid4().hex}", ROOT / "functions" / "api" / "app.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        catalog: Catalog = module.catalog
        for collection_id in (S2, L8):
            catalog.put_collection(make_collection(collection_id))
        items = sample_items()
        for index, item in enumerate(items):
            item["properties"]["eo:cloud_cover"] = float(index * 7 % 100)
        catalog.put_items(items)
        job_ids = plant_jobs(JobStore(module.settings), canary, canary_file)
        seconds: list[float] = []
        front = HttpFront(timed(module.handler, seconds)).start()
        yield Served(front.url, catalog, items, canary, canary_file, job_ids, seconds)
        front.stop()


# --- the corpus -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    name: str
    path: str
    body: bytes | None = None
    hostile: bool = True
    """Hostile: must be a 4xx. Otherwise (a limit at its value), must be answered as usual."""
    expected: int | None = None
    contains: str = ""
    """For a refusal, words its description must hold (the limit it names)."""


def post(name: str, document: Any, **extra: Any) -> Probe:
    return Probe(name, "/search", json.dumps(document).encode(), **extra)


def padded(document: dict[str, Any], size: int) -> bytes:
    """`document` as JSON of exactly `size` bytes (spaces before the closing brace)."""
    text = json.dumps(document)
    return (text[:-1] + " " * (size - len(text)) + "}").encode()


def nested_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def not_chain(operations: int) -> str:
    """A CQL2 text filter of `operations` nested operations (NOTs around one comparison)."""
    return "NOT (" * (operations - 1) + "eo:cloud_cover < 101" + ")" * (operations - 1)


def not_json(operations: int) -> dict[str, Any]:
    """The same in CQL2 JSON."""
    expression: dict[str, Any] = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 101]}
    for _ in range(operations - 1):
        expression = {"op": "not", "args": [expression]}
    return expression


def values_filter(values: int) -> dict[str, Any]:
    """A CQL2 JSON filter of exactly `values` values: `platform IN (...)` is 6 and its list
    (the operation, its name, its arguments, the property, its name, the list)."""
    names = [f"platform-{i}" for i in range(values - 6)]
    return {"op": "in", "args": [{"property": "platform"}, names]}


def ring(vertices: int) -> list[list[float]]:
    """A closed ring of `vertices` positions around Toulouse (the last repeats the first)."""
    points = [
        [
            round(1.4 + 0.3 * math.cos(2 * math.pi * i / (vertices - 1)), 6),
            round(43.6 + 0.3 * math.sin(2 * math.pi * i / (vertices - 1)), 6),
        ]
        for i in range(vertices - 1)
    ]
    return [*points, points[0]]


def token_of(length: int) -> str:
    """A well-formed paging token of exactly `length` characters (length a multiple of 4)."""
    base = {"c": S2, "o": "a", "sk": "2024-01-01T00:00:00.000000Z#"}
    raw = json.dumps(base, separators=(",", ":"), sort_keys=True)
    pad = length * 3 // 4 - len(raw)
    base["sk"] += "A" * pad
    text = json.dumps(base, separators=(",", ":"), sort_keys=True).encode()
    token = base64.urlsafe_b64encode(text).decode().rstrip("=")
    assert len(token) == length
    return token


def corpus(served: Served) -> list[Probe]:
    limits = LIMITS
    ids = [f"NO_SUCH_ITEM_{i}" for i in range(limits.ids + 1)]
    forged = base64.urlsafe_b64encode(json.dumps({"after": str(served.canary_file)}).encode())
    collections = [f"no-such-collection-{i}" for i in range(limits.collections + 1)]
    fields = [f"properties.field{i}" for i in range(limits.fields + 1)]
    long_id = "x" * (limits.id_chars + 1)
    canary_path = quote(str(served.canary_file), safe="")
    probes = [
        # body size
        Probe("body at its limit", "/search", padded({"limit": 1}, limits.body_bytes), False),
        Probe(
            "body past its limit",
            "/search",
            padded({"limit": 1}, limits.body_bytes + 1),
            contains="request body",
        ),
        Probe("body of 5 MB", "/search", padded({"limit": 1}, 5_000_000), contains="body"),
        # JSON nesting
        post(
            "JSON at its depth",
            {"x": json.loads(nested_list(limits.json_depth - 1))},
            hostile=False,
        ),
        post(
            "JSON past its depth",
            {"x": json.loads(nested_list(limits.json_depth))},
            contains="nesting",
        ),
        Probe("JSON 100,000 deep", "/search", nested_list(100_000).encode(), contains="nesting"),
        Probe(
            "intersects JSON 1,000 deep (GET)",
            "/search?" + urlencode({"intersects": nested_list(1000)}),
            contains="nesting",
        ),
        Probe(
            "query JSON 1,000 deep (GET)",
            "/search?" + urlencode({"query": nested_list(1000)}),
            contains="nesting",
        ),
        Probe(
            "cql2-json 1,000 deep (GET)",
            "/search?" + urlencode({"filter": nested_list(1000), "filter-lang": "cql2-json"}),
            contains="nesting",
        ),
        # CQL2 size and nesting
        post(
            "CQL2 text at its length",
            {"filter": "eo:cloud_cover < 101".ljust(limits.cql2_chars), "filter-lang": "cql2-text"},
            hostile=False,
        ),
        post(
            "CQL2 text past its length",
            {"filter": "eo:cloud_cover < 101".ljust(limits.cql2_chars + 1)},
            contains="characters",
        ),
        Probe(
            "CQL2 text at its depth (GET)",
            "/search?" + urlencode({"filter": not_chain(limits.cql2_depth)}),
            hostile=False,
        ),
        Probe(
            "CQL2 text past its depth (GET)",
            "/search?" + urlencode({"filter": not_chain(limits.cql2_depth + 1)}),
            contains="nesting",
        ),
        post("CQL2 text 200 deep", {"filter": not_chain(200)}, contains="nesting"),
        post(
            "CQL2 text 2,000 bare NOTs", {"filter": "NOT " * 2000 + "id = 'x'"}, contains="nesting"
        ),
        post(
            "CQL2 text 4,000 parentheses",
            {"filter": "(" * 4000 + "id = 'x'" + ")" * 4000},
            contains="nesting",
        ),
        post(
            "CQL2 text 5,000 signs",
            {"filter": "eo:cloud_cover < " + "-" * 5000 + "1"},
            contains="nesting",
        ),
        post(
            "CQL2 text 3,000 additions",
            {"filter": "eo:cloud_cover < " + "+".join("1" * 3000)},
            contains="nesting",
        ),
        post("CQL2 JSON at its depth", {"filter": not_json(limits.cql2_depth)}, hostile=False),
        post(
            "CQL2 JSON past its depth",
            {"filter": not_json(limits.cql2_depth + 1)},
            contains="nesting",
        ),
        post("CQL2 JSON at its size", {"filter": values_filter(limits.cql2_nodes)}, hostile=False),
        post(
            "CQL2 JSON past its size",
            {"filter": values_filter(limits.cql2_nodes + 1)},
            contains="values",
        ),
        post(
            "query at its size",
            {"query": {"platform": {"in": [f"p{i}" for i in range(limits.cql2_nodes - 6)]}}},
            hostile=False,
        ),
        post(
            "query past its size",
            {"query": {"platform": {"in": [f"p{i}" for i in range(limits.cql2_nodes - 5)]}}},
            contains="values",
        ),
        # intersects
        post(
            "intersects at its vertices",
            {"intersects": {"type": "Polygon", "coordinates": [ring(limits.intersects_vertices)]}},
            hostile=False,
        ),
        post(
            "intersects past its vertices",
            {
                "intersects": {
                    "type": "Polygon",
                    "coordinates": [ring(limits.intersects_vertices + 1)],
                }
            },
            contains="vertices",
        ),
        post(
            "intersects of 100,000 vertices",
            {"intersects": {"type": "MultiPoint", "coordinates": [[1, 43]] * 100_000}},
            contains="vertices",
        ),
        # counts
        post("ids at their limit", {"ids": ids[:-1]}, hostile=False),
        post("ids past their limit", {"ids": ids}, contains="ids"),
        Probe(
            "ids past their limit (GET)",
            "/search?" + urlencode({"ids": ",".join(ids)}),
            contains="ids",
        ),
        post("collections at their limit", {"collections": collections[:-1]}, hostile=False),
        post("collections past their limit", {"collections": collections}, contains="collections"),
        post(
            "filter collections past the limit",
            {"filter": {"op": "in", "args": [{"property": "collection"}, collections]}},
            contains="collections",
        ),
        post(
            "filter ids past the limit",
            {"filter": {"op": "in", "args": [{"property": "id"}, ids]}},
            contains="ids",
        ),
        post("fields at their limit", {"fields": {"include": fields[:-1]}}, hostile=False),
        post("fields past their limit", {"fields": {"include": fields}}, contains="fields"),
        Probe(
            "fields past their limit (GET)",
            "/search?" + urlencode({"fields": ",".join(fields)}),
            contains="fields",
        ),
        post(
            "sortby at its limit",
            {"sortby": [{"field": "datetime"}, {"field": "id"}]},
            hostile=False,
        ),
        post(
            "sortby past its limit",
            {"sortby": [{"field": "datetime"}, {"field": "id"}, {"field": "id"}]},
            contains="sortby",
        ),
        post("sortby of 50,000 terms", {"sortby": [{"field": "id"}] * 50_000}, contains="sortby"),
        post("token at its length", {"token": token_of(limits.token_chars)}, hostile=False),
        post("token past its length", {"token": token_of(limits.token_chars) + "A"}),
        # ids in paths (DynamoDB refuses keys over 1,024 bytes: a 500 before)
        Probe(
            "collection id at its length",
            f"/collections/{'x' * limits.id_chars}",
            hostile=False,
            expected=404,
        ),
        Probe("collection id past its length", f"/collections/{long_id}", contains="characters"),
        Probe("item id past its length", f"/collections/{S2}/items/{long_id}"),
        Probe("items of a long collection id", f"/collections/{'y' * 5000}/items"),
        Probe("mosaic id past its length", f"/map/{long_id}/tilejson.json"),
        Probe("tile zoom of a billion", "/map/mosaic-BEL-2018-07/tiles/1000000000/0/0.png"),
        Probe("tile outside the matrix", "/map/mosaic-BEL-2018-07/tiles/3/8/0.png"),
        Probe("tile number of 5,000 digits", "/map/x/tiles/1/" + "9" * 5000 + "/0.png"),
        # malformed or probing
        Probe("body not UTF-8", "/search", b"\xff\xfe{\x00"),
        Probe("body not JSON", "/search", b"{'limit': 1"),
        Probe("body a JSON array", "/search", b"[1, 2]"),
        post("bbox of 100,000 numbers", {"bbox": [1.0] * 100_000}),
        post("filter-crs a local file", {"filter": "id = 'x'", "filter-crs": "file:///etc/passwd"}),
        Probe("collection named by a path", f"/collections/{canary_path}"),
        Probe("item named by a path", f"/collections/{S2}/items/{canary_path}"),
        Probe("viewer file outside its folder", "/viewer/static/..%2F..%2F..%2Fetc%2Fpasswd"),
        Probe("job id of a path", f"/jobs/{canary_path}"),
        Probe("job list with a forged token", "/jobs?token=" + quote(forged.decode())),
        Probe("job list of a negative limit", "/jobs?limit=-5"),
        Probe(
            "CQL2 naming the environment",
            "/search?" + urlencode({"filter": f"{CANARY_VARIABLE} = 'x'"}),
            hostile=False,
        ),
    ]
    return probes


INTERNALS = ("Traceback", "/vsis3/", "/var/task", str(ROOT), "incoming/", "s3://")
"""What no error body or job document may hold (Items carry `s3://` asset hrefs by design)."""


def leaks(served: Served, headers: dict[str, str], body: bytes, status: int) -> list[str]:
    text = body.decode("utf-8", "replace") + json.dumps(headers)
    secrets_ = (served.canary, str(served.canary_file), served.canary_file.name)
    found = [secret for secret in secrets_ if secret in text]
    if status != 200:
        found += [internal for internal in INTERNALS if internal in text]
    return found


def description(body: bytes) -> str:
    try:
        return str(json.loads(body).get("description", ""))
    except (ValueError, AttributeError):
        return ""


def test_hostile_requests_are_refused_quickly_and_leak_nothing(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    probes = corpus(served)
    failures: list[str] = []
    slowest = (0.0, "")
    hostile = refused = leaked = server_errors = 0
    for probe in probes:
        before = len(served.handler_seconds)
        status, headers, body = fetch(served.url + probe.path, probe.body)
        handled = served.handler_seconds[before:]
        seconds = sum(handled)
        found = leaks(served, headers, body, status)
        leaked += bool(found)
        server_errors += status >= 500
        if found:
            failures.append(f"{probe.name}: the response holds {found}")
        if status >= 500:
            failures.append(f"{probe.name}: {status} {body[:200]!r}")
        if not handled:
            failures.append(f"{probe.name}: {status} without reaching the handler")
        if not probe.hostile:
            wanted = probe.expected or 200
            if status != wanted:
                failures.append(f"{probe.name}: {status} (wanted {wanted}) {body[:300]!r}")
            continue
        hostile += 1
        refused += 400 <= status < 500
        slowest = max(slowest, (seconds, probe.name))
        if not 400 <= status < 500:
            failures.append(f"{probe.name}: {status}, not a refusal")
        if seconds > HANDLER_SECONDS:
            failures.append(f"{probe.name}: {seconds:.2f} s in the handler")
        if probe.contains and probe.contains not in description(body):
            failures.append(f"{probe.name}: description {description(body)!r}")
    with capsys.disabled():
        print(
            f"\nhostile request corpus: {len(probes)} requests tried ({hostile} hostile, "
            f"{len(probes) - hostile} at a limit), {refused} refused, {leaked} leaked, "
            f"{server_errors} 500s, slowest hostile request {slowest[0] * 1000:.0f} ms "
            f"({slowest[1]})"
        )
    assert failures == []
    assert refused == hostile and leaked == 0 and server_errors == 0


def test_refusals_name_the_limit_and_its_value(served: Served) -> None:
    status, _, body = fetch(f"{served.url}/search", json.dumps({"ids": ["a"] * 101}).encode())
    assert status == 400
    assert json.loads(body) == {
        "code": "InvalidParameterValue",
        "description": "ids is over the limit of 100 ids (got 101)",
    }
    status, _, body = fetch(f"{served.url}/search", padded({"limit": 1}, LIMITS.body_bytes + 10))
    assert json.loads(body)["description"] == (
        "the request body is over the limit of 1,048,576 bytes (got 1,048,586)"
    )


def test_job_reasons_are_short_and_hold_nothing_of_the_server(served: Served) -> None:
    status, _, body = fetch(f"{served.url}/jobs/{served.job_ids['reasons']}")
    assert status == 200 and not leaks(served, {}, body, 500)
    job = json.loads(body)
    reasons = {tile["tile"]: tile["reason"] for tile in job["tiles"]}
    assert reasons == {
        "31UES": "gave up after the last retry: FileNotFoundError: [Errno 2] No such file or "
        "directory: '<path>'",
        "31UFS": "gave up after the last retry: ClientError: An error occurred "
        "(SignatureDoesNotMatch): key <secret> refused for <url>",
        "31UGS": "NoInputs: no product of tile 31UGS under <key>",
    }
    assert job["reason"] == "RasterioIOError: <path>"
    assert job["area"] == {"id": "BEL", "name": "Belgium", "bbox": job["area"]["bbox"]}
    assert job["area"]["bbox"] is not None  # a country still resolves


def test_an_area_file_is_never_read_by_the_api(served: Served) -> None:
    status, _, body = fetch(f"{served.url}/jobs/{served.job_ids['file area']}")
    assert status == 200
    assert json.loads(body)["area"] == {"id": "canary-area", "name": "canary-area", "bbox": None}
    status, _, body = fetch(f"{served.url}/jobs?limit=10")
    assert status == 200 and not leaks(served, {}, body, 500)
    listed = {job["job_id"] for job in json.loads(body)["jobs"]}
    assert set(served.job_ids.values()) <= listed


def test_the_server_answers_normal_requests_after_the_corpus(served: Served) -> None:
    for probe in corpus(served):
        if probe.hostile:
            fetch(served.url + probe.path, probe.body)
    client = Client.open(served.url)
    box = (1.0, 43.5, 1.5, 44.0)  # inside 31TCJ only
    found = client.search(bbox=box, collections=[S2], max_items=None).item_collection()
    expected = {
        i["id"]
        for i in served.items
        if i["collection"] == S2 and i["properties"]["grid:code"] == "MGRS-31TCJ"
    }
    assert {item.id for item in found} == expected
    toulouse = {"type": "Polygon", "coordinates": [ring(LIMITS.intersects_vertices)]}
    near = client.search(intersects=toulouse, max_items=None).item_collection()
    expected = {i["id"] for i in served.items if i["properties"]["grid:code"] == "MGRS-31TCJ"}
    assert {item.id for item in near} == expected
    cloudy = client.search(filter="eo:cloud_cover >= 50", max_items=None).item_collection()
    expected = {i["id"] for i in served.items if i["properties"]["eo:cloud_cover"] >= 50}
    assert {item.id for item in cloudy} == expected


def test_the_documents_state_the_limits_of_the_code(served: Served) -> None:
    _, _, body = fetch(f"{served.url}/api")
    document = json.loads(body)
    assert document["x-request-limits"]["ids"] == LIMITS.ids
    search = document["paths"]["/search"]["post"]["requestBody"]["content"]["application/json"]
    assert search["schema"]["properties"]["ids"]["maxItems"] == LIMITS.ids
    assert search["schema"]["properties"]["collections"]["maxItems"] == LIMITS.collections
    for name, most, what in LIMITS.documented():
        assert f"{name}: at most {most:,} {what}" in document["info"]["description"]
    _, _, page = fetch(f"{served.url}/api.html")
    assert "<h2>Limits</h2>" in page.decode()
    readme = (ROOT / "README.md").read_text()
    section = readme[
        readme.index("## Search") : readme.index("\n## ", readme.index("## Search") + 1)
    ]
    for name, most, what in LIMITS.documented():
        assert f"| {name} | {most:,} | {what} |" in section, (name, most, what)


# --- the read budget --------------------------------------------------------------------------


@dataclass
class Large:
    url: str
    catalog: Catalog
    items: list[dict[str, Any]]
    reads: list[dict[str, int]]
    """Per request: index records and queries, counted from DynamoDB's own answers."""
    handler_seconds: list[float]


LARGE_ITEMS = 4_800
"""Three tiles, an acquisition every 9 hours: five years of monthly partitions."""


@pytest.fixture(scope="module")
def large(moto_server: Any) -> Iterator[Large]:
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server.url, region_name="us-east-1")
    name = f"t-{uuid.uuid4().hex[:12]}"
    make_table(dynamodb, name)
    catalog = Catalog(name, client=dynamodb)
    catalog.put_collection(make_collection(S2))
    start = datetime(2019, 1, 1, 10, tzinfo=UTC)
    tiles = sorted(TILES)
    items = []
    for index in range(LARGE_ITEMS):
        item = make_item(S2, tiles[index % 3], start + timedelta(hours=9 * index))
        item["properties"]["eo:cloud_cover"] = float(index % 97)
        item["properties"]["eo:snow_cover"] = 1.0 if index % RARE == 5 else 0.0
        items.append(item)
    catalog.put_items(items)
    reads: list[dict[str, int]] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        if reads:
            reads[-1]["records"] += int(parsed.get("ScannedCount", 0))
            reads[-1]["queries"] += 1

    dynamodb.meta.events.register("after-call.dynamodb.Query", count)
    resolver = make_resolver(catalog)

    def handler(event: Any, context: Any) -> Any:
        reads.append({"records": 0, "queries": 0})
        return resolver.resolve(event, context)

    seconds: list[float] = []
    front = HttpFront(timed(handler, seconds)).start()
    yield Large(front.url, catalog, items, reads, seconds)
    front.stop()


def follow(large: Large, url: str) -> list[dict[str, Any]]:
    """Every answer of a GET search, following `next` links: those of pages, and those of the
    400 that a request spending its whole budget without a match answers (an empty page
    would end most clients' paging)."""
    pages = []
    while url:
        status, _, body = fetch(url)
        page = json.loads(body)
        if status == 400:
            assert page["code"] == "SearchBudgetSpent", body[:300]
            page["features"] = []
        else:
            assert status == 200, body[:300]
        pages.append(page)
        url = next((link["href"] for link in page.get("links", []) if link["rel"] == "next"), "")
        assert page["features"] or status == 400 or not url, "an empty page with a next link"
        assert len(pages) <= 50
    return pages


def test_a_filter_matching_nothing_reads_a_bounded_part_per_request(large: Large) -> None:
    first = len(large.reads)
    query = urlencode({"collections": S2, "filter": "eo:cloud_cover > 100", "limit": 10})
    pages = follow(large, f"{large.url}/search?{query}")
    reads = large.reads[first:]
    assert all(page["features"] == [] for page in pages)
    assert len(pages) >= LARGE_ITEMS // LIMITS.read_records  # several requests, each bounded
    for read in reads:
        assert read["records"] <= LIMITS.read_records
        assert read["queries"] <= LIMITS.read_queries
    assert sum(read["records"] for read in reads) >= LARGE_ITEMS  # all read, request by request
    slowest = max(large.handler_seconds[-len(pages) :])
    print(f"filter matching nothing: {len(pages)} requests, slowest {slowest * 1000:.0f} ms")


def test_the_searcher_stops_at_its_budget_with_a_token(large: Large) -> None:
    from sansnuages.api.filter import parse_filter, predicate
    from sansnuages.stores.catalog.planning import ReadBudget

    matcher = predicate(parse_filter("eo:cloud_cover > 100", None)).matches
    budget = ReadBudget(records=500, queries=1_000)
    page = large.catalog.search([S2], None, None, None, 10, None, match=matcher, budget=budget)
    assert (page.items, page.budget_spent) == ([], True)
    assert page.next_token is not None and page.records_read <= 500 + 2  # + summary records
    budget = ReadBudget(records=100_000, queries=3)
    page = large.catalog.search([S2], None, None, None, 10, None, match=matcher, budget=budget)
    assert page.budget_spent and page.next_token is not None


RARE = 1_300
"""One Item in this many has snow: a filter on snow matches fewer than one per budget."""


def rare(large: Large, box: tuple[float, float, float, float]) -> list[dict[str, Any]]:
    found = [
        i
        for i in large.items
        if i["properties"]["eo:snow_cover"] > 0
        and i["bbox"][0] <= box[2]
        and i["bbox"][2] >= box[0]
        and i["bbox"][1] <= box[3]
        and i["bbox"][3] >= box[1]
    ]
    return sorted(found, key=lambda i: (i["properties"]["datetime"], i["id"]))


@pytest.mark.parametrize(
    ("bbox", "descending"),
    [
        ((-180.0, -90.0, 180.0, 90.0), False),  # the month partitions, one stream
        ((0.6, 43.4, 2.0, 49.5), True),  # two tile partitions, merged newest first
    ],
)
def test_budgeted_pages_neither_skip_nor_repeat(
    large: Large, bbox: tuple[float, ...], descending: bool
) -> None:
    expected = [i["id"] for i in rare(large, bbox)]  # type: ignore[arg-type]
    if descending:
        expected.reverse()
    assert len(expected) >= 2 and len(large.items) / len(expected) > LIMITS.read_records / 2
    parameters = {
        "filter": "eo:snow_cover > 0",
        "bbox": ",".join(map(str, bbox)),
        "sortby": "-datetime" if descending else "+datetime",
        "limit": 2,
    }
    pages = follow(large, f"{large.url}/search?{urlencode(parameters)}")
    seen = [feature["id"] for page in pages for feature in page["features"]]
    assert seen == expected
    cut = [
        p for p in pages if len(p["features"]) < 2 and any(lk["rel"] == "next" for lk in p["links"])
    ]
    assert cut  # the budget, not the page size, ended some pages


def test_ids_past_the_query_budget_page_on(large: Large) -> None:
    wanted = [i["id"] for i in large.items[: LIMITS.ids]]
    collections = [S2, L8, "other"]  # 300 lookups: more than one request may make
    assert len(wanted) * len(collections) > LIMITS.read_queries
    first = len(large.reads)
    query = urlencode({"ids": ",".join(wanted), "collections": ",".join(collections)})
    pages = follow(large, f"{large.url}/search?{query}&limit=100")
    assert [f["id"] for page in pages for f in page["features"]] == sorted(wanted)
    assert len(pages) >= 2
    assert all(read["queries"] <= LIMITS.read_queries for read in large.reads[first:])


def test_a_request_spending_its_budget_without_a_match_is_refused_with_a_link_on(
    large: Large,
) -> None:
    """Not an empty page, which pystac-client takes for the end of the search: a 400 that says
    why, with the link that reads on."""
    query = urlencode({"collections": S2, "filter": "eo:cloud_cover > 100"})
    status, _, body = fetch(f"{large.url}/search?{query}")
    error = json.loads(body)
    assert status == 400 and error["code"] == "SearchBudgetSpent"
    assert f"{LIMITS.read_records:,}" in error["description"]
    (link,) = [link for link in error["links"] if link["rel"] == "next"]
    assert re.search(r"[?&]token=", link["href"])
    status, _, _ = fetch(link["href"])
    assert status in (200, 400)

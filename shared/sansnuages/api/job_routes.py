"""The jobs side of the API: the state of synthesis jobs, read-only.

Routes are added to the STAC API's resolver (outside STAC: the landing page links them with
the `jobs` rel), so that whoever started a month can watch it without the CLI:
  /jobs            recent jobs, the latest months first, paged (`limit`, `token`)
  /jobs/{job_id}   one job: tiles pending / done / failed with reasons (`jobs.job_status`,
                   the document `sansnuages jobs JOB_ID --json` prints)

Reasons are written by the stages, which may keep an exception's text: here each is one short
line with URLs, paths, bucket keys and credentials taken out (`redact.public_reason`). An area
given as a file stays its id: the API never reads the path a job record names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlencode

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from sansnuages import errors
from sansnuages.api.redact import public_reason
from sansnuages.api.stac import JSON, ApiConfig, base_url, parse_limit
from sansnuages.period import parse_job_period
from sansnuages.stores.catalog.planning import decode_token, encode_token
from sansnuages.stores.jobs import JOB_LIST_PK, Job, JobStore, job_status

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
"""Each listed job is one query of its records: a page stays well within the API's timeout."""
JOB_ID = re.compile(r"^(\d{4}-\d{2}|snow-\d{4})-[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
"""`jobs.job_id_for`: the period (a month YYYY-MM, or a snow season snow-YYYY), then the area
id (country code, slug, geojson-hash, tiles-hash)."""


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_token: str | None


def parse_job_id(text: str) -> str:
    """A job id as a path gives it (possibly percent-encoded); a malformed one is a 400."""
    job_id = unquote(text)
    match = JOB_ID.match(job_id)
    if match is None:
        raise errors.InvalidRequest(
            f"job ids look like 2018-07-BEL or snow-2018-AND, not {job_id[:80]!r}"
        )
    parse_job_period(match.group(1))  # a month 13 is malformed too
    return job_id


def parse_job_limit(value: Any) -> int:
    """The STAC rules (default, below 1 refused, above the maximum clamped) with a lower cap."""
    if value is None or value == "":
        return DEFAULT_LIMIT
    return min(parse_limit(value), MAX_LIMIT)


def list_jobs(store: JobStore, limit: int, token: str | None = None) -> JobPage:
    """One page of jobs, the latest month first (then area ids in reverse order).

    The table keeps an index record of every job in one partition (`pk = "jobs"`, `sk` = the
    job id, which starts with its month), so this is a Query read backwards with a `Limit`,
    never a scan; the token is the last key returned, so pages neither skip nor repeat. The
    order is by month rather than by creation time: a re-run of an old month stays in its place.
    """
    query: dict[str, Any] = {
        "TableName": store.table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": JOB_LIST_PK}},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if token:
        query["ExclusiveStartKey"] = {"pk": {"S": JOB_LIST_PK}, "sk": {"S": _after(token)}}
    page = store.client.query(**query)
    ids = [record["sk"]["S"] for record in page["Items"]]
    last = page.get("LastEvaluatedKey")
    jobs = [job for job in map(store.head, ids) if job is not None]  # one whose head expired
    return JobPage(jobs, encode_token({"after": last["sk"]["S"]}) if last else None)


def _after(token: str) -> str:
    position = decode_token(token)
    after = position.get("after")
    if set(position) != {"after"} or after is None or JOB_ID.match(after) is None:
        raise errors.InvalidRequest("malformed paging token")
    return after


def public_status(job: Job) -> dict[str, Any]:
    """`jobs.job_status` as the API serves it: reasons fit for anyone, and an area resolved
    without the file system (a country or an inline polygon; a file keeps its id alone)."""
    if _names_a_file(job.area):
        status = job_status(replace(job, area=_UNRESOLVED))
        status["area"] = {"id": job.area_id, "name": job.area_id, "bbox": None}
    else:
        status = job_status(job)
    status["reason"] = public_reason(status["reason"])
    for tile in status["tiles"]:
        tile["reason"] = public_reason(tile["reason"])
    return status


_UNRESOLVED = "{}"
"""An inline area that resolves to nothing, so that the status reads no file."""


def _names_a_file(spec: str) -> bool:
    text = spec.strip()
    if text.startswith("{"):
        return False
    return "/" in text or "\\" in text or text.lower().endswith((".json", ".geojson"))


def job_summary(job: Job, base: str) -> dict[str, Any]:
    """A job in a list: its status without the tiles (their counts, kept in the job record,
    stay), and where the rest is."""
    summary = {key: value for key, value in public_status(job).items() if key != "tiles"}
    summary["links"] = [{"rel": "self", "href": f"{base}/jobs/{job.job_id}", "type": JSON}]
    return summary


def jobs_document(page: JobPage, base: str, limit: int) -> dict[str, Any]:
    links = [
        {"rel": "self", "href": f"{base}/jobs", "type": JSON},
        {"rel": "root", "href": f"{base}/", "type": JSON},
    ]
    if page.next_token is not None:
        query = urlencode({"limit": limit, "token": page.next_token})
        links.append({"rel": "next", "href": f"{base}/jobs?{query}", "type": JSON})
    return {"jobs": [job_summary(job, base) for job in page.jobs], "links": links}


def _json(document: Any) -> Response:
    """Never cached: a running job changes from one request to the next."""
    body = json.dumps(document, separators=(",", ":"))
    headers = {"Cache-Control": "no-store"}
    return Response(status_code=200, content_type=JSON, body=body, headers=headers, compress=True)


def add_job_routes(
    app: APIGatewayHttpResolver, store: JobStore, config: ApiConfig | None = None
) -> APIGatewayHttpResolver:
    """Register the job routes on `app` (the STAC API resolver, whose error handlers turn
    `InvalidRequest` into 400 and `NotFound` into 404 with a STAC error body) and return it."""
    public_url = (config or ApiConfig()).public_url

    @app.get("/jobs")
    def jobs() -> Response:
        params = app.current_event.query_string_parameters or {}
        limit = parse_job_limit(params.get("limit"))
        page = list_jobs(store, limit, params.get("token") or None)
        return _json(jobs_document(page, base_url(app.current_event, public_url), limit))

    @app.get("/jobs/<job_id>")
    def job(job_id: str) -> Response:
        job_id = parse_job_id(job_id)
        found = store.get(job_id)
        if found is None:
            raise errors.NotFound(f"no job {job_id}")
        return _json(public_status(found))

    return app

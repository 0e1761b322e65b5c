"""Job status over HTTP: the API function's handler (functions/api/app.py) behind the local HTTP
front, over a freshly provisioned jobs table on the moto server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from api_handler import load_api_handler
from test_stac_api import http

from sansnuages.settings import Settings
from sansnuages.stores.jobs import JobState, JobStore, TileState
from sansnuages.tools.local.http_front import HttpFront


@dataclass
class Served:
    url: str
    store: JobStore


@pytest.fixture()
def served(function_settings: Settings) -> Iterator[Served]:
    """The deployed handler module, loaded afresh so that it reads this stack's environment."""
    front = HttpFront(load_api_handler()).start()
    yield Served(front.url, JobStore(function_settings))
    front.stop()


def _finished_job(store: JobStore) -> str:
    job, _ = store.create("2018-07", "Belgium", "BEL", ["31UES", "31UFS", "31UGS"])
    store.finish_tile(job.job_id, "31UES", TileState.DONE, item="sentinel2-l3a/31UES-2018-07")
    store.finish_tile(job.job_id, "31UFS", TileState.FAILED, reason="NoInputs: no clear view")
    store.finish_tile(job.job_id, "31UGS", TileState.DONE, item="sentinel2-l3a/31UGS-2018-07")
    assert store.claim_mosaic(job.job_id)
    store.finish(job.job_id, JobState.DONE, item="mosaics/BEL-2018-07")
    return job.job_id


def _cli_json(
    settings: Settings, job_id: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> list[dict[str, Any]]:
    from sansnuages.tools.cli import build_parser
    from sansnuages.tools.stack import Deployment

    deployment = Deployment.from_settings(settings)
    monkeypatch.setattr(Deployment, "open", classmethod(lambda cls, *args: deployment))
    args = build_parser().parse_args(["jobs", job_id, "--json"])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def test_a_finished_job_over_http_is_what_the_cli_prints(
    served: Served,
    function_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    job_id = _finished_job(served.store)
    status, headers, body = http(f"{served.url}/jobs/{job_id}")
    assert status == 200
    assert headers["Cache-Control"] == "no-store"
    assert [body] == _cli_json(function_settings, job_id, monkeypatch, capsys)
    assert body["state"] == "done"
    assert body["counts"] == {"pending": 0, "done": 2, "failed": 1}
    assert body["area"] == {"id": "BEL", "name": "Belgium", "bbox": body["area"]["bbox"]}
    failed = [tile for tile in body["tiles"] if tile["state"] == "failed"]
    assert failed == [
        {"tile": "31UFS", "state": "failed", "reason": "NoInputs: no clear view", "item": None}
    ]


def test_a_running_job_shows_its_pending_tiles(served: Served) -> None:
    job, _ = served.store.create("2019-03", "Belgium", "BEL", ["31UES", "31UFS"])
    served.store.finish_tile(job.job_id, "31UES", TileState.DONE, item="sentinel2-l3a/x")
    _, _, body = http(f"{served.url}/jobs/{job.job_id}")
    assert body["state"] == "running"
    assert body["counts"] == {"pending": 1, "done": 1, "failed": 0}
    assert {tile["tile"]: tile["state"] for tile in body["tiles"]} == {
        "31UES": "done",
        "31UFS": "pending",
    }


def test_an_unknown_job_is_a_404_with_a_stac_error(served: Served) -> None:
    _finished_job(served.store)
    status, _, body = http(f"{served.url}/jobs/2018-08-BEL")
    assert status == 404
    assert body["code"] == "NotFound"
    assert body["description"] == "no job 2018-08-BEL"  # the route's answer, not a missing route


@pytest.mark.parametrize(
    "job_id", ["BEL", "2018-13-BEL", "2018-07-", "2018-07-BE L", "2018-07-B%C3%89L", "x" * 300]
)
def test_a_malformed_job_id_is_a_400(served: Served, job_id: str) -> None:
    status, _, body = http(f"{served.url}/jobs/{quote(job_id, safe='%')}")
    assert status == 400
    assert body["code"] == "InvalidParameterValue"


def test_jobs_are_listed_latest_month_first_in_pages(served: Served) -> None:
    months = ["2017-12", "2018-07", "2018-01", "2019-02", "2018-06"]
    for month in months:
        served.store.create(month, "Belgium", "BEL", ["31UES"])
    served.store.create("2018-07", "Luxembourg", "LUX", ["31UGQ"])
    expected = sorted([f"{m}-BEL" for m in months] + ["2018-07-LUX"], reverse=True)
    listed: list[str] = []
    url: str | None = f"{served.url}/jobs?limit=4"
    while url is not None:
        status, _, body = http(url)
        assert status == 200
        assert len(body["jobs"]) <= 4
        listed += [job["job_id"] for job in body["jobs"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert listed == expected
    _, _, first = http(f"{served.url}/jobs?limit=1")
    (summary,) = first["jobs"]
    assert summary["job_id"] == "2019-02-BEL"
    assert summary["counts"] == {"pending": 1, "done": 0, "failed": 0}
    assert "tiles" not in summary
    (self_link,) = [link for link in summary["links"] if link["rel"] == "self"]
    assert http(self_link["href"])[2]["tiles"] == [
        {"tile": "31UES", "state": "pending", "reason": None, "item": None}
    ]


def test_no_job_is_an_empty_list(served: Served) -> None:
    status, _, body = http(f"{served.url}/jobs")
    assert status == 200
    assert body["jobs"] == []
    assert "next" not in [link["rel"] for link in body["links"]]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=abc", "token=not-a-token", "token=eyJhZnRlciI6ICIuLiJ9"]
)
def test_bad_list_parameters_are_a_400(served: Served, query: str) -> None:
    served.store.create("2018-07", "Belgium", "BEL", ["31UES"])
    status, _, body = http(f"{served.url}/jobs?{query}")
    assert status == 400, body
    assert body["code"] == "InvalidParameterValue"


def test_the_landing_page_and_openapi_document_lead_to_the_jobs(served: Served) -> None:
    _, _, landing = http(f"{served.url}/")
    (jobs,) = [link for link in landing["links"] if link["rel"] == "jobs"]
    assert http(jobs["href"])[0] == 200
    _, _, document = http(f"{served.url}/api")
    assert {"/jobs", "/jobs/{jobId}"} <= set(document["paths"])


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_openapi_fuzz_of_the_job_routes_finds_no_server_error(served: Served, mode: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    _finished_job(served.store)
    schema = schemathesis.openapi.from_url(f"{served.url}/api").include(path_regex="^/jobs")
    strategy = schema.as_strategy(generation_mode=schemathesis.GenerationMode(mode))
    failures: list[str] = []
    paths: set[str] = set()

    @settings(
        max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call(base_url=served.url)
        paths.add(case.path)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} {case.query}")

    check()
    assert failures == []
    assert paths == {"/jobs", "/jobs/{jobId}"}

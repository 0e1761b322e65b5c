"""The sample events in events/ are the shapes the handlers really parse."""

import json
from pathlib import Path

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2, S3Event, SQSEvent

from sansnuages.stages.plan import JobRequest
from sansnuages.stores.bucket import decode_event_key
from sansnuages.stores.messages import TileTask

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def sqs_bodies(name: str) -> list[dict]:
    return [json.loads(record.body) for record in SQSEvent(load(name)).records]


def test_every_function_has_a_sample_event() -> None:
    prefixes = {path.name.split("-")[0] for path in EVENTS.glob("*.json")}
    assert prefixes == {"ingest", "plan", "composite", "mosaic", "sweeper", "api"}


def test_upload_event_names_a_key_under_incoming() -> None:
    (body,) = sqs_bodies("ingest-upload.json")
    (record,) = S3Event(body).records
    assert decode_event_key(record.s3.get_object.key).startswith("incoming/")


def test_s3_test_event_is_recognised() -> None:
    (body,) = sqs_bodies("ingest-s3-test-event.json")
    assert body["Event"] == "s3:TestEvent"


def test_plan_events_make_the_same_job_request() -> None:
    scheduled = JobRequest.from_event(load("plan-schedule.json"))
    manual = JobRequest.from_event(load("plan-manual.json"))
    assert scheduled == manual
    assert scheduled.period.label == "2018-07"


def test_composite_message_is_a_tile_task() -> None:
    (body,) = sqs_bodies("composite-tile.json")
    task = TileTask.from_message(body)
    assert (task.tile, task.period.label) == ("31UFS", "2018-07")


def test_api_event_is_a_payload_v2_request() -> None:
    event = APIGatewayProxyEventV2(load("api-search.json"))
    assert event.raw_path == "/search" and event.request_context.http.method == "GET"


def test_keys_are_url_decoded_as_aws_sends_them() -> None:
    assert decode_event_key("incoming/missing+band%28v2%29.zip") == "incoming/missing band(v2).zip"
    assert decode_event_key("incoming%2Fa.zip") == "incoming/a.zip"

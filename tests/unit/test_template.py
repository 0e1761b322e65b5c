"""The deployment template: its guarantees, and the local model derived from it."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sansnuages.period import HydrologicalYear
from sansnuages.tools.local.scheduler import next_fire
from sansnuages.tools.local.template import (
    Resolver,
    Stack,
    TemplateError,
    expand,
    load_stack,
    parse_template,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SQS_EVENT_TYPE = "SQS"
FUNCTIONS = (
    "IngestFunction",
    "PlanFunction",
    "CompositeFunction",
    "MosaicFunction",
    "SweeperFunction",
    "ApiFunction",
)


@pytest.fixture(scope="module")
def sam() -> dict[str, Any]:
    return parse_template(TEMPLATE.read_text())


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return expand(copy.deepcopy(sam))


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack(TEMPLATE, endpoint_url="http://127.0.0.1:4566")


@pytest.fixture(scope="module")
def resolver(cfn: dict[str, Any]) -> Resolver:
    return Resolver(cfn, "sansnuages", {}, "eu-west-3", "111122223333", None)


def resources_of(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in template["Resources"].items() if r["Type"] == rtype}


def write_template(path: Path, template: dict[str, Any]) -> Path:
    path.write_text(json.dumps(template))
    return path


# ------------------------------------------------------------------------ lint


def test_cfn_lint_finds_no_error_or_warning() -> None:
    from cfnlint.api import lint_all

    problems = [m for m in lint_all(TEMPLATE.read_text()) if m.rule.id[0] in "EW"]
    assert problems == [], "\n".join(str(m) for m in problems)


# ------------------------------------------------------------------------ queues


def test_every_consumed_queue_outlasts_six_times_its_consumer(stack: Stack) -> None:
    assert stack.event_sources, "no SQS consumer found: the model lost the event sources"
    for source in stack.event_sources:
        queue = stack.queue(source.queue_logical_id)
        function = stack.function(source.function_logical_id)
        needed = 6 * function.timeout_s + source.batching_window_s
        assert queue.visibility_timeout >= needed, (queue.logical_id, queue.visibility_timeout)


def test_every_work_queue_has_a_dead_letter_queue(stack: Stack) -> None:
    dead_letters = {q.dead_letter for q in stack.queues if q.dead_letter}
    work_queues = [q for q in stack.queues if q.logical_id not in dead_letters]
    assert {q.logical_id for q in work_queues} == {"IngestQueue", "CompositeQueue", "MosaicQueue"}
    for queue in work_queues:
        assert queue.dead_letter is not None, queue.logical_id
        assert queue.max_receive_count == 3
        dead_letter = stack.queue(queue.dead_letter)
        assert dead_letter.message_retention_s == 14 * 24 * 3600
        # The enqueue time is kept on redrive: a shorter DLQ retention would drop messages.
        assert dead_letter.message_retention_s >= queue.message_retention_s


def test_every_queue_is_encrypted(sam: dict[str, Any]) -> None:
    for logical_id, queue in resources_of(sam, "AWS::SQS::Queue").items():
        props = queue["Properties"]
        assert props.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in props, logical_id


def test_s3_may_send_to_the_ingest_queue_and_only_from_the_data_bucket(
    sam: dict[str, Any], cfn: dict[str, Any], resolver: Resolver
) -> None:
    policies = [
        p
        for p in resources_of(sam, "AWS::SQS::QueuePolicy").values()
        if {"Ref": "IngestQueue"} in p["Properties"]["Queues"]
    ]
    assert len(policies) == 1
    (statement,) = policies[0]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert resolver.resolve(statement["Resource"]) == resolver.arn("IngestQueue")
    conditions = resolver.resolve(statement["Condition"])
    assert conditions["ArnLike"]["aws:SourceArn"] == resolver.arn("DataBucket")
    assert conditions["StringEquals"]["aws:SourceAccount"] == "111122223333"
    # S3 checks that it may deliver when the notification is created: the policy comes first.
    assert sam["Resources"]["DataBucket"]["DependsOn"] in (
        "IngestQueuePolicy",
        ["IngestQueuePolicy"],
    )


def test_uploads_notify_the_ingest_queue(stack: Stack) -> None:
    (bucket,) = stack.buckets
    (notification,) = bucket.notifications
    assert notification.queue_logical_id == "IngestQueue"
    assert notification.prefix == "incoming/"
    assert notification.events == ("s3:ObjectCreated:*",)
    assert bucket.name == "sansnuages-data-123456789012"


# ------------------------------------------------------------------------ functions


def test_every_function_sets_memory_and_timeout(sam: dict[str, Any]) -> None:
    functions = resources_of(sam, "AWS::Serverless::Function")
    assert len(functions) == len(FUNCTIONS)
    for logical_id, function in functions.items():
        props = function["Properties"]
        assert isinstance(props.get("MemorySize"), int), logical_id
        assert isinstance(props.get("Timeout"), int), logical_id
        assert function["Metadata"]["BuildMethod"] == "makefile", logical_id


def test_every_sqs_event_reports_batch_item_failures(sam: dict[str, Any], stack: Stack) -> None:
    events = [
        event
        for function in resources_of(sam, "AWS::Serverless::Function").values()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == SQS_EVENT_TYPE
    ]
    assert len(events) == 3
    for event in events:
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert all(source.report_batch_item_failures for source in stack.event_sources)


def test_functions_get_settings_from_the_template(stack: Stack) -> None:
    for function in stack.functions:
        env = function.environment
        assert env["DATA_BUCKET"] == stack.bucket("DataBucket").name
        assert env["CATALOG_TABLE"] == stack.table("CatalogTable").name
        assert env["JOBS_TABLE"] == stack.table("JobsTable").name
        assert (
            env["COMPOSITE_QUEUE_URL"]
            == "http://127.0.0.1:4566/123456789012/sansnuages-compositequeue"
        )
        assert env["MOSAIC_QUEUE_URL"] == stack.queue("MosaicQueue").url
        assert env["POWERTOOLS_SERVICE_NAME"] == function.code_dir.name
        assert function.code_dir == ROOT / "functions" / function.code_dir.name
        assert function.runtime == "python3.13"


def test_the_api_carries_only_the_layers_it_imports(stack: Stack) -> None:
    # map tiles need rasterio and rio-tiler; only the API carries the tiles layer
    assert stack.function("ApiFunction").layers == (
        "RasterLayer",
        "TilesLayer",
        "CommonLayer",
        "CoreLayer",
    )
    assert all(
        "TilesLayer" not in f.layers for f in stack.functions if f.logical_id != "ApiFunction"
    )
    assert stack.function("CompositeFunction").layers == ("RasterLayer", "CommonLayer", "CoreLayer")
    assert {layer.logical_id: layer.content_dir for layer in stack.layers}[
        "CoreLayer"
    ] == ROOT / "shared"


def test_monthly_schedule_starts_a_plan_for_the_default_area(stack: Stack) -> None:
    (schedule,) = [s for s in stack.schedules if s.logical_id == "PlanFunctionMonthly"]
    assert schedule.function_logical_id == "PlanFunction"
    assert schedule.expression == "cron(0 3 10 * ? *)"
    assert schedule.input is not None
    assert json.loads(schedule.input) == {
        "area": "Belgium",
        "scheduled_time": "<aws.scheduler.scheduled-time>",
    }


def test_yearly_schedule_plans_the_season_that_ended_after_its_margin(stack: Stack) -> None:
    """The snow seasons' schedule fires once a year, after the last margin day (15 September)
    of the season that ended on 31 August, and its event plans that season."""
    from sansnuages.stages.plan import JobRequest

    (schedule,) = [s for s in stack.schedules if s.logical_id == "PlanFunctionYearly"]
    assert schedule.function_logical_id == "PlanFunction" and schedule.input is not None
    fired = next_fire(schedule.expression, datetime(2018, 9, 1, tzinfo=UTC))
    assert (fired.month, fired.day) > (9, 15)
    event = json.loads(schedule.input.replace("<aws.scheduler.scheduled-time>", fired.isoformat()))
    request = JobRequest.from_event(event, lag_days=0)
    assert request.period == HydrologicalYear(2018) and request.area == "Andorra"


def test_parameters_change_the_model() -> None:
    stack = load_stack(TEMPLATE, "demo", {"DefaultArea": "France", "LogLevel": "DEBUG"})
    (schedule,) = [s for s in stack.schedules if s.logical_id == "PlanFunctionMonthly"]
    assert schedule.input is not None and json.loads(schedule.input)["area"] == "France"
    assert stack.function("PlanFunction").environment["POWERTOOLS_LOG_LEVEL"] == "DEBUG"
    assert stack.queue("IngestQueue").url == (
        "https://sqs.us-east-1.amazonaws.com/123456789012/demo-ingestqueue"
    )


def test_the_composite_function_declares_the_nadir_normalisation(stack: Stack) -> None:
    """The setting reaches the synthesis as the template says, on by default, and the
    parameter's values are ones `Settings` reads the intended way."""
    from sansnuages.settings import Settings

    env = stack.function("CompositeFunction").environment
    assert env["NADIR_NORMALISATION"] == "true"
    assert Settings.from_env(env).nadir_normalisation is True
    off = load_stack(TEMPLATE, "demo", {"NadirNormalisation": "false"})
    off_env = off.function("CompositeFunction").environment
    assert Settings.from_env(off_env).nadir_normalisation is False


def test_the_http_api_routes_everything_to_the_api_function(stack: Stack) -> None:
    (api,) = stack.http_apis
    assert api.function_logical_id == "ApiFunction"
    assert set(api.routes) == {"ANY /", "ANY /{proxy+}"}
    assert api.payload_format_version == "2.0"
    assert api.cors is not None and api.cors["allowOrigins"] == ["*"]


# ------------------------------------------------------------------------ security


def test_bucket_blocks_public_access_is_encrypted_and_denies_plain_http(
    sam: dict[str, Any], resolver: Resolver
) -> None:
    props = sam["Resources"]["DataBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert len(props["PublicAccessBlockConfiguration"]) == 4
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    policies = [
        p["Properties"]
        for p in resources_of(sam, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    ]
    (policy,) = policies
    denials = [
        resolver.resolve(s)
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    ]
    assert len(denials) == 1
    bucket_arn = resolver.arn("DataBucket")
    assert set(denials[0]["Resource"]) == {bucket_arn, f"{bucket_arn}/*"}


def _role_statements(cfn: dict[str, Any], resolver: Resolver, role: str) -> list[dict[str, Any]]:
    props = resolver.resolve(cfn["Resources"][role]["Properties"])
    return [
        statement
        for policy in props.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]


def _as_list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _s3_grants(statements: list[dict[str, Any]], bucket_arn: str) -> dict[str, set[str]]:
    """Action -> object key patterns granted on the data bucket."""
    grants: dict[str, set[str]] = {}
    for statement in statements:
        for action in _as_list(statement["Action"]):
            if action.startswith("s3:") and action != "s3:ListBucket":
                for resource in _as_list(statement["Resource"]):
                    assert resource.startswith(f"{bucket_arn}/"), resource
                    grants.setdefault(action, set()).add(resource.removeprefix(f"{bucket_arn}/"))
    return grants


def test_no_policy_grants_wildcards(cfn: dict[str, Any], resolver: Resolver) -> None:
    roles = resources_of(cfn, "AWS::IAM::Role")
    assert len(roles) >= 5
    for role in roles:
        for statement in _role_statements(cfn, resolver, role):
            actions, resources = _as_list(statement["Action"]), _as_list(statement["Resource"])
            assert "*" not in actions, role
            assert not any(re.fullmatch(r"[a-z0-9]+:\*", a) for a in actions), (role, actions)
            if any(a.startswith(("s3:", "dynamodb:", "sqs:")) for a in actions):
                assert "*" not in resources, (role, statement)
                # Object grants name a prefix or a key, never the whole bucket.
                assert not any(
                    r.endswith(f"{resolver.physical_name('DataBucket')}/*") for r in resources
                )


def test_s3_grants_follow_the_data_flow(cfn: dict[str, Any], resolver: Resolver) -> None:
    """Each function writes its own stage's prefix; deletes are limited to the drop zone, the
    files of a quarantined attempt and the COGs GDAL rewrites; what is kept (quarantine,
    collections) is never deleted; the API, whose role signs the presigned links, reads only
    published products (tests/integration/test_least_privilege.py measures the rest)."""
    bucket = resolver.arn("DataBucket")

    def grants(function: str) -> dict[str, set[str]]:
        return _s3_grants(_role_statements(cfn, resolver, f"{function}Role"), bucket)

    ingest = grants("IngestFunction")
    # a late product flags the syntheses (a late snow map the seasons) it misses: their Item
    # files, read and written conditionally; an upload given up on its last delivery leaves
    # its reason
    made = {"l3a/*", "snow-seasons/*"}
    assert ingest["s3:GetObject"] == {"incoming/*", "l2a/*", "collections/*"} | made
    assert (
        ingest["s3:PutObject"]
        == {
            "l2a/*",
            "quarantine/*",
            "dead-letters/*",
            "collections/*",
        }
        | made
    )
    assert ingest["s3:DeleteObject"] == {"incoming/*", "l2a/*"}
    composite, mosaic = grants("CompositeFunction"), grants("MosaicFunction")
    assert composite["s3:PutObject"] == {"collections/*"} | made
    assert composite["s3:DeleteObject"] == made
    assert "l2a/*" in composite["s3:GetObject"]
    assert mosaic["s3:PutObject"] == {"mosaics/*", "collections/*"}
    assert mosaic["s3:DeleteObject"] == {"mosaics/*"}
    assert grants("PlanFunction") == {} and grants("SweeperFunction") == {}
    api = grants("ApiFunction")
    assert api == {"s3:GetObject": {"l2a/*", "l3a/*", "snow-seasons/*", "mosaics/*"}}
    deletable = set().union(*(grants(f).get("s3:DeleteObject", set()) for f in FUNCTIONS))
    assert not deletable & {"quarantine/*", "collections/*"}


def test_list_grants_name_prefixes_and_the_api_lists_nothing(
    cfn: dict[str, Any], resolver: Resolver
) -> None:
    """s3:ListBucket (which also makes a missing key a 404 rather than a 403) is granted on
    prefixes only, never the whole bucket; the API needs none."""
    for function in FUNCTIONS:
        for statement in _role_statements(cfn, resolver, f"{function}Role"):
            if "s3:ListBucket" in _as_list(statement["Action"]):
                prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                assert prefixes and all(p.endswith("/*") and len(p) > 2 for p in prefixes)
    api = _role_statements(cfn, resolver, "ApiFunctionRole")
    assert not [s for s in api if "s3:ListBucket" in _as_list(s["Action"])]


def test_the_api_cannot_write_tables(cfn: dict[str, Any], resolver: Resolver) -> None:
    actions = {
        action
        for statement in _role_statements(cfn, resolver, "ApiFunctionRole")
        for action in _as_list(statement["Action"])
    }
    assert "dynamodb:GetItem" in actions and "dynamodb:Query" in actions
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "s3:PutObject"}
    assert not actions & writes


def test_the_api_reads_the_jobs_table_it_is_told_of(
    cfn: dict[str, Any], resolver: Resolver, stack: Stack
) -> None:
    """`GET /jobs/{id}` queries the jobs table: the role may read it, the environment names it."""
    jobs = resolver.arn("JobsTable")
    readable = {
        resource
        for statement in _role_statements(cfn, resolver, "ApiFunctionRole")
        if "dynamodb:Query" in _as_list(statement["Action"])
        for resource in _as_list(statement["Resource"])
    }
    assert jobs in readable
    environment = stack.function("ApiFunction").environment
    assert environment["JOBS_TABLE"] == stack.table("JobsTable").name


# ------------------------------------------------------------------------ throttling, isolation


def _resolved(cfn: dict[str, Any], logical_id: str, **parameters: str) -> dict[str, Any]:
    resolver = Resolver(cfn, "sansnuages", parameters, "eu-west-3", "111122223333", None)
    props: dict[str, Any] = resolver.resolve(cfn["Resources"][logical_id]["Properties"])
    return props


def test_the_http_api_throttles_every_route_and_logs_access(cfn: dict[str, Any]) -> None:
    (stage_id,) = resources_of(cfn, "AWS::ApiGatewayV2::Stage")
    stage = _resolved(cfn, stage_id)
    assert stage["DefaultRouteSettings"] == {"ThrottlingRateLimit": 25, "ThrottlingBurstLimit": 50}
    changed = _resolved(cfn, stage_id, ApiThrottlingRateLimit="5", ApiThrottlingBurstLimit="8")
    assert changed["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": "5",
        "ThrottlingBurstLimit": "8",
    }
    (log_group,) = [
        lid
        for lid in resources_of(cfn, "AWS::Logs::LogGroup")
        if stage["AccessLogSettings"]["DestinationArn"].endswith(
            f":{_resolved(cfn, lid)['LogGroupName']}"
        )
    ]
    assert _resolved(cfn, log_group)["RetentionInDays"] == 30
    assert "$context.status" in stage["AccessLogSettings"]["Format"]


def test_only_the_api_reserves_concurrency_and_zero_reserves_none(cfn: dict[str, Any]) -> None:
    assert _resolved(cfn, "ApiFunction")["ReservedConcurrentExecutions"] == 10
    assert (
        _resolved(cfn, "ApiFunction", ApiReservedConcurrency="3")["ReservedConcurrentExecutions"]
        == "3"
    )
    assert "ReservedConcurrentExecutions" not in _resolved(
        cfn, "ApiFunction", ApiReservedConcurrency="0"
    )
    for function in FUNCTIONS[:-1]:
        assert "ReservedConcurrentExecutions" not in _resolved(cfn, function), function


def test_sqs_consumers_are_bounded_by_their_event_source(cfn: dict[str, Any]) -> None:
    """MaximumConcurrency, not a reservation: a throttled batch would count as a receive."""
    bounds = {}
    for logical_id in resources_of(cfn, "AWS::Lambda::EventSourceMapping"):
        mapping = _resolved(cfn, logical_id)
        bounds[mapping["FunctionName"]] = mapping["ScalingConfig"]["MaximumConcurrency"]
    assert bounds == {"sansnuages-ingest": 10, "sansnuages-composite": 20, "sansnuages-mosaic": 5}
    assert all(int(bound) >= 2 for bound in bounds.values())  # AWS's minimum
    parameters = parse_template(TEMPLATE.read_text())["Parameters"]
    for name in ("Ingest", "Composite", "Mosaic"):
        assert parameters[f"{name}MaximumConcurrency"]["MinValue"] == 2


# ------------------------------------------------------------------------ logs and alarms


def test_every_function_logs_to_its_own_group_with_a_retention(cfn: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        props = _resolved(cfn, function)
        group = props["LoggingConfig"]["LogGroup"]
        assert group == f"/aws/lambda/{props['FunctionName']}", function
    groups = [_resolved(cfn, lid) for lid in resources_of(cfn, "AWS::Logs::LogGroup")]
    assert len(groups) == len(FUNCTIONS) + 1  # and the API's access log
    assert all(group["RetentionInDays"] == 30 for group in groups)
    longer = resources_of(cfn, "AWS::Logs::LogGroup")
    assert all(
        _resolved(cfn, lid, LogRetentionDays="365")["RetentionInDays"] == "365" for lid in longer
    )


def _alarms(cfn: dict[str, Any], resolver: Resolver) -> list[dict[str, Any]]:
    alarms = [
        resolver.resolve(a["Properties"])
        for a in resources_of(cfn, "AWS::CloudWatch::Alarm").values()
    ]
    topic = resolver.ref("AlarmTopic")
    for alarm in alarms:  # every alarm notifies the topic, raised and cleared
        assert alarm["AlarmActions"] == [topic] and alarm["OKActions"] == [topic], alarm
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["TreatMissingData"] == "notBreaching"
    return alarms


def _watching(alarms: list[dict[str, Any]], namespace: str, metric: str) -> dict[str, Any]:
    """Alarms on `namespace`/`metric`, by the value of their one dimension."""
    found = {}
    for alarm in alarms:
        if (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric):
            (dimension,) = alarm["Dimensions"]
            found[dimension["Value"]] = alarm
    return found


def test_every_dead_letter_queue_alarms_on_its_first_message(
    cfn: dict[str, Any], resolver: Resolver
) -> None:
    stack = load_stack(TEMPLATE)
    dead_letters = {resolver.physical_name(q.dead_letter) for q in stack.queues if q.dead_letter}
    watched = _watching(_alarms(cfn, resolver), "AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert set(watched) == dead_letters and len(dead_letters) == 3
    assert all(alarm["Threshold"] == 0 for alarm in watched.values())


def test_every_work_queue_alarms_on_its_oldest_message(
    cfn: dict[str, Any], resolver: Resolver
) -> None:
    stack = load_stack(TEMPLATE)
    work = {resolver.physical_name(q.logical_id) for q in stack.queues if q.dead_letter}
    watched = _watching(_alarms(cfn, resolver), "AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert set(watched) == work and len(work) == 3
    for source in stack.event_sources:  # longer than a message waits behind one retry
        threshold = watched[resolver.physical_name(source.queue_logical_id)]["Threshold"]
        assert threshold > stack.queue(source.queue_logical_id).visibility_timeout


def test_every_sqs_consumer_alarms_on_the_records_it_reports_failed(
    cfn: dict[str, Any], resolver: Resolver
) -> None:
    """`Errors` misses records failed through ReportBatchItemFailures: the handlers count them
    in `FailedRecords`, in their metrics namespace, with their service as dimension."""
    stack = load_stack(TEMPLATE)
    alarms = _alarms(cfn, resolver)
    namespaces = {f.environment["POWERTOOLS_METRICS_NAMESPACE"] for f in stack.functions}
    (namespace,) = namespaces
    watched = _watching(alarms, namespace, "FailedRecords")
    services = {
        stack.function(s.function_logical_id).environment["POWERTOOLS_SERVICE_NAME"]
        for s in stack.event_sources
    }
    assert set(watched) == services == {"ingest", "composite", "mosaic"}
    assert all(alarm["Dimensions"][0]["Name"] == "service" for alarm in watched.values())
    errors = _watching(alarms, "AWS/Lambda", "Errors")
    assert set(errors) == {_resolved(cfn, f)["FunctionName"] for f in FUNCTIONS}


def test_operators_can_subscribe_to_the_alarms(sam: dict[str, Any]) -> None:
    assert sam["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}
    assert sam["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"


def test_the_bucket_keeps_replaced_versions_for_a_while(sam: dict[str, Any]) -> None:
    props = sam["Resources"]["DataBucket"]["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = props["LifecycleConfiguration"]["Rules"]
    kept = [
        r["NoncurrentVersionExpiration"]["NoncurrentDays"]
        for r in rules
        if "NoncurrentVersionExpiration" in r
    ]
    assert sorted(kept) == [1, 30]


# ------------------------------------------------------------------------ layers


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not pinned"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.mark.parametrize("layer", ["raster", "common", "tiles"])
def test_layers_pin_the_versions_tested_locally(layer: str) -> None:
    constraints = _pins(ROOT / "constraints.txt")
    pins = _pins(ROOT / "layers" / layer / "requirements.txt")
    assert pins, layer
    assert {name: constraints.get(name) for name in pins} == pins


def test_the_common_layer_carries_the_botocore_aiobotocore_wants() -> None:
    pins = _pins(ROOT / "layers" / "common" / "requirements.txt")
    assert {"s3fs", "aiobotocore", "botocore", "boto3"} <= set(pins)


# ------------------------------------------------------------------------ the model, bad input


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(TemplateError, match="unknown parameters"):
        load_stack(TEMPLATE, parameters={"DefaultAera": "France"})


def test_disallowed_parameter_value_is_refused() -> None:
    with pytest.raises(TemplateError, match="LogLevel"):
        load_stack(TEMPLATE, parameters={"LogLevel": "LOUD"})


def test_a_file_without_resources_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="Resources"):
        load_stack(write_template(tmp_path / "t.json", {"Parameters": {}}))


def test_invalid_sam_is_refused(tmp_path: Path, sam: dict[str, Any]) -> None:
    broken = copy.deepcopy(sam)
    broken["Resources"]["IngestFunction"]["Properties"]["Events"]["Uploads"]["Type"] = "Carrier"
    with pytest.raises(TemplateError, match="invalid SAM template"):
        load_stack(write_template(tmp_path / "t.json", broken))


def test_a_reference_to_a_missing_resource_is_refused(tmp_path: Path, sam: dict[str, Any]) -> None:
    broken = copy.deepcopy(sam)
    variables = broken["Globals"]["Function"]["Environment"]["Variables"]
    variables["MOSAIC_QUEUE_URL"] = {"Ref": "NoSuchQueue"}
    with pytest.raises(TemplateError, match="NoSuchQueue"):
        load_stack(write_template(tmp_path / "t.json", broken))


def test_resolver_handles_the_common_intrinsics(cfn: dict[str, Any]) -> None:
    cfn = {**cfn, "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "AWS::StackName"}, "prod"]}}}
    resolver = Resolver(cfn, "dev", {}, "eu-west-3", "111122223333", "http://127.0.0.1:9")
    value = {
        "join": {"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]},
        "select": {"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]},
        "if": {"Fn::If": ["IsProd", "big", "small"]},
        "sub": {"Fn::Sub": ["${!Literal} ${Name} ${MosaicQueue.QueueName}", {"Name": "n"}]},
        "gone": {"Ref": "AWS::NoValue"},
        "list": ["kept", {"Ref": "AWS::NoValue"}],
        "url": {"Fn::GetAtt": ["IngestQueue", "QueueUrl"]},
    }
    assert resolver.resolve(value) == {
        "join": "a-eu-west-3",
        "select": "y",
        "if": "small",
        "sub": "${Literal} n dev-mosaicqueue",
        "list": ["kept"],
        "url": "http://127.0.0.1:9/111122223333/dev-ingestqueue",
    }
    with pytest.raises(TemplateError, match="not modelled"):
        resolver.resolve({"Fn::GetAtt": ["CatalogTable", "StreamArn"]})

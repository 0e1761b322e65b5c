"""The operator commands (`jobs`, `failures`, `redrive`, `reingest`, `rerun`, `purge`) run as a
person runs them: `python -m sansnuages` in a new process beside a local runtime, with no AWS
variable in its environment. The runtime serves CloudFormation's DescribeStacks and Lambda's
Invoke, so the same commands also run here with `--stack` through the standard AWS client
configuration, as against a deployed stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from waiting import wait_for

from sansnuages.settings import Settings
from sansnuages.stores.bucket import DataBucket
from sansnuages.stores.catalog import Catalog
from sansnuages.stores.jobs import JobStore, TileState
from sansnuages.tools.local.client import RuntimeClient
from sansnuages.tools.local.runtime import LocalRuntime
from sansnuages.tools.local.template import load_stack
from sansnuages.tools.simulate import simulate_product
from sansnuages.tools.stack import Deployment

ROOT = Path(__file__).resolve().parents[2]
TILE = "31UFS"
RESOLUTION = 1098.0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operator")


@pytest.fixture(scope="module")
def runtime(workdir: Path) -> Iterator[LocalRuntime]:
    runtime = LocalRuntime(ROOT / "template.yaml", workdir, concurrency=1).start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="module")
def settings(runtime: LocalRuntime) -> Settings:
    return RuntimeClient(runtime.facts()).settings()


def clean_environment(home: Path) -> dict[str, str]:
    """This process's environment without any AWS variable or configuration file, and with
    the instance metadata service off (boto3 would otherwise look for it on the network)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SANSNUAGES_"))}
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(home / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sansnuages", *args],
        cwd=cwd,
        env=env if env is not None else clean_environment(cwd),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def _visible(runtime: LocalRuntime, queue: str) -> int:
    return int(runtime.status()["queues"][queue]["visible"])


# --- outputs, credentials ----------------------------------------------------------------


def test_the_local_runtime_answers_describe_stacks_with_the_template_outputs(
    runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    deployment = Deployment.local(workdir)
    stack = load_stack(ROOT / "template.yaml", endpoint_url=runtime.facts()["endpoint_url"])
    assert deployment.output("DataBucketName") == settings.data_bucket
    assert deployment.output("CatalogTableName") == settings.catalog_table
    assert deployment.output("JobsTableName") == settings.jobs_table
    assert deployment.output("PlanFunctionName") == stack.function("PlanFunction").name
    assert deployment.output("ApiUrl") == runtime.facts()["stac_api_url"]
    pairs = {pair.name: pair for pair in deployment.queues()}
    assert set(pairs) == {"ingest", "composite", "mosaic"}
    for name, pair in pairs.items():
        queue = stack.queue(f"{name.title()}Queue")
        assert pair.url == queue.url
        assert queue.dead_letter is not None
        assert pair.dead_letter_url == stack.queue(queue.dead_letter).url
    with pytest.raises(Exception, match="does not exist"):
        Deployment.from_cloudformation(
            "another-stack", deployment.session, control_url=deployment.control_url
        )


def test_jobs_in_a_new_shell_take_credentials_and_endpoints_from_local_json(
    runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    JobStore(settings).create("2017-01", "Belgium", "BEL", [TILE])
    variables = {name for name in clean_environment(workdir) if name.startswith("AWS_")}
    assert variables == {
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_EC2_METADATA_DISABLED",
    }
    listing = _ok(cli("jobs", cwd=workdir))
    assert "2017-01-BEL" in listing and "1 pending" in listing
    (status,) = json.loads(_ok(cli("jobs", "2017-01-BEL", "--json", cwd=workdir)))
    assert status["counts"] == {"pending": 1, "done": 0, "failed": 0}


def test_a_stack_is_read_through_cloudformation_with_the_standard_configuration(
    runtime: LocalRuntime, workdir: Path, tmp_path: Path, settings: Settings
) -> None:
    """`--stack` with only the AWS SDK's own variables: credentials, region, endpoints (here
    the local ones, as a developer would point the SDK at any endpoint)."""
    JobStore(settings).create("2017-02", "Belgium", "BEL", [TILE])
    facts = runtime.facts()
    env = clean_environment(tmp_path) | {
        **facts["credentials"],
        "AWS_REGION": facts["region"],
        "AWS_ENDPOINT_URL": facts["endpoint_url"],
        "AWS_ENDPOINT_URL_CLOUDFORMATION": facts["control_url"],
        "AWS_ENDPOINT_URL_LAMBDA": facts["control_url"],
    }
    (status,) = json.loads(
        _ok(cli("jobs", "2017-02-BEL", "--json", "--stack", "sansnuages", cwd=tmp_path, env=env))
    )
    assert status["job_id"] == "2017-02-BEL"
    env["SANSNUAGES_STACK"] = "sansnuages"
    assert "2017-02-BEL" in _ok(cli("jobs", cwd=tmp_path, env=env))
    missing = cli("jobs", "--stack", "no-such-stack", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == "error: stack no-such-stack: Stack with id no-such-stack does not exist"
    )


def test_a_missing_credential_is_one_line_not_a_traceback(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    env = clean_environment(tmp_path) | {
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_CLOUDFORMATION": runtime.facts()["control_url"],
    }
    for command in (["jobs"], ["failures"], ["purge", "X", "--yes"]):
        result = cli(*command, "--stack", "sansnuages", cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert "credentials" in result.stderr.lower()


# --- failures, redrive, reingest --------------------------------------------------------


def test_failures_are_peeked_then_redriven(
    runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    stack = runtime.stack
    assert stack is not None
    sqs = runtime.client("sqs")
    jobs = JobStore(settings)
    jobs.create("2017-03", "Belgium", "BEL", [TILE])
    jobs.finish_tile("2017-03-BEL", TILE, TileState.FAILED, reason="the tile broke")
    tile_body = json.dumps({"v": 1, "job_id": "2017-03-BEL", "tile": TILE, "month": "2017-03"})
    test_event = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": settings.data_bucket}
    sqs.send_message(QueueUrl=stack.queue("CompositeDeadLetterQueue").url, MessageBody=tile_body)
    sqs.send_message(
        QueueUrl=stack.queue("IngestDeadLetterQueue").url, MessageBody=json.dumps(test_event)
    )
    for _ in range(2):  # looking twice finds the same: nothing is consumed
        shown = json.loads(_ok(cli("failures", "--json", cwd=workdir)))
        letters = {letter["queue"]: letter for letter in shown["dead_letters"]}
        assert set(letters) == {"ingest", "composite"}
        assert letters["composite"]["what"] == f"tile {TILE} of job 2017-03-BEL"
        assert letters["composite"]["reason"] == "the tile broke"
        assert letters["ingest"]["what"] == "S3 test event"
    assert _visible(runtime, "CompositeDeadLetterQueue") == 1
    assert "composite dead letters: 1" in _ok(cli("failures", cwd=workdir))

    assert _ok(cli("redrive", "ingest", cwd=workdir)).strip() == "ingest: 1 message(s) re-driven"
    assert _visible(runtime, "IngestDeadLetterQueue") == 0
    assert _visible(runtime, "CompositeDeadLetterQueue") == 1
    redriven = _ok(cli("redrive", "all", cwd=workdir))
    assert f"composite: 1 message(s) re-driven; tiles reopened: 2017-03-BEL/{TILE}" in redriven
    assert "mosaic: 0 message(s) re-driven" in redriven
    assert _visible(runtime, "CompositeDeadLetterQueue") == 0
    unknown = cli("redrive", "nowhere", cwd=workdir)
    assert unknown.returncode == 2 and "queues: ingest, composite, mosaic" in unknown.stderr


def test_a_quarantined_upload_is_shown_with_its_reason_and_reingested(
    runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    bucket = DataBucket(settings)
    bucket.put_bytes("incoming/notes/readme.zip", b"this is not a zip", "application/zip")
    reason_key = "quarantine/notes/readme.zip.reason.json"
    wait_for(lambda: bucket.exists(reason_key), "the upload quarantined")
    first = bucket.get_json(reason_key)
    shown = json.loads(_ok(cli("failures", "--json", cwd=workdir)))["quarantined"]
    (upload,) = [u for u in shown if u["key"] == "quarantine/notes/readme.zip"]
    assert upload["error"] == "NotAZip" and upload["original"] == "incoming/notes/readme.zip"
    assert upload["reason"] == first["reason"]

    out = _ok(cli("reingest", "quarantine/notes/readme.zip", cwd=workdir))
    assert "-> incoming/notes/readme.zip" in out
    # ingest refuses it again: back in quarantine with a reason written anew
    wait_for(
        lambda: (bucket.get_json_or_none(reason_key) or first)["at"] != first["at"],
        "the upload quarantined again",
    )
    refused = cli("reingest", "collections/sentinel2-l2a.json", cwd=workdir)
    assert refused.returncode == 2 and "neither a quarantined upload" in refused.stderr


# --- a month: rerun, reingest of an archive, purge ---------------------------------------


@pytest.fixture(scope="module")
def month(
    runtime: LocalRuntime,
    workdir: Path,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """Two products of one tile ingested, and the month's job run with `rerun`."""
    folder = tmp_path_factory.mktemp("products")
    paths = [
        simulate_product(
            TILE, datetime(2018, 7, day, 10, 56, tzinfo=UTC), "SENTINEL2B", folder, RESOLUTION
        )
        for day in (4, 14)
    ]
    bucket = DataBucket(settings)
    for path in paths:
        bucket.client.upload_file(str(path), bucket.name, f"incoming/{path.name}")
    catalog = Catalog(settings.catalog_table, settings=settings)

    def indexed() -> int:
        return len(catalog.search(["sentinel2-l2a"], None, None, None, 100, None).items)

    wait_for(lambda: indexed() == 2, "both products indexed")
    started = _ok(cli("rerun", "2018-07", "--area", "BEL", cwd=workdir))
    assert started.startswith("job 2018-07-BEL started: 1 tile(s) (31UFS)")
    jobs = JobStore(settings)
    wait_for(lambda: bool((job := jobs.get("2018-07-BEL")) and job.finished), "the job finished")
    job = jobs.get("2018-07-BEL")
    assert job is not None and job.state == "done", job
    (tile,) = job.tiles
    assert tile.item is not None and job.mosaic_item is not None
    return {
        "purged": paths[0].stem,
        "kept": paths[1].stem,
        "synthesis_key": tile.item,
        "mosaic_key": job.mosaic_item,
    }


def test_rerun_of_a_done_tile_is_refused_and_of_an_unknown_tile_too(
    month: dict[str, str], workdir: Path
) -> None:
    done = cli("rerun", "2018-07", "--area", "Belgium", "--tile", TILE, cwd=workdir)
    assert done.returncode == 2 and "is done; re-run the whole month" in done.stderr
    unknown = cli("rerun", "2018-07", "--area", "BEL", "--tile", "31UES", cwd=workdir)
    assert unknown.returncode == 2 and "tile 31UES is not in job 2018-07-BEL" in unknown.stderr


def test_an_archived_product_is_reingested(
    month: dict[str, str], runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    bucket = DataBucket(settings)
    kept = month["kept"]
    (archive,) = [k for k in bucket.list_keys("l2a/") if k.endswith(f"{kept}/{kept}.zip")]
    out = _ok(cli("reingest", archive, cwd=workdir))
    assert f"-> incoming/{kept}.zip" in out
    wait_for(lambda: not bucket.list_keys("incoming/"), "the drop zone emptied")
    assert bucket.exists(archive)
    Catalog(settings.catalog_table, settings=settings).get_item("sentinel2-l2a", kept)


def test_purge_shows_what_goes_asks_then_removes_it_all(
    month: dict[str, str], runtime: LocalRuntime, workdir: Path, settings: Settings
) -> None:
    bucket = DataBucket(settings)
    catalog = Catalog(settings.catalog_table, settings=settings)
    purged, kept = month["purged"], month["kept"]
    synthesis = bucket.get_json(month["synthesis_key"])
    mosaic = bucket.get_json(month["mosaic_key"])
    before = set(bucket.list_keys(""))
    product_keys = {k for k in before if f"/{purged}/" in k}
    synthesis_keys = {k for k in before if f"/{synthesis['id']}/" in k}
    assert product_keys and synthesis_keys

    asked = cli("purge", purged, cwd=workdir, stdin="n\n")
    assert asked.returncode == 1 and "nothing purged" in asked.stdout
    for line in (
        f"sentinel2-l2a/{purged}  (index record)",
        f"sentinel2-l3a/{synthesis['id']}  (index record)",
        f"mosaics/{mosaic['id']}  (index record)",
        f"s3://{bucket.name}/{month['synthesis_key']}",
        f"s3://{bucket.name}/{month['mosaic_key']}",
        *(f"s3://{bucket.name}/{key}" for key in product_keys),
    ):
        assert line in asked.stdout, line
    assert "in all: 3 Items" in asked.stdout
    assert set(bucket.list_keys("")) == before  # nothing went

    done = _ok(cli("purge", purged, "--yes", cwd=workdir))
    assert "purged 3 Items" in done
    after = set(bucket.list_keys(""))
    assert not (product_keys | synthesis_keys) & after
    assert month["mosaic_key"] not in after
    for asset in mosaic["assets"].values():
        assert asset["href"].split(f"{bucket.name}/", 1)[1] not in after
    for collection, item_id in (
        ("sentinel2-l2a", purged),
        ("sentinel2-l3a", synthesis["id"]),
        ("mosaics", mosaic["id"]),
    ):
        with pytest.raises(Exception, match="no item"):
            catalog.get_item(collection, item_id)
    assert catalog.get_item("sentinel2-l2a", kept)["id"] == kept  # the other input stays
    gone = cli("purge", purged, "--yes", cwd=workdir)
    assert gone.returncode == 2 and f"no Item {purged}" in gone.stderr


def test_every_operator_command_says_what_it_does_with_an_example(tmp_path: Path) -> None:
    for command in ("jobs", "failures", "redrive", "reingest", "rerun", "purge"):
        result = cli(command, "--help", cwd=tmp_path)
        assert result.returncode == 0, command
        assert "example" in result.stdout.lower() and "--stack" in result.stdout, command

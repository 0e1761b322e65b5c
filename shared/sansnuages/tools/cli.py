"""The `sansnuages` command: the local runtime, the simulator, the demo, jobs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sansnuages.errors import SansnuagesError
from sansnuages.tools import simulate
from sansnuages.tools.foreground import default_template, wait_for_signal
from sansnuages.tools.local import WORKERS_PER_FUNCTION

if TYPE_CHECKING:
    from sansnuages.settings import Settings
    from sansnuages.tools.stack import Deployment


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sansnuages",
        description="Cloud-free monthly syntheses and snow seasons of Sentinel-2 and Landsat-8, on AWS Lambda or locally.",
        epilog="example:\n  sansnuages demo --exit",
        formatter_class=_formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_local(commands)
    simulate.add_parser(commands)
    _add_demo(commands)
    _add_month(commands)
    _add_snow_season(commands)
    _add_jobs(commands)
    _add_mosaic(commands)
    _add_reindex(commands)
    _add_redrive(commands)
    _add_failures(commands)
    _add_reingest(commands)
    _add_rerun(commands)
    _add_purge(commands)
    _add_timeseries(commands)
    _add_season_plot(commands)
    _add_stats(commands)
    return parser


def _add_local(commands: Any) -> None:
    local = commands.add_parser(
        "local",
        help="start or stop the embedded local AWS",
        description="The embedded local AWS: a moto server process with the resources of template.yaml,\n"
        "the functions' workers, queue pollers, the scheduler and the STAC API on loopback.",
        epilog="examples:\n  sansnuages local up --detach\n  sansnuages local down",
        formatter_class=_formatter,
    )
    actions = local.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser(
        "up",
        help="start the local runtime (foreground; --detach for background)",
        description="Start the local runtime and write its connection facts to .sansnuages/local.json.",
        epilog="example:\n  sansnuages local up --api-port 8080",
        formatter_class=_formatter,
    )
    up.add_argument(
        "--detach", action="store_true", help="run in the background and return once it is ready"
    )
    up.add_argument(
        "--template", type=Path, default=None, help="SAM template (default: ./template.yaml)"
    )
    up.add_argument(
        "--api-port", type=int, default=0, help="port of the STAC API (default: a free one)"
    )
    up.add_argument(
        "--concurrency", type=int, default=WORKERS_PER_FUNCTION,
        help=f"workers per function (default: the cores + 1, {WORKERS_PER_FUNCTION} here)",
    )  # fmt: skip
    up.set_defaults(func=_local_up)
    down = actions.add_parser(
        "down",
        help="stop a detached local runtime",
        description="Stop the local runtime recorded in .sansnuages/local.json, leaving no process behind.",
        epilog="example:\n  sansnuages local down",
        formatter_class=_formatter,
    )
    down.set_defaults(func=_local_down)
    fire = actions.add_parser(
        "fire",
        help="fire one of the template's schedules now, as at a given time",
        description="Fire a schedule of template.yaml on the running local runtime (moto never fires\n"
        "them); --time pretends it is that moment, so the monthly job picks its month from it.",
        epilog="examples:\n  sansnuages local fire --time 2018-08-10T03:00:00Z"
        "\n  sansnuages local fire --schedule PlanFunctionYearly --time 2018-09-20T04:00:00Z",
        formatter_class=_formatter,
    )
    fire.add_argument(
        "--schedule",
        default=None,
        help="schedule name (default: the monthly one, PlanFunctionMonthly; the snow seasons'"
        " is PlanFunctionYearly)",
    )
    fire.add_argument("--time", default=None, help="ISO 8601 time to fire as (default: now)")
    fire.set_defaults(func=_local_fire)


def _local_up(args: argparse.Namespace) -> int:
    from sansnuages.tools.local.runtime import LocalRuntime, state_file

    template = args.template or default_template()
    if args.detach:
        return _detach(args, template, state_file(Path.cwd()))
    runtime = LocalRuntime(
        template, Path.cwd(), concurrency=args.concurrency, api_port=args.api_port
    ).start()
    facts = runtime.facts()
    print(f"local AWS at {facts['endpoint_url']}, bucket {facts['data_bucket']}")
    print(f"STAC API at {facts['stac_api_url']}  (Ctrl-C to stop)", flush=True)
    wait_for_signal()
    runtime.stop()
    return 0


def _detach(args: argparse.Namespace, template: Path, state: Path) -> int:
    if state.exists():
        print(f"a local runtime is already recorded in {state}; run `sansnuages local down` first")
        return 1
    command = [sys.executable, "-m", "sansnuages", "local", "up", "--template", str(template)]
    command += ["--api-port", str(args.api_port), "--concurrency", str(args.concurrency)]
    log = (Path.cwd() / ".sansnuages").resolve()
    log.mkdir(exist_ok=True)
    with open(log / "runtime.log", "a") as output:
        process = subprocess.Popen(command, stdout=output, stderr=output, start_new_session=True)
    deadline = time.monotonic() + 120
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            print(f"the local runtime did not start; see {log / 'runtime.log'}")
            return 1
        time.sleep(0.2)
    facts = json.loads(state.read_text())
    print(f"local runtime running (pid {process.pid}); STAC API at {facts['stac_api_url']}")
    return 0


def _local_down(args: argparse.Namespace) -> int:
    from sansnuages.tools.local.runtime import state_file

    state = state_file(Path.cwd())
    if not state.exists():
        print("no local runtime is running here")
        return 0
    pid = int(json.loads(state.read_text())["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state.unlink()
        return 0
    for _ in range(300):
        if not state.exists():
            print("local runtime stopped")
            return 0
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)
    state.unlink(missing_ok=True)
    return 0


def _local_fire(args: argparse.Namespace) -> int:
    from sansnuages.tools.local.client import RuntimeClient
    from sansnuages.tools.progress import MONTHLY_SCHEDULE, job_from_invocation

    client = RuntimeClient.connect(Path.cwd())
    schedules = client.status()["schedules"]
    name = args.schedule or MONTHLY_SCHEDULE
    if name not in schedules:
        print(f"name a schedule with --schedule: one of {', '.join(schedules)}", file=sys.stderr)
        return 2
    job_from_invocation(client.fire_schedule(name, args.time))
    return 0


def _add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="the whole pipeline on Belgium, July 2018, on the local AWS",
        description="Start the local runtime, simulate a month of Sentinel-2 and Landsat-8 products over\n"
        "Belgium, upload them, run the July 2018 job, search the catalog and write the mosaic.",
        epilog="example:\n  sansnuages demo --exit --out demo-output",
        formatter_class=_formatter,
    )
    demo.add_argument(
        "--exit", action="store_true", help="stop once the demo is done (for scripts)"
    )
    demo.add_argument(
        "--resolution", type=float, default=610.0, help="pixel size of the 10 m bands, in metres"
    )
    demo.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="where the mosaic and preview go"
    )
    demo.add_argument(
        "--area", default="Belgium", help="country or GeoJSON file (default: Belgium)"
    )
    demo.add_argument("--month", default="2018-07", help="month to synthesise (default: 2018-07)")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from sansnuages.tools.demo import run_demo

    return run_demo(args)


def _add_month(commands: Any) -> None:
    month = commands.add_parser(
        "month",
        help="start the synthesis job of a month over an area",
        description="Start a monthly job on the running local runtime, as the schedule would, and wait for it.",
        epilog="examples:\n  sansnuages month 2018-07 --area Belgium\n  sansnuages month 2018-07 --area zone.geojson --no-wait"
        "\n  sansnuages month 2018-07 --area-geojson fields.geojson --area-name Fields"
        "\n  sansnuages month 2018-07 --tiles 31UFS,31UES",
        formatter_class=_formatter,
    )
    month.add_argument("month", help="YYYY-MM")
    _add_job_area(month)
    month.add_argument("--resolution", type=float, default=None, help="mosaic pixel size in metres")
    month.set_defaults(func=_month)


def _add_snow_season(commands: Any) -> None:
    season = commands.add_parser(
        "snow-season",
        help="start the snow-season job of a hydrological year over an area",
        description="Start a snow-season job on the running local runtime, as the yearly schedule would, and\n"
        "wait for it: per tile, the snow cover duration, onset, melt, clear observations and snow\n"
        "periods of the year, from the Sentinel-2 and Landsat-8 snow maps, and the area's mosaic.",
        epilog="examples:\n  sansnuages snow-season 2018 --area Andorra"
        "\n  sansnuages snow-season 2018 --area Pyrenees.geojson\n  sansnuages snow-season 2018 --tiles 31TCH,31TCJ",
        formatter_class=_formatter,
    )
    season.add_argument(
        "season", help="the year the season ends in: 2018 is 1 September 2017 to 31 August 2018"
    )
    _add_job_area(season)
    season.set_defaults(func=_snow_season)


def _add_job_area(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--area", help="country name or code, or a GeoJSON file")
    where.add_argument(
        "--area-geojson",
        help="a polygon sent with the request (checked first): a GeoJSON file or inline JSON",
    )
    where.add_argument("--tiles", help="these tiles and no other, comma-separated (31TCH,31TCJ)")
    parser.add_argument("--area-name", default=None, help="name of the --area-geojson polygon")
    parser.add_argument("--no-wait", action="store_true", help="return once the job is planned")


def _job_area(args: argparse.Namespace) -> dict[str, Any]:
    """The area of a plan event, from `_add_job_area`'s arguments: a file is read here, since
    the function cannot read this machine's files."""
    if args.tiles:
        return {"tiles": args.tiles.split(","), "area_name": args.area_name}
    if args.area_geojson:
        from sansnuages.areas import geojson_argument

        return {"area": geojson_argument(args.area_geojson, args.area_name)}
    if Path(args.area).is_file():
        return {"area": str(Path(args.area).resolve())}
    return {"area": args.area}


def _month(args: argparse.Namespace) -> int:
    event = {"month": args.month, **_job_area(args)}
    if args.resolution:
        event["resolution"] = args.resolution
    return _run_job(event, args.no_wait)


def _snow_season(args: argparse.Namespace) -> int:
    from sansnuages.period import HydrologicalYear

    season = HydrologicalYear.parse(args.season)  # refused here, before a job is asked for
    return _run_job({"season": str(season.year), **_job_area(args)}, args.no_wait)


def _run_job(event: dict[str, Any], no_wait: bool) -> int:
    from sansnuages.tools.local.client import RuntimeClient
    from sansnuages.tools.progress import start_job, wait_for_job

    client = RuntimeClient.connect(Path.cwd())
    job_id = start_job(client, event)
    if no_wait:
        print(f"job {job_id} started")
        return 0
    job = wait_for_job(client.settings(), job_id)
    return 0 if job.state == "done" else 1


def _add_stack(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        default=None,
        help="a deployed stack, read through CloudFormation (default: $SANSNUAGES_STACK,"
        " else the local runtime of .sansnuages/local.json)",
    )
    parser.add_argument(
        "--region", default=None, help="the stack's region (default: the AWS configuration's)"
    )


def _deployment(args: argparse.Namespace) -> Deployment:
    from sansnuages.tools.stack import STACK_VARIABLE, Deployment

    stack = args.stack or os.environ.get(STACK_VARIABLE) or None
    return Deployment.open(stack, Path.cwd(), args.region)


def _job_store(deployment: Deployment) -> Any:
    from sansnuages.stores.jobs import JobStore

    return JobStore(deployment.settings(), deployment.client("dynamodb"))


def _add_jobs(commands: Any) -> None:
    jobs = commands.add_parser(
        "jobs",
        help="state of the synthesis jobs",
        description="List the jobs with their tiles pending, done and failed, or show one job in detail.",
        epilog="examples:\n  sansnuages jobs\n  sansnuages jobs 2018-07-BEL"
        "\n  sansnuages jobs --stack sansnuages-prod --json",
        formatter_class=_formatter,
    )
    jobs.add_argument("job_id", nargs="?", help="a job to show in detail")
    jobs.add_argument("--json", action="store_true", help="print the status as JSON")
    _add_stack(jobs)
    jobs.set_defaults(func=_jobs)


def _jobs(args: argparse.Namespace) -> int:
    from sansnuages.tools.progress import describe_job

    store = _job_store(_deployment(args))
    selected = [store.get(args.job_id)] if args.job_id else store.all()
    if not any(selected):
        print("no job" if not args.job_id else f"no job {args.job_id}")
        return 1 if args.job_id else 0
    if args.json:
        from sansnuages.stores.jobs import job_status

        print(json.dumps([job_status(job) for job in selected if job is not None], indent=2))
        return 0
    for job in selected:
        if job is not None:
            print(describe_job(job, detail=bool(args.job_id)))
    return 0


def _add_redrive(commands: Any) -> None:
    redrive = commands.add_parser(
        "redrive",
        help="send dead-letter messages back to their queue",
        description="Move a queue's dead-letter messages back to it (ingest, composite, mosaic, or\n"
        "all). Tiles named by composite messages are reopened (failed -> pending), so that\n"
        "their jobs finish again.",
        epilog="examples:\n  sansnuages redrive all\n  sansnuages redrive composite --limit 1",
        formatter_class=_formatter,
    )
    redrive.add_argument(
        "queue", nargs="?", default="all", help="ingest, composite, mosaic or all (default)"
    )
    redrive.add_argument("--limit", type=int, default=None, help="at most this many messages")
    _add_stack(redrive)
    redrive.set_defaults(func=_redrive)


def _redrive(args: argparse.Namespace) -> int:
    from sansnuages.tools.redrive import redrive

    deployment = _deployment(args)
    pairs = deployment.queues() if args.queue == "all" else [deployment.queue(args.queue)]
    sqs = deployment.client("sqs")
    for pair in pairs:
        jobs = _job_store(deployment) if pair.name == "composite" else None
        report = redrive(sqs, pair.url, pair.dead_letter_url, jobs, args.limit)
        line = f"{pair.name}: {report.moved} message(s) re-driven"
        if jobs is not None:
            line += f"; tiles reopened: {', '.join(report.reopened) or 'none'}"
            if report.unreadable:
                line += f"; {report.unreadable} message(s) named no tile"
        print(line)
    return 0


def _add_failures(commands: Any) -> None:
    failures = commands.add_parser(
        "failures",
        help="dead-letter messages and quarantined uploads, with their reasons",
        description="Show the messages of every dead-letter queue (peeked: they stay where they are)\n"
        "with what each names and the reason its job recorded, and the quarantined uploads\n"
        "with the reason ingest refused them.",
        epilog="examples:\n  sansnuages failures\n  sansnuages failures --stack sansnuages-prod --json",
        formatter_class=_formatter,
    )
    failures.add_argument("--json", action="store_true", help="print them as JSON")
    _add_stack(failures)
    failures.set_defaults(func=_failures)


def _failures(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from sansnuages.stores.bucket import DataBucket
    from sansnuages.tools.operations import dead_letters, quarantined

    deployment = _deployment(args)
    pairs = deployment.queues()
    letters = dead_letters(
        deployment.client("sqs"),
        [(pair.name, pair.dead_letter_url) for pair in pairs],
        _job_store(deployment),
    )
    uploads = quarantined(DataBucket(deployment.settings(), deployment.client("s3")))
    if args.json:
        document = {
            "dead_letters": [asdict(letter) for letter in letters],
            "quarantined": [asdict(upload) for upload in uploads],
        }
        print(json.dumps(document, indent=2))
        return 0
    for pair in pairs:
        mine = [letter for letter in letters if letter.queue == pair.name]
        print(f"{pair.name} dead letters: {len(mine)}")
        for letter in mine:
            print(f"  {letter.message_id}  {letter.what}  (received {letter.receive_count}x)")
            if letter.reason:
                print(f"    reason: {letter.reason}")
    print(f"quarantined uploads: {len(uploads)}")
    for upload in uploads:
        print(f"  {upload.key}  {upload.error or 'no reason recorded'}: {upload.reason or ''}")
    return 0


def _add_reingest(commands: Any) -> None:
    reingest = commands.add_parser(
        "reingest",
        help="put a quarantined upload or an archived product back under incoming/",
        description="Copy a quarantined upload (it leaves the quarantine) or the archived original\n"
        "of a product back to incoming/, where the bucket's notification ingests it again.",
        epilog="examples:\n  sansnuages reingest quarantine/SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8.zip"
        "\n  sansnuages reingest l2a/sentinel2-l2a/31UFS/2018/07/<id>/<id>.zip",
        formatter_class=_formatter,
    )
    reingest.add_argument("key", help="a key under quarantine/, or a product's .zip under l2a/")
    _add_stack(reingest)
    reingest.set_defaults(func=_reingest)


def _reingest(args: argparse.Namespace) -> int:
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.tools.operations import reingest

    deployment = _deployment(args)
    target = reingest(DataBucket(deployment.settings(), deployment.client("s3")), args.key)
    print(f"{args.key} -> {target}: ingest starts from the bucket's notification")
    return 0


def _add_rerun(commands: Any) -> None:
    rerun = commands.add_parser(
        "rerun",
        help="start a month's job again, or one of its tiles",
        description="Invoke the plan function with the month's event: a finished job runs again as\n"
        "a new version of its outputs. With --tile, send that tile's message again instead\n"
        "(a failed tile is reopened; a pending one is sent again).",
        epilog="examples:\n  sansnuages rerun 2018-07 --area Belgium"
        "\n  sansnuages rerun 2018-07 --area BEL --tile 31UFS --stack sansnuages-prod",
        formatter_class=_formatter,
    )
    rerun.add_argument("month", help="YYYY-MM")
    rerun.add_argument("--area", required=True, help="country name or code, or a GeoJSON file")
    rerun.add_argument("--tile", default=None, help="only this tile of the month's job")
    _add_stack(rerun)
    rerun.set_defaults(func=_rerun)


def _rerun(args: argparse.Namespace) -> int:
    from sansnuages.tools.operations import area_job_id, plan_event, rerun_tile

    deployment = _deployment(args)
    geojson = Path(args.area).read_text() if Path(args.area).is_file() else None
    if args.tile:
        from sansnuages.areas import geojson_argument

        area = geojson_argument(geojson) if geojson is not None else args.area
        job_id = area_job_id(args.month, area)
        sqs = deployment.client("sqs")
        queue = deployment.output("CompositeQueueUrl")
        print(rerun_tile(_job_store(deployment), sqs, queue, job_id, args.tile))
        return 0
    result = deployment.invoke("PlanFunctionName", plan_event(args.month, args.area, geojson))
    tiles = ", ".join(result.get("tiles", []))
    if not result.get("started"):
        print(f"job {result['job_id']} is still running: nothing started ({tiles})")
        return 1
    print(f"job {result['job_id']} started: {len(result['tiles'])} tile(s) ({tiles})")
    return 0


def _add_purge(commands: Any) -> None:
    purge = commands.add_parser(
        "purge",
        help="remove a product and the outputs derived from it",
        description="Remove a product's Item, files and index record, and those of the syntheses\n"
        "whose derived_from names it and of the mosaics made from them. What will go is shown\n"
        "first, and nothing goes before it is confirmed (--yes to skip the question).",
        epilog="examples:\n  sansnuages purge SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8"
        "\n  sansnuages purge SENTINEL2B_20180714-105626-461_L2A_T31UFS_D_V1-8 --yes --stack prod",
        formatter_class=_formatter,
    )
    purge.add_argument("product_id", help="the Item id of the product")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _add_stack(purge)
    purge.set_defaults(func=_purge)


def _purge(args: argparse.Namespace) -> int:
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.stores.catalog import Catalog
    from sansnuages.tools.operations import apply_purge, plan_purge

    deployment = _deployment(args)
    settings = deployment.settings()
    bucket = DataBucket(settings, deployment.client("s3"))
    catalog = Catalog(settings.catalog_table, client=deployment.client("dynamodb"))
    plan = plan_purge(bucket, catalog, args.product_id)
    print(plan.describe())
    if not args.yes and not _confirmed(f"purge all of this from {deployment.name}?"):
        print("nothing purged")
        return 1
    apply_purge(bucket, catalog, plan)
    print(f"purged {len(plan.items)} Items")
    return 0


def _confirmed(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _add_mosaic(commands: Any) -> None:
    mosaic = commands.add_parser(
        "mosaic",
        help="rebuild a month's mosaic with another CRS, resolution or codec",
        description="Mosaic again the syntheses of a month's job over its area, here, and publish\n"
        "the Item anew (same id). Parts of a large area are built in this process.",
        epilog="examples:\n  sansnuages mosaic 2018-07 --area Belgium --crs EPSG:31370 --resolution 20"
        "\n  sansnuages mosaic 2018-07 --area BEL --codec webp --from-env",
        formatter_class=_formatter,
    )
    mosaic.add_argument("month", help="YYYY-MM")
    mosaic.add_argument("--area", required=True, help="the job's area: country or GeoJSON file")
    mosaic.add_argument("--crs", default=None, help="mosaic CRS (default: per area, EPSG:3035)")
    mosaic.add_argument("--resolution", type=float, default=None, help="pixel size in metres")
    mosaic.add_argument(
        "--codec", default=None, help="deflate (default), zstd, webp-lossless, jpeg, webp"
    )
    _add_from_env(mosaic)
    mosaic.set_defaults(func=_mosaic)


def _add_from_env(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from-env", action="store_true", help="read the settings from the environment"
    )


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of the running local runtime, or, with --from-env, of the environment
    (on AWS: DATA_BUCKET, CATALOG_TABLE...)."""
    from sansnuages.settings import Settings
    from sansnuages.tools.local.client import RuntimeClient

    if args.from_env:
        return Settings.from_env()
    return RuntimeClient.connect(Path.cwd()).settings()


def _mosaic(args: argparse.Namespace) -> int:
    from sansnuages.raster.gdal import use_gdal
    from sansnuages.stages.mosaic import Mosaicker
    from sansnuages.tools.rebuild import rebuild_mosaic

    settings = _settings(args)
    use_gdal(settings)
    mosaicker = Mosaicker.from_settings(settings)
    mosaicker.fan_out = False
    area = str(Path(args.area).resolve()) if Path(args.area).is_file() else args.area
    key = rebuild_mosaic(mosaicker, args.month, area, args.resolution, args.crs, args.codec)
    print(f"mosaic written: {key}")
    return 0


def _add_reindex(commands: Any) -> None:
    reindex = commands.add_parser(
        "reindex",
        help="rebuild the catalog index from the STAC JSON files on S3",
        description="Put every Collection and Item file of the data bucket back in the catalog index\n"
        "and remove index records whose file is gone (the files are the source of truth).",
        epilog="examples:\n  sansnuages reindex            # the running local runtime\n"
        "  sansnuages reindex --from-env # DATA_BUCKET, CATALOG_TABLE (on AWS)",
        formatter_class=_formatter,
    )
    _add_from_env(reindex)
    reindex.set_defaults(func=_reindex)


def _reindex(args: argparse.Namespace) -> int:
    from sansnuages.stores.bucket import DataBucket
    from sansnuages.stores.catalog import Catalog
    from sansnuages.tools.reindex import reindex

    settings = _settings(args)
    report = reindex(DataBucket(settings), Catalog(settings.catalog_table, settings=settings))
    print(
        f"{report.collections} collections, {report.items} items indexed, "
        f"{report.removed} stale records removed, {len(report.skipped)} other JSON files skipped,"
        f" {report.relinked} Items relinked"
    )
    return 0


def _add_timeseries(commands: Any) -> None:
    from sansnuages.tools.reports import add_timeseries

    _add_from_env(add_timeseries(commands, _formatter, _settings))


def _add_season_plot(commands: Any) -> None:
    from sansnuages.tools.reports import add_season_plot

    _add_from_env(add_season_plot(commands, _formatter, _settings))


def _add_stats(commands: Any) -> None:
    from sansnuages.tools.reports import add_stats

    _add_from_env(add_stats(commands, _formatter, _settings))


def main(argv: list[str] | None = None) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SansnuagesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

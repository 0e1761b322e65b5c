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

if TYPE_CHECKING:
    from sansnuages.settings import Settings


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sansnuages",
        description="Cloud-free monthly syntheses of Sentinel-2 and Landsat-8, on AWS Lambda or locally.",
        epilog="example:\n  sansnuages demo --exit",
        formatter_class=_formatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_local(commands)
    simulate.add_parser(commands)
    _add_demo(commands)
    _add_month(commands)
    _add_jobs(commands)
    _add_mosaic(commands)
    _add_reindex(commands)
    _add_redrive(commands)
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
    up.add_argument("--concurrency", type=int, default=2, help="workers per function (default: 2)")
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
        epilog="example:\n  sansnuages local fire --time 2018-08-10T03:00:00Z",
        formatter_class=_formatter,
    )
    fire.add_argument("--schedule", default=None, help="schedule name (default: the only one)")
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
    from sansnuages.tools.progress import job_from_invocation

    client = RuntimeClient.connect(Path.cwd())
    schedules = client.status()["schedules"]
    name = args.schedule or (schedules[0] if len(schedules) == 1 else "")
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
        "\n  sansnuages month 2018-07 --area-geojson fields.geojson --area-name Fields",
        formatter_class=_formatter,
    )
    month.add_argument("month", help="YYYY-MM")
    where = month.add_mutually_exclusive_group(required=True)
    where.add_argument("--area", help="country name or code, or a GeoJSON file")
    where.add_argument(
        "--area-geojson",
        help="a polygon sent with the request (checked first): a GeoJSON file or inline JSON",
    )
    month.add_argument("--area-name", default=None, help="name of the --area-geojson polygon")
    month.add_argument("--resolution", type=float, default=None, help="mosaic pixel size in metres")
    month.add_argument("--no-wait", action="store_true", help="return once the job is planned")
    month.set_defaults(func=_month)


def _month(args: argparse.Namespace) -> int:
    from sansnuages.tools.local.client import RuntimeClient
    from sansnuages.tools.progress import start_month, wait_for_job

    if args.area_geojson:
        from sansnuages.areas import geojson_argument

        area = geojson_argument(args.area_geojson, args.area_name)
    elif Path(args.area).is_file():
        area = str(Path(args.area).resolve())
    else:
        area = args.area
    client = RuntimeClient.connect(Path.cwd())
    job_id = start_month(client, args.month, area, args.resolution)
    if args.no_wait:
        print(f"job {job_id} started")
        return 0
    job = wait_for_job(client.settings(), job_id)
    return 0 if job.state == "done" else 1


def _add_jobs(commands: Any) -> None:
    jobs = commands.add_parser(
        "jobs",
        help="state of the synthesis jobs",
        description="List the jobs with their tiles pending, done and failed, or show one job in detail.",
        epilog="examples:\n  sansnuages jobs\n  sansnuages jobs 2018-07-BEL",
        formatter_class=_formatter,
    )
    jobs.add_argument("job_id", nargs="?", help="a job to show in detail")
    jobs.add_argument("--json", action="store_true", help="print the status as JSON")
    jobs.set_defaults(func=_jobs)


def _jobs(args: argparse.Namespace) -> int:
    from sansnuages.stores.jobs import JobStore
    from sansnuages.tools.local.client import RuntimeClient
    from sansnuages.tools.progress import describe_job

    store = JobStore(RuntimeClient.connect(Path.cwd()).settings())
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
        help="send dead tile messages back to the composite queue",
        description="Move the composite dead-letter queue's messages back to the composite queue,\n"
        "reopening their tiles (failed -> pending) so that their jobs finish again.",
        epilog="examples:\n  sansnuages redrive\n  sansnuages redrive --limit 1",
        formatter_class=_formatter,
    )
    redrive.add_argument("--limit", type=int, default=None, help="at most this many messages")
    redrive.set_defaults(func=_redrive)


def _redrive(args: argparse.Namespace) -> int:
    from sansnuages.tools.local.client import RuntimeClient
    from sansnuages.tools.redrive import redrive_composites

    report = redrive_composites(RuntimeClient.connect(Path.cwd()).settings(), limit=args.limit)
    reopened = ", ".join(report.reopened) or "none"
    print(f"{report.moved} message(s) re-driven; tiles reopened: {reopened}")
    if report.unreadable:
        print(f"{report.unreadable} message(s) named no tile")
    return 0


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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SansnuagesError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""Batch sizes from measured worst cases: a batch of the queue consumers fits half the timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from sansnuages.tools.local.template import load_stack

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"

WORST_SECONDS = {
    "IngestFunction": 279.0,
    # one full-size product, the slowest run of bench/ingest.py (README, Benchmarks)
    "CompositeFunction": 589.0 / 2.3,
    # one full tile: 589 s of CPU on the 2.3 vCPU of 4096 MB (bench/composite_perf.py)
}


@pytest.mark.parametrize("function", sorted(WORST_SECONDS))
def test_a_batch_fits_half_the_timeout(function: str) -> None:
    stack = load_stack(TEMPLATE)
    spec = stack.function(function)
    (source,) = [s for s in stack.event_sources if s.function_logical_id == function]
    fits = int(spec.timeout_s / 2 // WORST_SECONDS[function])
    assert fits >= 1, f"{function}: one unit does not fit half of {spec.timeout_s} s"
    assert source.batch_size <= fits, (function, source.batch_size, fits)


def test_the_mosaic_function_knows_its_queues_max_receive_count() -> None:
    stack = load_stack(TEMPLATE)
    queue = stack.queue("MosaicQueue")
    assert stack.function("MosaicFunction").environment["MOSAIC_MAX_RECEIVE_COUNT"] == str(
        queue.max_receive_count
    )


@pytest.mark.parametrize(
    ("variable", "function", "queue"),
    [
        ("TILE_OVERDUE_SECONDS", "CompositeFunction", "CompositeQueue"),
        ("MOSAIC_OVERDUE_SECONDS", "MosaicFunction", "MosaicQueue"),
    ],
)
def test_the_sweeper_waits_out_a_timeout_and_a_visibility_timeout(
    variable: str, function: str, queue: str
) -> None:
    """A unit is overdue only once no invocation of it can be at work and no delivery of it
    can still come: its function's timeout plus its queue's visibility timeout."""
    stack = load_stack(TEMPLATE)
    sweeper = stack.function("SweeperFunction").environment
    spec = stack.queue(queue)
    assert float(sweeper[variable]) >= stack.function(function).timeout_s + spec.visibility_timeout
    assert sweeper["MAX_RECEIVE_COUNT"] == str(spec.max_receive_count)
    (schedule,) = [s for s in stack.schedules if s.function_logical_id == "SweeperFunction"]
    assert schedule.expression == "rate(15 minutes)"

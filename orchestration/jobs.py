"""The op-based heartbeat job: the reference design's scheduler-driven job."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

from collections.abc import Iterator

import dagster as dg

from resources import DistributedLockResource

from .heartbeat import HeartbeatConfig, beat, report_beat, report_skip
from .queues import HEARTBEAT_QUEUE


@dg.op(
    out=dg.Out(dict, is_required=False),
    description="Records one heartbeat under the lock; skips when another run holds it.",
)
def record_heartbeat(
    context: dg.OpExecutionContext, config: HeartbeatConfig, lock: DistributedLockResource
) -> Iterator[dg.Output]:
    with lock.hold_for(context, queue_name=HEARTBEAT_QUEUE) as held:
        done = beat(lock, held, config, context.run.run_id) if held.acquired else None
    # Yielded after the lock is released, so a lost lease fails the run before any output.
    if done is None:
        report_skip(context, held)
        return
    report_beat(context, done)
    yield dg.Output(done, metadata=done)


@dg.job(description="Hourly heartbeat, exactly once per tick across every instance.")
def heartbeat_job() -> None:
    record_heartbeat()

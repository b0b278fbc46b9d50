"""The op-based heartbeat job: the reference design's scheduler-driven job."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

from collections.abc import Iterator

import dagster as dg

from resources import DistributedLockResource

from .heartbeat import HeartbeatConfig, guarded_heartbeat
from .queues import HEARTBEAT_QUEUE


@dg.op(
    out=dg.Out(dict, is_required=False),
    description="Records one heartbeat under the lock; skips when another run holds it.",
)
def record_heartbeat(
    context: dg.OpExecutionContext, config: HeartbeatConfig, lock: DistributedLockResource
) -> Iterator[dg.Output]:
    yield from guarded_heartbeat(context, config, lock, HEARTBEAT_QUEUE)


@dg.job(description="Hourly heartbeat, exactly once per tick across every instance.")
def heartbeat_job() -> None:
    record_heartbeat()

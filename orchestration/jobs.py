"""The op-based heartbeat job: the reference design's scheduler-driven job."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

import dagster as dg

from resources import DistributedLockResource, Held, guarded_op

from .heartbeat import HeartbeatConfig, recorded_beat
from .queues import HEARTBEAT_QUEUE


@guarded_op(
    queue=HEARTBEAT_QUEUE,
    out=dg.Out(dict),
    description="Records one heartbeat under the lock; skips when another run holds it.",
)
def record_heartbeat(
    context: dg.OpExecutionContext,
    config: HeartbeatConfig,
    lock: DistributedLockResource,
    held: Held,
) -> dg.Output[dict]:
    return recorded_beat(context, config, lock, held)


# One op: the multiprocess executor would start a step process per run for nothing, doubling a
# scheduled run's start-up CPU (and its start-up time when several deployments tick at once).
@dg.job(
    description="Hourly heartbeat, exactly once per tick across every instance.",
    executor_def=dg.in_process_executor,
)
def heartbeat_job() -> None:
    record_heartbeat()

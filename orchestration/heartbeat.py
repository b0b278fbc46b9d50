"""The heartbeat's work, shared by the op and the asset: a fenced row in `heartbeats`."""

from __future__ import annotations

import time
from typing import Any

import dagster as dg
from pydantic import Field

from resources import DistributedLockResource, Held, LockLost

# Written only while the fence is still the lock's current one: a holder that lost its lease
# (paused past it, cut off) writes nothing, whatever its own clock says.
_FENCED_BEAT = """
    INSERT INTO heartbeats (app_id, queue_name, job_name, fence, slot, run_id)
    SELECT %(app_id)s::varchar, %(queue_name)s::varchar, %(job_name)s::varchar,
           %(fence)s::bigint, %(slot)s::text, %(run_id)s::text
     WHERE dlock_fence_is_current_v1(%(queue_name)s, %(job_name)s, %(fence)s)
    RETURNING id, beat_time
"""


class HeartbeatConfig(dg.Config):
    """Knobs for drills: how long a beat's work takes and whether it fails."""

    work_seconds: float = Field(
        default=0.0,
        description="Seconds the beat's work takes before it is recorded (default 0).",
    )
    fail: bool = Field(
        default=False,
        description="Raise instead of recording the beat, to see a Failed row (default false).",
    )


def beat(
    lock: DistributedLockResource, held: Held, config: HeartbeatConfig, run_id: str
) -> dict[str, Any]:
    """The guarded work: take `work_seconds`, then record the beat under the fence."""
    time.sleep(config.work_seconds)
    if config.fail:
        raise RuntimeError("Heartbeat failed on purpose (config fail=true)")
    params = {
        "app_id": held.app_id,
        "queue_name": held.queue_name,
        "job_name": held.job_name,
        "fence": held.fence,
        "slot": held.slot,
        "run_id": run_id,
    }
    with lock.connection() as conn:
        row = conn.execute(_FENCED_BEAT, params).fetchone()
    if row is None:
        raise LockLost(
            f"Lock {held.label} was taken over before the beat was written; "
            "the successor beats instead.",
            queue_name=held.queue_name,
            job_name=held.job_name,
        )
    beat_id, beat_time = row
    return {
        "instance": held.app_id,
        "fence": held.fence,
        "slot": held.slot or "manual run",
        "beat_id": beat_id,
        "beat_time": beat_time.isoformat(),
    }


def recorded_beat(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    config: HeartbeatConfig,
    lock: DistributedLockResource,
    held: Held,
) -> dg.Output:
    """The body of both the op and the asset, run by the guard only while the lock is held
    (the guard emits the output once the lock is released, and reports to the run)."""
    done = beat(lock, held, config, context.run.run_id)
    report_beat(context, done)
    return dg.Output(done, metadata=done)


def report_beat(
    context: dg.OpExecutionContext | dg.AssetExecutionContext, done: dict[str, Any]
) -> None:
    context.log.info(
        "Beat %s by %s for %s (fence %s)",
        done["beat_id"],
        done["instance"],
        done["slot"],
        done["fence"],
    )

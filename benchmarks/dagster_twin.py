"""The guarded heartbeat job beside an unguarded twin whose body is otherwise the same."""

# No `from __future__ import annotations`: Dagster reads the op's annotations.
import time
from collections.abc import Iterator

import dagster as dg

from orchestration.heartbeat import HeartbeatConfig, report_beat
from orchestration.jobs import heartbeat_job
from resources import DistributedLockResource

_UNFENCED_BEAT = """
    INSERT INTO heartbeats (app_id, queue_name, job_name, fence, slot, run_id)
    VALUES ('unguarded', 'bench-queue', 'unguarded_heartbeat_job', 0, NULL, %s)
    RETURNING id, beat_time
"""


@dg.op(
    out=dg.Out(dict, is_required=False),
    description="The heartbeat's body without the lock, for the overhead benchmark.",
)
def record_unguarded_heartbeat(
    context: dg.OpExecutionContext, config: HeartbeatConfig, lock: DistributedLockResource
) -> Iterator[dg.Output]:
    time.sleep(config.work_seconds)
    with lock.connection() as conn:
        beat_id, beat_time = conn.execute(_UNFENCED_BEAT, (context.run.run_id,)).fetchone()
    done = {
        "instance": "unguarded",
        "fence": 0,
        "slot": "manual run",
        "beat_id": beat_id,
        "beat_time": beat_time.isoformat(),
    }
    report_beat(context, done)
    yield dg.Output(done, metadata=done)


@dg.job(description="heartbeat_job's unguarded twin; never scheduled, only benchmarked.")
def unguarded_heartbeat_job() -> None:
    record_unguarded_heartbeat()


defs = dg.Definitions(
    jobs=[heartbeat_job, unguarded_heartbeat_job],
    resources={
        "lock": DistributedLockResource(database_url=dg.EnvVar("LOCK_DATABASE_URL"), app_id="bench")
    },
)

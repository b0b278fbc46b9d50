"""What a Dagster op or asset execution locks on: the lock's job name, its slot and run id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal, TypeAlias

from ..validation import Slot

if TYPE_CHECKING:  # Dagster is imported only by code that has a context to give
    import dagster as dg

    # What an op body (@dg.op) or an asset body (@dg.asset) is handed.
    ExecutionContext: TypeAlias = dg.OpExecutionContext | dg.AssetExecutionContext

SlotKind = Literal["partition", "tick", "run_key"]

SCHEDULED_TIME_TAG = ".dagster/scheduled_execution_time"
RUN_KEY_TAG = "dagster/run_key"


@dataclass(frozen=True)
class LockTarget:
    job_name: str
    slot: Slot
    slot_kind: SlotKind | None  # None for a manual run, which has no slot
    run_id: str | None


def parse_scheduled_time(value: str) -> datetime:
    """The daemon's tick tag (ISO text with the schedule's offset) as an aware datetime."""
    tick = datetime.fromisoformat(value)
    # The daemon always writes an offset; a bare value can only have come from UTC.
    return tick if tick.tzinfo is not None else tick.replace(tzinfo=timezone.utc)


def lock_job_name(context: ExecutionContext) -> str:
    """The asset key for an asset (every way of running it contends for one lock), else the job."""
    if context.has_assets_def and len(context.assets_def.keys) == 1:
        return context.asset_key.to_user_string()
    return context.job_name


def lock_target(context: ExecutionContext, job_name: str | None = None) -> LockTarget:
    """The slot is the partition key, else the scheduled tick, else the run key, else none."""
    # The op context's run_tags and run_id, not context.run: they also work on a directly invoked
    # body (tests), and an asset context deprecates its own copies of them.
    op_context = getattr(context, "op_execution_context", context)
    tags, run_id = op_context.run_tags, op_context.run_id
    name = job_name or lock_job_name(context)
    if context.has_partition_key:
        return LockTarget(name, context.partition_key, "partition", run_id)
    if SCHEDULED_TIME_TAG in tags:
        return LockTarget(name, parse_scheduled_time(tags[SCHEDULED_TIME_TAG]), "tick", run_id)
    if tags.get(RUN_KEY_TAG):
        return LockTarget(name, tags[RUN_KEY_TAG], "run_key", run_id)
    return LockTarget(name, None, None, run_id)

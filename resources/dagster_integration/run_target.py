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

SlotKind = Literal["partition", "partition_range", "tick", "run_key", "evaluation"]

SCHEDULED_TIME_TAG = ".dagster/scheduled_execution_time"
RUN_KEY_TAG = "dagster/run_key"
# Set by the asset daemon (dagster/_daemon/asset_daemon.py, _submit_run_request) on every run an
# automation condition launches: the evaluation's id, a counter of the deployment's own storage.
EVALUATION_ID_TAG = "dagster/asset_evaluation_id"
# The guard's own tag: re-run this run's slot on purpose, even if it completed; its value says why.
RERUN_TAG = "dlock/rerun"


@dataclass(frozen=True)
class LockTarget:
    job_name: str
    slot: Slot
    slot_kind: SlotKind | None  # None for a manual run, which has no slot
    run_id: str | None
    # A run of several partitions (a ranged run): each, in order; slot is None then.
    partition_keys: tuple[str, ...] = ()
    # The run's dlock/rerun tag, when it has one: why its slot is re-run on purpose.
    rerun: str | None = None


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


def evaluation_slot(context: ExecutionContext, evaluation_id: str) -> str | None:
    """An automation evaluation's slot: its id within this deployment's storage. Two deployments
    count evaluations from 1 each, so the storage's id keeps their unrelated evaluations apart;
    two daemons on one storage that evaluate the same id share the slot. None (no slot) for a
    storage that has no id (only Dagster's SQL run storages have one)."""
    storage_id = getattr(context.instance.run_storage, "get_run_storage_id", None)
    if storage_id is None:
        return None
    return f"evaluation {evaluation_id} of storage {storage_id()}"


def lock_target(context: ExecutionContext, job_name: str | None = None) -> LockTarget:
    """The slot is the partition key (or the range's keys), else the scheduled tick, else the
    run key, else the automation evaluation, else none."""
    # The op context's run_tags and run_id, not context.run: they also work on a directly invoked
    # body (tests), and an asset context deprecates its own copies of them.
    op_context = getattr(context, "op_execution_context", context)
    tags, run_id = op_context.run_tags, op_context.run_id
    name = job_name or lock_job_name(context)
    rerun = tags.get(RERUN_TAG) or None
    if context.has_partition_key:
        return LockTarget(name, context.partition_key, "partition", run_id, rerun=rerun)
    if context.has_partition_key_range:
        keys = tuple(context.partition_keys)
        return LockTarget(name, None, "partition_range", run_id, keys, rerun)
    if SCHEDULED_TIME_TAG in tags:
        tick = parse_scheduled_time(tags[SCHEDULED_TIME_TAG])
        return LockTarget(name, tick, "tick", run_id, rerun=rerun)
    if tags.get(RUN_KEY_TAG):
        return LockTarget(name, tags[RUN_KEY_TAG], "run_key", run_id, rerun=rerun)
    if tags.get(EVALUATION_ID_TAG):
        slot = evaluation_slot(context, tags[EVALUATION_ID_TAG])
        kind: SlotKind | None = "evaluation" if slot is not None else None
        return LockTarget(name, slot, kind, run_id, rerun=rerun)
    return LockTarget(name, None, None, run_id, rerun=rerun)

"""Guarded assets and ops as a user writes them, for tests that run them in process and with
the `dagster` CLI (`-m support.guarded_defs`). Each body records its work as a fenced row in
`heartbeats` (job_name says whose, slot which), so a test counts how often a body ran."""

# No `from __future__ import annotations`: Dagster reads these annotations.

import time
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources import DistributedLockResource, Held, guarded_asset, guarded_multi_asset, guarded_op

QUEUE = "guard-test"
DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")

_FENCED_WORK = """
    INSERT INTO heartbeats (app_id, queue_name, job_name, fence, slot, run_id)
    SELECT %(app_id)s::varchar, %(queue_name)s::varchar, %(job_name)s::varchar,
           %(fence)s::bigint, %(slot)s::text, %(run_id)s::text
     WHERE dlock_fence_is_current_v1(%(queue_name)s, %(job_name)s, %(fence)s)
    RETURNING id
"""


class WorkConfig(dg.Config):
    """How long the guarded work takes, and whether it fails."""

    seconds: float = Field(default=0.0, description="Seconds the work takes.")
    fail: bool = Field(default=False, description="Raise instead of finishing the work.")
    gate: str = Field(
        default="", description="A file the work waits for (at most 300 s) before it ends."
    )


def work(context, lock: DistributedLockResource, held: Held, config: WorkConfig, who: str) -> int:
    time.sleep(config.seconds)
    deadline = time.monotonic() + 300
    while config.gate and not Path(config.gate).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if config.fail:
        raise RuntimeError(f"{who} failed on purpose")
    with lock.connection() as conn:
        row = conn.execute(
            _FENCED_WORK,
            {
                "app_id": who,
                "queue_name": held.queue_name,
                "job_name": held.job_name,
                "fence": held.fence,
                "slot": held.slot,
                "run_id": context.run.run_id,
            },
        ).fetchone()
    assert row is not None, "the fence was no longer current"
    return row[0]


@guarded_asset(queue=QUEUE, description="A plain guarded asset.", group_name="guarded")
def plain_asset(
    context: dg.AssetExecutionContext,
    config: WorkConfig,
    lock: DistributedLockResource,
    held: Held,
) -> int:
    """Counts one unit of work; its docstring is the asset's description unless one is given."""
    return work(context, lock, held, config, "plain_asset")


@guarded_asset(queue=QUEUE, partitions_def=DAILY)
def daily_asset(context: dg.AssetExecutionContext, config: WorkConfig, held: Held) -> int:
    """One day's work, once per day, partitions side by side."""
    lock = context.resources.lock
    return work(context, lock, held, config, "daily_asset")


@guarded_asset(
    queue=QUEUE,
    partitions_def=DAILY,
    backfill_policy=dg.BackfillPolicy.single_run(),
    key="ranged_asset",
)
def ranged_asset(context: dg.AssetExecutionContext, config: WorkConfig, held: Held) -> None:
    """Many days in one run: holds each day's lock."""
    time.sleep(config.seconds)


@guarded_multi_asset(
    queue=QUEUE,
    outs={"left": dg.AssetOut(), "right": dg.AssetOut()},
)
def pair(context: dg.AssetExecutionContext, config: WorkConfig, held: Held):
    """Two assets from one body."""
    done = work(context, context.resources.lock, held, config, "pair")
    return done, -done


@guarded_op(queue=QUEUE, lock_key="orders_table")
def load_orders_a(context: dg.OpExecutionContext, config: WorkConfig, held: Held) -> int:
    return work(context, context.resources.lock, held, config, "load_orders_a")


@guarded_op(queue=QUEUE, lock_key="orders_table")
def load_orders_b_skip(context: dg.OpExecutionContext, config: WorkConfig, held: Held) -> int:
    return work(context, context.resources.lock, held, config, "load_orders_b")


@guarded_op(queue=QUEUE, lock_key="orders_table", on_held="wait", wait_seconds=120)
def load_orders_b_wait(context: dg.OpExecutionContext, config: WorkConfig, held: Held) -> int:
    return work(context, context.resources.lock, held, config, "load_orders_b")


@guarded_op(queue=QUEUE, lock_key="orders_table", on_held="fail")
def load_orders_b_fail(context: dg.OpExecutionContext, config: WorkConfig, held: Held) -> int:
    return work(context, context.resources.lock, held, config, "load_orders_b")


@dg.op
def after_load(count: int) -> int:
    """Downstream of a guarded op: runs only when the load ran (its input is optional)."""
    return count + 1


@dg.job
def loader_a_job():
    after_load(load_orders_a())


@dg.job
def loader_b_skip_job():
    load_orders_b_skip()


@dg.job
def loader_b_wait_job():
    load_orders_b_wait()


@dg.job
def loader_b_fail_job():
    load_orders_b_fail()


defs = dg.Definitions(
    assets=[plain_asset, daily_asset, ranged_asset, pair],
    jobs=[loader_a_job, loader_b_skip_job, loader_b_wait_job, loader_b_fail_job],
    resources={
        "lock": DistributedLockResource(
            database_url=dg.EnvVar("LOCK_DATABASE_URL"),
            app_id=dg.EnvVar("GUARD_APP_ID"),
            partition_wait_seconds=60,
        )
    },
)

"""A user's own guarded op or asset, with no reporting code of its own, tells its run what the
lock did: run tags, log lines, asset metadata, and an observation when it skipped."""

# No `from __future__ import annotations`: Dagster reads these ops' annotations.

import dagster as dg
import pytest

from resources import DistributedLockResource
from resources import operations as ops
from support.databases import Tables

TICK_TAG = ".dagster/scheduled_execution_time"
TICK = "2026-11-28T14:00:00+00:00"


@pytest.fixture
def lock_url(default_databases) -> str:
    return default_databases.create()


def resource(url: str) -> DistributedLockResource:
    return DistributedLockResource(database_url=url, app_id="user-instance")


class Drill(dg.Config):
    operator_releases: bool = False


@dg.op
def copy_invoices(context: dg.OpExecutionContext, config: Drill, lock: DistributedLockResource):
    with lock.hold_for(context, queue_name="billing") as held:
        if held.acquired and config.operator_releases:
            ops.release(
                lock.database(),
                "billing",
                "copy_invoices_job",
                fence=held.fence,
                reason="stuck after the 13:58 deploy",
                operator="oncall@laptop",
            )
            held.ensure_held()


@dg.job
def copy_invoices_job():
    copy_invoices()


@dg.asset
def invoices(context: dg.AssetExecutionContext, lock: DistributedLockResource):
    with lock.hold_for(context, queue_name="billing") as held:
        if held.acquired:
            return dg.MaterializeResult()
    return None


def messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def run_op(url: str, instance, tags=None, **config):
    return copy_invoices_job.execute_in_process(
        resources={"lock": resource(url)},
        instance=instance,
        tags=tags or {},
        run_config={"ops": {"copy_invoices": {"config": config}}} if config else None,
        raise_on_error=False,
    )


def test_a_users_own_op_gets_tags_and_log_lines_for_free(lock_url):
    with dg.instance_for_test() as instance:
        first = run_op(lock_url, instance, {TICK_TAG: TICK})
        again = run_op(lock_url, instance, {TICK_TAG: TICK})
        assert first.success and again.success
        done = instance.get_run_by_id(first.run_id).tags
        skipped = instance.get_run_by_id(again.run_id).tags
        first_log, again_log = messages(instance, first.run_id), messages(instance, again.run_id)
    assert done["dlock/outcome"] == "completed" and int(done["dlock/fence"]) > 0
    assert done["dlock/holder"] == f"user-instance/{first.run_id}" and done["dlock/since"]
    assert any(
        m.startswith(f"Lock billing/copy_invoices_job acquired (fence {done['dlock/fence']}) in ")
        and " ms; job log " in m
        for m in first_log
    )
    assert "Lock billing/copy_invoices_job released (completed, fence " in "\n".join(first_log)
    assert skipped["dlock/outcome"] == "skipped" and skipped["dlock/reason"] == "slot_done"
    assert skipped["dlock/holder"] == f"user-instance/{first.run_id}"
    assert any(m.startswith("Skipped: Lock billing/copy_invoices_job: slot ") for m in again_log)


def test_an_operator_release_fails_the_run_with_who_and_why(lock_url):
    with dg.instance_for_test() as instance:
        result = run_op(lock_url, instance, operator_releases=True)
        assert not result.success
        tags = instance.get_run_by_id(result.run_id).tags
        log = "\n".join(messages(instance, result.run_id))
    assert tags["dlock/outcome"] == "lost"
    assert "Released by operator oncall@laptop" in tags["dlock/reason"]
    assert "stuck after the 13:58 deploy" in tags["dlock/reason"]
    assert "Lock billing/copy_invoices_job lost: " in log


def test_an_asset_carries_lock_metadata_and_a_skip_leaves_an_observation(lock_url):
    with dg.instance_for_test() as instance:
        with resource(lock_url).hold("billing", "invoices") as blocker:
            skipped = dg.materialize(
                [invoices], resources={"lock": resource(lock_url)}, instance=instance
            )
        done = dg.materialize([invoices], resources={"lock": resource(lock_url)}, instance=instance)
        assert skipped.success and done.success
        [materialization] = done.asset_materializations_for_node("invoices")
        observations = [
            event.asset_observation_data.asset_observation
            for event in skipped.all_events
            if event.event_type_value == "ASSET_OBSERVATION"
        ]
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    assert metadata["dlock/fence"] > blocker.fence and metadata["dlock/log_id"] > 0
    assert isinstance(metadata["dlock/acquire_ms"], float) and metadata["dlock/acquire_ms"] > 0
    [observation] = observations
    assert observation.asset_key == dg.AssetKey("invoices")
    assert observation.metadata["dlock/reason"].value == "held"
    assert observation.description.startswith("Not materialized by this run: Lock billing/invoices")


def test_a_directly_invoked_body_still_logs_and_runs(lock_url):
    """A unit test calling the op with build_op_context has no run to tag: hold_for still holds
    the lock, and only logs."""
    with dg.build_op_context(resources={"lock": resource(lock_url)}) as context:
        assert send_reminders(context) is True
    assert Tables(lock_url).statuses("billing", "send_reminders") == ["Completed"]


@dg.op
def send_reminders(context: dg.OpExecutionContext, lock: DistributedLockResource):
    with lock.hold_for(context, queue_name="billing", job_name="send_reminders") as held:
        return held.acquired

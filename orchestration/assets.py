"""The heartbeat as an asset: the CLI, the UI and the schedule all contend for one lock."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

import dagster as dg

from resources import DistributedLockResource, Held, guarded_asset

from .heartbeat import HeartbeatConfig, recorded_beat
from .queues import HEARTBEAT_ASSET_QUEUE

# The lock every heartbeat asset takes, whatever its key: each instance's asset has a key of its
# own (one workspace refuses to materialize a key that two locations define), and still the two
# exclude each other.
HEARTBEAT_ASSET_LOCK_JOB = "heartbeat"
HEARTBEAT_GROUP = "heartbeat"


def build_heartbeat_asset(key_prefix: str | None = None) -> dg.AssetsDefinition:
    """The heartbeat asset, keyed `<key_prefix>/heartbeat` (or `heartbeat`)."""

    @guarded_asset(
        queue=HEARTBEAT_ASSET_QUEUE,
        job_name=HEARTBEAT_ASSET_LOCK_JOB,
        name="heartbeat",
        key_prefix=key_prefix,
        group_name=HEARTBEAT_GROUP,
        description=(
            "The latest heartbeat; materialized only by the run that held the lock "
            f"'{HEARTBEAT_ASSET_QUEUE}/{HEARTBEAT_ASSET_LOCK_JOB}', which every instance's "
            "heartbeat asset takes."
        ),
    )
    def heartbeat(
        context: dg.AssetExecutionContext,
        config: HeartbeatConfig,
        lock: DistributedLockResource,
        held: Held,
    ) -> dg.Output[dict]:
        return recorded_beat(context, config, lock, held)

    return heartbeat


heartbeat = build_heartbeat_asset()

heartbeat_asset_job = dg.define_asset_job(
    "heartbeat_asset_job",
    # By group, so the job picks up this location's heartbeat whatever its key prefix.
    selection=dg.AssetSelection.groups(HEARTBEAT_GROUP),
    description="Materializes the heartbeat asset, exactly once per tick across every instance.",
)

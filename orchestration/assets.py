"""The heartbeat as an asset: the CLI, the UI and the schedule all contend for one lock."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

from collections.abc import Iterator

import dagster as dg

from resources import DistributedLockResource

from .heartbeat import HeartbeatConfig, guarded_heartbeat
from .queues import HEARTBEAT_ASSET_QUEUE


@dg.asset(
    output_required=False,
    description="The latest heartbeat; materialized only by the run that held the lock.",
)
def heartbeat(
    context: dg.AssetExecutionContext, config: HeartbeatConfig, lock: DistributedLockResource
) -> Iterator[dg.Output]:
    # The lock's job name is the asset key, whatever Dagster job runs the asset.
    yield from guarded_heartbeat(context, config, lock, HEARTBEAT_ASSET_QUEUE)


heartbeat_asset_job = dg.define_asset_job(
    "heartbeat_asset_job",
    selection=[heartbeat],
    description="Materializes the heartbeat asset, exactly once per tick across every instance.",
)

"""What a guarded op or asset tells Dagster about its lock, so the UI answers "did it run, who
had the lock, since when, and why not":

- run tags the runs list and run page show: `dlock/outcome`, `dlock/reason`, `dlock/holder`,
  `dlock/since`, `dlock/fence`;
- lines in the run's log: acquired (fence, milliseconds spent acquiring), skipped (holder and
  reason), released, lost;
- numeric materialization metadata for an asset (`dlock/fence`, `dlock/acquire_ms`,
  `dlock/log_id`), which the asset page plots over time;
- an `AssetObservation` when an asset's run skipped, so the gap in its history says why.

`DistributedLockResource.hold_for` calls it, so every guarded op and asset gets all of this
without code of its own. Renewals run on a process-wide thread with no run context; they log
through Python `logging` at debug level (resources/renewal.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import dagster as dg

from ..lock import Held

if TYPE_CHECKING:
    from .run_target import ExecutionContext

TAG_PREFIX = "dlock/"
# Dagster keeps tag values short in its UI; a lost lease's explanation is in the run's log too.
_MAX_TAG_VALUE = 500


def _since(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _in_a_run(context: ExecutionContext) -> bool:
    """False for a body invoked directly (a unit test calling the op with build_op_context):
    there is no run to tag and no materialization to describe, only the log."""
    try:
        context.get_step_execution_context()
    except dg.DagsterError:  # DagsterInvalidPropertyError, not exported
        return False
    return True


class RunReport:
    """Reports one hold of one op or asset execution to its run."""

    def __init__(self, context: ExecutionContext) -> None:
        self._context = context
        self._in_run = _in_a_run(context)

    def _tag(self, **values: object) -> None:
        if not self._in_run:
            return
        tags = {f"{TAG_PREFIX}{key}": str(value)[:_MAX_TAG_VALUE] for key, value in values.items()}
        self._context.instance.add_run_tags(self._context.run.run_id, tags)

    def _asset_keys(self) -> list[dg.AssetKey]:
        if not self._in_run or not self._context.has_assets_def:
            return []
        return sorted(self._context.selected_asset_keys, key=lambda key: key.to_user_string())

    def acquired(self, held: Held, acquire_ms: float) -> None:
        self._context.log.info(
            "Lock %s acquired (fence %s) in %.1f ms; job log %s",
            held.label,
            held.fence,
            acquire_ms,
            held.log_id,
        )
        self._tag(outcome="running", holder=held.holder, since=_since(held.since), fence=held.fence)
        for key in self._asset_keys():
            self._context.get_step_execution_context().add_asset_metadata(
                {
                    "dlock/fence": held.fence,
                    "dlock/acquire_ms": round(acquire_ms, 3),
                    "dlock/log_id": held.log_id,
                },
                asset_key=key,
            )

    def skipped(self, held: Held, summary: str) -> None:
        self._context.log.info("Skipped: %s", summary)
        self._tag(
            outcome="skipped", reason=held.reason, holder=held.holder, since=_since(held.since)
        )
        for key in self._asset_keys():
            self._context.log_event(
                dg.AssetObservation(
                    asset_key=key,
                    description=f"Not materialized by this run: {summary}",
                    metadata={
                        "dlock/outcome": "skipped",
                        "dlock/reason": held.reason or "",
                        "dlock/holder": held.holder or "",
                        "dlock/since": _since(held.since),
                        "dlock/log_id": held.log_id,
                    },
                )
            )

    def refused(self, held: Held, error: Exception) -> None:
        """on_held='fail', or a partition that waited in vain: the run fails, and says why."""
        self._context.log.error("Not run: %s", error)
        self._tag(
            outcome="refused", reason=held.reason, holder=held.holder, since=_since(held.since)
        )

    def released(self, held: Held, outcome: str) -> None:
        self._context.log.info("Lock %s released (%s, fence %s)", held.label, outcome, held.fence)
        self._tag(outcome=outcome)

    def lost(self, held: Held, error: Exception) -> None:
        self._context.log.error("Lock %s lost: %s", held.label, error)
        self._tag(outcome="lost", reason=error)

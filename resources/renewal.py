"""One long-lived thread per process renews every lease the process holds.

A thread per hold would cost a start and a join on every guarded cycle; one worker that sleeps
until the next lease is due costs nothing between renewals. It renews every due lease in one
round trip on a connection of its own (never one the holders compete for), and the database
skips a row another transaction holds instead of waiting on it, so one blocked lock never
delays the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from .per_process import PerProcess

log = logging.getLogger(__name__)

# Renew at a third of the lease, so two renewals can fail before the lease lapses.
RENEW_FRACTION = 1 / 3
# After a failed or skipped renewal (database briefly away, row held by another transaction),
# try again soon but not in a tight loop.
RETRY_FRACTION = 1 / 10
# An idle worker looks again this often, so holds of long leases never need to wake it.
IDLE_POLL_SECONDS = 0.5


@dataclass(eq=False)
class Lease:
    queue_name: str
    job_name: str
    owner: str
    fence: int
    lease_seconds: float
    next_due: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.due_again(RENEW_FRACTION)

    @property
    def label(self) -> str:
        return f"{self.queue_name}/{self.job_name}"

    def due_again(self, fraction: float) -> None:
        self.next_due = time.monotonic() + self.lease_seconds * fraction


# Renews a batch of leases: one outcome per lease, in order.
RenewBatch = Callable[[list[Lease]], list[str]]


class RenewalWorker:
    """Renews tracked leases on a daemon thread; a lease found taken over is dropped, and its
    holder learns it from `ensure_held()` or when it releases (LockLost)."""

    def __init__(self, renew: RenewBatch) -> None:
        self._renew = renew
        self._leases: set[Lease] = set()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        # When the worker will next look at its leases on its own; a new lease due later than
        # this needs no wake-up (a context switch that costs as much as a round trip).
        self._wakes_at = 0.0

    def track(self, lease: Lease) -> None:
        with self._wake:
            self._leases.add(lease)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dlock-renewal", daemon=True)
                self._thread.start()
            elif lease.next_due < self._wakes_at:
                self._wake.notify()

    def untrack(self, lease: Lease) -> None:
        with self._wake:
            self._leases.discard(lease)

    def _due_leases(self) -> list[Lease]:
        with self._wake:
            while True:
                now = time.monotonic()
                if self._leases:
                    due = [lease for lease in self._leases if lease.next_due <= now]
                    if due:
                        return due
                    self._wakes_at = min(lease.next_due for lease in self._leases)
                else:
                    self._wakes_at = now + IDLE_POLL_SECONDS
                self._wake.wait(self._wakes_at - now)

    def _run(self) -> None:
        while True:
            self._renew_due(self._due_leases())

    def _renew_due(self, leases: list[Lease]) -> None:
        try:
            outcomes = self._renew(leases)
        except Exception as error:  # the database may come back before the leases lapse
            log.warning("Renewing %d lease(s) failed, retrying: %s", len(leases), error)
            for lease in leases:
                lease.due_again(RETRY_FRACTION)
            return
        for lease, outcome in zip(leases, outcomes, strict=True):
            if outcome == "renewed":
                lease.due_again(RENEW_FRACTION)
                log.debug("Lock %s renewed (fence %s)", lease.label, lease.fence)
            elif outcome == "busy":
                lease.due_again(RETRY_FRACTION)
                log.info(
                    "Lock %s: its row is held by another transaction; renewing again soon",
                    lease.label,
                )
            else:
                self._drop_lost(lease)

    def _drop_lost(self, lease: Lease) -> None:
        with self._wake:
            tracked = lease in self._leases
            self._leases.discard(lease)
        if tracked:  # not released meanwhile: the release or ensure_held() will say by whom
            log.warning(
                "Lock %s is no longer held here (fence %s lost): taken over, or released by an "
                "operator",
                lease.label,
                lease.fence,
            )


# A forked child renews only the leases it takes itself, on a thread of its own.
_workers: PerProcess[RenewalWorker] = PerProcess()


def worker_for(database: Hashable, renew: RenewBatch) -> RenewalWorker:
    """The process's one worker for a lock database, made on first use in each process."""
    return _workers.get(database, lambda: RenewalWorker(renew))

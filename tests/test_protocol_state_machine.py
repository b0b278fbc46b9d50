"""The real database held to the model's invariants (model/README.md): Hypothesis drives three
holders through random sequences of acquire (plain or a re-run on purpose), resent acquire (a
lost reply), an acquire abandoned after its reply was lost, renew, pause (the lease moved into
the past), fenced write, release, resent release (also after the slot was reset), crash, an
operator's forced release, an operator's release at a fence it saw and a slot reset, calling
the protocol's SQL functions directly, and checks the tables after every step."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from resources.urls import libpq_url

QUEUE, JOB = "queue-model", "job-model"
HOLDERS = 3
SLOTS = ("tick-1", "tick-2")
LEASE = 300.0
# The bar the issue sets: this many examples, each of at least this many steps.
EXAMPLES, MIN_STEPS = 200, 50

ACQUIRE = (
    "SELECT acquired, fence, log_id, reason FROM dlock_acquire_v3(%s, %s, %s, %s, NULL, %s,"
    " %s, true)"
)
ACQUIRE_RERUN = (
    "SELECT acquired, fence, log_id, reason, reset_id FROM dlock_acquire_rerun_v2(%s, %s, %s,"
    " %s, NULL, %s, %s, true, 're-run on purpose')"
)
ABANDON = "SELECT dlock_abandon_v3(%s, %s, %s, %s, NULL, %s, 'reply lost; abandoned')"
RELEASE = "SELECT dlock_release_v4(%s, %s, %s, %s, %s, %s, %s)"
RENEW = (
    "SELECT outcome FROM dlock_renew_all_v1(ARRAY[%s]::text[], ARRAY[%s]::text[],"
    " ARRAY[%s]::text[], ARRAY[%s]::bigint[], ARRAY[%s]::float8[])"
)
RESET_SLOT = "SELECT dlock_reset_slot_v1(%s, %s, %s, 'operator', %s)"
OPERATOR_RELEASE = (
    "SELECT outcome, fence FROM dlock_operator_release_v1(%s, %s, %s, 'operator', 'a test')"
)
FENCED_WRITE = (
    "INSERT INTO heartbeats (app_id, queue_name, job_name, fence, slot)"
    " SELECT %s, %s, %s, %s, %s WHERE dlock_fence_is_current_v1(%s, %s, %s) RETURNING id"
)


@dataclass
class Hold:
    owner: str
    slot: str
    fence: int
    log_id: int
    status: str | None = None  # the status its release sent (set once released)
    released: str | None = None  # 'released' / 'lost' as the release answered


@pytest.fixture(scope="module")
def machine_url(server_databases) -> str:
    return libpq_url(server_databases.create())


def test_protocol_state_machine(machine_url: str) -> None:
    connections = [psycopg.connect(machine_url, autocommit=True) for _ in range(HOLDERS + 1)]
    try:
        ProtocolMachine.connections = connections
        ProtocolMachine.steps_per_example = []
        run_state_machine_as_test(
            ProtocolMachine,
            settings=settings(
                # Hypothesis begins with a few short examples of its own choosing.
                max_examples=EXAMPLES + EXAMPLES // 2,
                stateful_step_count=60,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
    finally:
        for conn in connections:
            conn.close()
    # Hypothesis stops an example early with a small probability: count what really ran.
    long_enough = [n for n in ProtocolMachine.steps_per_example if n >= MIN_STEPS]
    assert len(long_enough) >= EXAMPLES, sorted(ProtocolMachine.steps_per_example)[:20]


holder_ids = st.integers(min_value=0, max_value=HOLDERS - 1)


class ProtocolMachine(RuleBasedStateMachine):
    connections: list[psycopg.Connection] = []
    steps_per_example: list[int] = []

    @initialize()
    def clean(self) -> None:
        # Fences come from queue_lock_fence_seq, which TRUNCATE does not reset: they keep
        # increasing across examples, so the strictly-increasing check holds across them too.
        self.admin.execute("TRUNCATE queue_locks, job_logs, heartbeats RESTART IDENTITY")
        self.holds: list[Hold | None] = [None] * HOLDERS  # what each holder believes it holds
        self.crashed: set[str] = set()  # owners whose holder stopped calling
        self.lost: set[str] = set()  # owners whose grant was taken from them
        self.all_holds: dict[str, Hold] = {}
        self.resets = dict.fromkeys(SLOTS, 0)  # resets that re-opened each slot
        self.fences_seen: list[int] = []  # fences `dlock status` showed the operator
        self.last_fence = self.admin.execute(
            "SELECT coalesce(max(fence), 0) FROM queue_locks"
        ).fetchone()[0]
        self.steps = 0

    @property
    def admin(self) -> psycopg.Connection:
        return self.connections[HOLDERS]

    def conn(self, holder: int) -> psycopg.Connection:
        return self.connections[holder]

    def lock_row(self) -> tuple | None:
        return self.admin.execute(
            "SELECT owner, fence, log_id, expires_at < clock_timestamp() FROM queue_locks"
            " WHERE queue_name = %s AND job_name = %s",
            (QUEUE, JOB),
        ).fetchone()

    def _acquire(self, holder: int, owner: str, slot: str, rerun: bool = False) -> tuple:
        """acquired, fence, log_id, reason; a re-run that reset the slot counts the reset."""
        before = self.lock_row()
        args = (QUEUE, JOB, owner, f"app-{holder}", slot, LEASE)
        if rerun:
            acquired, fence, log_id, reason, reset_id = (
                self.conn(holder).execute(ACQUIRE_RERUN, args).fetchone()
            )
            if reset_id is not None:
                assert acquired, "a re-run that did not get the lock left its reset standing"
                self.resets[slot] += 1
        else:
            acquired, fence, log_id, reason = self.conn(holder).execute(ACQUIRE, args).fetchone()
        if acquired and before is not None and before[0] not in (None, owner):
            # A take-over: only of a lapsed lease; its holder has lost it.
            assert before[3], "a live lease was taken over"
            self.lost.add(before[0])
        if acquired and (before is None or before[0] != owner):
            assert fence > self.last_fence, "fences of one lock must strictly increase"
            self.last_fence = fence
        return acquired, fence, log_id, reason

    # -- rules -------------------------------------------------------------------------------

    @precondition(lambda self: any(hold is None for hold in self.holds))
    @rule(holder=holder_ids, slot=st.sampled_from(SLOTS), resend=st.booleans(), rerun=st.booleans())
    def acquire(self, holder: int, slot: str, resend: bool, rerun: bool) -> None:
        if self.holds[holder] is not None:
            return
        owner = f"app-{holder}/-/{secrets.token_hex(8)}"
        acquired, fence, log_id, reason = self._acquire(holder, owner, slot, rerun)
        if resend:
            # The first reply was lost: the same call again must return the same grant.
            again = self._acquire(holder, owner, slot, rerun)
            if acquired:
                assert again[:3] == (True, fence, log_id)
            else:
                assert not again[0]
        if acquired:
            hold = Hold(owner, slot, fence, log_id)
            self.holds[holder] = hold
            self.all_holds[owner] = hold
        else:
            assert reason in ("held", "slot_done", "slot_running")
            row = self.lock_row()
            assert row is None or row[0] != owner, "a loser holds the lock"

    @rule(holder=holder_ids, slot=st.sampled_from(SLOTS), rerun=st.booleans(), resend=st.booleans())
    def abandoned_acquire(self, holder: int, slot: str, rerun: bool, resend: bool) -> None:
        """An acquire whose reply never came (lost twice, or an interrupt): the holder abandons
        it without knowing whether it was granted. Nothing ran, so the slot is as it was."""
        if self.holds[holder] is not None:
            return
        done_before = self.slot_done(slot)
        resets_before = self.resets[slot]
        owner = f"app-{holder}/-/{secrets.token_hex(8)}"
        self._acquire(holder, owner, slot, rerun)
        abandon = (QUEUE, JOB, owner, f"app-{holder}", slot)
        self.conn(holder).execute(ABANDON, abandon)
        if resend:  # the abandon's own reply was lost: sent again, it changes nothing more
            self.conn(holder).execute(ABANDON, abandon)
        row = self.lock_row()
        assert row is None or row[0] != owner, "an abandoned acquire still holds the lock"
        assert self.slot_done(slot) == done_before, "an abandoned acquire changed its slot"
        self.resets[slot] = resets_before  # a re-run's reset was undone with it

    # Slots are done in few of the states random rules reach (about one in twenty steps), so
    # a re-run of a done slot, abandoned, gets a rule of its own: the one case where the
    # abandon has a reset to undo.
    @precondition(lambda self: bool(self.done_slots()))
    @rule(holder=holder_ids, data=st.data(), resend=st.booleans())
    def abandoned_rerun_of_a_done_slot(
        self, holder: int, data: st.DataObject, resend: bool
    ) -> None:
        slot = data.draw(st.sampled_from(self.done_slots()))
        self.abandoned_acquire(holder, slot, rerun=True, resend=resend)

    def done_slots(self) -> list[str]:
        if not hasattr(self, "holds"):
            return []
        return [
            slot
            for (slot,) in self.admin.execute(
                "SELECT slot FROM job_logs WHERE queue_name = %s AND job_name = %s"
                " AND status = 'Completed' ORDER BY slot",
                (QUEUE, JOB),
            )
        ]

    def slot_done(self, slot: str) -> bool:
        return slot in self.done_slots()

    @rule(holder=holder_ids)
    def renew(self, holder: int) -> None:
        hold = self.holds[holder]
        if hold is None:
            return
        [(outcome,)] = (
            self.conn(holder).execute(RENEW, (QUEUE, JOB, hold.owner, hold.fence, LEASE)).fetchall()
        )
        # No other transaction is open here, so 'busy' cannot happen.
        assert outcome == ("lost" if hold.owner in self.lost else "renewed")

    @rule(holder=holder_ids)
    def pause_past_lease(self, holder: int) -> None:
        hold = self.holds[holder]
        if hold is None:
            return
        self.admin.execute(
            "UPDATE queue_locks SET expires_at = clock_timestamp() - interval '1 s'"
            " WHERE owner = %s",
            (hold.owner,),
        )

    @rule(holder=holder_ids)
    def fenced_write(self, holder: int) -> None:
        hold = self.holds[holder]
        if hold is None:
            return
        row = (
            self.conn(holder)
            .execute(
                FENCED_WRITE,
                (f"app-{holder}", QUEUE, JOB, hold.fence, hold.slot, QUEUE, JOB, hold.fence),
            )
            .fetchone()
        )
        current = self.lock_row()
        if row is not None:
            assert current is not None and current[0] == hold.owner, (
                "a fenced write was accepted from a holder that is not the current one"
            )
        else:
            assert hold.owner in self.lost, "the current holder's fenced write was refused"

    @rule(
        holder=holder_ids,
        status=st.sampled_from(["Completed", "Failed"]),
        resend=st.booleans(),
        reset_between=st.booleans(),
    )
    def release(self, holder: int, status: str, resend: bool, reset_between: bool) -> None:
        hold = self.holds[holder]
        if hold is None:
            return
        args = (QUEUE, JOB, hold.owner, hold.fence, hold.log_id, status, f"done by {holder}")
        [(outcome,)] = self.conn(holder).execute(RELEASE, args).fetchall()
        expected = "lost" if hold.owner in self.lost else "released"
        assert outcome == expected, (outcome, expected)
        if resend and reset_between:  # an operator reset the slot before the resend came
            self.reset_slot(hold.slot)
        if resend:  # the reply was lost: the same call again reports the same
            [(again,)] = self.conn(holder).execute(RELEASE, args).fetchall()
            assert again == outcome
        hold.status, hold.released = status, outcome
        self.holds[holder] = None

    @rule(holder=holder_ids)
    def crash(self, holder: int) -> None:
        hold = self.holds[holder]
        if hold is None:
            return
        self.crashed.add(hold.owner)
        self.holds[holder] = None

    @rule(delete=st.booleans())
    def operator_forced_release(self, delete: bool) -> None:
        row = self.lock_row()
        if row is None or row[0] is None:
            return
        owner, _, log_id, _ = row
        with self.admin.transaction():
            if delete:
                self.admin.execute(
                    "DELETE FROM queue_locks WHERE queue_name = %s AND job_name = %s", (QUEUE, JOB)
                )
            else:
                self.admin.execute(
                    "UPDATE queue_locks SET owner = NULL, log_id = NULL,"
                    " expires_at = clock_timestamp() WHERE queue_name = %s AND job_name = %s",
                    (QUEUE, JOB),
                )
            self.admin.execute(
                "UPDATE job_logs SET status = 'Exited', remark = remark || '; forced release'"
                " WHERE id = %s AND status = 'Processing'",
                (log_id,),
            )
        self.lost.add(owner)

    @rule(slot=st.sampled_from(SLOTS))
    def reset_slot(self, slot: str) -> None:
        [(audit_id,)] = self.admin.execute(RESET_SLOT, (QUEUE, JOB, slot, "rerun")).fetchall()
        if audit_id is not None:
            self.resets[slot] += 1

    @rule()
    def operator_status(self) -> None:
        row = self.lock_row()
        if row is not None and row[0] is not None:
            self.fences_seen.append(row[1])

    @precondition(lambda self: bool(self.fences_seen))
    @rule(data=st.data())
    def operator_fenced_release(self, data: st.DataObject) -> None:
        seen = data.draw(st.sampled_from(self.fences_seen))
        before = self.lock_row()
        [(outcome, fence)] = self.admin.execute(OPERATOR_RELEASE, (QUEUE, JOB, seen)).fetchall()
        if before is None or before[0] is None:
            # already_released: this operator released this fence before, and nothing since
            assert outcome in ("not_held", "already_released"), outcome
        elif before[1] != seen:
            assert (outcome, fence) == ("fence_moved", before[1]), outcome
            assert self.lock_row() == before, "a fenced release touched a grant it was not shown"
        else:
            assert outcome == "released", outcome
            self.lost.add(before[0])

    # -- invariants, on the tables, after every step ----------------------------------------

    @invariant()
    def tables_hold_the_invariants(self) -> None:
        if not hasattr(self, "holds"):
            return
        self.steps += 1
        logs = self.admin.execute(
            "SELECT id, status, fence, slot, claims_slot FROM job_logs"
            " WHERE queue_name = %s AND job_name = %s",
            (QUEUE, JOB),
        ).fetchall()
        row = self.lock_row()
        # At most one claiming (Processing or Completed) row, so at most one Completed, per slot.
        for slot in SLOTS:
            assert sum(1 for log in logs if log[3] == slot and log[4]) <= 1
            assert sum(1 for log in logs if log[3] == slot and log[1] == "Completed") <= 1
            # Exactly once between resets: a grant's row (it has a fence; the reset's own audit
            # row has none) completed, and maybe reset since, at most once more than resets.
            ran = [log for log in logs if log[3] == slot and log[2] is not None]
            finished = sum(1 for log in ran if log[1] in ("Completed", "Reset"))
            assert finished <= self.resets[slot] + 1, (slot, finished, self.resets[slot])
        # Every Processing row belongs to the lock's current grant.
        for log_id, status, fence, _, _ in logs:
            if status == "Processing":
                assert row is not None and row[0] is not None
                assert (row[1], row[2]) == (fence, log_id)
        # A holder that lost its lease never wrote Completed.
        by_fence = {log[2]: log for log in logs if log[2] is not None}
        for owner in self.lost:
            hold = self.all_holds.get(owner)
            if hold is not None:
                assert by_fence[hold.fence][1] != "Completed"
        # At most one holder whose fence is current, and it is the lock row's owner.
        if row is not None and row[0] is not None:
            current = [h for h in self.holds if h is not None and h.fence == row[1]]
            assert len(current) <= 1
            assert all(h.owner == row[0] for h in current)
            assert row[0] in self.all_holds  # no grant nobody asked for
        # A holder that still believes it holds and was not taken over is the owner.
        for hold in self.holds:
            if hold is not None and hold.owner not in self.lost:
                assert row is not None and row[0] == hold.owner

    def teardown(self) -> None:
        # No slot stays blocked: once every lease has lapsed, each slot not completed can run.
        if not hasattr(self, "holds"):
            return
        # The invariant also ran once after the initialize rule, which is a step of its own.
        self.steps_per_example.append(self.steps - 1)
        self.admin.execute(
            "UPDATE queue_locks SET expires_at = clock_timestamp()"
            " - interval '1 s' WHERE owner IS NOT NULL"
        )
        for slot in SLOTS:
            done = self.admin.execute(
                "SELECT 1 FROM job_logs WHERE slot = %s AND status = 'Completed'", (slot,)
            ).fetchone()
            owner = f"probe/-/{secrets.token_hex(8)}"
            acquired, fence, log_id, reason = self._acquire(HOLDERS, owner, slot)
            if done:
                assert not acquired and reason == "slot_done"
                continue
            assert acquired, f"slot {slot} stayed blocked ({reason})"
            [(outcome,)] = self.admin.execute(
                RELEASE, (QUEUE, JOB, owner, fence, log_id, "Completed", "probe")
            ).fetchall()
            assert outcome == "released"

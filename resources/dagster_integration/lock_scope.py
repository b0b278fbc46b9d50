"""Which lock rows a run takes: one per partition (or run key), else one for the whole job; and
how a lock shared by several jobs keeps each job's slots apart."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..validation import MAX_NAME_LENGTH, Slot, canonical_slot
from .run_target import LockTarget

# A slot of these kinds is data of its own: its lock row is its own, so partitions (and sensor
# run keys) run side by side, and the same one never twice at once. A tick, an automation
# evaluation or a manual run shares the job's lock: that is what keeps one job from overlapping.
PER_SLOT_KINDS = frozenset({"partition", "partition_range", "run_key"})


@dataclass(frozen=True)
class LockRequest:
    """One lock row a run needs: its job name (lock row and job log) and the slot it claims."""

    job_name: str
    slot: Slot
    per_slot: bool


def per_slot_name(base: str, key: str) -> str:
    """`base[key]`; a name past the 100-character limit keeps its start and ends in a hash of
    the whole, so distinct keys never share a lock row."""
    name = f"{base}[{key}]"
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
    return f"{name[: MAX_NAME_LENGTH - len(digest) - 2]}~{digest}]"


def lock_requests(target: LockTarget, lock_key: str | None = None) -> list[LockRequest]:
    """The locks a run takes, in the order it takes them (sorted, so two ranged runs that
    overlap never wait on each other in a circle).

    `lock_key` names a lock shared on purpose by several jobs or assets: they then exclude each
    other, and each slot is stored as `<job name>@<slot>`, so one job's done tick or partition
    never makes another job skip its own.
    """
    base = lock_key or target.job_name
    shared = base != target.job_name

    def slot_of(slot: Slot) -> Slot:
        if slot is None or not shared:
            return slot
        return f"{target.job_name}@{canonical_slot(slot)}"

    if target.slot_kind == "partition_range":
        keys = sorted(set(target.partition_keys))
        return [LockRequest(per_slot_name(base, key), slot_of(key), True) for key in keys]
    if target.slot_kind in PER_SLOT_KINDS:
        key = str(target.slot)
        return [LockRequest(per_slot_name(base, key), slot_of(target.slot), True)]
    return [LockRequest(base, slot_of(target.slot), False)]

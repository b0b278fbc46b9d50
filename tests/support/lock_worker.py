"""A separate process that holds a lock, for tests that need real concurrency, crashes and
signals. It prints one JSON line per event, flushed, so the test can follow along."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path

from resources import DistributedLock, LockError


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def hold(args: argparse.Namespace) -> int:
    lock = DistributedLock(
        args.url,
        app_id=args.app_id,
        lease_seconds=args.lease,
        connect_timeout_seconds=args.connect_timeout,
        statement_timeout_seconds=args.statement_timeout,
    )
    slot = datetime.fromisoformat(args.slot) if args.slot_is_time else args.slot
    with lock.hold("warm-up", f"warm-up-{args.app_id}"):
        pass  # connect and check the schema before the race starts
    emit("ready")
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    try:
        with lock.hold(
            args.queue, args.job, slot=slot, run_id=args.run_id, wait_seconds=args.wait
        ) as held:
            if not held.acquired:
                emit("not_acquired", reason=held.reason, holder=held.holder)
                return 0
            emit("acquired", fence=held.fence)
            time.sleep(args.body_seconds)
            if args.fail:
                raise RuntimeError("body failed on purpose")
        emit("released")
    except LockError as error:
        emit(
            "lock_error",
            kind=type(error).__name__,
            message=str(error),
            cause=type(error.__cause__).__name__ if error.__cause__ else None,
        )
        return 3
    except KeyboardInterrupt:
        emit("interrupted")
        return 130
    return 0


def fuzz(args: argparse.Namespace) -> int:
    """ShedLock's FuzzTester: read-sleep-write a shared counter only under the lock."""
    lock = DistributedLock(
        args.url,
        app_id=args.app_id,
        lease_seconds=args.lease,
        connect_timeout_seconds=args.connect_timeout,
        statement_timeout_seconds=args.statement_timeout,
    )
    counter = Path(args.counter)
    done = 0
    for _ in range(args.iterations):
        with lock.hold(args.queue, args.job, wait_seconds=args.wait) as held:
            if held.acquired:
                value = int(counter.read_text())
                time.sleep(0.002)
                counter.write_text(str(value + 1))
                done += 1
    emit("fuzz_done", increments=done)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hold", "fuzz"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--job", required=True)
    parser.add_argument("--app-id", default="worker")
    parser.add_argument("--run-id")
    parser.add_argument("--slot")
    parser.add_argument("--slot-is-time", action="store_true")
    parser.add_argument("--lease", type=float, default=300.0)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--statement-timeout", type=float, default=30.0)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--body-seconds", type=float, default=0.0)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--counter")
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    return hold(args) if args.mode == "hold" else fuzz(args)


if __name__ == "__main__":
    sys.exit(main())

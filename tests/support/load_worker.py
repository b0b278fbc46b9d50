"""One process of the load scenario: holder threads on locks of their own, contender threads on
one shared lock guarding a read-sleep-write counter in a file, for a fixed time.

Prints one JSON line when its threads are done, then waits for a line on stdin before exiting,
so the test can count the connections it keeps while still alive.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import threading
import time
from pathlib import Path

from resources import DistributedLock

# Body lengths of the holders: mostly short, one in five longer than the lease, so leases are
# renewed under load too.
SHORT_BODIES = (0.3, 3.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--holders", type=int, required=True)
    parser.add_argument("--contenders", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--start-at", type=float, required=True)
    parser.add_argument("--counter", required=True)
    parser.add_argument("--lease", type=float, required=True)
    parser.add_argument("--connect-timeout", type=float, required=True)
    parser.add_argument("--statement-timeout", type=float, required=True)
    args = parser.parse_args()
    lock = DistributedLock(
        args.url,
        app_id=args.app_id,
        lease_seconds=args.lease,
        connect_timeout_seconds=args.connect_timeout,
        statement_timeout_seconds=args.statement_timeout,
    )
    counter = Path(args.counter)
    stop_at = args.start_at + args.seconds
    tally = {"holds": 0, "renewed holds": 0, "increments": 0, "gave up": 0}
    errors: list[str] = []
    guard = threading.Lock()

    def count(key: str) -> None:
        with guard:
            tally[key] += 1

    def holder(index: int) -> None:
        job = f"{args.app_id}-holder-{index}"
        while time.time() < stop_at:
            long = random.random() < 0.2
            body = args.lease * 1.2 if long else random.uniform(*SHORT_BODIES)
            with lock.hold(args.queue, job) as held:
                if not held.acquired:  # nobody else uses this lock
                    raise AssertionError(f"{job} not acquired: {held.note}")
                time.sleep(body)
                held.ensure_held()  # still ours, after renewals if the body outlived the lease
            count("renewed holds" if long else "holds")

    def contender() -> None:
        while time.time() < stop_at:
            with lock.hold(args.queue, "counter", wait_seconds=args.lease) as held:
                if not held.acquired:
                    count("gave up")
                    continue
                value = int(counter.read_text())
                time.sleep(0.002)
                counter.write_text(str(value + 1))
            count("increments")

    def guarded(target, *extra) -> None:
        try:
            target(*extra)
        except BaseException as error:  # noqa: BLE001 - every error is reported
            with guard:
                errors.append(f"{type(error).__name__}: {error}")

    time.sleep(max(0.0, args.start_at - time.time()))
    threads = [threading.Thread(target=guarded, args=(holder, n)) for n in range(args.holders)] + [
        threading.Thread(target=guarded, args=(contender,)) for _ in range(args.contenders)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gc.collect()  # a finished thread's connection closes once its locals are collected
    print(json.dumps({**tally, "errors": errors}), flush=True)
    sys.stdin.readline()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Runs SPIN on model/dlock.pml: `python -m model.run [check|live|bugs|cover|all|full]`
(`make model` runs all).

check: the real protocol, exhaustively, at each configuration in CHECKS (state count, time).
full:  the same at FULL_CHECKS, larger bounds (minutes and gigabytes each; not part of all).
live:  the liveness formulas in LIVE, under weak fairness (acceptance cycles, exhaustive).
bugs:  every buggy variant must give an error and a trail (a counterexample).
cover: every reachability witness must be reached (the model is not vacuous).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MODEL = Path(__file__).with_name("dlock.pml")


def bounds(
    holders: int,
    clock: int,
    *,
    crashes: int = 0,
    lost: int = 0,
    forced: int = 0,
    resets: int = 0,
) -> list[str]:
    """The model's bounds as SPIN defines: holders, the clock's horizon (one pause past the
    lease per tick; LEASE=0 lapses a lease at the next tick), crashes, lost replies, the
    operator's releases and slot resets. One lock with two slots."""
    return [
        f"-DMAXRESET={resets}",
        f"-DNH={holders}",
        "-DLEASE=0",
        f"-DTMAX={clock}",
        f"-DMAXCRASH={crashes}",
        f"-DMAXOP={forced}",
        f"-DMAXLOST={lost}",
    ]


# Exhaustive configurations of the real protocol that CI checks (model/README.md gives each
# one's figures). Together they reach every bound: three holders, two slots, two crashes, two
# pauses past the lease, a lost reply and the operator's release; not all at once. FENCED makes
# the operator's release `dlock release --fence` (it acts only on the grant `dlock status`
# showed) instead of --force.
FENCED = ["-DOP_FENCED"]
EVERY_FAULT = bounds(2, 2, crashes=2, lost=1, forced=1)
# Both holders may take either slot (ANY_SLOT), so a slot can complete, be reset by the
# operator and complete again.
RESET = bounds(2, 2, lost=1, resets=1) + ["-DANY_SLOT"]
CHECKS = {
    "two holders, every fault": EVERY_FAULT,
    "two holders, every fault, fenced operator release": EVERY_FAULT + FENCED,
    "two holders of any slot, a lost reply, a slot reset": RESET,
    "three holders, one pause": bounds(3, 1),
    "three holders, two pauses": bounds(3, 2),
}

# Larger searches, too long for CI (`python -m model.run full`, about ten minutes and 10 GB
# each on this machine; model/README.md records what they gave).
FULL_CHECKS = {
    "three holders, two crashes, operator, one pause": bounds(3, 1, crashes=2, forced=1),
    "three holders, crash, lost reply, one pause": bounds(3, 1, crashes=1, lost=1),
}

# Each buggy variant with the smallest configuration that shows it (a counterexample found
# at a small bound is a real one), and the liveness formula it breaks (None: an assertion).
# Search: depth-first, stops at the first error.
SMALL = bounds(2, 2)
BUGS: dict[str, tuple[list[str], str | None]] = {
    "BUG_RELEASE_NO_CHECK": (SMALL, None),
    "BUG_TAKEOVER_NO_EXPIRY": (SMALL, None),
    "BUG_RENEW_NO_CHECK": (SMALL, None),
    "BUG_FENCE_BEFORE_WAIT": (bounds(2, 2, forced=1), None),
    "BUG_RELEASE_NOT_IDEMPOTENT": (bounds(2, 2, lost=1), None),
    "BUG_ACQUIRE_NOT_IDEMPOTENT": (bounds(2, 2, lost=1), None),
    "BUG_SLOT_BY_QUERY": (SMALL + ["-DANY_SLOT"], None),  # two holders of one slot
    "BUG_NO_TAKEOVER": (bounds(2, 2, crashes=1), "waiter_is_granted"),
    "BUG_OPERATOR_FENCE_APART": (bounds(2, 2, forced=1) + FENCED, None),
    "BUG_RELEASE_BLIND_TO_RESET": (RESET, None),
}

# Liveness: a waiter beside a holder that crashes, loses a reply and pauses twice, and the
# operator (see LIVENESS in dlock.pml). Weak fairness keeps a copy of every state per process,
# so this is smaller than the safety bounds.
LIVE = bounds(2, 2, crashes=1, lost=1, forced=1)
LIVE_FORMULAS = ["waiter_is_granted", "every_holder_ends"]

# Reachability witnesses (-DCOVER=n in dlock.pml) and the configuration that reaches each.
# 3 (an orphaned Processing row closed by the slot claim) is unreachable here: the operator in
# the model always closes the holder's row with the lock row, which is what makes every
# Processing row belong to the current grant.
FULL = bounds(2, 2, crashes=1, lost=1, forced=1)
COVER = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
# Witnesses 4 and 17 (the lock given back because the slot was taken meanwhile, by version 2
# and by version 3's fast path) need two holders of one slot; depth-first reaches 13 (two
# inserts of a new lock row, one conflicting) in 200,000 states without faults, in ten million
# with them.
# 19 and 20 (a fenced operator release that finds the fence moved, or the lock free) need the
# fenced release; 21 and 22 (a reset slot completed again; a resent release finding its row
# reset) a reset.
COVER_DEFINES = {
    4: FULL + ["-DANY_SLOT"],
    17: FULL + ["-DANY_SLOT"],
    13: SMALL,
    19: FULL + FENCED,
    20: FULL + FENCED,
    21: RESET,
    22: RESET,
}


def cover_defines(n: int) -> list[str]:
    return [f"-DCOVER={n}", *COVER_DEFINES.get(n, FULL)]


@dataclass
class Result:
    errors: int
    states: int
    seconds: float
    complete: bool
    output: str
    trail: bool


def spin_available() -> bool:
    return shutil.which("spin") is not None and shutil.which("gcc") is not None


def run_pan(
    defines: list[str], *, cc_flags: list[str], pan_flags: list[str], optimize: str = "-O2"
) -> Result:
    with tempfile.TemporaryDirectory(prefix="dlock-spin-") as tmp:
        work = Path(tmp)
        shutil.copy(MODEL, work / "dlock.pml")
        subprocess.run(
            ["spin", "-a", *defines, "dlock.pml"],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        )
        subprocess.run(
            ["gcc", optimize, *cc_flags, "-o", "pan", "pan.c"],
            cwd=work,
            check=True,
            capture_output=True,
            text=True,
        )
        started = time.monotonic()
        out = subprocess.run(
            ["./pan", "-m1000000", *pan_flags], cwd=work, capture_output=True, text=True
        ).stdout
        seconds = time.monotonic() - started
        errors = int(re.search(r"errors: (\d+)", out).group(1))
        states = int(float(re.search(r"([\d.e+]+) states, stored", out).group(1)))
        return Result(
            errors,
            states,
            seconds,
            "Search not completed" not in out,
            out,
            (work / "dlock.pml.trail").exists(),
        )


def check(defines: list[str]) -> Result:
    """The real protocol, exhaustive (lossless state compression)."""
    return run_pan(defines, cc_flags=SAFETY, pan_flags=[])


def check_liveness(defines: list[str], formula: str, *, optimize: str = "-O2") -> Result:
    """One ltl formula of the model, exhaustive: no accepting cycle under weak fairness."""
    return run_pan(
        ["-DLIVENESS", *defines],
        cc_flags=LIVENESS,
        pan_flags=["-a", "-f", "-N", formula],
        optimize=optimize,
    )


def find_error(defines: list[str], *, liveness: str | None = None) -> Result:
    """Stops at the first error and writes its trail. These searches end in seconds, so the
    model is compiled without optimisation (gcc -O2 on pan.c alone takes about ten)."""
    if liveness:
        return check_liveness(defines, liveness, optimize="-O0")
    return run_pan(defines, cc_flags=SAFETY, pan_flags=[], optimize="-O0")


SAFETY = ["-DSAFETY", "-DCOLLAPSE", "-DMEMLIM=16384"]
# Weak fairness keeps a copy of each state per process: NFAIR sizes that table.
LIVENESS = ["-DCOLLAPSE", "-DMEMLIM=16384", "-DNFAIR=4"]


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "all"
    failed = False
    if what in ("check", "full", "all"):
        for name, defines in (FULL_CHECKS if what == "full" else CHECKS).items():
            result = check(defines)
            print(
                f"{name} ({' '.join(defines)}): {result.states:,} states, "
                f"{result.seconds:.1f} s, errors {result.errors}, "
                f"{'exhaustive' if result.complete else 'INCOMPLETE'}"
            )
            failed |= result.errors != 0 or not result.complete
    if what in ("live", "all"):
        for formula in LIVE_FORMULAS:
            result = check_liveness(LIVE, formula)
            print(
                f"liveness {formula} ({' '.join(LIVE)}): {result.states:,} states, "
                f"{result.seconds:.1f} s, errors {result.errors}, "
                f"{'exhaustive' if result.complete else 'INCOMPLETE'}"
            )
            failed |= result.errors != 0 or not result.complete
    if what in ("bugs", "all"):
        for bug, (defines, formula) in BUGS.items():
            result = find_error([f"-D{bug}", *defines], liveness=formula)
            violated = re.search(r"pan:1: (.*?) \(at depth", result.output)
            print(
                f"{bug}: errors {result.errors}, trail {result.trail}, "
                f"{violated.group(1) if violated else '-'} ({result.seconds:.1f} s)"
            )
            failed |= result.errors == 0 or not result.trail
    if what in ("cover", "all"):
        for n in COVER:
            result = find_error(cover_defines(n))
            print(
                f"witness {n}: {'reached' if result.errors else 'NOT REACHED'} "
                f"({result.seconds:.1f} s)"
            )
            failed |= result.errors == 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

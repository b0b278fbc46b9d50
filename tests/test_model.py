"""The protocol's model (model/dlock.pml) in SPIN: no error in the real protocol, exhaustively;
an error and a trail for every buggy variant (so the model cannot become vacuous); every
reachability witness reached. Skipped only where spin is missing (CI installs it)."""

from __future__ import annotations

import pytest

from model import run

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(not run.spin_available(), reason="spin (or gcc) is not installed"),
]


@pytest.mark.parametrize("name", list(run.CHECKS))
def test_real_protocol_has_no_error(name: str) -> None:
    result = run.check(run.CHECKS[name])
    assert result.complete, result.output
    assert result.errors == 0, result.output
    print(f"{name}: {result.states:,} states in {result.seconds:.1f} s")


@pytest.mark.parametrize("formula", run.LIVE_FORMULAS)
def test_liveness_holds_under_weak_fairness(formula: str) -> None:
    result = run.check_liveness(run.LIVE, formula)
    assert result.complete, result.output
    assert result.errors == 0, result.output
    print(f"{formula}: {result.states:,} states in {result.seconds:.1f} s")


@pytest.mark.parametrize("bug", list(run.BUGS))
def test_buggy_variant_gives_a_counterexample(bug: str) -> None:
    defines, formula = run.BUGS[bug]
    result = run.find_error([f"-D{bug}", *defines], liveness=formula)
    assert result.errors >= 1 and result.trail, result.output


@pytest.mark.parametrize("witness", run.COVER)
def test_witness_is_reachable(witness: int) -> None:
    result = run.find_error(run.cover_defines(witness))
    assert result.errors >= 1, f"witness {witness} not reached:\n{result.output}"

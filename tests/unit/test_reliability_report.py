"""RELIABILITY.md's table is what the scenario tests wrote, regenerated, never edited by hand."""

from __future__ import annotations

from tools import reliability_report


def test_reliability_md_is_regenerated_from_its_figures_file():
    assert reliability_report.main(["--check"]) == 0, "run python -m tools.reliability_report"


def test_a_scenario_without_figures_shows_as_not_run():
    table = reliability_report.render({"scenarios": {}})
    for key in reliability_report.EXPECTED:
        assert f"| {key} | not run yet |" in table

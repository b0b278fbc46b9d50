"""Regenerates RELIABILITY.md's table from the figures file the scenario tests write, so the
report never says more than the tests saw.

    RELIABILITY_FIGURES=reliability/figures.json pytest -m scenario
    python -m tools.reliability_report            # rewrite the table in RELIABILITY.md
    python -m tools.reliability_report --check    # exit 1 if RELIABILITY.md is out of date
    python -m tools.reliability_report --print    # the table on stdout (CI's log)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "reliability" / "figures.json"
REPORT = ROOT / "RELIABILITY.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"
# Every row the report must have; a missing one is shown as not run.
EXPECTED = [
    "1",
    "2",
    "2-unguarded",
    "3",
    "4",
    "4-unguarded",
    "5",
    "6",
    "7-synchronous",
    "7-asynchronous",
    "8",
    "8-unguarded",
    "9",
    "10-4",
    "10-8",
]


def _order(key: str) -> tuple[int, str]:
    number, _, rest = key.partition("-")
    return int(number), rest


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict[str, Any]) -> str:
    return "; ".join(f"{name}: {_cell(value)}" for name, value in figures.items())


def _machine(rows: list[dict[str, Any]]) -> str:
    machines = {json.dumps(row["machine"], sort_keys=True) for row in rows}
    described = []
    for text in sorted(machines):
        m = json.loads(text)
        described.append(
            f"`{m['host']}` ({m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; {m['os']}; "
            f"Python {m['python']}, Dagster {m['dagster']})"
        )
    return " and ".join(described)


def render(data: dict[str, Any]) -> str:
    scenarios: dict[str, dict[str, Any]] = data["scenarios"]
    rows = [scenarios[key] for key in scenarios]
    taken = sorted(row["taken_at"] for row in rows)
    lines = [
        f"Figures taken between {taken[0]} and {taken[-1]} (UTC) on {_machine(rows)}."
        if rows
        else "No figures yet.",
        "",
        "| # | scenario | what was done | what was checked | figures | reproduce |",
        "|---|---|---|---|---|---|",
    ]
    for key in sorted(set(scenarios) | set(EXPECTED), key=_order):
        row = scenarios.get(key)
        if row is None:
            lines.append(f"| {key} | not run yet | | | | |")
            continue
        lines.append(
            f"| {key} | {_cell(row['title'])} | {_cell(row['done'])} | {_cell(row['checked'])} "
            f"| {_figures(row['figures'])} | `{_cell(row['command'])}` |"
        )
    return "\n".join(lines)


def updated(report: str, table: str) -> str:
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(report):
        raise SystemExit(f"{REPORT.name} has no {START} ... {END} section to fill")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, default=FIGURES)
    parser.add_argument("--report", type=Path, default=REPORT)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if the report is out of date")
    mode.add_argument("--print", action="store_true", help="print the table only")
    args = parser.parse_args(argv)
    table = render(json.loads(args.figures.read_text()))
    if args.print:
        print(table)
        return 0
    report = args.report.read_text()
    new = updated(report, table)
    if args.check:
        if new != report:
            print(f"{args.report} is out of date: run python -m tools.reliability_report")
            return 1
        return 0
    args.report.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())

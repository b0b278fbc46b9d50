"""The run's figures as a Markdown table, a JSON file and an SVG chart."""

from __future__ import annotations

from html import escape
from typing import Any

FLOOR, REFERENCE = "floor (2 INSERT commits)", "reference design"
PROJECTS = ("this project", "this project, with slot")


def _cycle_goals(cycles: dict[str, Any], when: str) -> list[tuple[str, bool]]:
    floor, reference = cycles[FLOOR], cycles[REFERENCE]
    lines = []
    for name in PROJECTS:
        ours = cycles[name]
        wall_floor = ours["median_ms"] / floor["median_ms"]
        wall_reference = reference["median_ms"] / ours["median_ms"]
        if when == "quiet":
            lines.append(
                (f"{name}: wall at most 1.3x the floor: {wall_floor:.2f}x", wall_floor <= 1.3)
            )
        lines.append(
            (
                f"{name}, {when}: at least 1.5x faster than the reference design: "
                f"{wall_reference:.2f}x",
                wall_reference >= 1.5,
            )
        )
        ours_cpu, floor_cpu, reference_cpu = _cpu(ours), _cpu(floor), _cpu(reference)
        if ours_cpu is None or floor_cpu is None or reference_cpu is None:
            continue
        cpu_floor = ours_cpu / floor_cpu
        cpu_reference = reference_cpu / ours_cpu
        if when == "quiet":
            lines.append(
                (
                    f"{name}: CPU (client and server) at most 1.3x the floor's: {cpu_floor:.2f}x",
                    cpu_floor <= 1.3,
                )
            )
        lines.append(
            (
                f"{name}, {when}: at least 1.5x less CPU than the reference design: "
                f"{cpu_reference:.2f}x",
                cpu_reference >= 1.5,
            )
        )
    return lines


def goal_lines(results: dict[str, Any]) -> list[tuple[str, bool]]:
    lines = _cycle_goals(results["cycles"], "quiet")
    if "loaded_cycles" in results:
        lines += _cycle_goals(results["loaded_cycles"], "loaded")
    for row in results.get("throughput", []):
        if row["workers"] >= 8:
            lines.append(
                (
                    f"throughput, {row['workers']} workers: {row['ratio']:.2f}x the reference "
                    f"design's (at least 1.5x), {row['errors']} errors",
                    row["ratio"] >= 1.5 and row["errors"] == 0,
                )
            )
    for row in results.get("contention", []):
        lines.append(
            (
                f"contention, {row['processes']} processes: {row['errors']} errors, loser "
                f"p99 {row['p99_ratio']:.2f}x the SELECT 1 p99 (at most 5x)",
                row["errors"] == 0 and row["p99_ratio"] <= 5,
            )
        )
    if "scale" in results:
        s = results["scale"]
        worst = max(s["ratio"], s["slot_ratio"])
        lines.append(
            (
                f"scale at {s['log_rows']:,} job log rows, at most 1.2x empty: {s['ratio']:.2f}x, "
                f"with a slot {s['slot_ratio']:.2f}x",
                worst <= 1.2,
            )
        )
    if "dagster" in results:
        dagster = results["dagster"]
        for mode in ("in_process", "cli"):
            wall, memory = dagster[f"{mode}_wall_overhead"], dagster[f"{mode}_memory_overhead"]
            lines.append(
                (
                    f"Dagster overhead ({mode.replace('_', ' ')}): wall {wall:+.1%} "
                    f"(at most 5%), peak memory {memory:+.1%} (at most 10%)",
                    wall <= 0.05 and memory <= 0.10,
                )
            )
    return lines


def _cpu(timing: dict[str, Any]) -> float | None:
    if timing.get("client_cpu_ms") is None or timing.get("server_cpu_ms") is None:
        return None
    return timing["client_cpu_ms"] + timing["server_cpu_ms"]


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def cycle_table(cycles: dict[str, Any]) -> list[str]:
    floor = cycles[FLOOR]
    out = [
        "| approach | median ms | p99 ms | x floor | client CPU ms | server CPU ms | CPU ms "
        "| CPU x floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, timing in cycles.items():
        cpu, floor_cpu = _cpu(timing), _cpu(floor)
        cpu_ratio = "n/a" if cpu is None or not floor_cpu else f"{cpu / floor_cpu:.2f}"
        out.append(
            f"| {name} | {timing['median_ms']:.3f} | {timing['p99_ms']:.3f} | "
            f"{timing['median_ms'] / floor['median_ms']:.2f} | {_ms(timing['client_cpu_ms'])} | "
            f"{_ms(timing['server_cpu_ms'])} | {_ms(cpu)} | {cpu_ratio} |"
        )
    return out


def markdown(results: dict[str, Any], judge: bool) -> str:
    cycles = results["cycles"]
    out = [
        f"Server: {results['server']}. Repetitions per approach: "
        f"{next(iter(cycles.values()))['samples']}. Load average (1, 5, 15 min) before the "
        f"run: {results['load_before']}; after it: {results['load_after']}.",
        "",
        *cycle_table(cycles),
    ]
    if "loaded_cycles" in results:
        out += [
            "",
            f"The same, with {results['loaded_spinners']} CPU-bound processes spinning "
            f"throughout (load average then: {results['load_under_spinners']}):",
            "",
            *cycle_table(results["loaded_cycles"]),
        ]
    if results.get("throughput"):
        out += [
            "",
            "| workers (distinct locks) | this project cycles/s | reference design cycles/s "
            "| ratio | errors |",
            "|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {row['workers']} | {row['cycles_per_second']:.0f} | "
            f"{row['reference_cycles_per_second']:.0f} | {row['ratio']:.2f} | {row['errors']} |"
            for row in results["throughput"]
        ]
    if results.get("contention"):
        out += [
            "",
            "| losers | loser p50 ms | loser p99 ms | SELECT 1 p99 ms | p99 ratio | errors |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['processes']} | {r['loser_p50_ms']:.3f} | {r['loser_p99_ms']:.3f} | "
            f"{r['select1_p99_ms']:.3f} | {r['p99_ratio']:.2f} | {r['errors']} |"
            for r in results["contention"]
        ]
    if "scale" in results:
        s = results["scale"]
        out += [
            "",
            f"Scale: {s['empty_median_ms']:.3f} ms empty, {s['full_median_ms']:.3f} ms "
            f"with {s['lock_rows']:,} lock rows and {s['log_rows']:,} log rows "
            f"(ratio {s['ratio']:.2f}); with a slot {s['slot_empty_median_ms']:.3f} ms and "
            f"{s['slot_full_median_ms']:.3f} ms (ratio {s['slot_ratio']:.2f}); bulk load "
            f"{s['fill_seconds']:.0f} s.",
        ]
    if "renewal" in results:
        r = results["renewal"]
        out += [
            "",
            f"Renewal: {r['statements_per_lease_period']:.1f} statements per lease "
            f"period ({r['lease_seconds']:g} s lease held {r['held_seconds']:g} s).",
        ]
    if "dagster" in results:
        d = results["dagster"]
        out += [
            "",
            "| Dagster run | guarded ms | unguarded ms | wall | guarded MiB | "
            "unguarded MiB | memory |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for mode in ("in_process", "cli"):
            g, u = d[f"{mode}_guarded"], d[f"{mode}_unguarded"]
            out.append(
                f"| {mode.replace('_', ' ')} | {g['median_ms']:.0f} | "
                f"{u['median_ms']:.0f} | {d[f'{mode}_wall_overhead']:+.1%} | "
                f"{g['peak_mib']:.0f} | {u['peak_mib']:.0f} | "
                f"{d[f'{mode}_memory_overhead']:+.1%} |"
            )
    if judge:
        out += ["", "Goals:"]
        out += [f"- {'met' if met else 'NOT met'}: {text}" for text, met in goal_lines(results)]
    return "\n".join(out) + "\n"


def svg_chart(cycles: dict[str, dict[str, float]]) -> str:
    """Horizontal bars: median (solid) and p99 (pale) per approach, in milliseconds."""
    width, left, bar, gap = 760, 230, 14, 16
    top = 40
    height = top + len(cycles) * (2 * bar + gap) + 30
    scale = (width - left - 80) / max(t["p99_ms"] for t in cycles.values())
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="22" font-size="14" font-weight="bold">One guarded cycle '
        "(acquire, log, release, log): median and p99, ms</text>",
    ]
    y = top
    for name, timing in cycles.items():
        parts.append(f'<text x="10" y="{y + bar + 4}">{escape(name)}</text>')
        for value, colour, offset in (
            (timing["median_ms"], "#2b6cb0", 0),
            (timing["p99_ms"], "#90cdf4", bar),
        ):
            length = value * scale
            parts.append(
                f'<rect x="{left}" y="{y + offset}" width="{length:.1f}" '
                f'height="{bar - 2}" fill="{colour}"/>'
            )
            parts.append(
                f'<text x="{left + length + 4:.1f}" y="{y + offset + bar - 4}">{value:.3f}</text>'
            )
        y += 2 * bar + gap
    parts.append(
        f'<text x="{left}" y="{height - 10}" fill="#555">dark: median, light: p99</text></svg>'
    )
    return "\n".join(parts) + "\n"

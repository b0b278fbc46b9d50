"""The run's figures as a Markdown table, a JSON file and an SVG chart."""

from __future__ import annotations

from html import escape
from typing import Any


def goal_lines(results: dict[str, Any]) -> list[tuple[str, bool]]:
    cycles = results["cycles"]
    project = cycles["this project"]["median_ms"]
    lines = [
        (
            f"cycle at most 1.3x the floor: "
            f"{project / cycles['floor (2 INSERT commits)']['median_ms']:.2f}x",
            project / cycles["floor (2 INSERT commits)"]["median_ms"] <= 1.3,
        ),
        (
            f"at least 1.5x faster than the reference design: "
            f"{cycles['reference design']['median_ms'] / project:.2f}x",
            cycles["reference design"]["median_ms"] / project >= 1.5,
        ),
    ]
    for row in results.get("contention", []):
        lines.append(
            (
                f"contention, {row['processes']} processes: {row['errors']} errors, loser "
                f"p99 {row['p99_ratio']:.2f}x the SELECT 1 p99 (at most 5x)",
                row["errors"] == 0 and row["p99_ratio"] <= 5,
            )
        )
    if "scale" in results:
        ratio = results["scale"]["ratio"]
        lines.append((f"scale ratio at most 1.2: {ratio:.2f}", ratio <= 1.2))
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


def markdown(results: dict[str, Any], judge: bool) -> str:
    cycles = results["cycles"]
    floor = cycles["floor (2 INSERT commits)"]["median_ms"]
    out = [
        f"Server: {results['server']}. Repetitions per approach: "
        f"{next(iter(cycles.values()))['samples']}.",
        "",
        "| approach | median ms | p99 ms | x floor |",
        "|---|---:|---:|---:|",
    ]
    for name, timing in cycles.items():
        out.append(
            f"| {name} | {timing['median_ms']:.3f} | {timing['p99_ms']:.3f} | "
            f"{timing['median_ms'] / floor:.2f} |"
        )
    if results.get("throughput"):
        out += ["", "| workers (distinct locks) | guarded cycles/s | errors |", "|---:|---:|---:|"]
        out += [
            f"| {row['workers']} | {row['cycles_per_second']:.0f} | {row['errors']} |"
            for row in results["throughput"]
        ]
    if results.get("contention"):
        out += [
            "",
            "| losers | loser p50 ms | loser p99 ms | SELECT 1 p99 ms | errors |",
            "|---:|---:|---:|---:|---:|",
        ]
        out += [
            f"| {r['processes']} | {r['loser_p50_ms']:.3f} | {r['loser_p99_ms']:.3f} | "
            f"{r['select1_p99_ms']:.3f} | {r['errors']} |"
            for r in results["contention"]
        ]
    if "scale" in results:
        s = results["scale"]
        out += [
            "",
            f"Scale: {s['empty_median_ms']:.3f} ms empty, {s['full_median_ms']:.3f} ms "
            f"with {s['lock_rows']:,} lock rows and {s['log_rows']:,} log rows "
            f"(ratio {s['ratio']:.2f}).",
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

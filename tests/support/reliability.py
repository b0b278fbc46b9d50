"""The figures file of the reliability scenarios: each passing scenario writes what it saw, and
tools/reliability_report.py turns the file into RELIABILITY.md's table.

Written only when RELIABILITY_FIGURES names the file (`make reliability`, CI), so an ordinary
test run writes nothing into the working directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FIGURES_ENV = "RELIABILITY_FIGURES"


def machine() -> dict[str, Any]:
    """Which machine the figures were taken on, in the terms a reader compares machines by."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError):
        pass
    import dagster

    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "dagster": dagster.__version__,
    }


def current_test_command() -> str:
    """The pytest command that runs the test being run now, as a reader would type it."""
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    return f"pytest '{node}'" if node else "pytest -m scenario"


def record(
    key: str,
    *,
    title: str,
    done: str,
    checked: str,
    figures: dict[str, Any],
    command: str | None = None,
) -> None:
    """Write one scenario's row into the figures file (others' rows are kept)."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {
        "title": title,
        "done": done,
        "checked": checked,
        "figures": figures,
        "command": command or current_test_command(),
        "taken_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
    }
    # Scenarios may finish in parallel processes: read, update and write under a file lock.
    with open(path.with_suffix(path.suffix + ".lock"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"scenarios": {}}
        data["scenarios"][key] = row
        data["scenarios"] = dict(sorted(data["scenarios"].items()))
        # Figures keep the order the scenario gave them: the report shows them so.
        path.write_text(json.dumps(data, indent=2) + "\n")

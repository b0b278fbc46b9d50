"""An operator in the Dagster UI, clicking as a user does in a real headless Chromium, with the
webserver and the daemon on the test PostgreSQL: launch the heartbeat job and read the lock's
run tags, see why a run skipped, toggle the hourly schedule, find the stuck-lock check.
Screenshots of each step are saved in the test's temporary folder."""

from __future__ import annotations

import re
import time

import pytest

from orchestration.queues import HEARTBEAT_QUEUE
from support.browser import Browser, browser, dagster_services, requires_browser
from support.databases import Tables

LAUNCHPAD = "/locations/instance_one/jobs/heartbeat_job/playground"
SCHEDULE = "/locations/instance_one/schedules/heartbeat_job_hourly_schedule"
ASSET_CHECKS = "/assets/instance_one/heartbeat?view=checks"
SCHEDULE_STATE = """
{ scheduleOrError(scheduleSelector: {repositoryLocationName: "instance_one",
    repositoryName: "__repository__", scheduleName: "heartbeat_job_hourly_schedule"}) {
    ... on Schedule { scheduleState { status } } } }
"""


@pytest.fixture
def env(dagster_instance_env, default_databases) -> dict[str, str]:
    return {**dagster_instance_env(), "LOCK_DATABASE_URL": default_databases.create()}


def launch(ui: Browser, work_seconds: float | None = None) -> str:
    """The job's Launchpad, its config pasted in when given, Launch; returns the run's id from
    the run page the UI opens."""
    ui.page.goto(LAUNCHPAD)
    editor = ui.page.locator(".CodeMirror").first
    editor.wait_for()
    if work_seconds is not None:
        editor.click()
        ui.page.keyboard.press("Control+A")
        ui.page.keyboard.insert_text(
            f"ops:\n  record_heartbeat:\n    config:\n      work_seconds: {work_seconds}\n"
        )
    ui.page.get_by_role("button", name="Launch run").click()
    ui.page.wait_for_url("**/runs/*")
    return ui.page.url.rsplit("/", 1)[-1].split("?")[0]


def run_tags(ui: Browser, run_id: str, *texts: str) -> str:
    """The run's page once it shows `texts` (the daemon launches the run meanwhile), and its
    tags as "View tags and config" shows them; returns the dialog's text."""
    ui.page.goto(f"/runs/{run_id}")
    for text in texts:
        ui.see(text)
    ui.page.get_by_role("button", name="View tags and config").click()
    dialog = ui.page.get_by_role("dialog")
    dialog.get_by_text("dlock/outcome").first.wait_for()
    return dialog.inner_text()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.5)


@requires_browser
def test_an_operator_reads_and_steers_the_lock_from_the_ui(env, tmp_path):
    tables = Tables(env["LOCK_DATABASE_URL"])

    def statuses() -> list[str]:
        return tables.statuses(HEARTBEAT_QUEUE, "heartbeat_job")

    with dagster_services(env) as dagster_ui, browser(tmp_path, dagster_ui.url) as ui:
        first = launch(ui)
        ui.shot("1-launched")
        tags = run_tags(ui, first, "Success", "Lock heartbeat-queue/heartbeat_job acquired")
        ui.shot("2-run-tags")
        assert "dlock/outcome: completed" in tags and f"dlock/holder: instance-one/{first}" in tags
        assert re.search(r"dlock/fence: \d+", tags) and "dlock/since: " in tags

        # A run that holds the lock long enough for a second one to arrive while it works.
        holder = launch(ui, work_seconds=30)
        wait_for(lambda: statuses()[-1:] == ["Processing"], 120, "the long run holding the lock")
        skipped = launch(ui)

        # Meanwhile: the hourly schedule on and off by its toggle, and the check on the asset.
        ui.page.goto(SCHEDULE)
        toggle = ui.page.locator("tr", has_text="Running").locator("label").first
        toggle.click()
        wait_for(lambda: schedule_status(dagster_ui) == "RUNNING", 30, "the schedule starting")
        ui.shot("3-schedule-on")
        toggle.click()
        wait_for(lambda: schedule_status(dagster_ui) == "STOPPED", 30, "the schedule stopping")
        ui.shot("4-schedule-off")
        ui.page.goto(ASSET_CHECKS)
        ui.see("no_stuck_locks")
        ui.see("Fails when a lock's lease lapsed and nobody took over")
        ui.shot("5-asset-check")

        tags = run_tags(ui, skipped, "Success", "Skipped: Lock heartbeat-queue/heartbeat_job")
        ui.shot("6-skip-reason")
        assert "dlock/outcome: skipped" in tags and "dlock/reason: held" in tags
        assert f"dlock/holder: instance-one/{holder}" in tags
        ui.page.get_by_role("dialog").get_by_role("button", name="OK").click()
        ui.page.get_by_role("dialog").wait_for(state="detached")
        ui.see(f"Skipped: Lock heartbeat-queue/heartbeat_job: lock held by instance-one/{holder}")
        ui.shot("7-skip-log-line")
        wait_for(lambda: "Processing" not in statuses(), 120, "the long run finishing")
    assert statuses() == ["Completed", "Completed", "Exited"]
    for step in ("1-launched", "2-run-tags", "3-schedule-on", "5-asset-check", "6-skip-reason"):
        assert (tmp_path / f"{step}.png").stat().st_size > 0


def schedule_status(dagster_ui) -> str:
    return dagster_ui.graphql(SCHEDULE_STATE)["scheduleOrError"]["scheduleState"]["status"]

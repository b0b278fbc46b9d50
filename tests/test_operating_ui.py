"""An operator in the Dagster UI, clicking as a user does in a real headless Chromium, with the
webserver and the daemon on the test PostgreSQL: launch the heartbeat job and read the lock's
run tags, see why a run skipped, toggle the hourly schedule, find the stuck-lock check, terminate
the holder.
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


def see(ui: Browser, text: str, seconds: float = 120) -> None:
    """Wait for `text` longer than the harness does: on a loaded machine a run takes a while
    to start and end."""
    from playwright.sync_api import expect

    expect(ui.page.get_by_text(text).first).to_be_visible(timeout=seconds * 1000)


def run_tags(ui: Browser, run_id: str, *texts: str) -> str:
    """The run's page once it shows `texts`, and its tags as "View tags and config" shows
    them; returns the dialog's text. The page is loaded again once the texts show: a page
    opened while the run was going keeps the tags it loaded then (dlock/outcome: running)."""
    ui.page.goto(f"/runs/{run_id}")
    for text in texts:
        see(ui, text)
    ui.page.reload()
    see(ui, texts[0])
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

        # A run that holds the lock until it is terminated, and one that arrives meanwhile.
        holder = launch(ui, work_seconds=900)
        wait_for(lambda: statuses()[-1:] == ["Processing"], 180, "the long run holding the lock")
        skipped = launch(ui)

        # While it starts: the hourly schedule on and off by its toggle, the check on the asset.
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

        wait_for(lambda: len(statuses()) == 3, 240, "the second run reaching the lock")
        tags = run_tags(ui, skipped, "Success", "Skipped: Lock heartbeat-queue/heartbeat_job")
        ui.shot("6-skip-reason")
        assert "dlock/outcome: skipped" in tags and "dlock/reason: held" in tags
        assert f"dlock/holder: instance-one/{holder}" in tags
        ui.page.get_by_role("dialog").get_by_role("button", name="OK").click()
        ui.page.get_by_role("dialog").wait_for(state="detached")
        ui.see(f"Skipped: Lock heartbeat-queue/heartbeat_job: lock held by instance-one/{holder}")
        ui.shot("7-skip-log-line")

        # The holder is terminated from its run page: the lock is released, its row says why.
        ui.page.goto(f"/runs/{holder}")
        ui.page.get_by_role("button", name="Terminate").first.click()
        ui.page.get_by_role("dialog").get_by_role("button", name=re.compile("^Terminate")).click()
        wait_for(lambda: "Processing" not in statuses(), 120, "the terminated run releasing")
        see(ui, "Canceled")
        ui.shot("8-terminated")
    [first_row, holder_row, skipped_row] = tables.logs(HEARTBEAT_QUEUE, "heartbeat_job")
    assert first_row[0] == "Completed" and skipped_row[0] == "Exited"
    assert holder_row[0] == "Exited" and "Interrupted" in holder_row[4]
    assert tables.lock_row(HEARTBEAT_QUEUE, "heartbeat_job") is None
    for step in ("1-launched", "2-run-tags", "3-schedule-on", "5-asset-check", "6-skip-reason"):
        assert (tmp_path / f"{step}.png").stat().st_size > 0


def schedule_status(dagster_ui) -> str:
    return dagster_ui.graphql(SCHEDULE_STATE)["scheduleOrError"]["scheduleState"]["status"]

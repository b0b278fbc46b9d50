"""The deployment as users run it: schedules toggled from the CLI, two daemons on one
storage, and the webserver showing both locations."""

from __future__ import annotations

import time

import pytest

from orchestration.queues import HEARTBEAT_ASSET_QUEUE, HEARTBEAT_QUEUE
from support.browser import Browser, browser, dagster_services, requires_browser
from support.databases import Tables
from support.processes import daemon, dagster, finish, interrupt_all

LOCATIONS = ("instance_one", "instance_two")


@pytest.fixture
def env(dagster_instance_env, default_databases) -> dict[str, str]:
    """A fresh instance (schedule state is per instance) and a lock database of its own."""
    return {**dagster_instance_env(), "LOCK_DATABASE_URL": default_databases.create()}


def schedule_states(env: dict[str, str], location: str) -> dict[str, str]:
    code, out = finish(dagster(env, "schedule", "list", "-w", "workspace.yaml", "-l", location))
    assert code == 0, out
    states = {}
    for line in out.splitlines():
        if line.startswith("Schedule: "):
            name, state = line.removeprefix("Schedule: ").rstrip("]").split(" [")
            states[name] = state
    return states


def test_schedules_start_and_stop_from_the_cli(env):
    code, out = finish(
        dagster(
            env, "schedule", "start", "--start-all", "-w", "workspace.yaml", "-l", "instance_one"
        )
    )
    assert code == 0, out
    assert set(schedule_states(env, "instance_one").values()) == {"RUNNING"}
    code, out = finish(
        dagster(
            env,
            "schedule",
            "stop",
            "heartbeat_job_hourly_schedule",
            "-w",
            "workspace.yaml",
            "-l",
            "instance_one",
        )
    )
    assert code == 0, out
    assert schedule_states(env, "instance_one") == {
        "heartbeat_job_hourly_schedule": "STOPPED",
        "heartbeat_asset_job_hourly_schedule": "RUNNING",
        "dlock_prune_daily_schedule": "RUNNING",
        "stuck_lock_check_job_quarter_hourly_schedule": "RUNNING",
        "daily_digest_job_daily_schedule": "RUNNING",
    }
    assert set(schedule_states(env, "instance_two").values()) == {"STOPPED"}


def final_rows_by_slot(tables: Tables, queue: str, job: str) -> dict[str, list[str]]:
    by_slot: dict[str, list[str]] = {}
    for status, _, _, slot, _ in tables.logs(queue, job):
        by_slot.setdefault(slot, []).append(status)
    return by_slot


def test_two_daemons_and_two_locations_beat_once_per_tick(env, tmp_path):
    """Every tick, each daemon launches each location's run: four runs, one beat."""
    env = {**env, "HEARTBEAT_CRON": "* * * * *"}
    for location in LOCATIONS:
        code, out = finish(
            dagster(env, "schedule", "start", "--start-all", "-w", "workspace.yaml", "-l", location)
        )
        assert code == 0, out
    logs = [tmp_path / f"daemon-{n}.log" for n in (1, 2)]
    daemons = [daemon(env, "workspace.yaml", log) for log in logs]
    tables = Tables(env["LOCK_DATABASE_URL"])
    jobs = ((HEARTBEAT_QUEUE, "heartbeat_job"), (HEARTBEAT_ASSET_QUEUE, "heartbeat"))
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            slots = [final_rows_by_slot(tables, *job) for job in jobs]
            if all(any(len(rows) >= 2 for rows in by_slot.values()) for by_slot in slots):
                break
            assert all(d.poll() is None for d in daemons), logs[0].read_text()[-3000:]
            time.sleep(2)
        else:
            pytest.fail("no tick ran on both locations within four minutes")
        time.sleep(20)  # let the other daemon's duplicates of that tick finish too
    finally:
        interrupt_all(daemons)
    for job in jobs:
        by_slot = final_rows_by_slot(tables, *job)
        # A location whose schedule started just after a minute boundary skips that tick, so
        # the ticks both locations ran are the ones with two runs or more.
        shared = {slot: statuses for slot, statuses in by_slot.items() if len(statuses) >= 2}
        assert shared, (job, by_slot)
        for slot, statuses in by_slot.items():
            assert slot is not None and slot.endswith(":00.000000+00:00")
            assert statuses.count("Completed") <= 1, ("a tick ran twice", job, slot, statuses)
            assert set(statuses) <= {"Completed", "Exited", "Processing"}, (job, statuses)
        for slot, statuses in shared.items():
            assert statuses.count("Completed") == 1, (job, slot, statuses)
    beats, beaten_slots = tables.query(
        "SELECT count(*), count(DISTINCT slot) FROM heartbeats WHERE job_name = 'heartbeat_job'"
    )[0]
    assert beats == beaten_slots, "one beat per tick, never two"


WORKSPACE_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  ... on RepositoryLocation { repositories {
    jobs { name } schedules { name cronSchedule }
    assetNodes { assetKey { path } } } } } } } } }
"""


START_SCHEDULE = """
mutation { startSchedule(scheduleSelector: {repositoryLocationName: "instance_two",
    repositoryName: "__repository__", scheduleName: "heartbeat_job_hourly_schedule"}) {
  __typename ... on ScheduleStateResult { scheduleState { status } } } }
"""


def test_webserver_shows_both_locations_and_toggles_a_schedule(env):
    with dagster_services(env, daemon=False) as dagster_ui:
        workspace = dagster_ui.graphql(WORKSPACE_QUERY)["workspaceOrError"]
        # What the UI's schedule toggle sends.
        started = dagster_ui.graphql(START_SCHEDULE)["startSchedule"]
    entries = {
        entry["name"]: entry["locationOrLoadError"] for entry in workspace["locationEntries"]
    }
    assert set(entries) == set(LOCATIONS)
    for location_name, location in entries.items():
        [repository] = location["repositories"]
        assert {"heartbeat_job", "heartbeat_asset_job"} <= {j["name"] for j in repository["jobs"]}
        assert {(s["name"], s["cronSchedule"]) for s in repository["schedules"]} == {
            ("heartbeat_job_hourly_schedule", "0 * * * *"),
            ("heartbeat_asset_job_hourly_schedule", "0 * * * *"),
            ("dlock_prune_daily_schedule", "30 3 * * *"),
            ("stuck_lock_check_job_quarter_hourly_schedule", "*/15 * * * *"),
            ("daily_digest_job_daily_schedule", "0 1 * * *"),
        }
        assert sorted(node["assetKey"]["path"] for node in repository["assetNodes"]) == [
            [location_name, "daily_digest"],
            [location_name, "heartbeat"],
        ]
    assert started == {"__typename": "ScheduleStateResult", "scheduleState": {"status": "RUNNING"}}
    assert schedule_states(env, "instance_two")["heartbeat_job_hourly_schedule"] == "RUNNING"


@requires_browser
def test_browser_shows_locations_jobs_schedules_and_the_lock_resource(env, tmp_path):
    with dagster_services(env, daemon=False) as dagster_ui, browser(tmp_path, dagster_ui.url) as ui:
        # Each page is read once everything the checks below look for has rendered: the UI
        # fills a list row by row, and under load a row can come seconds after the first.
        ui.page.goto("/locations")
        for text in ("instance_one", "instance_two", "Loaded"):
            ui.see(text)
        locations = ui.page.content()
        ui.page.goto("/automation")
        for text in ("heartbeat_job_hourly_schedule", "heartbeat_asset_job_hourly_schedule"):
            ui.see(text)
        automation = ui.page.content()
        ui.page.goto("/locations/instance_two/jobs")
        for text in ("heartbeat_job", "heartbeat_asset_job"):
            ui.see(text)
        jobs = ui.page.content()
        ui.shot("jobs")
        ui.page.goto("/locations/instance_one/resources/lock")
        ui.see("DistributedLockResource")
        ui.shot("resource")
        resource_text = ui.page.inner_text("body")
        code_blocks = ui.page.locator("pre, code").all_inner_texts()
    assert "instance_one" in locations and "instance_two" in locations
    assert "Loaded" in locations
    assert "heartbeat_job_hourly_schedule" in automation
    assert "heartbeat_asset_job_hourly_schedule" in automation
    assert "heartbeat_job" in jobs and "heartbeat_asset_job" in jobs
    # The resource's docstring is its description there: Markdown, no reStructuredText left raw.
    assert "Runs a guarded op at most once at a time" in resource_text
    assert ".. code-block" not in resource_text and "::" not in resource_text
    assert any("lock.hold_for(context" in block for block in code_blocks), code_blocks


def open_heartbeat_asset(ui: Browser, location: str) -> None:
    """As a user finds it: the location's assets, the group, the asset's page."""
    ui.page.goto(f"/locations/{location}/assets")
    # Each group shows its count ("1 asset"), the daily digest's too: the heartbeat group's row
    # is the innermost element holding both its name and its count.
    row = ui.page.locator("div", has_text="heartbeat").filter(has=ui.page.get_by_text("1 asset"))
    row.last.get_by_text("1 asset").click()
    ui.page.get_by_role("link", name="heartbeat").click()
    ui.page.get_by_role("button", name="Materialize").first.wait_for()


def materialize_from_launchpad(ui: Browser, work_seconds: int) -> None:
    """Materialize's menu, "Open launchpad", the beat's work_seconds edited in the YAML."""
    ui.page.locator("button:right-of(:text('Materialize'))").first.click()
    ui.page.get_by_role("menuitem", name="Open launchpad").click()
    ui.page.locator(".CodeMirror-line", has_text="work_seconds").click()
    ui.page.keyboard.press("End")
    ui.page.keyboard.press("Backspace")  # the scaffolded default, 0
    ui.page.keyboard.type(str(work_seconds))
    ui.shot("launchpad")
    ui.page.get_by_role("dialog").get_by_role("button", name="Materialize").click()


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.5)


RUNS_AND_MATERIALIZATIONS = """
{ runsOrError { ... on Runs { results { runId status } } }
  one: assetOrError(assetKey: {path: ["instance_one", "heartbeat"]}) {
    ... on Asset { assetMaterializations { runId } } }
  two: assetOrError(assetKey: {path: ["instance_two", "heartbeat"]}) {
    ... on Asset { assetMaterializations { runId } } } }
"""


@requires_browser
def test_materialize_button_on_each_instance_contends_for_one_lock(env, tmp_path):
    """Each instance's heartbeat asset has a key of its own (the UI materializes neither when
    two locations share a key), and the two still take one lock: the second exits."""
    tables = Tables(env["LOCK_DATABASE_URL"])

    def statuses() -> list[str]:
        return tables.statuses(HEARTBEAT_ASSET_QUEUE, "heartbeat")

    with dagster_services(env) as dagster_ui, browser(tmp_path, dagster_ui.url) as ui:
        open_heartbeat_asset(ui, "instance_one")
        # Long enough for the second run to be queued, launched and reach the lock meanwhile,
        # also on a loaded machine (a run worker and its step process each import Dagster).
        materialize_from_launchpad(ui, work_seconds=45)
        ui.page.wait_for_url("**/runs/*")  # the launchpad opens the run it launched
        wait_for(lambda: statuses() == ["Processing"], 120, "instance_one's run holding the lock")
        open_heartbeat_asset(ui, "instance_two")
        ui.page.get_by_role("button", name="Materialize").first.click()
        ui.see("Launched run")
        ui.shot("second-launched")
        wait_for(
            lambda: len(statuses()) == 2 and "Processing" not in statuses(),
            150,
            "both runs finishing",
        )
        wait_for(
            lambda: all(
                run["status"] in ("SUCCESS", "FAILURE")
                for run in dagster_ui.graphql(RUNS_AND_MATERIALIZATIONS)["runsOrError"]["results"]
            ),
            60,
            "both runs ending",
        )
        outcome = dagster_ui.graphql(RUNS_AND_MATERIALIZATIONS)
        ui.page.goto("/runs")
        ui.see("Success")
        ui.shot("runs")
    [(first, first_app, *_), (second, second_app, _, _, second_remark)] = tables.logs(
        HEARTBEAT_ASSET_QUEUE, "heartbeat"
    )
    assert (first, first_app) == ("Completed", "instance-one")
    assert (second, second_app) == ("Exited", "instance-two")
    assert "lock held by instance-one/" in second_remark
    runs = outcome["runsOrError"]["results"]
    assert [run["status"] for run in runs] == ["SUCCESS", "SUCCESS"], runs
    assert len(outcome["one"]["assetMaterializations"]) == 1
    assert outcome["two"]["assetMaterializations"] == []

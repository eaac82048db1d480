"""The time-skipping test harness (durable.testing, docs/testing.md), through its own fixtures.

The worker under test polls only once a minute (``poll_interval=60``): a workflow that
completes within seconds of real time was woken by the clock's jumps (the test clock
verbs notify its queue), and never waited out a durable sleep in real time. The harness
connects as the tests' server role (it creates and drops its databases), as a user's
DATABASE_URL would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from durable import (
    Client,
    EventTimeout,
    NonRetryableError,
    NotATestDatabase,
    TaskFailed,
    WaitTimeout,
    Worker,
)
from durable.commands import Command
from durable.testing import AsyncTestEnvironment, TestEnvironment, assert_history, clock
from durable.workflow import DurableContext, SyncDurableContext

DAY = timedelta(days=1)
QUEUE = "harness"


def _charge(amount: int) -> dict[str, Any]:
    return {"charged": amount}


def _decline(amount: int) -> None:
    raise NonRetryableError(f"card declined for {amount}")


def make_worker() -> Worker:
    worker = Worker(queue=QUEUE, concurrency=4, poll_interval=60)

    @worker.durable_task
    async def month(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        """Three steps 10 days apart, then a 10-day event wait that times out: 30 days."""
        for n in range(3):
            if n:
                await ctx.sleep(10 * DAY, name=f"sleep{n}")
            await ctx.step(f"step{n}", _charge, n)
        try:
            await ctx.wait_for_event("never", timeout=10 * DAY)
        except EventTimeout:
            return {"timed_out": True}
        return {"timed_out": False}

    @worker.durable_task
    async def approval(input: dict[str, Any], ctx: DurableContext) -> Any:
        await ctx.step("ask", _charge, 1)
        return await ctx.wait_for_event(f"approve:{input['order']}", timeout=10 * DAY)

    @worker.durable_task
    async def declined(input: dict[str, Any], ctx: DurableContext) -> None:
        await ctx.sleep(DAY, name="grace")
        await ctx.step("charge", _decline, 5)

    @worker.durable_task
    def sync_nap(input: dict[str, Any], ctx: SyncDurableContext) -> str:
        ctx.sleep(10 * DAY, name="nap")
        return ctx.now().isoformat()

    attempts: list[int] = []

    @worker.task
    def flaky(input: dict[str, Any]) -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} fails")
        return len(attempts)

    return worker


@pytest.fixture
def durable_worker() -> Worker:
    return make_worker()


def _recorded(env: TestEnvironment, task_id: Any) -> dict[str, Any]:
    return {event.name: event.recorded_at for event in env.history(task_id)}


def test_a_30_day_workflow_runs_in_seconds_of_real_time(durable_env: TestEnvironment) -> None:
    started = time.monotonic()
    task = durable_env.start("month")
    assert durable_env.result(task) == {"timed_out": True}
    wall = time.monotonic() - started
    at = _recorded(durable_env, task)
    # each step ran 10 days (of the test clock) after the one before: the clock skipped
    for n in (1, 2):
        gap = at[f"step{n}"] - at[f"step{n - 1}"]
        assert 10 * DAY <= gap < 10 * DAY + timedelta(minutes=1), (n, gap)
    # the wait's event is recorded when it ends: at its timeout, 10 days after it began
    assert 10 * DAY <= at["never"] - at["step2"] < 10 * DAY + timedelta(minutes=1)
    assert at["never"] - at["step0"] >= 30 * DAY
    # nothing waited in real time: not a sleep (10 days), not a worker poll (60 s)
    assert wall < 20, wall
    durable_env.assert_history(
        task,
        [
            ("step", "step0", {"charged": 0}),
            ("sleep", "sleep1"),
            ("step", "step1"),
            ("sleep", "sleep2"),
            ("step", "step2"),
            ("wait", "never", {"payload": None, "timed_out": True}),
        ],
    )


def test_an_emitted_event_is_delivered_without_waiting_out_the_timeout(durable_env: TestEnvironment) -> None:
    started = durable_env.now()
    task = durable_env.start("approval", {"order": 7})
    state = durable_env.settle()  # the workflow went as far as it can: into its wait
    assert state.runnable == 0
    assert durable_env.task(task).status == "waiting"
    assert state.next_due is not None and state.next_due - started >= 10 * DAY
    assert durable_env.emit("approve:7", {"by": "ada"}) == 1
    assert durable_env.result(task) == {"by": "ada"}
    assert durable_env.now() - started < DAY, "the clock did not skip to the timeout"
    durable_env.assert_history(
        task, [("step", "ask"), ("wait", "approve:7", {"payload": {"by": "ada"}, "timed_out": False})]
    )


def test_advance_moves_the_clock_by_a_duration(durable_env: TestEnvironment) -> None:
    task = durable_env.start("sync_nap")  # a plain-def durable task: its calls go out on the sync pool
    durable_env.settle()
    assert durable_env.task(task).status == "sleeping"
    before = durable_env.now()
    after = durable_env.advance(4 * DAY)
    assert 4 * DAY <= after - before < 4 * DAY + timedelta(minutes=1)
    state = durable_env.settle()
    assert durable_env.task(task).status == "sleeping", "4 days on, the 10-day sleep goes on"
    assert state.next_due is not None and 5 * DAY < state.next_due - state.now <= 6 * DAY
    woke = durable_env.result(task)
    at = _recorded(durable_env, task)
    assert 10 * DAY <= durable_env.task(task).finished_at - at["nap"] < 10 * DAY + timedelta(minutes=1)
    assert isinstance(woke, str)


def test_a_failure_propagates(durable_env: TestEnvironment) -> None:
    task = durable_env.start("declined")
    with pytest.raises(TaskFailed) as failed:
        durable_env.result(task)
    assert failed.value.status == "failed"
    assert "card declined for 5" in str(failed.value.error)
    durable_env.assert_history(task, [("sleep", "grace"), ("step", "charge")])


def test_retries_skip_their_backoff(durable_env: TestEnvironment) -> None:
    backoff = {"kind": "fixed", "delay": 3600}
    task = durable_env.start("flaky", max_attempts=3, backoff=backoff)
    before = durable_env.now()
    assert durable_env.result(task) == 3
    assert durable_env.now() - before >= timedelta(hours=2), "two backoffs of an hour were skipped"
    assert durable_env.task(task).attempt == 3


def test_assert_history_says_what_differs(durable_env: TestEnvironment) -> None:
    task = durable_env.start("approval", {"order": 8})
    durable_env.emit("approve:8", "ok")
    assert durable_env.result(task) == "ok"
    with pytest.raises(AssertionError, match=r"event 1 is \('step', 'ask'\), expected \('step', 'charge'\)"):
        durable_env.assert_history(task, [("step", "charge"), ("wait", ...)])
    with pytest.raises(AssertionError, match="the log ends after 2 events"):
        durable_env.assert_history(task, [("step", ...), ("wait", ...), ("step", "more")])
    with pytest.raises(AssertionError, match="1 more events than expected"):
        assert_history(durable_env.history(task), [("step", "ask")])


def test_a_task_no_worker_runs_holds_the_clock(durable_env: TestEnvironment) -> None:
    task = durable_env.start("nobody_runs_this")
    with pytest.raises(WaitTimeout, match="holds the clock"):
        durable_env.result(task, timeout=0.3)


def test_the_async_environment(durable_worker: Worker, durable_database: str) -> None:
    async def main() -> dict[str, Any]:
        async with AsyncTestEnvironment(durable_worker, durable_database) as env:
            task = await env.start("month")
            result: dict[str, Any] = await env.result(task)
            await env.assert_history(task, [("step", "step0"), ("sleep", ...)] + [(..., ...)] * 4)
            assert (await env.now()) - (await env.history(task))[0].recorded_at >= 30 * DAY
            return result

    assert asyncio.run(main()) == {"timed_out": True}
    assert durable_worker.dsn is None, "the worker's own dsn is back"


def test_the_clock_verbs_refuse_outside_a_test_database(conn: psycopg.Connection[Any], db_url: str) -> None:
    """DU055 is NotATestDatabase; the client role is an operator (it may call the verbs)."""
    conn.execute("update durable.settings set test_clock = false")
    with Client(db_url) as client:
        commands: list[Command[Any]] = [clock.skip(), clock.advance(60), clock.state()]
        for command in commands:
            with pytest.raises(NotATestDatabase, match="works only in a test database"):
                client.run(command)
    offset = conn.execute("select test_clock_offset from durable.settings").fetchone()
    assert offset == (timedelta(0),)


USER_TEST = """\
import os

import pytest

from durable import Worker


@pytest.fixture
def durable_worker():
    worker = Worker(queue="q")

    @worker.durable_task
    async def nap(input, ctx):
        await ctx.sleep(86400 * 365)
        return "rested"

    return worker


def test_nap(durable_env):
    with open(os.environ["URL_FILE"], "w") as f:
        f.write(durable_env.url)
    assert durable_env.run("nap") == "rested"
"""


def test_the_fixture_drops_its_databases(server_url: str, tmp_path: Path) -> None:
    """A user's test run (its own pytest, the plugin loaded by name) leaves no database."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(USER_TEST))
    url_file = tmp_path / "url"
    env = {**os.environ, "DATABASE_URL": server_url, "URL_FILE": str(url_file)}
    env.pop("DURABLE_DATABASE_URL", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "durable.testing.plugin",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_user.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    dbname = psycopg.conninfo.conninfo_to_dict(url_file.read_text())["dbname"]
    assert isinstance(dbname, str) and dbname.startswith("durable_harnesst_")
    with psycopg.connect(server_url, autocommit=True) as admin:
        left = admin.execute(
            "select datname from pg_database where datname = %s or datname like %s",
            (dbname, f"durable\\_harness\\_%\\_{run_pid(dbname)}\\_%"),
        ).fetchall()
    assert left == [], "the test's database and the session's template are dropped"


def run_pid(dbname: str) -> str:
    """The pid in a database name of durable.testing.databases (the process that made it)."""
    return dbname.split("_")[3]

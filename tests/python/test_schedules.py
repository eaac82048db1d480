"""The schedule verbs through Client and AsyncClient (as the client role), their errors as
exceptions, and durable.next_wake (which idle workers poll by) including the next tick,
which an idle worker of plain tasks waits for.

The rules themselves are tested in tests/sql/test_schedules_*.sql, cron_next against
croniter in test_cron_oracle.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from durable import (
    AsyncClient,
    Client,
    CronNeverFires,
    InvalidArgument,
    InvalidCron,
    ScheduleRow,
    UnknownQueue,
    UnknownSchedule,
    UnknownTimeZone,
    Worker,
)
from durable.connections import async_pool, execute
from durable.workflow_commands import seconds_until_wake


def test_create_list_pause_resume_delete(client: Client) -> None:
    client.create_queue("sch")
    before = datetime.now(UTC)
    next_at = client.create_schedule(
        "nightly",
        "sch",
        "report",
        "30 2 * * *",
        tz="Europe/Berlin",
        input={"kind": "daily"},
        enqueue_options={"priority": 5},
        catch_up="all",
        catch_up_max=3,
        catch_up_grace=timedelta(minutes=2),
    )
    assert before < next_at <= before + timedelta(days=1, hours=2)
    assert next_at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M") in ("02:30", "03:00")
    [row] = client.list_schedules("sch")
    assert isinstance(row, ScheduleRow)
    assert (row.name, row.task_name, row.cron, row.tz, row.input, row.enqueue_options) == (
        "nightly",
        "report",
        "30 2 * * *",
        "Europe/Berlin",
        {"kind": "daily"},
        {"priority": 5},
    )
    assert (row.catch_up, row.catch_up_max, row.catch_up_grace, row.paused) == ("all", 3, 120.0, False)
    assert (row.next_run_at, row.last_tick_at, row.ticks) == (next_at, None, 0)
    assert [r.name for r in client.list_schedules()] == ["nightly"]
    assert client.pause_schedule("nightly", "sch") is True
    assert client.pause_schedule("nightly", "sch") is False
    assert client.list_schedules("sch")[0].paused is True
    assert client.resume_schedule("nightly", "sch") == next_at
    assert client.delete_schedule("nightly", "sch") is True
    assert client.delete_schedule("nightly", "sch") is False
    assert client.list_schedules("sch") == []


def test_errors_are_exceptions(client: Client) -> None:
    client.create_queue("sch-err")
    cases: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InvalidCron, "61 * * * *", {}),
        (InvalidCron, "@sometimes", {}),
        (CronNeverFires, "0 0 30 2 *", {}),
        (UnknownTimeZone, "@daily", {"tz": "Atlantis/Capital"}),
        (InvalidArgument, "@daily", {"catch_up": "later"}),
        (InvalidArgument, "@daily", {"enqueue_options": {"idempotency_key": "mine"}}),
    ]
    for error, cron, options in cases:
        with pytest.raises(error):
            client.create_schedule("bad", "sch-err", "job", cron, **options)
    with pytest.raises(UnknownQueue):
        client.create_schedule("bad", "no-such-queue", "job", "@daily")
    with pytest.raises(UnknownSchedule):
        client.pause_schedule("bad", "sch-err")
    with pytest.raises(UnknownSchedule):
        client.resume_schedule("bad", "sch-err")
    assert client.list_schedules("sch-err") == [], "nothing was written"


def test_cron_next(client: Client) -> None:
    after = datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    assert client.cron_next("30 2 * * *", "America/New_York", after) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    with pytest.raises(InvalidCron):
        client.cron_next("* * *", "UTC", after)


def test_async_client(db_url: str) -> None:
    async def scenario() -> list[Any]:
        async with AsyncClient(db_url) as c:
            await c.create_queue("sch-async")
            next_at = await c.create_schedule("hourly", "sch-async", "job", "@hourly", paused=True)
            rows = await c.list_schedules("sch-async")
            paused = rows[0].paused
            resumed = await c.resume_schedule("hourly", "sch-async")
            again = await c.pause_schedule("hourly", "sch-async")
            with pytest.raises(UnknownSchedule):
                await c.resume_schedule("nope", "sch-async")
            first = await c.cron_next("@hourly", "UTC", datetime(2026, 1, 1, 0, 30, tzinfo=UTC))
            deleted = await c.delete_schedule("hourly", "sch-async")
            return [next_at.minute, paused, resumed.minute, again, first, deleted]

    assert asyncio.run(scenario()) == [0, True, 0, True, datetime(2026, 1, 1, 1, 0, tzinfo=UTC), True]


def test_next_wake_includes_the_next_tick(db_url: str, worker_url: str) -> None:
    """An idle worker waits until durable.next_wake: a schedule's tick is in it, a paused one's not."""
    with psycopg.connect(db_url, autocommit=True) as c, psycopg.connect(worker_url, autocommit=True) as w:
        for conn in (c, w):
            conn.execute("set durable.fake_now = '2030-01-01 00:00:10+00'")
        c.execute("select durable.create_queue('sch-wake')")
        assert execute(w, seconds_until_wake("sch-wake")) is None
        c.execute("select durable.create_schedule('m', 'sch-wake', 'job', '*/5 * * * *')")
        assert execute(w, seconds_until_wake("sch-wake")) == pytest.approx(290.0)
        c.execute("select durable.pause_schedule('m', 'sch-wake')")
        assert execute(w, seconds_until_wake("sch-wake")) is None


def test_an_idle_plain_worker_waits_only_until_the_next_tick(db_url: str, worker_url: str) -> None:
    """A worker of plain (not durable) tasks asks next_wake too: a schedule may enqueue its tasks."""
    with Client(db_url) as c:
        c.create_queue("sch-idle")
        c.create_schedule("every-minute", "sch-idle", "job", "* * * * *")

    async def idle_wait() -> float:
        worker = Worker(worker_url, "sch-idle", poll_interval=300)

        @worker.task
        def job(input: dict[str, Any]) -> None:
            return None

        worker._pool = await async_pool(worker_url)
        try:
            return await worker._idle_wait()
        finally:
            await worker._pool.close()

    assert 0 < asyncio.run(idle_wait()) <= 60, "it waits until the tick, not its 300 s poll interval"

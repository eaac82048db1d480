"""A time-skipping test harness for your own workflows (docs/testing.md).

A test gets a migrated test database of its own, your :class:`~durable.Worker` running on
it in-process, and a clock that jumps over durable sleeps and event-wait timeouts as soon
as no task can run, so a workflow that sleeps for 30 days completes in milliseconds::

    @pytest.fixture
    def durable_worker():
        return myapp.worker

    def test_trial(durable_env):
        task = durable_env.start("subscription", {"user": "ada"})
        assert durable_env.result(task) == {"charged": True}
        durable_env.assert_history(task, [("step", "welcome"), ("sleep", ...), ("step", "charge")])

The fixtures come from :mod:`durable.testing.plugin` (a pytest plugin installed with
durable). Without pytest: ``with TestEnvironment(worker, create_test_database(url)) as env``,
or :class:`AsyncTestEnvironment` with ``async with``. The clock is the database's shared
test clock (plpgsql/test_clock.sql): only a database marked as a test database has one.
"""

from __future__ import annotations

from .clock import ClockState
from .databases import create_test_database, create_test_template, drop_test_database
from .environment import AsyncTestEnvironment, TestEnvironment
from .history import assert_history

__all__ = [
    "AsyncTestEnvironment",
    "ClockState",
    "TestEnvironment",
    "assert_history",
    "create_test_database",
    "create_test_template",
    "drop_test_database",
]

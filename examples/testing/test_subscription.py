"""Testing a month-long workflow in milliseconds with durable.testing (docs/testing.md).

``durable_env`` (a fixture of durable.testing) runs the Worker of ``durable_worker``
(conftest.py) on a fresh test database whose clock jumps over durable sleeps and event
timeouts as soon as no task can run.
"""

from __future__ import annotations

from datetime import timedelta

from durable.testing import TestEnvironment


def test_unpaid_subscription_is_cancelled_after_30_days(durable_env: TestEnvironment) -> None:
    started = durable_env.now()
    task = durable_env.start("subscription", {"user": "ada"})
    result = durable_env.result(task)
    assert result["status"] == "cancelled"
    durable_env.assert_history(
        task,
        [
            ("step", "welcome"),
            ("sleep", "trial"),
            ("step", "reminder"),
            ("sleep", "grace"),
            ("wait", "paid:ada", {"payload": None, "timed_out": True}),
            ("step", "cancel"),
            ("now", ...),
        ],
    )
    assert durable_env.now() - started >= timedelta(days=30)


def test_paid_subscription_is_activated(durable_env: TestEnvironment) -> None:
    task = durable_env.start("subscription", {"user": "grace"})
    durable_env.emit("paid:grace", {"plan": "pro"})  # an event latches: the wait 20 days on gets it
    assert durable_env.result(task) == {"status": "active", "plan": "pro"}
    history = durable_env.history(task)
    assert [event.name for event in history][-2:] == ["paid:grace", "activate"]

"""Worker(prefetch=n): up to n tasks claimed ahead wait for a slot; never more than
``concurrency`` run at once; a prefetched task that never started is released at
shutdown (no attempt spent, its function never called); without prefetch a worker claims
only for its free slots."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

from pyclient_support import ThreadedWorker, wait_until

from durable import Client, TaskSpec, Worker

StartWorker = Callable[[Worker], ThreadedWorker]


def count(client: Client, status: str) -> int:
    return client.queue_stats("q").get(status, 0)


def test_prefetched_tasks_wait_for_a_slot_and_run_one_at_a_time(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = Worker(
        worker_url, "q", concurrency=1, prefetch=2, poll_interval=0.1, name=f"t-{uuid.uuid4().hex[:6]}"
    )
    gate = threading.Event()
    lock = threading.Lock()
    state = {"now": 0, "most": 0}
    ran: list[int] = []

    @worker.task
    def hold(input: dict[str, Any]) -> int:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        assert gate.wait(30)
        with lock:
            state["now"] -= 1
            ran.append(int(input["i"]))
        return int(input["i"])

    client.create_queue("q")
    ids = client.enqueue_many("q", [TaskSpec("hold", {"i": i}) for i in range(5)])
    running = start_worker(worker)
    # one runs, two more are claimed ahead: three leases held, the rest pending
    wait_until(
        lambda: count(client, "running") == 3 and state["now"] == 1, what="three tasks claimed by the worker"
    )
    assert count(client, "pending") == 2
    assert state["most"] == 1
    gate.set()
    assert [client.wait(t, timeout=30) for t in ids] == list(range(5))
    assert state["most"] == 1, "never more than concurrency ran at once"
    assert sorted(ran) == list(range(5))
    running.stop()


def test_a_prefetched_task_that_never_started_is_released_at_shutdown(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = Worker(
        worker_url,
        "q",
        concurrency=1,
        prefetch=1,
        poll_interval=0.1,
        shutdown_grace=30,
        name=f"t-{uuid.uuid4().hex[:6]}",
    )
    started = threading.Event()
    gate = threading.Event()
    ran: list[str] = []

    @worker.task
    def hold(input: dict[str, Any]) -> str:
        ran.append(str(input["name"]))
        started.set()
        assert gate.wait(30)
        return "done"

    client.create_queue("q")
    first = client.enqueue("q", "hold", {"name": "first"})
    second = client.enqueue("q", "hold", {"name": "second"})
    running = start_worker(worker)
    assert started.wait(30)
    wait_until(lambda: client.get_task(second).status == "running", what="the second task claimed ahead")
    stopper = threading.Thread(target=running.stop)
    stopper.start()
    # the one waiting for a slot goes back at once, while the running one may finish
    wait_until(lambda: client.get_task(second).status == "pending", what="the prefetched task released")
    gate.set()
    stopper.join(60)
    assert not stopper.is_alive()
    assert client.get_task(first).status == "completed"
    info = client.get_task(second)
    assert (info.status, info.failures) == ("pending", 0)
    [attempt] = info.attempts
    assert attempt.outcome == "released"
    assert ran == ["first"], "the prefetched task's function never ran"


def test_without_prefetch_a_worker_claims_only_for_its_free_slots(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = Worker(worker_url, "q", concurrency=2, poll_interval=0.1, name=f"t-{uuid.uuid4().hex[:6]}")
    gate = threading.Event()
    both = threading.Barrier(2, timeout=30)

    @worker.task
    def hold(input: dict[str, Any]) -> None:
        both.wait()
        assert gate.wait(30)

    client.create_queue("q")
    ids = client.enqueue_many("q", [TaskSpec("hold", {}) for _ in range(4)])
    running = start_worker(worker)
    wait_until(lambda: count(client, "running") == 2, what="two tasks running")
    assert count(client, "pending") == 2
    gate.set()
    for t in ids:
        client.wait(t, timeout=30)
    running.stop()

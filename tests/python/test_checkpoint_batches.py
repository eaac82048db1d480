"""Group commit of checkpoints (durable.checkpoints): the checkpoints that come in while
others are on their way go together in one durable.checkpoint_many; each caller gets its
own answer (or its own element's exception) once the batch has committed; an exception of
the call reaches every caller of the batch; a caller gone before its batch left is not
sent. And a worker running many durable tasks at once records them all, in batches."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, TaskSpec, Worker
from durable import workflow_commands as wc
from durable.checkpoints import CheckpointBatcher
from durable.commands import Command
from durable.connections import execute_async
from durable.errors import LeaseLost, PayloadTooLarge
from durable.workflow import DurableContext

StartWorker = Callable[[Worker], ThreadedWorker]


def _cp(n: int) -> wc.Checkpoint:
    return wc.checkpoint(uuid.UUID(int=n), uuid.UUID(int=1000 + n), 1, "step", f"s{n}", str(n))


class FakeDatabase:
    """A ``call`` whose answers the test releases: every command it got, in order."""

    def __init__(self) -> None:
        self.sent: list[Command[Any]] = []
        self.gates: list[asyncio.Future[Any]] = []
        self._more = asyncio.Event()

    async def call(self, command: Command[Any]) -> Any:
        self.sent.append(command)
        self._more.set()
        gate: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.gates.append(gate)
        return await gate

    async def until_sent(self, n: int) -> None:
        while len(self.sent) < n:
            self._more.clear()
            await asyncio.wait_for(self._more.wait(), 5)


def test_checkpoints_that_wait_go_together_each_answered_after_the_batch() -> None:
    async def scenario() -> None:
        db = FakeDatabase()
        batcher = CheckpointBatcher(db.call, in_flight=1)
        first = asyncio.create_task(batcher.checkpoint(_cp(1)))
        await db.until_sent(1)
        assert db.sent[0].sql.startswith("select durable.checkpoint(")  # alone: the plain verb
        waiting = [asyncio.create_task(batcher.checkpoint(_cp(n))) for n in (2, 3, 4)]
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(db.sent) == 1, "nothing else leaves while one call is on its way"
        db.gates[0].set_result({"seq": 1, "name": "s1"})
        assert await first == {"seq": 1, "name": "s1"}
        await db.until_sent(2)
        batch = db.sent[1]
        assert "durable.checkpoint_many(" in batch.sql
        assert batch.params[0] == [uuid.UUID(int=n) for n in (2, 3, 4)]  # tasks, in arrival order
        assert batch.params[1] == [uuid.UUID(int=1000 + n) for n in (2, 3, 4)]  # each its own token
        assert batch.params[4] == ["s2", "s3", "s4"]
        assert not any(w.done() for w in waiting), "no caller is answered before its batch committed"
        lost = LeaseLost("durable: lease lost")
        db.gates[1].set_result([{"name": "s2"}, lost, {"name": "s4"}])
        assert await waiting[0] == {"name": "s2"}
        with pytest.raises(LeaseLost):
            await waiting[1]
        assert await waiting[2] == {"name": "s4"}

    asyncio.run(scenario())


def test_checkpoints_made_in_one_turn_of_the_loop_leave_together() -> None:
    async def scenario() -> None:
        db = FakeDatabase()
        batcher = CheckpointBatcher(db.call, in_flight=2)  # nothing on its way: room for two calls
        together = [asyncio.create_task(batcher.checkpoint(_cp(n))) for n in (1, 2, 3)]
        await db.until_sent(1)
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(db.sent) == 1, "the three made in one turn left in one call, not the first alone"
        assert "durable.checkpoint_many(" in db.sent[0].sql
        assert db.sent[0].params[4] == ["s1", "s2", "s3"]
        db.gates[0].set_result([{"name": "s1"}, {"name": "s2"}, {"name": "s3"}])
        assert [await t for t in together] == [{"name": "s1"}, {"name": "s2"}, {"name": "s3"}]
        # one made alone still leaves alone, as the plain verb
        lone = asyncio.create_task(batcher.checkpoint(_cp(4)))
        await db.until_sent(2)
        assert db.sent[1].sql.startswith("select durable.checkpoint(")
        db.gates[1].set_result({"name": "s4"})
        assert await lone == {"name": "s4"}

    asyncio.run(scenario())


def test_a_checkpoint_cancelled_while_its_turn_gathers_leaves_the_others_sent() -> None:
    async def scenario() -> None:
        db = FakeDatabase()
        batcher = CheckpointBatcher(db.call, in_flight=2)
        first = asyncio.create_task(batcher.checkpoint(_cp(1)))
        await asyncio.sleep(0)  # first now waits for its turn to end
        others = [asyncio.create_task(batcher.checkpoint(_cp(n))) for n in (2, 3)]
        first.cancel()
        await db.until_sent(1)
        assert db.sent[0].params[4] == ["s2", "s3"]
        db.gates[0].set_result([{"name": "s2"}, {"name": "s3"}])
        assert [await t for t in others] == [{"name": "s2"}, {"name": "s3"}]
        assert first.cancelled()

    asyncio.run(scenario())


def test_an_exception_of_the_call_reaches_every_caller_of_the_batch() -> None:
    async def scenario() -> None:
        db = FakeDatabase()
        batcher = CheckpointBatcher(db.call, in_flight=1)
        first = asyncio.create_task(batcher.checkpoint(_cp(1)))
        await db.until_sent(1)
        waiting = [asyncio.create_task(batcher.checkpoint(_cp(n))) for n in (2, 3)]
        await asyncio.sleep(0)
        db.gates[0].set_result({"name": "s1"})
        await first
        await db.until_sent(2)
        db.gates[1].set_exception(psycopg.OperationalError("server closed the connection"))
        for w in waiting:
            with pytest.raises(psycopg.OperationalError):
                await w
        # and the batcher goes on: the next checkpoint is sent at once
        after = asyncio.create_task(batcher.checkpoint(_cp(5)))
        await db.until_sent(3)
        db.gates[2].set_result({"name": "s5"})
        assert await after == {"name": "s5"}

    asyncio.run(scenario())


def test_a_caller_gone_before_its_batch_left_is_not_sent() -> None:
    async def scenario() -> None:
        db = FakeDatabase()
        batcher = CheckpointBatcher(db.call, in_flight=1)
        first = asyncio.create_task(batcher.checkpoint(_cp(1)))
        await db.until_sent(1)
        gone = asyncio.create_task(batcher.checkpoint(_cp(2)))
        stays = asyncio.create_task(batcher.checkpoint(_cp(3)))
        await asyncio.sleep(0)
        gone.cancel()
        db.gates[0].set_result({"name": "s1"})
        await first
        await db.until_sent(2)
        assert db.sent[1].sql.startswith("select durable.checkpoint(")  # only one left: alone
        assert db.sent[1].params[4] == "s3"
        db.gates[1].set_result({"name": "s3"})
        assert await stays == {"name": "s3"}
        assert gone.cancelled()

    asyncio.run(scenario())


def test_a_batch_against_the_database_fences_each_element(admin_url: str, worker_url: str) -> None:
    with Client(admin_url) as client:
        client.create_queue("q")
        client.enqueue_many("q", [TaskSpec("wf", {}, durable=True) for _ in range(3)])
        with psycopg.connect(worker_url, autocommit=True) as conn:
            claimed = conn.execute(
                "select task_id, lease_token from durable.claim('q', 'w', 3, 60)"
            ).fetchall()
    (a, a_token), (b, b_token), (c, c_token) = sorted(claimed)

    async def scenario() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(worker_url, autocommit=True) as aconn:
            lock = asyncio.Lock()

            async def call(command: Command[Any]) -> Any:
                async with lock:
                    return await execute_async(aconn, command)

            batcher = CheckpointBatcher(call, in_flight=1)
            answers = await asyncio.gather(
                batcher.checkpoint(wc.checkpoint(a, a_token, 1, "step", "one", "1")),
                batcher.checkpoint(wc.checkpoint(b, b_token, 1, "step", "one", '"b"')),
                batcher.checkpoint(wc.checkpoint(c, uuid.uuid4(), 1, "step", "one", "3")),  # not its lease
                batcher.checkpoint(wc.checkpoint(a, a_token, 2, "now", "clock")),
                batcher.checkpoint(wc.checkpoint(c, c_token, 1, "step", "big", '"' + "x" * 2_000_000 + '"')),
                return_exceptions=True,
            )
            return list(answers)

    answers = asyncio.run(scenario())
    assert answers[0] == {"seq": 1, "kind": "step", "name": "one", "outcome": "ok", "result": 1}
    assert answers[1] == {"seq": 1, "kind": "step", "name": "one", "outcome": "ok", "result": "b"}
    assert isinstance(answers[2], LeaseLost)
    assert answers[3]["seq"] == 2 and answers[3]["kind"] == "now"
    assert isinstance(answers[4], PayloadTooLarge)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        events = conn.execute(
            "select task_id, seq, name from durable.events order by task_id, seq"
        ).fetchall()
    assert events == [(a, 1, "one"), (a, 2, "clock"), (b, 1, "one")]


def test_a_worker_running_many_durable_tasks_records_their_steps_in_batches(
    admin_url: str, worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(f'alter database "{dbname}" set track_functions = pl')
    worker = Worker(worker_url, "q", concurrency=10, poll_interval=0.1, name=f"test-{uuid.uuid4().hex[:6]}")
    runs: list[tuple[int, int]] = []

    async def nothing() -> None:
        await asyncio.sleep(0)

    @worker.durable_task
    async def steps(input: dict[str, Any], ctx: DurableContext) -> int:
        for s in range(8):
            await ctx.step(f"s{s}", nothing)
            runs.append((input["i"], s))
        return int(input["i"])

    client.create_queue("q")
    ids = client.enqueue_many("q", [TaskSpec("steps", {"i": i}, durable=True) for i in range(20)])
    running = start_worker(worker)
    assert [client.wait(t, timeout=60) for t in ids] == list(range(20))
    running.stop()  # its connections close: their function counts reach the statistics
    assert sorted(runs) == [(i, s) for i in range(20) for s in range(8)], "every step ran once"
    for t in ids:
        assert [(e.seq, e.name) for e in client.history(t)] == [(s + 1, f"s{s}") for s in range(8)]
    with psycopg.connect(admin_url, autocommit=True) as conn:

        def batches() -> int:
            conn.execute("select pg_stat_clear_snapshot()")
            row = conn.execute(
                "select coalesce(sum(calls), 0) from pg_stat_user_functions"
                " where schemaname = 'durable' and funcname = 'checkpoint_many'"
            ).fetchone()
            return int(row[0]) if row else 0

        assert wait_until(batches, timeout=10, what="the statistics of checkpoint_many") > 0, (
            "ten tasks stepping at once sent some of their checkpoints together"
        )

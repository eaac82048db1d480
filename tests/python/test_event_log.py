"""The client side of the worker protocol, without a database: the calls an EventLog sends
for a durable task's code and what it makes of the three answers (an event, suspended, a
non-determinism), against scripted answers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import pytest

from durable.commands import Command
from durable.errors import NonDeterminismError
from durable.workflow import DurableContext, Suspended

TASK = uuid.UUID(int=1)
TOKEN = uuid.UUID(int=2)
CHILD = uuid.UUID(int=3)

#: a verb's answer to one call, from its name and parameters
Answer = Callable[[str, tuple[Any, ...]], Mapping[str, Any]]


def verb(command: Command[Any]) -> str:
    """The durable verb a command calls: 'select durable.checkpoint(...' -> 'checkpoint'."""
    return command.sql.split("durable.", 1)[1].split("(", 1)[0]


class Database:
    """Answers each call with ``answer(verb, params)``; keeps what was sent."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.sent: list[tuple[str, tuple[Any, ...]]] = []

    async def call(self, command: Command[Any]) -> Any:
        name = verb(command)
        self.sent.append((name, command.params))
        return command.parse([(dict(self.answer(name, command.params)),)])

    def verbs(self) -> list[str]:
        return [name for name, _ in self.sent]


def context(db: Database, history: list[dict[str, Any]] | None = None) -> DurableContext:
    return DurableContext(
        call=db.call,
        task_id=TASK,
        lease_token=TOKEN,
        queue="q",
        task_name="t",
        attempt=2,
        history=history,
    )


def event(seq: int, kind: str, name: str, result: Any, outcome: str = "ok") -> dict[str, Any]:
    return {"seq": seq, "kind": kind, "name": name, "outcome": outcome, "result": result}


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


MISMATCH = {
    "nondeterminism": {
        "task_id": str(TASK),
        "seq": 1,
        "recorded": {"kind": "step", "name": "a", "input_hash": None},
        "presented": {"kind": "step", "name": "b", "input_hash": None},
        "message": f'non-determinism in task {TASK} at event 1: recorded step "a", the code did step "b"',
    }
}


def test_a_re_run_presents_its_replayed_calls_with_their_arguments_then_completes() -> None:
    history = [
        event(1, "step", "a", {"x": 1}),
        event(2, "spawn", "child", {"task_id": str(CHILD), "queue": "other"}),
        event(3, "children", "children", [{"task_id": str(CHILD), "status": "completed", "output": 7}]),
    ]

    answers: dict[str, Mapping[str, Any]] = {"replay_check": {"checked": 3}, "complete": {"completed": True}}

    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        return answers[name]

    db = Database(answer)
    ctx = context(db, history)

    async def code() -> Any:
        a = await ctx.step("a", lambda: pytest.fail("a recorded step runs again"))
        child = await ctx.spawn("child", {"n": 1}, queue="other")
        outcomes = await ctx.wait_children([child])
        return a, child.task_id, outcomes

    a, child_id, outcomes = run(code())
    assert a == {"x": 1} and child_id == CHILD and outcomes[0]["output"] == 7
    assert db.sent == []  # replayed calls cost no round trip until the code ends
    # the code made no new call: the completion presents them all first
    run(ctx.complete('{"done":true}'))
    assert db.verbs() == ["replay_check", "complete"]
    presented = json.loads(db.sent[0][1][2])
    assert presented == [
        {"seq": 1, "kind": "step", "name": "a"},
        {"seq": 2, "kind": "spawn", "name": "child", "queue": "other", "input": {"n": 1}},
        {"seq": 3, "kind": "children", "name": "children", "children": [str(CHILD)]},
    ]
    assert db.sent[1][1] == (TASK, TOKEN, '{"done":true}')  # no count of consumed events


def test_the_first_new_call_presents_the_replayed_ones_first_and_values_come_from_the_server() -> None:
    answers = {
        ("now", 2): "2030-01-01T00:00:00+00:00",
        ("random", 3): 0.25,
        ("uuid", 4): str(CHILD),
    }

    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        if name == "replay_check":
            return {"checked": 1}
        _, _, seq, kind, label, result, error = params
        assert result is None and error is None  # the server supplies the value
        return event(seq, kind, label, answers[kind, seq])

    db = Database(answer)
    ctx = context(db, [event(1, "step", "a", 1)])

    async def code() -> Any:
        await ctx.step("a", lambda: 0)
        return await ctx.now(), await ctx.random(), await ctx.uuid4()

    at, drawn, made = run(code())
    assert (at.year, drawn, made) == (2030, 0.25, CHILD)
    assert db.verbs() == ["replay_check", "checkpoint", "checkpoint", "checkpoint"]
    assert [p[3:5] for _, p in db.sent[1:]] == [("now", "now"), ("random", "random"), ("uuid", "uuid4")]


def test_a_step_records_its_value_and_returns_it_as_recorded() -> None:
    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        _, _, seq, kind, label, _, _ = params
        return event(seq, kind, label, {"as": "stored"})

    db = Database(answer)
    ctx = context(db)
    assert run(ctx.step("s", lambda: {"as": "given"})) == {"as": "stored"}
    assert db.sent[0][1][5] == '{"as":"given"}'


def test_a_non_determinism_answer_raises_and_ends_the_attempt_without_more_calls() -> None:
    db = Database(lambda name, params: MISMATCH)
    ctx = context(db, [event(1, "step", "a", 1)])
    ran: list[str] = []

    async def code() -> None:
        await ctx.step("b", lambda: ran.append("b"))  # replayed: gets event 1's result
        await ctx.step("c", lambda: ran.append("c"))  # new: presents event 1 first

    with pytest.raises(NonDeterminismError) as raised:
        run(code())
    assert ran == []  # found before any new side effect
    assert '"a"' in str(raised.value) and '"b"' in str(raised.value)
    assert raised.value.detail is not None and json.loads(raised.value.detail)["seq"] == 1
    assert ctx.log.failed is raised.value
    # the task has been failed in the database: nothing more is sent for the attempt
    with pytest.raises(NonDeterminismError):
        run(ctx.step("d", lambda: ran.append("d")))
    with pytest.raises(NonDeterminismError):
        run(ctx.complete(None))
    assert db.verbs() == ["replay_check"] and ran == []


def test_a_completion_that_leaves_history_unchecked_raises_the_non_determinism() -> None:
    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        return {"checked": 1} if name == "replay_check" else MISMATCH

    db = Database(answer)
    ctx = context(db, [event(1, "step", "a", 1), event(2, "step", "b", 2)])
    run(ctx.step("a", lambda: 0))  # the code ends before event 2
    with pytest.raises(NonDeterminismError):
        run(ctx.complete(None))
    assert db.verbs() == ["replay_check", "complete"] and ctx.log.failed is not None


def test_a_sleep_that_suspends_ends_the_attempt_and_one_whose_time_came_returns() -> None:
    def answer(name: str, params: tuple[Any, ...]) -> Mapping[str, Any]:
        _, _, seq, label, seconds, _ = params
        if seconds:
            return {"seq": seq, "kind": "sleep", "name": label, "suspended": True}
        return event(seq, "sleep", label, {"until": "2030-01-01T00:00:00+00:00"})

    db = Database(answer)
    ctx = context(db)
    run(ctx.sleep(0))
    with pytest.raises(Suspended):
        run(ctx.sleep(60, name="long"))
    assert db.verbs() == ["sleep", "sleep"]


def test_a_db_du020_marks_the_attempt_failed_too() -> None:
    async def call(command: Command[Any]) -> Any:
        raise NonDeterminismError("durable: non-determinism in task ...")

    ctx = DurableContext(
        call=call, task_id=TASK, lease_token=TOKEN, queue="q", task_name="t", attempt=1, history=None
    )
    with pytest.raises(NonDeterminismError):
        run(ctx.now())
    assert ctx.log.failed is not None

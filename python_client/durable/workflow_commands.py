"""The SQL verbs of durable tasks (event log, suspension, restarts), without I/O.

Like :mod:`durable.commands`: each function returns a :class:`~durable.commands.Command`
that the clients and the worker run. The rules (dense seq, determinism, fencing,
suspension) are PL/pgSQL; nothing here decides anything. Every durable verb answers one
JSON object: the event ``{"seq", "kind", "name", "outcome", "result"}``, ``{"seq", "kind",
"name", "suspended": true}`` or ``{"nondeterminism": {...}}`` (:mod:`durable.workflow`
says what each means).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import errors
from .commands import Command, Row, Seconds, scalar, to_json, to_seconds
from .errors import DurableError


def _json_object(rows: list[Row]) -> dict[str, Any]:
    value = scalar(rows)
    return dict(value) if isinstance(value, Mapping) else {}


# ---------------------------------------------------------------------------------------
# worker verbs (fenced by the lease token)


@dataclass(frozen=True, slots=True)
class Checkpoint(Command[dict[str, Any]]):
    """A ``durable.checkpoint`` command: its ``params`` are one element of
    :func:`checkpoint_many`, so a worker may send it together with the checkpoints of its
    other tasks (:mod:`durable.checkpoints`)."""


def checkpoint(
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    seq: int,
    kind: str,
    name: str,
    result_json: str | None = None,
    error_json: str | None = None,
) -> Checkpoint:
    """Record event ``seq``: a step's ``result_json`` (or ``error_json``), or a ``now``,
    ``random`` or ``uuid`` event, whose value the server supplies (no result).

    Returns the event ``{"seq", "kind", "name", "outcome", "result"}`` (new, or already
    recorded), or ``{"nondeterminism": {...}}``: the task has been failed."""
    return Checkpoint(
        "select durable.checkpoint(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
        (task_id, lease_token, seq, kind, name, result_json, error_json),
        _json_object,
    )


def _checkpoint_answers(rows: list[Row]) -> list[dict[str, Any] | DurableError]:
    return [
        errors.from_sqlstate(code, message, detail) if code is not None else _json_object([(event,)])
        for _, event, code, message, detail in rows
    ]


def checkpoint_many(
    checkpoints: Sequence[Checkpoint],
) -> Command[list[dict[str, Any] | DurableError]]:
    """Record the checkpoints of many tasks in one call (one transaction, one commit).

    Returns, in the order given, what each :func:`checkpoint` would have returned, or the
    exception it would have raised (LeaseLost, HistoryGap, ...: that element changed
    nothing)."""
    columns = list(zip(*(c.params for c in checkpoints), strict=True)) if checkpoints else [()] * 7
    return Command(
        "select ord, event, error_code, error_message, error_detail from durable.checkpoint_many("
        "%s::uuid[], %s::uuid[], %s::integer[], %s::text[], %s::text[], %s::jsonb[], %s::jsonb[])",
        tuple(list(column) for column in columns),
        _checkpoint_answers,
    )


def replay_check(
    task_id: uuid.UUID, lease_token: uuid.UUID, presented: Sequence[Mapping[str, Any]]
) -> Command[dict[str, Any]]:
    """Check the calls a re-run made at the recorded seqs, in one call: ``presented`` are
    ``{"seq", "kind", "name"}`` from seq 1 without gaps, with ``"queue"`` and ``"input"`` for
    a spawn and ``"children"`` (ids as strings) for a children wait; the server hashes them.

    Returns ``{"checked": n}``, or ``{"nondeterminism": {...}}``: the task has been failed."""
    return Command(
        "select durable.replay_check(%s, %s, %s::jsonb)",
        (task_id, lease_token, to_json(list(presented), "presented events")),
        _json_object,
    )


def complete_durable(
    task_id: uuid.UUID, lease_token: uuid.UUID, output_json: str | None
) -> Command[dict[str, Any]]:
    """Complete a durable task whose whole history was checked in this attempt.

    Returns ``{"completed": true}``, or ``{"nondeterminism": {...}}`` (recorded events left
    unchecked: the code finished without going through them; the task has been failed)."""
    return Command(
        "select durable.complete(%s, %s, %s::jsonb)",
        (task_id, lease_token, output_json),
        _json_object,
    )


def sleep(
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    seq: int,
    name: str,
    seconds: Seconds | None,
    until: datetime | None,
) -> Command[dict[str, Any]]:
    """Durable sleep: the event (``result`` ``{"until"}``) once the time has come, or
    ``{"seq", "kind", "name", "suspended": true}``, or ``{"nondeterminism": {...}}``."""
    return Command(
        "select durable.sleep(%s, %s, %s, %s, %s::double precision, %s::timestamptz)",
        (task_id, lease_token, seq, name, to_seconds(seconds), until),
        _json_object,
    )


def wait_event(
    task_id: uuid.UUID, lease_token: uuid.UUID, seq: int, key: str, timeout: Seconds | None
) -> Command[dict[str, Any]]:
    """Wait for an event key: the event (``result`` ``{"payload", "timed_out"}``), or
    ``{"seq", "kind", "name", "suspended": true}``, or ``{"nondeterminism": {...}}``."""
    return Command(
        "select durable.wait_event(%s, %s, %s, %s, %s::double precision)",
        (task_id, lease_token, seq, key, to_seconds(timeout)),
        _json_object,
    )


def spawn(
    task_id: uuid.UUID,
    lease_token: uuid.UUID,
    seq: int,
    queue: str,
    task_name: str,
    input_json: str,
    options: Mapping[str, Any],
) -> Command[dict[str, Any]]:
    """Spawn a child exactly once: the event (``result`` ``{"task_id", "queue"}``), or
    ``{"nondeterminism": {...}}``."""
    return Command(
        "select durable.spawn(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)",
        (task_id, lease_token, seq, queue, task_name, input_json, to_json(dict(options), "spawn options")),
        _json_object,
    )


def wait_children(
    task_id: uuid.UUID, lease_token: uuid.UUID, seq: int, children: Sequence[uuid.UUID], name: str
) -> Command[dict[str, Any]]:
    """Wait until the children ended: the event (``result`` ``[{"task_id", "status",
    "output", "error"}]``), or ``{"seq", "kind", "name", "suspended": true}``, or
    ``{"nondeterminism": {...}}``."""
    return Command(
        "select durable.wait_children(%s, %s, %s, %s::uuid[], %s)",
        (task_id, lease_token, seq, list(children), name),
        _json_object,
    )


def seconds_until_wake(queue: str) -> Command[float | None]:
    """Seconds until the next sleeping or timed waiting task or schedule tick of the queue is
    due (None: none)."""
    return Command(
        "select extract(epoch from durable.next_wake(%s) - durable.current_time())::float8",
        (queue,),
        lambda rows: None if not rows or rows[0][0] is None else float(rows[0][0]),
    )


# ---------------------------------------------------------------------------------------
# client verbs


def emit_event(queue: str, key: str, payload: Any) -> Command[int]:
    """Set an event key's payload in a queue's scope and wake its waiters there; returns how
    many were woken."""
    return Command(
        "select durable.emit_event(%s, %s, %s::jsonb)",
        (queue, key, to_json(payload, "event payload")),
        lambda rows: int(scalar(rows) or 0),
    )


def retry(task_id: uuid.UUID | str) -> Command[None]:
    """Run a failed or cancelled task again, keeping its history."""
    return Command("select durable.retry(%s::uuid)", (str(task_id),), lambda rows: None)


def replay(task_id: uuid.UUID | str) -> Command[int]:
    """Run a finished task again from scratch; returns the new history generation."""
    return Command("select durable.replay(%s::uuid)", (str(task_id),), lambda rows: int(scalar(rows)))


def fork(task_id: uuid.UUID | str, at_seq: int) -> Command[uuid.UUID]:
    """A new task whose history is the events before ``at_seq``; returns its id."""
    return Command("select durable.fork(%s::uuid, %s)", (str(task_id), at_seq), scalar)


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a durable task's log."""

    generation: int
    seq: int
    kind: str
    name: str
    outcome: str
    result: Any
    attempt: int
    recorded_at: datetime


def history(task_id: uuid.UUID | str, all_generations: bool = False) -> Command[list[Event]]:
    """The task's event log (current generation, or all of them)."""
    return Command(
        "select generation, seq, kind, name, outcome, result, attempt, recorded_at"
        " from durable.history(%s::uuid, %s)",
        (str(task_id), all_generations),
        lambda rows: [Event(*row) for row in rows],
    )


# ---------------------------------------------------------------------------------------
# versioning and deploy checks (reader verbs, plpgsql/versioning.sql)


@dataclass(frozen=True, slots=True)
class RecordedHistory:
    """A durable task whose history new code would replay (``durable.replay_histories``)."""

    task_id: uuid.UUID
    task_name: str
    status: str
    generation: int
    input: Any
    history: list[dict[str, Any]]


def replay_histories(
    queue: str, finished_since: datetime | None = None, after: uuid.UUID | None = None, limit: int = 100
) -> Command[list[RecordedHistory]]:
    """A page of the queue's unfinished durable tasks (and those finished since
    ``finished_since``), each with its input and current history, in task id order; the
    next page: ``after`` = the last one's id."""
    return Command(
        "select task_id, task_name, status, generation, input, history"
        " from durable.replay_histories(%s, %s, %s, %s)",
        (queue, finished_since, after, limit),
        lambda rows: [RecordedHistory(*row) for row in rows],
    )


def check_replay(
    task_id: uuid.UUID, presented: Sequence[Mapping[str, Any]], finished: bool
) -> Command[dict[str, Any]]:
    """The dry determinism check (a reader's, writes nothing): ``{"checked", "recorded"}`` or
    ``{"nondeterminism": {...}}`` for the calls presented (as :func:`replay_check` takes
    them); ``finished``: the code returned after them."""
    return Command(
        "select durable.check_replay(%s, %s::jsonb, %s)",
        (task_id, to_json(list(presented), "presented events"), finished),
        _json_object,
    )


@dataclass(frozen=True, slots=True)
class PatchUsage:
    """Who still depends on a patch, per queue and task name (``durable.patch_usage``)."""

    queue: str
    task_name: str
    first_marker_at: datetime
    #: unfinished tasks whose history holds the marker: keep the patch call
    with_marker: int
    #: unfinished tasks the old code began: keep the old branch
    old_histories: int


def patch_usage(
    patch_id: str, queue: str | None = None, deployed_at: datetime | None = None
) -> Command[list[PatchUsage]]:
    """Whether unfinished histories still depend on patch ``patch_id``."""
    return Command(
        "select queue, task_name, first_marker_at, with_marker, old_histories"
        " from durable.patch_usage(%s, %s, %s)",
        (patch_id, queue, deployed_at),
        lambda rows: [PatchUsage(*row) for row in rows],
    )

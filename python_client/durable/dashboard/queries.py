"""What the dashboard reads, with a reader connection (``durable.Client`` and its commands)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from durable import Client, commands
from durable.commands import Command, TaskRow

PAGE_SIZE = 50
#: how deep and how wide the task page draws a task's tree of children
TREE_DEPTH = 3
TREE_WIDTH = 50


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """A row of ``durable.queue_metrics``."""

    queue: str
    pending: int
    running: int
    sleeping: int
    waiting: int
    oldest_pending_seconds: float | None
    completed: int
    failed: int
    cancelled: int
    completed_per_minute: list[int]
    failed_per_minute: list[int]
    concurrency_limit: int | None
    window_minutes: int


def queue_metrics(window_minutes: int = 15) -> Command[list[QueueMetrics]]:
    return Command(
        "select queue, pending, running, sleeping, waiting, oldest_pending_seconds, completed, failed,"
        " cancelled, completed_per_minute, failed_per_minute, concurrency_limit, window_minutes"
        " from durable.queue_metrics(%s)",
        (window_minutes,),
        lambda rows: [QueueMetrics(*row) for row in rows],
    )


@dataclass(slots=True)
class Node:
    """A task of a tree of children, with its own children (up to TREE_DEPTH levels)."""

    row: TaskRow
    children: list[Node] = field(default_factory=list)
    more: bool = False


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """An event of the log, with the time since the event before it in its attempt."""

    generation: int
    seq: int
    kind: str
    name: str
    outcome: str
    result: Any
    attempt: int
    recorded_at: datetime
    since_previous: float | None


class Reads:
    """The dashboard's reads."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def metrics(self, window_minutes: int = 15) -> list[QueueMetrics]:
        return self.client.run(queue_metrics(window_minutes))

    def task(self, task_id: uuid.UUID) -> dict[str, Any] | None:
        return self.client.run(commands.task_json(task_id))

    def tasks(self, **filters: Any) -> list[TaskRow]:
        return self.client.list_tasks(limit=PAGE_SIZE, **filters)

    def children(self, task_id: uuid.UUID, depth: int = TREE_DEPTH) -> list[Node]:
        rows = self.client.list_tasks(parent=task_id, limit=TREE_WIDTH + 1)
        nodes = [Node(row) for row in rows[:TREE_WIDTH]]
        if depth > 1:
            for node in nodes:
                node.children = self.children(node.row.task_id, depth - 1)
        if len(rows) > TREE_WIDTH and nodes:
            nodes[-1].more = True
        return nodes

    def timeline(self, task_id: uuid.UUID, durable: bool) -> list[TimelineEvent]:
        """The event log of every generation, oldest first, with the time between events."""
        if not durable:
            return []
        events = sorted(
            self.client.history(task_id, all_generations=True), key=lambda e: (e.generation, e.seq)
        )
        out: list[TimelineEvent] = []
        previous: datetime | None = None
        previous_key: tuple[int, int] | None = None
        for e in events:
            key = (e.generation, e.attempt)
            since = (e.recorded_at - previous).total_seconds() if previous and previous_key == key else None
            out.append(
                TimelineEvent(
                    e.generation, e.seq, e.kind, e.name, e.outcome, e.result, e.attempt, e.recorded_at, since
                )
            )
            previous, previous_key = e.recorded_at, key
        return out

    def workers(self) -> list[Any]:
        return self.client.workers()

"""How the commands show what the verbs return: Rich tables, the task view with its event
timeline, and JSON for ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..workflow_commands import Event

#: width of a value's preview in tables
PREVIEW = 60

_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "sleeping": "blue",
    "waiting": "blue",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def console() -> Console:
    """A console on the current stdout (wide enough not to wrap when it is not a terminal)."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200, highlight=False)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def print_json(value: Any) -> None:
    """``value`` (dataclasses, lists of them, dicts) as indented JSON on stdout."""
    if isinstance(value, list):
        value = [_plain(v) for v in value]
    print(json.dumps(_plain(value), indent=2, default=str))


def preview(value: Any, width: int = PREVIEW) -> str:
    """A one-line JSON preview, cut at ``width`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    """``12 ms``, ``3.4 s``, ``2 min 05 s``, ``1 h 03 min``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def when(value: Any) -> str:
    """A timestamp (or its JSON text) to the second, in its own time zone."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.isoformat(sep=" ", timespec="seconds")


def status(value: str) -> Text:
    return Text(value, style=_STATUS_STYLE.get(value, ""))


def tasks_table(rows: Sequence[Any]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("task_id", "queue", "task_name", "status", "attempt", "created_at", "finished_at"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.task_id),
            r.queue,
            r.task_name + (" (durable)" if r.durable else ""),
            status(r.status),
            str(r.attempt),
            when(r.created_at),
            when(r.finished_at),
        )
    return table


def queues_table(rows: Sequence[Any]) -> Table:
    table = Table(box=None, pad_edge=False)
    names = ("pending", "running", "sleeping", "waiting", "completed", "failed", "cancelled")
    for column in ("queue", *names, "oldest pending", "options"):
        table.add_column(column, justify="right" if column in names else "left")
    for r in rows:
        table.add_row(
            r.queue,
            *(str(getattr(r, n)) for n in names),
            duration(r.oldest_pending_seconds),
            preview(r.options, 50),
        )
    return table


def workers_table(rows: Sequence[Any]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("name", "alive", "queues", "slots", "running", "host", "pid", "last seen"):
        table.add_column(column)
    for w in rows:
        table.add_row(
            w.name,
            Text("alive", style="green") if w.alive else Text("dead", style="red"),
            ", ".join(w.queues),
            str(w.slots),
            str(w.running),
            w.host or "",
            "" if w.pid is None else str(w.pid),
            when(w.last_seen_at),
        )
    return table


def schedules_table(rows: Sequence[Any]) -> Table:
    table = Table(box=None, pad_edge=False)
    for column in ("queue", "name", "cron", "tz", "task", "next tick", "last tick", "ticks", "state"):
        table.add_column(column, justify="right" if column == "ticks" else "left")
    for r in rows:
        state = Text("paused", style="yellow") if r.paused else Text("running", style="green")
        if r.last_error:
            state = Text(f"error: {preview(r.last_error.get('message'), 40)}", style="red")
        table.add_row(
            r.queue,
            r.name,
            r.cron,
            r.tz,
            r.task_name,
            when(r.next_run_at),
            when(r.last_tick_at),
            str(r.ticks),
            state,
        )
    return table


def timeline_rows(events: Iterable[Event], started_at: datetime | None = None) -> list[tuple[str, ...]]:
    """The event timeline: seq, kind, name, attempt, time since the previous event (the
    first: since ``started_at``), outcome, a preview of the result."""
    rows: list[tuple[str, ...]] = []
    previous = started_at
    for e in events:
        after = None if previous is None else (e.recorded_at - previous).total_seconds()
        previous = e.recorded_at
        rows.append(
            (
                str(e.seq),
                e.kind,
                e.name,
                str(e.attempt),
                duration(after) if after is not None and after >= 0 else "",
                e.outcome,
                preview(e.result),
            )
        )
    return rows


def waiting_line(task: dict[str, Any]) -> str | None:
    """What a sleeping or waiting task waits for, in words (from get_task's waiting_for)."""
    waiting = task.get("waiting_for")
    if not waiting:
        return None
    kind = waiting.get("kind")
    if kind == "sleep":
        return f"sleeping until {when(waiting.get('until'))}"
    timeout = waiting.get("timeout_at")
    until = f", gives up at {when(timeout)}" if timeout else ""
    if kind == "event":
        return f"waiting for event {waiting.get('key')!r}{until}"
    if kind == "children":
        children = waiting.get("children") or []
        return f"waiting for {len(children)} child task(s): {', '.join(map(str, children[:5]))}{until}"
    return f"waiting: {preview(waiting)}"


def task_view(task: dict[str, Any], events: list[Event]) -> list[Any]:
    """The renderables of ``durable task show``: the state, what it waits for, its
    attempts, its children and its event log as a timeline."""
    out: list[Any] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row(
        "task", f"{task['task_id']}  {task['task_name']}" + ("  (durable)" if task.get("durable") else "")
    )
    head.add_row("queue", str(task["queue"]))
    head.add_row("status", status(str(task["status"])))
    head.add_row(
        "attempts",
        f"{task['attempt']} started, {task['failures']} failed (max {task['max_attempts']}), "
        f"{task['lost_leases']} lost lease(s)",
    )
    head.add_row("created", when(task.get("created_at")))
    if task.get("started_at"):
        head.add_row("started", when(task.get("started_at")))
    if task.get("finished_at"):
        head.add_row("finished", when(task.get("finished_at")))
    next_run = task.get("next_run_at", task.get("run_at") if task["status"] == "pending" else None)
    if next_run and task["status"] in ("pending", "sleeping", "waiting"):
        head.add_row("next run", when(next_run))
    waiting = waiting_line(task)
    if waiting:
        head.add_row("waits", waiting)
    if task.get("worker") and task["status"] == "running":
        head.add_row("worker", f"{task['worker']} (lease until {when(task.get('lease_expires_at'))})")
    head.add_row("input", preview(task.get("input"), 100))
    if task.get("output") is not None:
        head.add_row("output", preview(task.get("output"), 100))
    if task.get("error") is not None:
        head.add_row("error", Text(preview(task.get("error"), 100), style="red"))
    out.append(head)

    attempts = task.get("attempts") or []
    if attempts:
        table = Table(title="attempts", title_justify="left", box=None, pad_edge=False)
        for column in ("#", "worker", "started", "duration", "outcome", "error"):
            table.add_column(column)
        for a in attempts:
            started = a.get("started_at")
            took = None
            if started and a.get("ended_at"):
                took = (
                    datetime.fromisoformat(a["ended_at"]) - datetime.fromisoformat(started)
                ).total_seconds()
            table.add_row(
                str(a["attempt"]),
                a.get("worker") or "",
                when(started),
                duration(took),
                a["outcome"],
                preview((a.get("error") or {}).get("message") if a.get("error") else None, 60),
            )
        out.append(table)

    children = task.get("children") or []
    if children:
        table = Table(title=f"children ({len(children)})", title_justify="left", box=None, pad_edge=False)
        for column in ("task_id", "queue", "task_name", "status"):
            table.add_column(column)
        for c in children[:50]:
            table.add_row(
                str(c["task_id"]), str(c.get("queue", "")), str(c["task_name"]), status(str(c["status"]))
            )
        out.append(table)

    if events:
        created = task.get("created_at")
        start = datetime.fromisoformat(created) if isinstance(created, str) else None
        table = Table(title="event log", title_justify="left", box=None, pad_edge=False)
        for column in ("seq", "kind", "name", "attempt", "after", "outcome", "result"):
            table.add_column(column)
        for row in timeline_rows(events, start):
            table.add_row(*row)
        out.append(table)
    elif task.get("durable"):
        out.append(Text("event log: empty"))
    return out

"""Commands on tasks: ``tasks``, ``task show``, ``task history``, ``retry``, ``replay``,
``fork``, ``cancel``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from .. import commands
from ..task_info import FINISHED_STATUSES
from . import render
from .context import client, fail, friendly_errors

STATUSES = ("pending", "running", "sleeping", "waiting", *sorted(FINISHED_STATUSES))

task_app = typer.Typer(help="Show one task: its state, attempts and event log.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def task_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        fail(f"{value!r} is not a task id (a uuid such as 01a24e2a-ac1b-7c10-8aac-6c71d3b2dfe1)", 2)


def list_tasks(
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="only this queue")] = None,
    status: Annotated[
        str | None, typer.Option("--status", "-s", help=f"one of {', '.join(STATUSES)}")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="only this task name")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="only the children of this task")] = None,
    since: Annotated[
        datetime | None, typer.Option("--since", help="only tasks created since (ISO time)")
    ] = None,
    before: Annotated[
        str | None, typer.Option("--before", help="the next page: the last task id of the previous one")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=1000, help="tasks per page")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first (filters combine; --before pages on)."""
    if status is not None and status not in STATUSES:
        fail(f"unknown status {status!r}: use one of {', '.join(STATUSES)}", 2)
    with friendly_errors(), client() as c:
        rows = c.list_tasks(
            queue=queue,
            status=status,
            task_name=name,
            parent=None if parent is None else task_id(parent),
            created_since=since,
            before=None if before is None else task_id(before),
            limit=limit,
        )
    if as_json:
        render.print_json(rows)
        return
    out = render.console()
    if not rows:
        out.print("no tasks")
        return
    out.print(render.tasks_table(rows))
    if len(rows) == limit:
        out.print(f"next page: durable tasks ... --before {rows[-1].task_id}", style="dim")


@task_app.command("show")
def show(task: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOption = False) -> None:
    """A task's state, what it waits for, its attempts, children and event log."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        info = c.run(commands.task_json(tid))
        if info is None:
            fail(f"no task {tid}: `durable tasks` lists the tasks")
        events = c.history(tid) if info.get("durable") else []
    if as_json:
        render.print_json({**info, "events": events})
        return
    out = render.console()
    for part in render.task_view(info, events):
        out.print(part)


@task_app.command("history")
def history(
    task: Annotated[str, typer.Argument(metavar="ID")],
    all_generations: Annotated[
        bool, typer.Option("--all-generations", help="the events of earlier histories (before a replay) too")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """A durable task's event log."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        events = c.history(tid, all_generations=all_generations)
    if as_json:
        render.print_json(events)
        return
    out = render.console()
    if not events:
        out.print("no events")
        return
    table = Table(box=None, pad_edge=False)
    columns = ("generation", "seq", "kind", "name", "attempt", "after", "outcome", "result")
    for column in columns:
        table.add_column(column)
    for event, row in zip(events, render.timeline_rows(events), strict=True):
        table.add_row(str(event.generation), *row)
    out.print(table)


def retry(task: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Run a failed or cancelled task again, keeping its history."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        c.retry(tid)
    print(f"task {tid} will run again (its history kept)")


def replay(task: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Run a finished durable task again from a new, empty history."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        generation = c.replay(tid)
    print(f"task {tid} will run again from a new history (generation {generation})")


def fork(
    task: Annotated[str, typer.Argument(metavar="ID")],
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="keep the events before this seq")],
) -> None:
    """A new task with a copy of a durable task's history up to SEQ; prints its id."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        new = c.fork(tid, seq)
    print(new)


def cancel(
    task: Annotated[str, typer.Argument(metavar="ID")],
    reason: Annotated[str | None, typer.Option("--reason", help="recorded in the task's error")] = None,
) -> None:
    """Cancel a task and its unfinished children."""
    tid = task_id(task)
    with friendly_errors(), client() as c:
        cancelled = c.cancel(tid, reason)
    print(f"task {tid} cancelled" if cancelled else f"task {tid} was already cancelled")


def register(app: typer.Typer) -> None:
    app.command("tasks")(list_tasks)
    app.add_typer(task_app, name="task")
    app.command("retry")(retry)
    app.command("replay")(replay)
    app.command("fork")(fork)
    app.command("cancel")(cancel)

"""Commands on queues and events: ``queues``, ``queue create``, ``queue stats``,
``enqueue``, ``purge``, ``emit``, ``workers``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from .. import commands
from . import render
from .context import client, fail, friendly_errors, parse_json
from .tasks import JsonOption

queue_app = typer.Typer(help="Create a queue or see one.", no_args_is_help=True)


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE, VALUE as JSON when it parses (numbers, true, objects), else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        fail(f"--option takes KEY=VALUE, got {text!r} (e.g. --option concurrency_limit=5)", 2)
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def list_queues(as_json: JsonOption = False) -> None:
    """Every queue you may read: options, tasks by status, age of the oldest ready task."""
    with friendly_errors(), client() as c:
        rows = c.list_queues()
    if as_json:
        render.print_json(rows)
        return
    out = render.console()
    out.print(render.queues_table(rows) if rows else "no queues: `durable queue create NAME` makes one")


@queue_app.command("create")
def create(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            "-o",
            metavar="KEY=VALUE",
            help="a queue option, e.g. concurrency_limit=5, retention=86400, "
            'backoff=\'{"kind": "fixed", "delay": 5}\' (repeat for several)',
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create QUEUE, or merge the options into it; prints its options."""
    options = dict(_option(o) for o in option or [])
    with friendly_errors(), client() as c:
        result = c.run(commands.create_queue(queue, options))
    if as_json:
        render.print_json(result)
    else:
        print(f"queue {queue}: {json.dumps(result, sort_keys=True)}")


@queue_app.command("stats")
def stats(queue: Annotated[str, typer.Argument(metavar="QUEUE")], as_json: JsonOption = False) -> None:
    """Task counts of QUEUE by status."""
    with friendly_errors(), client() as c:
        rows = [q for q in c.list_queues() if q.queue == queue]
    if not rows:
        fail(f"queue {queue!r} does not exist: create it with `durable queue create {queue}`")
    if as_json:
        render.print_json(rows[0])
        return
    render.console().print(render.queues_table(rows))


def enqueue(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    name: Annotated[str, typer.Argument(metavar="NAME", help="the task name a worker registered")],
    input: Annotated[str | None, typer.Argument(metavar="[INPUT]", help="a JSON object")] = None,
    durable: Annotated[bool, typer.Option("--durable", help="a durable task (with an event log)")] = False,
    delay: Annotated[float | None, typer.Option("--delay", help="seconds before it may run")] = None,
    run_at: Annotated[datetime | None, typer.Option("--run-at", help="when it may run (ISO time)")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="higher runs first")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="a repeat returns the first task's id")
    ] = None,
    max_attempts: Annotated[int | None, typer.Option("--max-attempts")] = None,
    debounce_key: Annotated[
        str | None,
        typer.Option(
            "--debounce-key",
            help="a pending, not yet started task of this key gets this input and runs later instead",
        ),
    ] = None,
    debounce_delay: Annotated[
        float | None, typer.Option("--debounce-delay", help="seconds from now the debounced task runs")
    ] = None,
    debounce_max_delay: Annotated[
        float | None,
        typer.Option("--debounce-max-delay", help="at most this many seconds after its first enqueue"),
    ] = None,
    create_queue: Annotated[
        bool, typer.Option("--create-queue", help="create the queue if it is missing")
    ] = False,
) -> None:
    """Enqueue a task; prints its id."""
    if delay is not None and run_at is not None:
        fail("give --delay or --run-at, not both", 2)
    debounce: dict[str, Any] | None = None
    if (debounce_key, debounce_delay, debounce_max_delay) != (None, None, None):
        if debounce_key is None or debounce_delay is None:
            fail("--debounce-key and --debounce-delay go together (--debounce-max-delay with them)", 2)
        debounce = {"key": debounce_key, "delay": debounce_delay}
        if debounce_max_delay is not None:
            debounce["max_delay"] = debounce_max_delay
    payload = parse_json(input, "INPUT", default={}, object_only=True)
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "durable": durable or None,
            "delay": delay,
            "run_at": None if run_at is None else run_at.isoformat(),
            "priority": priority,
            "idempotency_key": idempotency_key,
            "max_attempts": max_attempts,
            "debounce": debounce,
        }.items()
        if v is not None
    }
    with friendly_errors(), client() as c:
        if create_queue:
            c.ensure_queue(queue)
        task_id = c.run(commands.enqueue(queue, name, payload, options))
    print(task_id)


def purge(
    queue: Annotated[str, typer.Argument(metavar="QUEUE")],
    older_than: Annotated[
        float, typer.Option("--older-than", help="only tasks that finished at least this many seconds ago")
    ] = 0,
) -> None:
    """Delete the finished tasks of QUEUE (with their logs), in batches, with progress."""
    total = 0
    with (
        friendly_errors(),
        client() as c,
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=render.console()
        ) as progress,
    ):
        bar = progress.add_task(f"purging {queue}", total=None)
        while True:
            deleted = c.purge(queue, older_than, 10000)
            total += deleted
            progress.update(bar, description=f"purging {queue}: {total} tasks deleted")
            if deleted < 10000:
                break
    print(f"{total} finished task(s) of {queue} deleted")


def emit(
    key: Annotated[str, typer.Argument(metavar="KEY", help="the event key tasks wait for")],
    payload: Annotated[str | None, typer.Argument(metavar="[PAYLOAD]", help="JSON")] = None,
    *,
    queue: Annotated[str, typer.Option("--queue", "-q", help="the queue whose tasks wait for KEY")],
) -> None:
    """Emit the event KEY in the scope of a queue: its tasks waiting for KEY wake with PAYLOAD."""
    value = parse_json(payload, "PAYLOAD")
    with friendly_errors(), client() as c:
        woken = c.emit_event(queue, key, value)
    print(f"event {key!r} emitted on {queue}: {woken} task(s) woken")


def workers(
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="only the workers of this queue")] = None,
    as_json: JsonOption = False,
) -> None:
    """The registered workers: alive or dead, their queues, slots and running tasks."""
    with friendly_errors(), client() as c:
        rows = c.workers(queue)
    if as_json:
        render.print_json(rows)
        return
    render.console().print(render.workers_table(rows) if rows else "no registered workers")


def register(app: typer.Typer) -> None:
    app.command("queues")(list_queues)
    app.add_typer(queue_app, name="queue")
    app.command("stats", help="Task counts of QUEUE by status (as `durable queue stats`).")(stats)
    app.command("enqueue")(enqueue)
    app.command("purge")(purge)
    app.command("emit")(emit)
    app.command("workers")(workers)

"""Commands on schedules: ``schedules``, ``schedule create|pause|resume|delete``."""

from __future__ import annotations

from typing import Annotated

import typer

from ..schedule_commands import CatchUp, ScheduleOptions
from . import render
from .context import client, fail, friendly_errors, parse_json
from .tasks import JsonOption

schedule_app = typer.Typer(help="Create, pause, resume or delete a schedule.", no_args_is_help=True)

QueueOption = Annotated[str, typer.Option("--queue", "-q", help="the schedule's queue")]
NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="the schedule's name (unique in its queue)")
]


def list_schedules(
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="only the schedules of this queue")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The schedules of the queues you may read: cron, zone, next tick, last tick, paused."""
    with friendly_errors(), client() as c:
        rows = c.list_schedules(queue)
    if as_json:
        render.print_json(rows)
        return
    out = render.console()
    out.print(
        render.schedules_table(rows) if rows else "no schedules: `durable schedule create NAME ...` makes one"
    )


@schedule_app.command("create")
def create(
    name: NameArgument,
    *,
    queue: QueueOption,
    task: Annotated[str, typer.Option("--task", "-t", help="the task name each tick enqueues")],
    cron: Annotated[
        str,
        typer.Option(
            "--cron", help="5 fields (minute hour day-of-month month day-of-week) or @daily and kin"
        ),
    ],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone of the cron's wall clock")] = "UTC",
    input: Annotated[str | None, typer.Option("--input", help="the tasks' input, a JSON object")] = None,
    enqueue_options: Annotated[
        str | None,
        typer.Option("--enqueue-options", help="the tasks' enqueue options, e.g. '{\"priority\": 5}'"),
    ] = None,
    catch_up: Annotated[
        str,
        typer.Option(
            "--catch-up", help="missed ticks: once (the latest), skip, or all (up to --catch-up-max)"
        ),
    ] = "once",
    catch_up_max: Annotated[int | None, typer.Option("--catch-up-max", help="with --catch-up all")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create schedule NAME on a queue (an existing NAME is replaced); prints its next tick."""
    if catch_up not in ("skip", "once", "all"):
        fail(f"--catch-up takes skip, once or all, got {catch_up!r}", 2)
    mode: CatchUp = "all" if catch_up == "all" else "skip" if catch_up == "skip" else "once"
    options: ScheduleOptions = {"tz": tz, "catch_up": mode, "paused": paused}
    options["input"] = parse_json(input, "--input", default={}, object_only=True)
    options["enqueue_options"] = parse_json(
        enqueue_options, "--enqueue-options", default={}, object_only=True
    )
    if catch_up_max is not None:
        options["catch_up_max"] = catch_up_max
    with friendly_errors(), client() as c:
        next_at = c.create_schedule(name, queue, task, cron, **options)
    if as_json:
        render.print_json({"queue": queue, "name": name, "next_run_at": next_at})
    else:
        print(f"schedule {name} on {queue}: next tick {next_at.isoformat()}")


@schedule_app.command("pause")
def pause(name: NameArgument, *, queue: QueueOption) -> None:
    """Pause schedule NAME: no tick enqueues until it is resumed."""
    with friendly_errors(), client() as c:
        changed = c.pause_schedule(name, queue)
    print(f"schedule {name} on {queue}: {'paused' if changed else 'was paused already'}")


@schedule_app.command("resume")
def resume(name: NameArgument, *, queue: QueueOption) -> None:
    """Resume schedule NAME from now (the ticks of the pause are not caught up)."""
    with friendly_errors(), client() as c:
        next_at = c.resume_schedule(name, queue)
    print(f"schedule {name} on {queue}: running, next tick {next_at.isoformat()}")


@schedule_app.command("delete")
def delete(name: NameArgument, *, queue: QueueOption) -> None:
    """Delete schedule NAME (the tasks it enqueued stay)."""
    with friendly_errors(), client() as c:
        deleted = c.delete_schedule(name, queue)
    if not deleted:
        fail(f"no schedule {name!r} on queue {queue!r}")
    print(f"schedule {name} on {queue}: deleted")


def register(app: typer.Typer) -> None:
    app.command("schedules")(list_schedules)
    app.add_typer(schedule_app, name="schedule")

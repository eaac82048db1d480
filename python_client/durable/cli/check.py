"""The deploy check: ``durable check MODULE:WORKER`` (:mod:`durable.dry_run`), and
``durable patch-usage ID``."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from .. import dry_run
from .. import workflow_commands as wc
from . import render
from .context import client, fail, friendly_errors
from .run import load_worker

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d``, ``1w``."""
    match = _DURATION.match(text)
    if match is None:
        fail(f"{text!r} is not a duration (e.g. 90s, 15m, 2h, 7d)", 2)
    return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


def _event(value: dict[str, Any] | None, nothing: str) -> str:
    if value is None:
        return nothing
    text = f'{value.get("kind")} "{value.get("name")}"'
    if value.get("input_hash"):
        text += f" (input {str(value['input_hash'])[:8]})"
    return text


def _problems_table(verdicts: list[dry_run.Verdict]) -> Table:
    table = Table(title="tasks the new code cannot take over", title_justify="left")
    for column in ("task", "name", "status", "outcome", "event", "recorded", "the new code"):
        table.add_column(column)
    for v in verdicts:
        m = v.mismatch or {}
        table.add_row(
            str(v.task_id),
            v.task_name,
            v.status,
            v.outcome,
            str(m.get("seq", v.checked + 1)),
            _event(m.get("recorded"), "nothing") if m else "",
            _event(m.get("presented"), "finished") if m else (v.error or ""),
        )
    return table


def _summary_table(verdicts: list[dry_run.Verdict]) -> Table:
    table = Table(title="histories checked", title_justify="left")
    for column in ("task name", "tasks", "ok", "problems", "unknown task name"):
        table.add_column(column, justify="left" if column == "task name" else "right")
    names = sorted({v.task_name for v in verdicts})
    for name in names:
        counts = Counter(v.outcome for v in verdicts if v.task_name == name)
        problems = sum(n for outcome, n in counts.items() if outcome in dry_run.PROBLEMS)
        table.add_row(
            name,
            str(sum(counts.values())),
            str(counts["ok"]),
            str(problems),
            str(counts["unknown task name"]),
        )
    return table


def check(
    target: Annotated[
        str, typer.Argument(metavar="MODULE:WORKER", help="the new code, e.g. myapp.tasks:worker")
    ],
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="the queue (default: the worker's)")
    ] = None,
    include_finished_since: Annotated[
        str | None,
        typer.Option(
            "--include-finished-since",
            metavar="DURATION",
            help="also the tasks finished within this long (90s, 15m, 2h, 7d)",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="seconds one task's dry run may take")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """Replay the histories of unfinished durable tasks against new code, running nothing.

    Each recorded call gets its recorded result; the first call past the history ends the
    task's dry run. Exits 1 when the new code would meet a non-determinism (or raise before
    the end of a history); needs only the reader role."""
    since = None
    if include_finished_since is not None:
        since = datetime.now(UTC) - parse_duration(include_finished_since)
    try:
        worker = load_worker(target)
    except SystemExit as exc:
        fail(str(exc).removeprefix("durable worker: "), 2)
    name = queue or worker.queue
    with friendly_errors(), client() as c:
        verdicts = asyncio.run(dry_run.check_all(c.run, worker, name, since, timeout))
    problems = [v for v in verdicts if v.problem]
    unknown = sorted({v.task_name for v in verdicts if v.outcome == "unknown task name"})
    if as_json:
        render.print_json(
            {
                "queue": name,
                "ok": not problems,
                "checked": len(verdicts),
                "problems": len(problems),
                "unknown_task_names": unknown,
                "tasks": [asdict(v) for v in verdicts],
            }
        )
    else:
        out = render.console()
        if not verdicts:
            out.print(f"queue {name}: no durable task to check")
        else:
            out.print(_summary_table(verdicts))
            if problems:
                out.print(_problems_table(problems))
            else:
                out.print(f"queue {name}: the new code replays all {len(verdicts)} histories", style="green")
    if problems:
        raise typer.Exit(1)


def patch_usage(
    patch_id: Annotated[str, typer.Argument(metavar="ID", help="the id given to ctx.patched")],
    queue: Annotated[str | None, typer.Option("--queue", "-q", help="only this queue")] = None,
    deployed_at: Annotated[
        datetime | None,
        typer.Option("--deployed-at", help="when the last worker without the patch stopped (ISO time)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Whether unfinished histories still depend on a patch (may its old branch, or its
    call, be deleted?)."""
    if deployed_at is not None and deployed_at.tzinfo is None:
        deployed_at = deployed_at.replace(tzinfo=UTC)
    with friendly_errors(), client() as c:
        rows = c.run(wc.patch_usage(patch_id, queue, deployed_at))
    if as_json:
        render.print_json(rows)
        return
    out = render.console()
    if not rows:
        out.print(f"no stored history recorded patch {patch_id!r}")
        return
    table = Table()
    for column in ("queue", "task name", "first marker", "with marker", "old histories"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.queue, r.task_name, str(r.first_marker_at), str(r.with_marker), str(r.old_histories))
    out.print(table)
    old = sum(r.old_histories for r in rows)
    marked = sum(r.with_marker for r in rows)
    out.print(
        "the old branch may be deleted" if old == 0 else f"{old} unfinished histories may take the old branch"
    )
    out.print(
        "the patch call may be deleted (once no code records the marker)"
        if marked == 0
        else f"{marked} unfinished histories hold the marker: keep the call (deprecate_patch)"
    )


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("patch-usage")(patch_usage)

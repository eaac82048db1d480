"""Commands that run things: ``migrate``, ``worker``, ``demo``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn

from ..migrate import migrate as run_migrate
from ..worker import Worker
from . import render
from .context import check_connection, database_url, export_database_url, fail, friendly_errors, settings


def load_worker(target: str) -> Worker:
    """The Worker at ``module:attribute`` (an instance, or a callable returning one)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"durable worker: expected MODULE:WORKER (e.g. myapp.tasks:worker), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(f"durable worker: cannot import module {module_name!r}: {exc}") from exc
    obj: object = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise SystemExit(f"durable worker: module {module_name!r} has no {attribute!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, Worker) and callable(obj):
        obj = obj()
    if not isinstance(obj, Worker):
        raise SystemExit(f"durable worker: {target} is not a durable.Worker")
    return obj


def migrate(
    test_clock: Annotated[
        bool | None,
        typer.Option(
            "--test-clock/--no-test-clock",
            help="mark (or unmark) this database as a test database, whose clock a transaction "
            "may move with durable.fake_now; left as it is by default",
        ),
    ] = None,
) -> None:
    """Bring the schema up to date (creates the roles when it may)."""
    url = database_url()
    check_connection(url)
    with (
        friendly_errors(),
        Progress(
            SpinnerColumn(), TextColumn("{task.description}"), transient=True, console=render.console()
        ) as p,
    ):
        p.add_task("migrating", total=None)
        result = run_migrate(url, test_clock=test_clock)
    applied = ", ".join(result.applied) or "none"
    print(f"migrations applied: {applied}; functions reloaded: {result.functions_reloaded}")


def worker(
    target: Annotated[str, typer.Argument(metavar="MODULE:WORKER", help="e.g. myapp.tasks:worker")],
    log_format: Annotated[
        str, typer.Option("--log-format", help="text or json (one object per line)")
    ] = "text",
) -> None:
    """Run the Worker defined in a module until SIGTERM/SIGINT."""
    if log_format not in ("text", "json"):
        fail(f"--log-format is text or json, got {log_format!r}", 2)
    export_database_url()
    from ..logs import configure

    configure(settings.log_level, log_format)
    try:
        instance = load_worker(target)
    except SystemExit as exc:
        fail(str(exc).removeprefix("durable worker: "), 2)
    if instance.dsn is None:
        os.environ.setdefault("DURABLE_DATABASE_URL", database_url())
        check_connection(os.environ["DURABLE_DATABASE_URL"])
    instance.run()


def demo() -> None:
    """A durable agent whose worker is killed with SIGKILL mid-run, and resumes on another."""
    from ..demo import run_demo

    url = database_url()
    check_connection(url)
    code = run_demo(url)
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.command("worker")(worker)
    app.command("demo")(demo)

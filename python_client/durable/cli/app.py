"""The Typer application of ``durable`` and ``main``, the console script's entry point."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Annotated

import typer

from . import check, dashboard, queues, run, schedules, tasks
from .context import CommandError, explain, settings
from .server import server_app

app = typer.Typer(
    name="durable",
    help="Durable execution in PostgreSQL: operate queues, tasks and workers from a terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        try:
            version = metadata.version("durable")
        except metadata.PackageNotFoundError:
            version = "unknown"
        print(f"durable {version}")
        raise typer.Exit()


@app.callback()
def options(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL URL (default: $DURABLE_DATABASE_URL, $DATABASE_URL, else the embedded server)",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="logging level")] = "INFO",
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Durable execution in PostgreSQL."""
    settings.database_url = database_url
    settings.debug = debug
    settings._resolved = None
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise CommandError(f"--log-level: unknown level {log_level!r} (debug, info, warning, error)", 2)
    settings.log_level = log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)


tasks.register(app)
queues.register(app)
schedules.register(app)
run.register(app)
check.register(app)
app.add_typer(server_app, name="server")
dashboard.register(app)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default: sys.argv); returns the exit status."""
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(argv) if argv is not None else None, prog_name="durable", standalone_mode=False
        )
    except CommandError as exc:
        if settings.debug and exc.__cause__ is not None:
            raise
        print(f"durable: {exc}", file=sys.stderr)
        return exc.code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        print("durable: aborted", file=sys.stderr)
        return 130
    except Exception as exc:
        # a mistake on the command line (click's UsageError and kin, which Typer vendors
        # in recent versions: recognised by what they offer, not by class)
        show, code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(code, int):
            show(file=sys.stderr)
            return code
        # anything else: one line, unless --debug
        if settings.debug:
            raise
        print(f"durable: {explain(exc)} (--debug shows the traceback)", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0

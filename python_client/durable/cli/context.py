"""What every command shares: the database it talks to, a client, friendly errors.

* The database is ``--database-url``, else ``DURABLE_DATABASE_URL``/``DATABASE_URL``,
  else the embedded PostgreSQL (said on stderr, with the command to see or stop it).
* Before the first verb the command connects once with a short timeout, so a wrong host
  or database name fails within seconds with the server's message, once.
* Errors become one line, ``durable: <problem> — <fix>``, and a non-zero exit status;
  ``--debug`` re-raises them with their traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

import psycopg
import typer

from .. import errors
from ..client import Client
from ..connections import connection_kwargs
from ..server import configured_url, default_data_dir, start_embedded

#: seconds the command waits for the server to answer before it gives up
CONNECT_TIMEOUT = 5


@dataclass
class Settings:
    """The global options of one invocation."""

    database_url: str | None = None
    debug: bool = False
    log_level: str = "INFO"
    _resolved: str | None = field(default=None, repr=False)


settings = Settings()


class CommandError(Exception):
    """An error the command reports in one line (``durable: ...``) with exit status ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 1) -> NoReturn:
    raise CommandError(message, code)


def database_url() -> str:
    """The URL the command uses; the embedded server's, started if needed, when none is set."""
    if settings._resolved is None:
        url = settings.database_url or configured_url()
        if url is None:
            print(
                f"durable: no DATABASE_URL set: using the embedded PostgreSQL in {default_data_dir()} "
                "(`durable server status`, `durable server stop`)",
                file=sys.stderr,
            )
            url = start_embedded()
        settings._resolved = url
    return settings._resolved


def check_connection(url: str) -> None:
    """Connects once, failing fast with the server's own message."""
    try:
        with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, **connection_kwargs()):
            pass
    except psycopg.OperationalError as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        fail(f"cannot connect to the database: {message} (check DATABASE_URL or --database-url)")


@contextlib.contextmanager
def client() -> Iterator[Client]:
    """A client with one connection to the command's database."""
    url = database_url()
    check_connection(url)
    with Client(url, min_size=1, max_size=1) as c:
        yield c


def _strip(message: str) -> str:
    return message[len("durable: ") :] if message.startswith("durable: ") else message


def explain(exc: BaseException) -> str:
    """One line for an error: the problem, and the fix where there is one."""
    message = _strip(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    if isinstance(exc, errors.UnknownQueue):
        queue = message.split("unknown queue", 1)[-1].strip()
        return (
            f"queue {queue} does not exist: create it with `durable queue create {queue.strip(chr(39))}`, "
            "or start a worker for it"
        )
    if isinstance(exc, errors.UnknownTask):
        return f"{message}: `durable tasks` lists the tasks"
    if isinstance(exc, errors.PermissionDenied):
        return f"{message} (see the README, Security)"
    if isinstance(exc, errors.DurableError):
        return message
    if isinstance(exc, psycopg.errors.InvalidSchemaName | psycopg.errors.UndefinedFunction):
        return "this database is not migrated (no durable schema or verb): run `durable migrate`"
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"{message}: the role lacks a durable group role (see the README, Security)"
    if isinstance(exc, psycopg.OperationalError):
        return f"the database connection failed: {message}"
    if isinstance(exc, psycopg.Error):
        return f"database error: {message}"
    return message


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turns the errors of a command into CommandError (one line), unless --debug."""
    try:
        yield
    except (CommandError, typer.Exit, typer.Abort):
        raise
    except (errors.DurableError, psycopg.Error) as exc:
        if settings.debug:
            raise
        raise CommandError(explain(exc)) from exc


def parse_json(text: str | None, what: str, *, default: Any = None, object_only: bool = False) -> Any:
    """A JSON argument, or a one-line error saying what is wrong with it."""
    if text is None:
        return default
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}): {text!r}", 2)
    if object_only and not isinstance(value, dict):
        fail(f"{what} must be a JSON object, like '{{\"key\": 1}}', got {text!r}", 2)
    return value


def export_database_url() -> None:
    """Passes --database-url on to code that reads the environment (worker modules)."""
    if settings.database_url:
        os.environ["DURABLE_DATABASE_URL"] = settings.database_url

"""Running commands on connections, and the connection pools of clients and workers.

The only I/O of the package besides the worker's LISTEN: :func:`execute` and
:func:`execute_async` send one :class:`~durable.commands.Command` and parse its rows,
turning database errors of class DU into the exceptions of :mod:`durable.errors`.
"""

from __future__ import annotations

import collections
import os
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import errors
from .commands import Command
from .server import database_url

T = TypeVar("T")

#: every connection of the package runs in autocommit: each verb is its own transaction
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True}

#: the environment variable that turns named prepared statements off for every entry point
PREPARED_STATEMENTS_ENV = "DURABLE_PREPARED_STATEMENTS"
_OFF = frozenset({"off", "false", "0", "no"})
_ON = frozenset({"on", "true", "1", "yes", ""})


def prepared_statements_enabled(prepared_statements: bool | None = None) -> bool:
    """Whether connections may use named prepared statements.

    ``prepared_statements`` when given, else ``DURABLE_PREPARED_STATEMENTS`` (``off``,
    ``false``, ``0`` or ``no`` turn them off), else on. Behind PgBouncer in transaction mode
    without prepared-statement support (before 1.21, or ``max_prepared_statements = 0``)
    they must be off: a statement prepared on one server connection is not on the next.
    """
    if prepared_statements is not None:
        return prepared_statements
    value = os.environ.get(PREPARED_STATEMENTS_ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    raise ValueError(f"{PREPARED_STATEMENTS_ENV} must be on or off, got {value!r}")


def connection_kwargs(prepared_statements: bool | None = None) -> dict[str, Any]:
    """The keyword arguments of every connection of the package: autocommit, and no named
    prepared statements when :func:`prepared_statements_enabled` says so (psycopg then
    sends every statement unnamed, as a transaction pooler needs)."""
    kwargs = dict(CONNECTION_KWARGS)
    if not prepared_statements_enabled(prepared_statements):
        kwargs["prepare_threshold"] = None
    return kwargs


def resolve_dsn(dsn: str | None) -> str:
    """``dsn``, or the configured/embedded server of :func:`durable.server.database_url`."""
    return dsn if dsn else database_url()


def execute(conn: psycopg.Connection[Any], command: Command[T]) -> T:
    """Run a command on a sync connection."""
    try:
        cursor = conn.execute(command.sql, command.params)
        rows = cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as exc:
        mapped = errors.from_psycopg(exc)
        if mapped is exc:
            raise
        raise mapped from exc
    return command.parse(rows)


async def execute_async(conn: psycopg.AsyncConnection[Any], command: Command[T]) -> T:
    """Run a command on an async connection."""
    try:
        cursor = await conn.execute(command.sql, command.params)
        rows = await cursor.fetchall() if cursor.description is not None else []
    except psycopg.Error as exc:
        mapped = errors.from_psycopg(exc)
        if mapped is exc:
            raise
        raise mapped from exc
    return command.parse(rows)


# psycopg_pool hands out its idle connections first in, first out: with two idle
# connections, calls one after the other alternate between them, so every call lands on
# a server process that has just been idle (measured: a durable step 0.1-0.15 ms slower
# than on one connection). Like the pools of other drivers (node-postgres, SQLAlchemy's
# pool_use_lifo), ours reuse the connection returned last. This relies on two internals
# of psycopg_pool (the idle deque ``_pool``, taken from the left by
# ``_get_ready_connection``); should they change, the pools are simply first in, first out.


def _most_recent_first(pool: Any) -> None:
    idle = getattr(pool, "_pool", None)
    if isinstance(idle, collections.deque) and len(idle) > 1:
        idle.rotate(1)  # the connection returned last goes first in line


class LifoConnectionPool(ConnectionPool):
    """A psycopg ConnectionPool that reuses the connection returned last."""

    def _get_ready_connection(self, timeout: float | None) -> Any:
        _most_recent_first(self)
        return super()._get_ready_connection(timeout)


class LifoAsyncConnectionPool(AsyncConnectionPool):
    """A psycopg AsyncConnectionPool that reuses the connection returned last."""

    async def _get_ready_connection(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - its signature
        _most_recent_first(self)
        return await super()._get_ready_connection(timeout)


def sync_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str | None = None,
    open: bool = True,
    prepared_statements: bool | None = None,
) -> ConnectionPool:
    """A pool of autocommit connections (opened unless ``open`` is False)."""
    return LifoConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs(prepared_statements),
        open=open,
        name=name,
    )


async def async_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 4,
    name: str | None = None,
    prepared_statements: bool | None = None,
) -> AsyncConnectionPool:
    """An opened async pool of autocommit connections."""
    pool: AsyncConnectionPool = LifoAsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs=connection_kwargs(prepared_statements),
        open=False,
        name=name,
    )
    await pool.open()
    return pool

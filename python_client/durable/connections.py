"""Running commands on connections, and the connection pools of clients and workers.

The only I/O of the package besides the worker's LISTEN: :func:`execute` and
:func:`execute_async` send one :class:`~durable.commands.Command` and parse its rows,
turning database errors of class DU into the exceptions of :mod:`durable.errors`.
"""

from __future__ import annotations

from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import errors
from .commands import Command
from .server import database_url

T = TypeVar("T")

#: every connection of the package runs in autocommit: each verb is its own transaction
CONNECTION_KWARGS: dict[str, Any] = {"autocommit": True}


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


def sync_pool(dsn: str, *, min_size: int = 1, max_size: int = 4, name: str | None = None) -> ConnectionPool:
    """An opened pool of autocommit connections."""
    return ConnectionPool(
        dsn, min_size=min_size, max_size=max_size, kwargs=dict(CONNECTION_KWARGS), open=True, name=name
    )


async def async_pool(
    dsn: str, *, min_size: int = 1, max_size: int = 4, name: str | None = None
) -> AsyncConnectionPool:
    """An opened async pool of autocommit connections."""
    pool: AsyncConnectionPool = AsyncConnectionPool(
        dsn, min_size=min_size, max_size=max_size, kwargs=dict(CONNECTION_KWARGS), open=False, name=name
    )
    await pool.open()
    return pool

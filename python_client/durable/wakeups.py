"""Push wake-ups: a worker's LISTEN connection, checked before it is trusted.

``durable.enqueue`` (and every verb that makes a task ready) sends ``NOTIFY durable``
with the queue's name. The worker LISTENs on a connection of its own, to ``listen_url``
when given (a direct connection beside a pooled one), else to its database URL. Behind
PgBouncer in transaction mode LISTEN is accepted but nothing arrives: so after LISTEN the
worker sends itself a probe notification from its pool and waits for it. When the probe
does not come back, it says so once and polls (``poll_interval``); when it does, every
notification for its queue wakes its claim loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from .commands import Command

logger = logging.getLogger("durable.worker")

#: how long the worker waits for its probe notification before it decides LISTEN is deaf
PROBE_SECONDS = 5.0
_PROBE_CHANNEL = "durable_probe"


def _probe(payload: str) -> Command[None]:
    return Command("select pg_notify('durable_probe', %s)", (payload,), lambda rows: None)


async def listen_loop(
    url: str,
    queue: str,
    wake: asyncio.Event,
    call: Callable[[Command[Any]], Awaitable[Any]],
    poll_interval: float,
) -> None:
    """LISTEN for ``queue`` on ``url`` and set ``wake`` on each of its notifications, until
    cancelled; returns (the worker then only polls) when the probe shows LISTEN is deaf."""
    delay = 0.5
    checked = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute("listen durable")
                if not checked:
                    if not await _heard_probe(conn, call):
                        logger.warning(
                            "LISTEN does not deliver notifications on this connection (a transaction "
                            "pooler such as PgBouncer?): polling every %.1f s. Give the worker a "
                            "direct connection for push wake-ups: listen_url= or DURABLE_LISTEN_URL",
                            poll_interval,
                        )
                        return
                    checked = True
                    logger.info("push wake-ups: LISTEN durable")
                delay = 0.5
                wake.set()  # notifications may have been missed while (re)connecting
                async for notify in conn.notifies():
                    if notify.channel == "durable" and notify.payload == queue:
                        wake.set()
        except (psycopg.Error, OSError) as exc:
            logger.warning("LISTEN connection failed (%s); polling until it is back", exc)
        except Exception:
            logger.exception("LISTEN loop error; polling until it is back")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


async def _heard_probe(
    conn: psycopg.AsyncConnection[Any], call: Callable[[Command[Any]], Awaitable[Any]]
) -> bool:
    """Sends a probe notification from another connection; True once the LISTEN connection
    hears it, False after PROBE_SECONDS."""
    await conn.execute(f"listen {_PROBE_CHANNEL}")
    payload = secrets.token_hex(8)
    await call(_probe(payload))
    heard = False
    async for notify in conn.notifies(timeout=PROBE_SECONDS):
        if notify.channel == _PROBE_CHANNEL and notify.payload == payload:
            heard = True
            break
    await conn.execute(f"unlisten {_PROBE_CHANNEL}")
    return heard

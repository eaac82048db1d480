"""``Client`` and ``AsyncClient``: enqueue, inspect, cancel and wait for tasks.

Both are thin: each method builds a command of :mod:`durable.commands` and runs it on a
pooled autocommit connection. They have the same methods; the async ones are awaited.
``AsyncClient`` (``aio_client.py``) is the source: ``scripts/async_to_sync.py`` writes
``Client`` (``sync_client.py``) from it.
"""

from __future__ import annotations

from .aio_client import AsyncClient
from .sync_client import Client

__all__ = ["AsyncClient", "Client"]

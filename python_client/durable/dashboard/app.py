"""The Starlette application of ``durable dashboard`` and how to serve it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware

from durable import Client

from .auth import Csrf, TokenMiddleware, check_bind
from .metrics import registry
from .queries import Reads
from .routes import Pages

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642


def create_app(database_url: str, operator_url: str | None = None, token: str | None = None) -> Starlette:
    """The dashboard: reads with ``database_url`` (a reader is enough), acts with
    ``operator_url`` (default: the same URL); every request needs ``token`` when one is given."""
    reader = Client(database_url, min_size=1, max_size=4)
    operator = Client(operator_url or database_url, min_size=0, max_size=2)
    reads = Reads(reader)
    pages = Pages(reads, operator, Csrf(), registry(reads.metrics))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            reader.close()
            operator.close()

    return Starlette(
        routes=pages.routes(),
        middleware=[Middleware(TokenMiddleware, token=token)],
        lifespan=lifespan,
    )


def serve(
    database_url: str,
    operator_url: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    token: str | None = None,
) -> None:
    """Runs the dashboard with uvicorn until interrupted; ValueError for a bind that needs a token."""
    import uvicorn

    check_bind(host, token)
    uvicorn.run(create_app(database_url, operator_url, token), host=host, port=port, log_level="warning")

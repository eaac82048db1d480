"""A PgBouncer of the tests' own, in front of the server under test.

``start_pgbouncer`` writes a configuration in a temporary directory (trust
authentication for the given users, the given pool mode, every database forwarded to the
server of ``server_url``), starts Debian's ``pgbouncer`` on a free port and waits until it
answers. Run as root, PgBouncer must switch to another user: ``nobody`` for a server on
TCP, the owner of the socket's directory for a server on a Unix socket (the embedded
PostgreSQL's is in its data directory).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo


def pgbouncer_binary() -> str:
    """The pgbouncer executable: CI installs Debian's; elsewhere a test without it skips."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
    )
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is not installed (.ci/run installs Debian's package)")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; CI installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def start_pgbouncer(
    server_url: str,
    users: Sequence[str],
    *,
    pool_mode: str = "transaction",
    pool_size: int = 2,
) -> Iterator[int]:
    """Runs a PgBouncer for ``server_url``'s server; yields its port."""
    binary = pgbouncer_binary()
    server = conninfo_to_dict(server_url)
    host = str(server.get("host") or "127.0.0.1")
    port = str(server.get("port") or 5432)
    directory = Path(tempfile.mkdtemp(prefix="durable-pgbouncer-"))
    directory.chmod(0o755)
    listen_port = _free_port()
    (directory / "users.txt").write_text("".join(f'"{user}" ""\n' for user in users))
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={host} port={port}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {listen_port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {pool_size}\n"
        "max_client_conn = 500\n"
        # the server's own idle connections are not to be closed under the tests
        "server_idle_timeout = 0\n"
        "ignore_startup_parameters = extra_float_digits,options\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (directory / name).chmod(0o644)
    command = [binary]
    if os.geteuid() == 0:
        user = Path(host).owner() if host.startswith("/") else "nobody"
        command += ["-u", user]
    command.append(str(directory / "pgbouncer.ini"))
    log = (directory / "pgbouncer.log").open("wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = make_conninfo(server_url, host="127.0.0.1", port=str(listen_port), user=users[0])
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {(directory / 'pgbouncer.log').read_text()}")
            try:
                with psycopg.connect(url, connect_timeout=2, prepare_threshold=None) as conn:
                    conn.execute("select 1")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield listen_port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def through(url: str, port: int) -> str:
    """``url`` (same user and database) through the PgBouncer listening on ``port``."""
    return make_conninfo(url, host="127.0.0.1", port=str(port))

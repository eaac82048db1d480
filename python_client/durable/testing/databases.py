"""The databases a test run creates on the server, and their removal: a run leaves none.

Every database a run creates is named ``durable_<kind>_<where>_<pid>_<epoch>_<random>``:
``kind`` is ``tmpl`` (the session's template), ``t`` (a test's copy) or another short
word; ``where`` is a digest of the boot and the PID namespace of the creating process
(where its PID means something); ``pid`` is that process; ``epoch`` when it created the
database (seconds). A process drops what it created (``drop_created``, at the end of the
session and again at exit); a run that was killed leaves its databases behind, and a later
run drops them (``drop_stale``): those whose ``where`` is its own, whose ``pid`` is not
alive, that are older than ``STALE_AFTER`` and that nobody is connected to. A database of
a live run (this machine's or another's) is never dropped; nor is one named otherwise
(older runs' names, other tools').

The project's own tests (tests/conftest.py) and the time-skipping harness
(:mod:`durable.testing`) make their databases here: the harness's are
``durable_harness...`` (its template) and ``durable_harnesst...`` (a test's copy), made by
:func:`create_test_template` and :func:`create_test_database`.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: A database of a dead run is dropped by a later run once it is this old (seconds).
STALE_AFTER = 2 * 3600.0

_NAME = re.compile(r"^durable_([a-z]+)_([0-9a-f]{8})_([0-9]+)_([0-9]+)_[0-9a-f]+$")

#: What this process created and has not dropped yet: database name -> maintenance URL.
_created: dict[str, str] = {}
_lock = threading.Lock()
_atexit_registered = False


def _where() -> str:
    """Where a PID names a process: this boot and this PID namespace (else this host)."""
    parts: list[str] = []
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    if not parts:
        parts.append(socket.gethostname())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


WHERE = _where()


def new_name(kind: str) -> str:
    """A database name for this process, of the given kind (a short lowercase word)."""
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"kind must be lowercase letters: {kind!r}")
    return f"durable_{kind}_{WHERE}_{os.getpid()}_{int(time.time())}_{uuid.uuid4().hex[:6]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_stale(name: str, now: float | None = None, older_than: float = STALE_AFTER) -> bool:
    """Whether ``name`` is a database of a run that died (on this machine, PID namespace
    included) at least ``older_than`` seconds after it created it. Connections are not
    looked at here (``drop_stale`` does)."""
    m = _NAME.match(name)
    if m is None or m.group(2) != WHERE:
        return False
    pid, created = int(m.group(3)), int(m.group(4))
    if pid == os.getpid() or _pid_alive(pid):
        return False
    return (time.time() if now is None else now) - created >= older_than


def register(server_url: str, name: str) -> None:
    """Records ``name`` as created by this process (before its CREATE DATABASE is sent, so
    that one interrupted halfway is dropped too); it is dropped at exit at the latest."""
    global _atexit_registered
    with _lock:
        _created[name] = server_url
        if not _atexit_registered:
            atexit.register(drop_created)
            _atexit_registered = True


def create(server_url: str, name: str, template: str | None = None) -> None:
    """Creates database ``name`` (from ``new_name``; copied from ``template`` if given)."""
    register(server_url, name)
    statement = sql.SQL("create database {}").format(sql.Identifier(name))
    if template is not None:
        statement = sql.SQL("{} template {}").format(statement, sql.Identifier(template))
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(statement)


def _drop(admin: psycopg.Connection[Any], name: str) -> None:
    """Drops ``name``, ending every other session on it first (again, for a while, while a
    session of its own keeps coming back: a worker thread reconnecting)."""
    for attempt in range(20):
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = %s and pid <> pg_backend_pid()",
            (name,),
        )
        try:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
            return
        except psycopg.errors.ObjectInUse:
            if attempt == 19:
                raise
            time.sleep(0.25)


def drop(server_url: str, names: Iterable[str]) -> None:
    """Drops these databases of this process (every one of them: the first error is raised
    after the others were tried) and forgets them."""
    names = list(names)
    if not names:
        return
    error: BaseException | None = None
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        for name in names:
            try:
                _drop(admin, name)
            except psycopg.Error as exc:
                error = error or exc
                continue
            with _lock:
                _created.pop(name, None)
    if error is not None:
        raise error


def created(server_url: str | None = None) -> list[str]:
    """The databases this process created and has not dropped yet (on that server)."""
    with _lock:
        return [name for name, url in _created.items() if server_url in (None, url)]


def drop_created() -> None:
    """Drops whatever this process created and has not dropped yet (at the end of the
    session, and at exit); errors are swallowed (the server may be gone already)."""
    with _lock:
        by_server: dict[str, list[str]] = {}
        for name, url in _created.items():
            by_server.setdefault(url, []).append(name)
    for url, names in by_server.items():
        with contextlib.suppress(psycopg.Error):
            drop(url, names)


def drop_stale(
    server_url: str, older_than: float = STALE_AFTER, only: Collection[str] | None = None
) -> list[str]:
    """Drops the databases that runs which died left on this server (see the module's
    docstring), of ``only`` these if given, and returns their names. One that someone is
    connected to is left alone."""
    dropped: list[str] = []
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as admin:
        rows = admin.execute(
            "select d.datname from pg_database d where d.datname like 'durable\\_%'"
            " and not exists (select from pg_stat_activity a where a.datname = d.datname)"
        ).fetchall()
        for (name,) in rows:
            if (only is not None and name not in only) or not is_stale(name, older_than=older_than):
                continue
            # no FORCE: should anyone connect after all, the drop fails and the database stays
            with contextlib.suppress(psycopg.errors.ObjectInUse, psycopg.errors.InvalidCatalogName):
                admin.execute(sql.SQL("drop database {}").format(sql.Identifier(name)))
                dropped.append(name)
    return dropped


def url_of(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``."""
    return make_conninfo(server_url, dbname=name)


def on_shared_clock(url: str) -> str:
    """``url`` with ``-c durable.fake_now=shared`` added to its libpq ``options``: every
    session opened with it reads the database's shared test clock (plpgsql/test_clock.sql).
    (A session may set that setting itself, whatever its role; ALTER DATABASE ... SET of it
    would need a superuser.)"""
    options = str(conninfo_to_dict(url).get("options") or "")
    return make_conninfo(url, options=f"{options} -c durable.fake_now=shared".strip())


def create_test_template(server_url: str) -> str:
    """Creates a database migrated as a test database (``durable migrate --test-clock``),
    to copy with :func:`create_test_database`; returns its name."""
    from ..migrate import migrate

    name = new_name("harness")
    create(server_url, name)
    migrate(url_of(server_url, name), test_clock=True)
    return name


def create_test_database(server_url: str, template: str | None = None) -> str:
    """Creates a migrated test database (a copy of ``template``, a database of
    :func:`create_test_template`, else migrated here); returns its URL, on the shared test
    clock (:func:`on_shared_clock`). Drop it with :func:`drop_test_database`."""
    from ..migrate import migrate

    name = new_name("harnesst")
    create(server_url, name, template=template)
    url = url_of(server_url, name)
    if template is None:
        migrate(url, test_clock=True)
    return on_shared_clock(url)


def name_of(url: str) -> str:
    """The database name of a URL."""
    return str(conninfo_to_dict(url)["dbname"])


def drop_test_database(server_url: str, url: str) -> None:
    """Drops a database of :func:`create_test_database`."""
    drop(server_url, [name_of(url)])

"""The suite runs unprivileged: Workers and Clients connect as the login roles of a
deployment (made by tests/conftest.py), which hold only the group roles; a durable
workflow (steps, sleep, event, child task) runs end to end as those roles."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pyclient_support import ThreadedWorker, wait_until

from durable import Client, Worker, commands
from durable.commands import Command
from durable.connections import execute
from durable.errors import PermissionDenied
from durable.workflow import DurableContext

WORKER_ROLE = "durable_test_worker"
CLIENT_ROLE = "durable_test_client"
GROUP_ROLES = ("durable_owner", "durable_worker", "durable_producer", "durable_operator", "durable_reader")

StartWorker = Callable[[Worker], ThreadedWorker]


def whoami() -> Command[tuple[str, str]]:
    """The role in effect and the role that logged in."""
    return Command(
        "select current_user::text, session_user::text", (), lambda rows: (str(rows[0][0]), str(rows[0][1]))
    )


def test_workers_and_clients_connect_as_the_login_roles(
    worker_url: str, client: Client, conn: psycopg.Connection[Any], start_worker: StartWorker
) -> None:
    assert client.run(whoami()) == (CLIENT_ROLE, CLIENT_ROLE)

    worker = Worker(worker_url, "roles", name="whoami", poll_interval=0.1)
    seen_by_worker: list[tuple[str, str]] = []

    @worker.task
    async def report(input: dict[str, Any]) -> list[str]:
        # on the worker's own pool (a private method: no public verb says who is calling)
        seen_by_worker.append(await worker._call(whoami()))
        await asyncio.sleep(float(input["hold"]))
        return list(seen_by_worker[-1])

    client.create_queue("roles")
    start_worker(worker)
    task_id = client.enqueue("roles", "report", {"hold": 1})
    wait_until(lambda: seen_by_worker, what="the task to ask who it is")
    # every session on the test database but the superuser's own (this one) is a login
    # role: the worker's pool and its LISTEN connection, the client's pool
    sessions = conn.execute(
        "select usename::text, count(*) from pg_stat_activity"
        " where datname = current_database() and pid <> pg_backend_pid() group by usename"
    ).fetchall()
    assert {role for role, _ in sessions} == {WORKER_ROLE, CLIENT_ROLE}, sessions
    assert client.wait(task_id, timeout=30) == [WORKER_ROLE, WORKER_ROLE]
    assert seen_by_worker == [(WORKER_ROLE, WORKER_ROLE)]


def test_the_login_roles_hold_only_their_group_roles_and_no_attribute(conn: psycopg.Connection[Any]) -> None:
    rows = conn.execute(
        "select rolname::text, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls,"
        " rolcanlogin from pg_roles where rolname = any(%s) order by rolname",
        ([CLIENT_ROLE, WORKER_ROLE],),
    ).fetchall()
    assert rows == [
        (CLIENT_ROLE, False, False, False, False, False, True),
        (WORKER_ROLE, False, False, False, False, False, True),
    ]

    def granted(role: str) -> set[str]:
        """The roles ``role`` was made a member of."""
        rows = conn.execute(
            "select roleid::regrole::text from pg_auth_members where member = %s::regrole", (role,)
        ).fetchall()
        return {r[0] for r in rows}

    def member_of(role: str) -> set[str]:
        """The durable roles whose privileges ``role`` has, directly or through another."""
        return {
            g
            for g in GROUP_ROLES
            if conn.execute("select pg_has_role(%s, %s, 'usage')", (role, g)).fetchone() == (True,)
        }

    assert granted(WORKER_ROLE) == {"durable_worker"}
    assert member_of(WORKER_ROLE) == {"durable_worker"}
    assert granted(CLIENT_ROLE) == {"durable_producer", "durable_operator"}
    assert member_of(CLIENT_ROLE) == {"durable_producer", "durable_operator", "durable_reader"}


def test_neither_role_may_read_a_table(db_url: str, worker_url: str, conn: psycopg.Connection[Any]) -> None:
    tables = [
        str(name)
        for (name,) in conn.execute(
            "select c.oid::regclass::text from pg_class c"
            " where c.relnamespace = 'durable'::regnamespace and c.relkind in ('r', 'p', 'v', 'm')"
        ).fetchall()
    ]
    assert "durable.tasks" in tables
    for url in (worker_url, db_url):
        with psycopg.connect(url, autocommit=True) as c:
            for table in tables:
                with pytest.raises(psycopg.errors.InsufficientPrivilege) as denied:
                    c.execute(f"select * from {table}".encode())
                assert denied.value.sqlstate == "42501", table


def test_each_role_may_call_only_its_own_verbs(client: Client, worker_url: str) -> None:
    client.create_queue("q")
    with psycopg.connect(worker_url, autocommit=True) as worker:
        # a worker makes no queue (ensure_queue is its way) and enqueues nothing
        with pytest.raises(PermissionDenied) as denied:
            execute(worker, commands.create_queue("q", {}))
        assert denied.value.sqlstate == "42501"
        with pytest.raises(PermissionDenied):
            execute(worker, commands.enqueue("q", "t", {}, {}))
        assert execute(worker, commands.ensure_queue("w")) is True
    # a client claims nothing
    with pytest.raises(PermissionDenied):
        client.run(commands.claim("q", "client", 1, 30, None))


def test_a_durable_workflow_runs_end_to_end_as_the_login_roles(
    worker_url: str, client: Client, start_worker: StartWorker
) -> None:
    worker = Worker(worker_url, "flows", name="flows", poll_interval=0.1)

    @worker.task
    def double(input: dict[str, Any]) -> int:
        return int(input["n"]) * 2

    def plan(n: int) -> int:
        return n + 1

    @worker.durable_task
    async def flow(input: dict[str, Any], ctx: DurableContext) -> dict[str, Any]:
        planned = await ctx.step("plan", plan, int(input["n"]))
        await ctx.sleep(0.5, name="pause")
        approval = await ctx.wait_for_event(f"approve:{ctx.task_id}", timeout=60)
        child = await ctx.spawn("double", {"n": planned})
        doubled = await child.result()
        return {"planned": planned, "by": approval["by"], "doubled": doubled}

    client.create_queue("flows", backoff={"kind": "none"})
    start_worker(worker)
    task_id = client.enqueue("flows", "flow", {"n": 20}, durable=True)
    wait_until(lambda: client.get_task(task_id).status == "waiting", what="the task to wait for its event")
    assert client.emit_event("flows", f"approve:{task_id}", {"by": "alice"}) == 1
    assert client.wait(task_id, timeout=30) == {"planned": 21, "by": "alice", "doubled": 42}

    history = client.history(task_id)
    assert [(e.kind, e.name) for e in history][:3] == [
        ("step", "plan"),
        ("sleep", "pause"),
        ("wait", f"approve:{task_id}"),
    ]
    assert [e.kind for e in history][3:] == ["spawn", "children"]
    child_id = uuid.UUID(history[3].result["task_id"])
    child = client.get_task(child_id)
    assert (child.status, child.task_name, child.output) == ("completed", "double", 42)
    info = client.get_task(task_id)
    assert info.status == "completed"
    assert [a.outcome for a in info.attempts][-1] == "completed"
    assert all(a.outcome in ("suspended", "completed") for a in info.attempts), info.attempts

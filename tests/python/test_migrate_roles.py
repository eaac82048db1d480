"""Migrating as a managed-PostgreSQL administrator (CREATEROLE, not a superuser), and what a
role that may not migrate is told."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from durable.errors import MigrationError
from durable.migrate import GROUP_ROLES, OWNER_ROLE, migrate, role_statements
from durable.testing import databases as testdb


def _server_version(admin: psycopg.Connection[Any]) -> int:
    row = admin.execute("show server_version_num").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def scratch(server_url: str) -> Iterator[tuple[str, str, str]]:
    """A fresh, unmigrated database owned by a new login role with CREATEROLE (and no
    superuser), and a third role with no right at all: (database url of the manager, url of
    the powerless role, manager's name)."""
    suffix = uuid.uuid4().hex[:8]
    manager, powerless, dbname = (
        f"durable_mgr_{suffix}",
        f"durable_nobody_{suffix}",
        testdb.new_name("mgr"),
    )
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login createrole").format(sql.Identifier(manager)))
        admin.execute(sql.SQL("create role {} login").format(sql.Identifier(powerless)))
        if _server_version(admin) >= 160000:
            # PostgreSQL 16+: a CREATEROLE role administers the roles it created. Those of the
            # roles that exist already in this cluster (when the test template was migrated
            # first, by the superuser): give the manager what it would have had, had it
            # created them itself. The others it creates in the test.
            existing = admin.execute(
                "select rolname from pg_roles where rolname = any(%s)", ([OWNER_ROLE, *GROUP_ROLES],)
            ).fetchall()
            for (role,) in existing:
                admin.execute(
                    sql.SQL("grant {} to {} with admin option, inherit false, set false").format(
                        sql.Identifier(role), sql.Identifier(manager)
                    )
                )
        testdb.register(server_url, dbname)
        admin.execute(
            sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(manager))
        )
    db_url = make_conninfo(server_url, dbname=dbname)
    try:
        yield make_conninfo(db_url, user=manager), make_conninfo(db_url, user=powerless), manager
    finally:
        testdb.drop(server_url, [dbname])
        with psycopg.connect(server_url, autocommit=True) as admin:
            for role in (manager, powerless):
                # the role memberships the manager granted (it may have created the roles) pass
                # to the superuser, so that the manager can go
                admin.execute(sql.SQL("reassign owned by {} to current_user").format(sql.Identifier(role)))
                admin.execute(sql.SQL("drop owned by {}").format(sql.Identifier(role)))
                admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_createrole_administrator_migrates_and_the_owner_role_owns_everything(
    scratch: tuple[str, str, str],
) -> None:
    manager_url, _, manager = scratch
    with psycopg.connect(manager_url, autocommit=True) as conn:
        row = conn.execute(
            "select rolsuper, rolcreaterole from pg_roles where rolname = current_user"
        ).fetchone()
        assert row == (False, True)
        result = migrate(conn)
        assert result.applied and result.functions_reloaded
        assert migrate(conn).applied == []
        owners = conn.execute(
            """
            select distinct pg_get_userbyid(c.relowner) from pg_class c
            where c.relnamespace = 'durable'::regnamespace
            union
            select distinct pg_get_userbyid(p.proowner) from pg_proc p
            where p.pronamespace = 'durable'::regnamespace
            union
            select pg_get_userbyid(n.nspowner) from pg_namespace n where n.nspname = 'durable'
            """
        ).fetchall()
        assert owners == [(OWNER_ROLE,)]
        # the manager belongs to the owner now, and so may use the verbs
        queue = conn.execute("select durable.create_queue('mgr')").fetchone()
        assert queue == ({},)
        assert conn.execute("select pg_has_role(current_user, %s, 'member')", (OWNER_ROLE,)).fetchone() == (
            True,
        )
    assert manager not in {OWNER_ROLE, *GROUP_ROLES}


def test_a_role_that_may_not_migrate_is_told_the_statements_to_run(scratch: tuple[str, str, str]) -> None:
    manager_url, powerless_url, _ = scratch
    migrate(manager_url)
    powerless = psycopg.conninfo.conninfo_to_dict(powerless_url)["user"]
    with pytest.raises(MigrationError) as raised:
        migrate(powerless_url)
    message = str(raised.value)
    assert f'grant {OWNER_ROLE} to "{powerless}";' in message
    assert "administrator must first run" in message
    # nothing was changed: the migration it refused ran no statement
    with psycopg.connect(manager_url, autocommit=True) as conn:
        applied = conn.execute("select count(*) from durable.schema_migrations").fetchone()
        assert applied is not None and applied[0] >= 5


def test_role_statements_name_every_role_and_quote_the_migrating_role() -> None:
    statements = role_statements('Ops "Team"')
    assert statements[: 1 + len(GROUP_ROLES)] == [
        f"create role {name} nologin;" for name in (OWNER_ROLE, *GROUP_ROLES)
    ]
    assert "grant durable_reader to durable_producer;" in statements
    assert "grant durable_reader to durable_operator;" in statements
    assert statements[-1] == f'grant {OWNER_ROLE} to "Ops ""Team""";'


def test_migrate_drops_the_functions_the_files_no_longer_define(conn: psycopg.Connection[Any]) -> None:
    # an old signature of a verb, as a migration that changed its arguments leaves behind
    conn.execute("set role durable_owner")
    conn.execute(
        "create function durable.claim(p_queue text, p_worker text, p_max_tasks integer default 1)"
        " returns integer language sql set search_path = pg_catalog, durable, pg_temp as 'select 0'"
    )
    conn.execute("reset role")
    conn.execute("select durable.create_queue('old')")
    with pytest.raises(psycopg.errors.AmbiguousFunction):
        conn.execute("select * from durable.claim('old', 'w')")
    # the function files changed since the last migration: they are applied again
    conn.execute("update durable.schema_migrations set checksum = 'changed' where version = 'plpgsql'")
    result = migrate(conn)
    assert result.functions_reloaded
    signatures = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'durable'::regnamespace and p.proname = 'claim'"
    ).fetchall()
    assert signatures == [("durable.claim(text,text,integer,integer,text[])",)]
    assert conn.execute("select count(*) from durable.claim('old', 'w')").fetchone() == (0,)

"""The claim under a pinned xmin horizon (plpgsql/ready.sql): a transaction left open in
another session keeps every claimed row's index entry, and the claims, each in a
transaction of its own as workers make them, raise their queue's floor past them once a
second, so a claim's scan starts after what was claimed before the last raise. Checked
by what the scan reads: the index entries of durable.ready a claim's plan visits, from
the statistics of ready_claim_idx (pg_stat_user_indexes.idx_tup_read), with the turn of
the raise forced due between claims instead of waiting a second."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from durable import Client, TaskSpec


def entries_read(conn: psycopg.Connection[Any]) -> int:
    conn.execute("select pg_stat_clear_snapshot()")
    row = conn.execute(
        "select idx_tup_read from pg_stat_user_indexes where indexrelname = 'ready_claim_idx'"
    ).fetchone()
    assert row is not None
    return int(row[0])


def claim_one(worker: psycopg.Connection[Any]) -> int:
    # autocommit: the claim is its own transaction, as workers make it
    return len(worker.execute("select task_id from durable.claim('p', 'w', 1)").fetchall())


def test_claims_under_a_pin_start_at_the_raised_floor(
    admin_url: str, worker_url: str, client: Client, conn: psycopg.Connection[Any]
) -> None:
    # the worker's session flushes its statistics at once after each claim (a superuser's
    # right, granted here in this test's database only)
    conn.execute("grant execute on function pg_stat_force_next_flush() to durable_test_worker")
    client.create_queue("p")
    client.enqueue_many("p", [TaskSpec("job", {}) for _ in range(600)])
    with (
        psycopg.connect(make_conninfo(admin_url), autocommit=True) as pin,
        psycopg.connect(worker_url, autocommit=True) as worker,
    ):
        # the pin: a snapshot held open in another session
        pin.execute("begin isolation level repeatable read")
        pin.execute("select count(*) from pg_class")
        for _ in range(500):
            assert claim_one(worker) == 1
        # raises came only once a second: force the next turn, then one claim raises
        conn.execute("update durable.queues set swept_at = '-infinity' where queue = 'p'")
        assert claim_one(worker) == 1
        floor = conn.execute("select seq from durable._ready_floor('p', '')").fetchone()
        first = conn.execute("select min(seq) from durable.ready where queue = 'p'").fetchone()
        assert floor is not None and first is not None
        assert floor[0] == first[0], "the floor is raised to the first row left"
        # the pin keeps the 501 claimed rows' entries; a claim from the floor skips them
        worker.execute("select pg_stat_force_next_flush()")
        before = entries_read(conn)
        assert claim_one(worker) == 1
        worker.execute("select pg_stat_force_next_flush()")
        after = entries_read(conn)
        read = after - before
        assert read < 50, f"a claim read {read} index entries (501 dead ones lie before the floor)"
        # and without the floor (its slots gone: the scan starts at the head) it reads them all
        conn.execute("delete from durable.ready_floors where queue = 'p'")
        before = entries_read(conn)
        assert claim_one(worker) == 1
        worker.execute("select pg_stat_force_next_flush()")
        after = entries_read(conn)
        assert after - before > 500, f"from the head, a claim read {after - before} entries"
        pin.execute("rollback")

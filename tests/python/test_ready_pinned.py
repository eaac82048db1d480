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
import pytest
from psycopg.conninfo import make_conninfo

from durable import Client, TaskSpec


def index_reads(conn: psycopg.Connection[Any], index: str) -> tuple[int, int]:
    """The index entries the index returned so far, and the blocks of it read."""
    conn.execute("select pg_stat_clear_snapshot()")
    row = conn.execute(
        "select s.idx_tup_read, io.idx_blks_hit + io.idx_blks_read"
        " from pg_stat_user_indexes s join pg_statio_user_indexes io using (indexrelid)"
        " where s.indexrelname = %s",
        (index,),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# a claim of any task (from the queue's floor, ready_claim_idx), and a claim for the task
# names a worker passes (from each name's floor, ready_name_idx: the Worker's claims)
CLAIMS = [(None, "ready_claim_idx", ""), (["job", "other"], "ready_name_idx", "job")]


@pytest.mark.parametrize(("names", "index", "floor_of"), CLAIMS, ids=["any name", "by names"])
def test_claims_under_a_pin_start_at_the_raised_floor(
    admin_url: str,
    worker_url: str,
    client: Client,
    conn: psycopg.Connection[Any],
    names: list[str] | None,
    index: str,
    floor_of: str,
) -> None:
    def claim(worker: psycopg.Connection[Any], n: int = 1) -> int:
        # autocommit: the claim is its own transaction, as workers make it
        return len(
            worker.execute("select task_id from durable.claim('p', 'w', %s, 30, %s)", (n, names)).fetchall()
        )

    def one_claim_reads(worker: psycopg.Connection[Any]) -> tuple[int, int]:
        worker.execute("select pg_stat_force_next_flush()")
        entries, blocks = index_reads(conn, index)
        assert claim(worker) == 1
        worker.execute("select pg_stat_force_next_flush()")
        entries_after, blocks_after = index_reads(conn, index)
        return entries_after - entries, blocks_after - blocks

    # the worker's session flushes its statistics at once after each claim (a superuser's
    # right, granted here in this test's database only)
    conn.execute("grant execute on function pg_stat_force_next_flush() to durable_test_worker")
    client.create_queue("p")
    client.enqueue_many("p", [TaskSpec("job", {}) for _ in range(3100)])
    with (
        psycopg.connect(make_conninfo(admin_url), autocommit=True) as pin,
        psycopg.connect(worker_url, autocommit=True) as worker,
    ):
        # the pin: a snapshot held open in another session
        pin.execute("begin isolation level repeatable read")
        pin.execute("select count(*) from pg_class")
        for _ in range(30):
            assert claim(worker, 100) == 100
        # raises came only once a second: force the next turn, then one claim raises
        conn.execute("update durable.queues set swept_at = '-infinity' where queue = 'p'")
        assert claim(worker) == 1
        floor = conn.execute("select seq from durable._ready_floor('p', %s)", (floor_of,)).fetchone()
        first = conn.execute("select min(seq) from durable.ready where queue = 'p'").fetchone()
        assert floor is not None and first is not None
        assert floor[0] == first[0], "the floor is raised to the first row left"
        # the pin keeps the 3,001 claimed rows' entries; a claim from the floor starts past
        # them: it neither returns them (each a visit of its row) nor walks their pages
        entries, blocks = one_claim_reads(worker)
        assert entries < 50, f"a claim read {entries} index entries (3,001 dead ones lie before the floor)"
        assert blocks < 10, (
            f"a claim read {blocks} blocks of {index} (3,001 dead entries lie before the floor)"
        )
        # and without the floor (its slots gone: the scan starts at the head) it reads them all
        conn.execute("delete from durable.ready_floors where queue = 'p'")
        entries, blocks = one_claim_reads(worker)
        assert entries > 3000, f"from the head, a claim read {entries} entries"
        assert blocks > 15, f"from the head, a claim read {blocks} blocks"
        pin.execute("rollback")

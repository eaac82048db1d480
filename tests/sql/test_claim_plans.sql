-- What a claim reads, whatever the statistics say and whoever died (plpgsql/claim.sql):
-- - a claim for some task names reads each name's rows through ready_name_idx, even when
--   the statistics know one name only (a generic plan then found ready_claim_idx, filtered
--   by name, as cheap, and walked every row of the queue for a name without any);
-- - so does the raise of the floors (plpgsql/ready.sql) for a name without rows, whatever
--   the plan cache chose;
-- - the tasks of a dead worker are looked for on the queue's once-a-second turn, by worker
--   name: the claims between two turns do not look (each one walked the queue's running
--   tasks while a dead worker stayed registered, an hour).
-- Counted inside one transaction: the index entries each index returned
-- (pg_stat_get_xact_tuples_returned).
select plan(11);

\ir helpers/tasks.sql

create function pg_temp.reads(p_index text) returns bigint language sql
    as $$ select pg_stat_get_xact_tuples_returned(p_index::regclass) $$;
create temp table before (index_name text primary key, n bigint);
create function pg_temp.mark() returns void language sql as $$
    delete from before;
    insert into before
    select i, pg_temp.reads(i)
    from unnest(array['durable.ready_claim_idx', 'durable.ready_name_idx',
                      'durable.tasks_lease_idx', 'durable.tasks_worker_idx']) as i;
$$;
create function pg_temp.read_since(p_index text) returns bigint language sql
    as $$ select pg_temp.reads(p_index) - b.n from before b where b.index_name = p_index $$;

select pg_temp.clock(0);
select durable.create_queue('q');
select count(*) from durable.enqueue_many(
    'q', (select jsonb_agg(jsonb_build_object('task_name', 'a', 'input', jsonb_build_object('i', i)))
          from generate_series(1, 300) as i));
-- statistics of one name, before this session plans its first claim
analyze durable.ready;

-- (a first claim takes the queue's once-a-second turn, which reads the first rows of the
-- queue and of each name to raise their floors: the claim below does not)
select count(*) from durable.claim('q', 'w1', 1, 30, array['z']);
select pg_temp.mark();
select is((select count(*) from durable.claim('q', 'w1', 1, 30, array['a', 'b'])), 1::bigint,
          'a claim for the names a and b (b has no task) starts one task');
select is(pg_temp.read_since('durable.ready_claim_idx'), 0::bigint,
          '... without reading ready_claim_idx (300 entries to filter by name)');
select is(pg_temp.read_since('durable.ready_name_idx'), 1::bigint,
          '... reading from ready_name_idx the first entry of a, none of b');

-- the floors' raise, with generic plans: the queue's first row from ready_claim_idx, a's
-- from ready_name_idx, none for b (a floor left from a task of b that ran)
select durable.enqueue('q', 'b', '{}');
select count(*) from durable.claim('q', 'w1', 1, 30, array['b']);
set plan_cache_mode = force_generic_plan;
select pg_temp.mark();
select ok(durable._ready_raise('q', pg_temp.t(0), true), 'the floors of q, a and b are raised');
-- (each scan also meets the entry of the row its name's claim deleted above)
select cmp_ok(pg_temp.read_since('durable.ready_claim_idx') + pg_temp.read_since('durable.ready_name_idx'),
              '<=', 5::bigint, '... reading the first entries of the queue, of a and of b: no walk of a''s 299');
reset plan_cache_mode;

-- a registered worker runs 20 tasks and dies; an unregistered one runs 50
select durable.register_worker('gone', array['q'], null, 1, null, null, 2);
select count(*) from durable.claim('q', 'gone', 20, 600);
select count(*) from durable.claim('q', 'live', 50, 600);
select pg_temp.clock(10);

select pg_temp.mark();
select count(*) from durable.claim('q', 'w2', 1, 30);
select is((select count(*) from durable.tasks t where t.lost_leases = 1), 20::bigint,
          'the claim that takes the queue''s turn takes the dead worker''s 20 tasks back');
select is(pg_temp.read_since('durable.tasks_worker_idx'), 20::bigint,
          '... found by its name in tasks_worker_idx');
select is(pg_temp.read_since('durable.tasks_lease_idx'), 0::bigint,
          '... and no running task read from tasks_lease_idx (no lease has expired; the dead
worker''s tasks are then locked and ended by key)');

select pg_temp.clock(10.5);
select pg_temp.mark();
select is((select count(*) from durable.claim('q', 'w2', 1, 30)), 1::bigint,
          'a claim half a second later, between two turns, with the dead worker still registered');
select is(pg_temp.read_since('durable.tasks_worker_idx') + pg_temp.read_since('durable.tasks_lease_idx'),
          0::bigint, '... reads no running task');
select is((select count(*) from durable.workers w where w.name = 'gone'), 1::bigint,
          '(the dead worker is still registered)');

select * from finish();

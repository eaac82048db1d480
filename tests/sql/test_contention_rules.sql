-- Correct under contention, the rules (issue 10): each of these failed before.
--   6. a spawn whose idempotency key an unrelated task holds gets that id, never adopts it;
--   7. a fork is created as every task is: round_robin tag, schedule timeout, strategies;
--   8. idempotent re-enqueues do not move a key's round_robin tag; retention forgets the
--      tags of keys with nothing left, and rate logs past their window;
--   9. complete_many with the same task twice (one token) completes it once, first output;
--  14. a reclaimed task keeps its place in the claim order;
--  15. fan-in: the parent's wait is counted down (durable.child_waits, wait_counts) and the
--      last child wakes it; ids of children are above their parents' (the lock order).
select plan(28);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('rr', '{"concurrency_strategy": "round_robin", "concurrency_key_limit": 1}');
select durable.create_queue('rate', '{"rate_limit": {"limit": 5, "period": 10, "per": "key"}}');

-- ---------------------------------------------------------------- 6. no adoption
select pg_temp.enq('parent', 'q', '{"durable": true}');
select pg_temp.enq('stranger', 'q', '{"idempotency_key": "invoice-7"}');
select pg_temp.claim_as('parent', 'q');
select pg_temp.claim_as('stranger', 'q');
create temp table spawned as
select durable.spawn(pg_temp.id('parent'), pg_temp.tok('parent'), 1, 'q', 'job', '{}',
                     '{"idempotency_key": "invoice-7"}') as e;
select is((select e from spawned),
          jsonb_build_object('seq', 1, 'kind', 'spawn', 'name', 'job', 'outcome', 'ok',
                             'result', jsonb_build_object('task_id', pg_temp.id('stranger'), 'queue', 'q')),
          '6: a spawn whose idempotency key is taken gets the task that holds it');
select is((pg_temp.task('stranger')).parent_id, null, '6: ... which does not become a child');
select durable.cancel(pg_temp.id('parent'), 'stop');
select is((pg_temp.task('stranger')).status, 'running', '6: cancelling the parent leaves that task running');

-- ---------------------------------------------------------------- 7. forks
select pg_temp.enq('origin', 'rr',
                   '{"durable": true, "concurrency_key": "b", "schedule_timeout": 60, "idempotency_key": "o-1"}');
select pg_temp.claim_as('origin', 'rr');
select durable.checkpoint(pg_temp.id('origin'), pg_temp.tok('origin'), 1, 'step', 'one', '1');
select durable.complete(pg_temp.id('origin'), pg_temp.tok('origin'), '"done"');
-- key b has a backlog: two more tasks
select pg_temp.enq('b2', 'rr', '{"concurrency_key": "b"}');
select pg_temp.enq('b3', 'rr', '{"concurrency_key": "b"}');
insert into ids (name, id) select 'fork', durable.fork(pg_temp.id('origin'), 2);
select ok((pg_temp.task('fork')).fair_tag > (pg_temp.task('b3')).fair_tag,
          '7: a fork of a round_robin queue gets its key''s next tag (behind the key''s backlog), not 0');
select is((pg_temp.task('fork')).schedule_deadline, pg_temp.t(60),
          '7: a fork gets a schedule deadline from its origin''s schedule_timeout');
select is((pg_temp.task('fork')).idempotency_key, null, '7: a fork does not take its origin''s idempotency key');
select is((pg_temp.task('fork')).seq > (pg_temp.task('b3')).seq, true, '7: a fork is numbered like any new task');

-- ---------------------------------------------------------------- 8. tags and idle keys
select pg_temp.enq('c1', 'rr', '{"concurrency_key": "c", "idempotency_key": "c-1"}');
select durable.enqueue('rr', 'job', '{}', '{"concurrency_key": "c", "idempotency_key": "c-1"}')
from generate_series(1, 50);
select pg_temp.enq('c2', 'rr', '{"concurrency_key": "c"}');
select is((pg_temp.task('c2')).fair_tag, (pg_temp.task('c1')).fair_tag + 1,
          '8: 50 idempotent re-enqueues do not move the key''s tag: its next task is next');
select is((select count(*) from durable.fair_keys where queue = 'rr' and concurrency_key = 'c'), 1::bigint,
          '8: the key has its row while it has tasks');
select durable.cancel(pg_temp.id('c1'));
select durable.cancel(pg_temp.id('c2'));
select durable.purge('rr', 0);
select is((select count(*) from durable.fair_keys where queue = 'rr' and concurrency_key = 'c'), 0::bigint,
          '8: retention forgets the tag of a key with nothing unfinished');
select ok((select count(*) from durable.fair_keys where queue = 'rr' and concurrency_key = 'b') = 1,
          '8: ... and keeps those of keys with unfinished tasks');
select durable.enqueue('rate', 'job', '{}', jsonb_build_object('concurrency_key', 'k' || i)) from generate_series(1, 3) as i;
select count(*) from durable.claim('rate', 'w', 10);
select is((select count(*) from durable.limit_state where queue = 'rate' and concurrency_key <> ''), 3::bigint,
          '8: three keys have rate logs');
select pg_temp.clock(11);
select durable.purge('rate', 0);
select is((select count(*) from durable.limit_state where queue = 'rate' and concurrency_key <> ''), 0::bigint,
          '8: retention forgets rate logs whose starts left the window');
select pg_temp.clock(0);

-- ---------------------------------------------------------------- 9. twice in a batch
select pg_temp.enq('twice', 'q');
select pg_temp.claim_as('twice', 'q');
select results_eq(
    format($$select ok, reason from durable.complete_many(array[%L, %L]::uuid[], array[%L, %L]::uuid[],
                                                          array['"first"', '"second"']::jsonb[])$$,
           pg_temp.id('twice'), pg_temp.id('twice'), pg_temp.tok('twice'), pg_temp.tok('twice')),
    $$values (true, 'completed'), (false, 'duplicate')$$,
    '9: the same task twice with its token: the first element completes it, the second is a duplicate'
);
select is((pg_temp.task('twice')).output, '"first"'::jsonb, '9: with the first element''s output');
select is((select count(*) from durable.attempts where task_id = pg_temp.id('twice')), 1::bigint,
          '9: one attempt row');

-- ---------------------------------------------------------------- 14. reclaim keeps the place
select durable.create_queue('fifo');
select pg_temp.enq('first', 'fifo');
select pg_temp.claim_as('first', 'fifo', 'w1', 10);
select pg_temp.clock(1);
select pg_temp.enq('second', 'fifo');
select pg_temp.clock(20);
select pg_temp.claim_as('again', 'fifo');
select is(pg_temp.id('again'), pg_temp.id('first'),
          '14: a task whose worker died (lease lost) is claimed again before the tasks enqueued after it');
select is((pg_temp.task('first')).run_at, pg_temp.t(0), '14: its run_at is still its own');
select pg_temp.clock(0);

-- ---------------------------------------------------------------- 15. fan-in counts down
select durable.create_queue('fan');
select pg_temp.enq('fp', 'fan', '{"durable": true}');
select pg_temp.claim_as('fp', 'fan');
create temp table fkids as
select i, (durable.spawn(pg_temp.id('fp'), pg_temp.tok('fp'), i, 'fan', 'kid', jsonb_build_object('i', i), '{}')
           #>> '{result,task_id}')::uuid as id
from generate_series(1, 5) as i;
select ok(bool_and(k.id > pg_temp.id('fp')), '15: every child''s id is above its parent''s')
from fkids k;
-- child 1 ends before the wait; the wait is for 1..5, and child 2 twice
create temp table fone as select * from durable.claim('fan', 'wk', 1);
select is((select task_id from fone), (select id from fkids where i = 1), '15: child 1 is claimed first');
select durable.complete(task_id, lease_token, '"early"') from fone;
select is(
    durable.wait_children(pg_temp.id('fp'), pg_temp.tok('fp'), 6,
                          (select array_agg(id order by i) || array[(select id from fkids where i = 2)] from fkids)),
    '{"seq": 6, "kind": "children", "name": "children", "suspended": true}'::jsonb,
    '15: the parent waits for its unfinished children'
);
select is((select remaining from durable.wait_counts where parent_id = pg_temp.id('fp')), 4,
          '15: it waits for 4 (one child ended before, one listed twice)');
select is((select count(*) from durable.child_waits where parent_id = pg_temp.id('fp')), 4::bigint,
          '15: one row per awaited unfinished child');
create temp table fruns as select * from durable.claim('fan', 'wk', 10);
select durable.complete_many(array(select task_id from fruns order by task_id limit 3),
                             array(select lease_token from fruns order by task_id limit 3));
select is((select remaining from durable.wait_counts where parent_id = pg_temp.id('fp')), 1,
          '15: three children end: one left');
select is((pg_temp.task('fp')).status, 'waiting', '15: the parent still waits');
select durable.complete_many(array(select task_id from fruns order by task_id offset 3),
                             array(select lease_token from fruns order by task_id offset 3));
select is((pg_temp.task('fp')).status, 'pending', '15: the last child wakes the parent');
select is((select count(*) from durable.child_waits where parent_id = pg_temp.id('fp'))
          + (select count(*) from durable.wait_counts where parent_id = pg_temp.id('fp')), 0::bigint,
          '15: no wait row is left');
select is(
    (select jsonb_agg(x ->> 'status') from durable.events e, jsonb_array_elements(e.result) as x
     where e.task_id = pg_temp.id('fp') and e.seq = 6),
    '["completed", "completed", "completed", "completed", "completed", "completed"]'::jsonb,
    '15: the outcomes of all six listed children are recorded at the wait'
);

select * from finish();

-- The claimable set (durable.ready) and its floors (plpgsql/ready.sql):
--   1. durable.ready holds exactly the pending tasks, at their place in the claim order,
--      through creation, claims, failures, releases, cancels, sleeps, debounces, restarts
--      and deletes;
--   2. the claim's maintenance raises the floors past what was claimed (at most once a
--      second per queue) and folds their slots;
--   3. a row written below a floor lowers it (a higher priority, a lost lease back in its
--      old place, a past run_at), so the claim order is kept;
--   4. the raise never happens while a writer of the queue is in flight (dblink session a
--      holds an enqueue open): it returns false, changes nothing, and the task it would
--      have hidden is claimed once committed;
--   5. a writer in REPEATABLE READ lowers the floor whatever it reads;
--   6. the scan for expired leases runs at most once a second per queue;
--   8. a claim of more than one task that takes all it asked for raises the floors again
--      once 100 ms have passed since the last raise, never waiting for a writer in flight;
--      one that takes less, or one task, does not.
select plan(40);

\ir helpers/tasks.sql
\ir helpers/sessions.sql
\ir helpers/ready.sql

select pg_temp.clock(0);
select durable.create_queue('f');

-- 1. the set, through every way in and out of pending
select pg_temp.enq('now', 'f');
select pg_temp.enq('later', 'f', jsonb_build_object('delay', 3600));
select pg_temp.enq('high', 'f', '{"priority": 7, "schedule_timeout": 600}');
select count(*) from durable.enqueue_many('f', '[{"task_name": "job"}, {"task_name": "other", "options": {"priority": -3}}]');
select is(pg_temp.ready_mismatch(), 0::bigint, '1: created pending: a row each, at its place');
select pg_temp.claim_as('high', 'f');
select pg_temp.claim_as('now', 'f');
select is(pg_temp.ready_mismatch(), 0::bigint, '1: claimed: their rows are gone');
select durable.fail(pg_temp.id('high'), pg_temp.tok('high'), '{"message": "boom"}');
select durable.release(pg_temp.id('now'), pg_temp.tok('now'), 5);
select is(pg_temp.ready_mismatch(), 0::bigint, '1: failed (retry later) and released: back, at their new run_at');
select durable.cancel(pg_temp.id('later'));
select is(pg_temp.ready_mismatch(), 0::bigint, '1: a pending task cancelled: its row is gone');
select pg_temp.enq('deb', 'f', '{"debounce": {"key": "k", "delay": 10}}');
select pg_temp.clock(2);
select pg_temp.enq('deb', 'f', '{"debounce": {"key": "k", "delay": 10}}');
select is(pg_temp.ready_mismatch(), 0::bigint, '1: a debounce moves the row with the task');
select pg_temp.clock(100);
select pg_temp.enq('sl', 'f', '{"durable": true}');
select count(*) from durable.claim('f', 'w1', 10);
select durable.sleep(pg_temp.id('sl'), (select k.lease_token from durable.all_tasks k where k.task_id = pg_temp.id('sl')), 1, 'nap', 5);
select durable.fail(k.task_id, k.lease_token, '{"message": "no"}', false)
from durable.all_tasks k where k.queue = 'f' and k.status = 'running' and k.task_id <> pg_temp.id('sl');
select is(pg_temp.ready_mismatch(), 0::bigint, '1: sleeping and failed tasks have no row');
select pg_temp.clock(200);
select durable.reclaim('f');
select durable.retry(pg_temp.id('high'));
select is(pg_temp.ready_mismatch(), 0::bigint, '1: woken and retried: back, at their place');
select is((select count(*) from durable.ready r where r.task_id in (pg_temp.id('sl'), pg_temp.id('high'))), 2::bigint,
          '1: (both are there)');
delete from durable.tasks k where k.task_id = pg_temp.id('sl');
select is(pg_temp.ready_mismatch(), 0::bigint, '1: a pending task deleted: its row goes');

-- 2. raising: a queue of 20 tasks claimed a few at a time
select durable.create_queue('g');
select pg_temp.clock(1000);
select count(*) from durable.enqueue_many('g', (select jsonb_agg(jsonb_build_object('task_name', 'job')) from generate_series(1, 20)));
select pg_temp.clock(1001);
select count(*) from durable.claim('g', 'w1', 1);
select is(pg_temp.raise('g'), true, '2: the raise happens when no writer is in flight');
select is(pg_temp.floor_of('g'), pg_temp.floor_of('g', 'job'), '2: the queue''s floor and its name''s agree');
select ok((select (r.neg_priority, r.fair_tag, r.run_at, r.seq) = (f.neg_priority, f.fair_tag, f.run_at, f.seq)
           from durable.ready r, durable._ready_floor('g', '') f
           where r.queue = 'g' order by r.neg_priority, r.fair_tag, r.run_at, r.seq limit 1),
          '2: raised to the first row left (below the moment of the raise)');
select count(*) from durable.claim('g', 'w1', 19);
select pg_temp.clock(1003);
select pg_temp.raise('g');
select is(pg_temp.floor_of('g'), format('0/0/%s/-9223372036854775808', pg_temp.t(1003)),
          '2: with nothing left: (the default priority and tag, now, the lowest seq)');

-- 3. lowering
select pg_temp.enq('plain', 'g');
select is(pg_temp.slots('g'), 1, '3: a task at the default priority after the raise lowers nothing');
select pg_temp.enq('urgent', 'g', '{"priority": 9}');
select is(pg_temp.slots('g'), 2, '3: one at a higher priority lowers the floor with a slot');
select is((select c.task_id from durable.claim('g', 'w1', 1) c), pg_temp.id('urgent'), '3: and is claimed first');
select pg_temp.enq('past', 'g', jsonb_build_object('run_at', pg_temp.t(0)));
select is((select c.task_id from durable.claim('g', 'w1', 1) c), pg_temp.id('past'), '3: a past run_at: claimed first');
select pg_temp.clock(1010);
select count(*) from durable.claim('g', 'w1', 10);
select pg_temp.clock(1011);
select count(*) from durable.enqueue_many('g', (select jsonb_agg(jsonb_build_object('task_name', 'job')) from generate_series(1, 3)));
select pg_temp.claim_as('lost', 'g', 'w1', 5);
select pg_temp.clock(1020);
select pg_temp.raise('g');
select is(pg_temp.slots('g'), 1, '3: the raise folds the slots into one');
select durable.reclaim('g');
select is((select c.task_id from durable.claim('g', 'w1', 1) c), pg_temp.id('lost'),
          '3: a lost lease goes back to its old place, below the raised floor, and is claimed first');
select is(pg_temp.below_floor(), 0::bigint, '3: no row lies below its floors');

-- 4. a raise while a writer of the queue is in flight: A enqueues a task due at 3000, above
-- the floor (2000) but below where a raise at 5000 would put it
select pg_temp.clock(2000);
select durable.create_queue('h');
select durable.create_queue('h2');
select pg_temp.raise('h');
select durable._ready_raise('h2', pg_temp.t(2000), true);
commit;
select pg_temp.connect_ab();
select dblink_exec('a', 'begin');
select count(*) from dblink('a', format($$select durable.enqueue('h', 'job', '{}', '{"run_at": "%s"}')$$, pg_temp.t(3000))) as x (id uuid);
select is(durable._ready_raise('h', pg_temp.t(5000), true), false, '4: the raise does not happen while a writer is in flight');
select is(pg_temp.slots('h'), 1, '4: (the writer''s row is above the floor: no slot)');
select dblink_exec('a', 'commit');
select pg_temp.clock(3000);
select is((select count(*) from durable.claim('h', 'w1', 5)), 1::bigint, '4: the task written then is claimed');

-- 5. a writer in REPEATABLE READ lowers the floor whatever it reads (its row is above it)
select dblink_exec('b', format('set durable.fake_now = %L', pg_temp.t(4000)));
select dblink_exec('b', 'begin isolation level repeatable read');
select count(*) from dblink('b', $$select durable.enqueue('h2', 'job', '{}')$$) as x (id uuid);
select dblink_exec('b', 'commit');
select is(pg_temp.slots('h2'), 2, '5: a slot from the REPEATABLE READ writer');
select dblink_disconnect(s) from unnest(array['a', 'b']) as s;

-- 6. expired leases: looked for at most once a second per queue
select durable.create_queue('e');
select pg_temp.clock(3000);
select pg_temp.enq('x', 'e');
select pg_temp.claim_as('x', 'e', 'w1', 2);
select pg_temp.clock(3001.8);
select count(*) from durable.claim('e', 'w1', 1);
select pg_temp.clock(3002.2);
select count(*) from durable.claim('e', 'w1', 1);
select is((pg_temp.task('x')).status, 'running', '6: expired at 3002, but the last look was at 3001.8: still running');
select pg_temp.clock(3002.9);
select count(*) from durable.claim('e', 'w1', 1);
select is((pg_temp.task('x')).attempt, 2, '6: a second after the last look, it goes back (and is claimed again)');

-- 7. a row of durable.ready whose task is gone (a hand-written delete with the triggers
-- off) at the head of a queue: the claim that meets it deletes it, the next takes the task
select durable.create_queue('s');
select pg_temp.clock(4000);
select pg_temp.enq('real', 's');
insert into durable.ready (task_id, queue, task_name, neg_priority, fair_tag, run_at, seq)
values (gen_random_uuid(), 's', 'job', -100, 0, pg_temp.t(0), 1);
select is((select count(*) from durable.claim('s', 'w1', 1)), 0::bigint, '7: the claim meets the stale row first');
select is((select count(*) from durable.ready r where r.queue = 's' and r.task_id <> pg_temp.id('real')), 0::bigint,
          '7: and deletes it');
select is((select c.task_id from durable.claim('s', 'w1', 1) c), pg_temp.id('real'), '7: the next claim takes the task');

-- 8. the raise of a full batch: claims in session a (each its own transaction, as a
-- worker's), on a queue of 30 tasks due at 6000
create function pg_temp.claim_in_a(p_at double precision, p_n integer) returns bigint language sql as $$
    select dblink_exec('a', format('set durable.fake_now = %L', pg_temp.t(p_at)));
    select x.n from dblink('a', format($q$select count(*) from durable.claim('bk', 'w1', %s)$q$, p_n)) as x (n bigint)
$$;
-- whether the queue's floor is its first row (raised since the last claim) or below it
create function pg_temp.at_head(p_queue text) returns boolean language sql as $$
    select (r.neg_priority, r.fair_tag, r.run_at, r.seq) = (f.neg_priority, f.fair_tag, f.run_at, f.seq)
    from durable.ready r, durable._ready_floor(p_queue, '') f
    where r.queue = p_queue order by r.neg_priority, r.fair_tag, r.run_at, r.seq limit 1
$$;
create function pg_temp.raised_at(p_queue text) returns timestamptz language sql as $$
    select f.raised_at from durable.ready_floors f where f.queue = p_queue and f.task_name = '' and f.slot = 0
$$;
select durable.create_queue('bk');
select pg_temp.clock(6000);
select count(*) from durable.enqueue_many('bk', (select jsonb_agg(jsonb_build_object('task_name', 'job')) from generate_series(1, 30)));
commit;
drop table pids;
select pg_temp.connect_ab();
select pg_temp.claim_in_a(6000, 1);
select is(pg_temp.raised_at('bk'), pg_temp.t(6000), '8: the queue''s turn raised the floors at 6000');
select is(pg_temp.claim_in_a(6000.05, 5), 5::bigint, '8: a full batch at 6000.05');
select is(pg_temp.at_head('bk'), false, '8: 50 ms after the last raise: not raised again');
select pg_temp.claim_in_a(6000.2, 5);
select ok(pg_temp.at_head('bk') and pg_temp.raised_at('bk') = pg_temp.t(6000.2),
          '8: a full batch 200 ms after the last raise: raised to the first row left, at 6000.2');
select is(pg_temp.claim_in_a(6000.4, 100), 19::bigint, '8: a claim of 100 takes the 19 left');
select dblink_exec('b', format('set durable.fake_now = %L', pg_temp.t(6000.5)));
select count(*) from durable.enqueue_many('bk', (select jsonb_agg(jsonb_build_object('task_name', 'job')) from generate_series(1, 10)));
commit;
select is(pg_temp.raised_at('bk'), pg_temp.t(6000.2), '8: a batch that is not full raises nothing');
select ok(pg_temp.claim_in_a(6000.6, 1) = 1 and pg_temp.raised_at('bk') = pg_temp.t(6000.2),
          '8: nor a claim of one task (an idle one-slot worker''s)');
select dblink_exec('b', 'begin');
select count(*) from dblink('b', $$select durable.enqueue('bk', 'job', '{}')$$) as x (id uuid);
select ok(pg_temp.claim_in_a(6000.7, 2) = 2 and pg_temp.raised_at('bk') = pg_temp.t(6000.2),
          '8: a full batch while a writer is in flight raises nothing (and did not wait for it)');
select dblink_exec('b', 'commit');
select pg_temp.claim_in_a(6000.8, 2);
select ok(pg_temp.at_head('bk') and pg_temp.raised_at('bk') = pg_temp.t(6000.8), '8: the next one does');
select is(pg_temp.below_floor(), 0::bigint, '8: no row lies below its floors');
select dblink_disconnect(s) from unnest(array['a', 'b']) as s;

-- 9. a TRUNCATE of durable.tasks empties durable.ready with it
truncate durable.tasks cascade;
select is((select count(*) from durable.ready), 0::bigint, '9: durable.ready is empty after a TRUNCATE of durable.tasks');

select * from finish();

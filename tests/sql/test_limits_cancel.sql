-- The two cancel strategies, decided at enqueue under a per-key lock:
--   cancel_in_progress  the newest wins: the oldest unfinished tasks of the key beyond the
--                       limit are cancelled, running ones through durable.cancel (their
--                       worker gets DU011 at its next call, the attempt is recorded);
--   cancel_newest       a task enqueued while its key already has `limit` unfinished
--                       tasks is cancelled at once, with the reason in its error.
-- Both default the key limit to 1; a task may bring its own. Two enqueuers of one key
-- at once (dblink): the second waits for the first's lock and decides on what it saw.
select plan(30);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);

create temp table ids (n text primary key, id uuid, token uuid);
create function pg_temp.enq(p_queue text, p_n text, p_options jsonb default '{}') returns uuid language sql as $$
    insert into ids (n, id) values (p_n, durable.enqueue(p_queue, 'job', jsonb_build_object('n', p_n), p_options))
    returning id
$$;
create function pg_temp.id(p_n text) returns uuid language sql as $$ select id from ids where n = p_n $$;
create function pg_temp.tok(p_n text) returns uuid language sql as $$ select token from ids where n = p_n $$;
create function pg_temp.take(p_queue text, p_max integer default 10) returns text[] language sql as $$
    with c as (select * from durable.claim(p_queue, 'w', p_max, 300)),
    u as (update ids set token = c.lease_token from c where ids.id = c.task_id returning ids.n)
    select coalesce(array_agg(u.n order by u.n), '{}') from u
$$;
create function pg_temp.statuses(p_queue text) returns jsonb language sql as $$
    select jsonb_object_agg(k.input ->> 'n', k.status) from durable.all_tasks k where k.queue = p_queue
$$;

-- ---------------------------------------------------------------------------------
-- cancel_in_progress
select durable.create_queue('cip', '{"concurrency_strategy": "cancel_in_progress"}');
select pg_temp.enq('cip', 'a1', '{"concurrency_key": "k"}');
select is(pg_temp.take('cip'), array['a1'], 'a1 runs');
select pg_temp.enq('cip', 'a2', '{"concurrency_key": "k"}');
select is(pg_temp.statuses('cip'), '{"a1": "cancelled", "a2": "pending"}'::jsonb,
          'enqueuing a2 cancels the running a1 (limit 1: the newest wins)');
select is(
    (select k.error ->> 'message' from durable.all_tasks k where k.task_id = pg_temp.id('a1')),
    'superseded by a newer task of concurrency key ''k'' (strategy cancel_in_progress, limit 1)',
    'the cancelled task says why'
);
select is(
    (select a.outcome from durable.attempts a where a.task_id = pg_temp.id('a1')),
    'cancelled', 'its attempt is recorded as cancelled (the same path as durable.cancel)'
);
select throws_ok(format('select durable.heartbeat(%L, %L)', pg_temp.id('a1'), pg_temp.tok('a1')),
                 'DU011', null, 'a1''s worker learns it at its next heartbeat (DU011)');
select throws_ok(format('select durable.complete(%L, %L)', pg_temp.id('a1'), pg_temp.tok('a1')),
                 'DU011', null, 'and cannot complete it (DU011)');
select is(pg_temp.take('cip'), array['a2'], 'a1''s slot is free: a2 starts');

-- a batch: the newest of the batch wins over the older ones, pending or running
select count(*) from durable.enqueue_many('cip', '[
    {"task_name": "job", "input": {"n": "a3"}, "options": {"concurrency_key": "k"}},
    {"task_name": "job", "input": {"n": "a4"}, "options": {"concurrency_key": "k"}}]');
select is(
    (select jsonb_object_agg(k.input ->> 'n', k.status) from durable.all_tasks k where k.queue = 'cip' and k.input ->> 'n' in ('a2', 'a3', 'a4')),
    '{"a2": "cancelled", "a3": "cancelled", "a4": "pending"}'::jsonb,
    'enqueue_many of a3, a4: the running a2 and the older a3 are cancelled, a4 waits'
);

-- other keys and keyless tasks are not touched; completed tasks do not count
select pg_temp.enq('cip', 'other', '{"concurrency_key": "other"}');
select pg_temp.enq('cip', 'nokey1');
select pg_temp.enq('cip', 'nokey2');
select is(
    (select jsonb_object_agg(k.input ->> 'n', k.status) from durable.all_tasks k
     where k.queue = 'cip' and k.input ->> 'n' in ('a4', 'other', 'nokey1', 'nokey2')),
    '{"a4": "pending", "other": "pending", "nokey1": "pending", "nokey2": "pending"}'::jsonb,
    'other keys and tasks without a key are left alone'
);
select pg_temp.take('cip');
select durable.complete(pg_temp.id('other'), pg_temp.tok('other'), '{}');
select pg_temp.enq('cip', 'other2', '{"concurrency_key": "other"}');
select is((select status from durable.all_tasks where task_id = pg_temp.id('other')), 'completed',
          'a completed task is not cancelled by a newer one');

-- limit 2: the two newest survive
select durable.create_queue('cip2', '{"concurrency_strategy": "cancel_in_progress", "concurrency_key_limit": 2}');
select pg_temp.enq('cip2', 'b1', '{"concurrency_key": "k"}');
select pg_temp.enq('cip2', 'b2', '{"concurrency_key": "k"}');
select is(pg_temp.take('cip2'), array['b1', 'b2'], 'limit 2: b1 and b2 run');
select pg_temp.enq('cip2', 'b3', '{"concurrency_key": "k"}');
select is(pg_temp.statuses('cip2'), '{"b1": "cancelled", "b2": "running", "b3": "pending"}'::jsonb,
          'b3 arrives: the oldest (b1) is cancelled, b2 keeps running');
select is(pg_temp.take('cip2'), array['b3'], 'b3 takes b1''s slot');
-- a task's own limit decides for its key
select pg_temp.enq('cip2', 'b4', '{"concurrency_key": "k", "concurrency_key_limit": 3}');
select is(pg_temp.statuses('cip2') - 'b1', '{"b2": "running", "b3": "running", "b4": "pending"}'::jsonb,
          'b4 with its own limit 3 cancels nothing (3 unfinished)');
select pg_temp.enq('cip2', 'b5', '{"concurrency_key": "k", "concurrency_key_limit": 1}');
select is(pg_temp.statuses('cip2') - 'b1',
          '{"b2": "cancelled", "b3": "cancelled", "b4": "cancelled", "b5": "pending"}'::jsonb,
          'b5 with its own limit 1 supersedes all the others');

-- ---------------------------------------------------------------------------------
-- cancel_newest
select durable.create_queue('cn', '{"concurrency_strategy": "cancel_newest"}');
select pg_temp.enq('cn', 'n1', '{"concurrency_key": "k"}');
select pg_temp.enq('cn', 'n2', '{"concurrency_key": "k"}');
select is(pg_temp.statuses('cn'), '{"n1": "pending", "n2": "cancelled"}'::jsonb,
          'n2 is enqueued while n1 (pending) fills its key: n2 is cancelled at once');
select is(
    (select k.error from durable.all_tasks k where k.task_id = pg_temp.id('n2')),
    jsonb_build_object('type', 'Cancelled', 'message',
                       'concurrency key ''k'' already has 1 unfinished task(s), its limit (strategy cancel_newest)'),
    'with the reason in its error'
);
select is((select count(*)::integer from durable.attempts a where a.task_id = pg_temp.id('n2')), 0,
          'a task cancelled before it ran has no attempt');
select is(pg_temp.take('cn'), array['n1'], 'n1 runs');
select pg_temp.enq('cn', 'n3', '{"concurrency_key": "k"}');
select is((select status from durable.all_tasks where task_id = pg_temp.id('n3')), 'cancelled',
          'n3 arrives while n1 runs: cancelled');
select is((select status from durable.all_tasks where task_id = pg_temp.id('n1')), 'running', 'n1 is not touched');
select durable.complete(pg_temp.id('n1'), pg_temp.tok('n1'), '{}');
select pg_temp.enq('cn', 'n4', '{"concurrency_key": "k"}');
select is((select status from durable.all_tasks where task_id = pg_temp.id('n4')), 'pending',
          'once n1 completed, n4 is accepted');

-- a batch: the first ones up to the limit are kept, in order
select durable.create_queue('cn2', '{"concurrency_strategy": "cancel_newest", "concurrency_key_limit": 2}');
select pg_temp.enq('cn2', 'm1', '{"concurrency_key": "k"}');
select count(*) from durable.enqueue_many('cn2', '[
    {"task_name": "job", "input": {"n": "m2"}, "options": {"concurrency_key": "k"}},
    {"task_name": "job", "input": {"n": "m3"}, "options": {"concurrency_key": "k"}},
    {"task_name": "job", "input": {"n": "other"}, "options": {"concurrency_key": "other"}},
    {"task_name": "job", "input": {"n": "nokey"}}]');
select is(pg_temp.statuses('cn2'), '{"m1": "pending", "m2": "pending", "m3": "cancelled", "other": "pending", "nokey": "pending"}'::jsonb,
          'limit 2, m1 waiting, then m2 and m3 in a batch: m3 is cancelled; other keys and keyless are not');
select pg_temp.enq('cn2', 'm4', '{"concurrency_key": "k", "concurrency_key_limit": 3}');
select is((select status from durable.all_tasks where task_id = pg_temp.id('m4')), 'pending',
          'a task with its own limit 3 is accepted as the third');

-- ---------------------------------------------------------------------------------
-- two enqueuers of one key at once
\ir helpers/sessions.sql
select durable.create_queue('race_new', '{"concurrency_strategy": "cancel_newest"}');
select durable.create_queue('race_cip', '{"concurrency_strategy": "cancel_in_progress"}');
commit;
select pg_temp.connect_ab();

select dblink_exec('a', 'begin');
create temp table ya as
select id from dblink('a', $$select durable.enqueue('race_new', 'job', '{"n": "y1"}', '{"concurrency_key": "k"}')$$) as x (id uuid);
select dblink_send_query('b', $$select durable.enqueue('race_new', 'job', '{"n": "y2"}', '{"concurrency_key": "k"}')$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          'cancel_newest: B''s enqueue of the same key waits for A''s (the key''s lock)');
select dblink_exec('a', 'commit');
create temp table yb as select id from dblink_get_result('b') as x (id uuid);
select count(*) from dblink_get_result('b') as x (id uuid);
select is(pg_temp.statuses('race_new'), '{"y1": "pending", "y2": "cancelled"}'::jsonb,
          'once A commits, B sees y1 and cancels its own y2');

select dblink_exec('a', 'begin');
select count(*) from dblink('a', $$select durable.enqueue('race_cip', 'job', '{"n": "z1"}', '{"concurrency_key": "k"}')$$) as x (id uuid);
select dblink_send_query('b', $$select durable.enqueue('race_cip', 'job', '{"n": "z2"}', '{"concurrency_key": "k"}')$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          'cancel_in_progress: B''s enqueue waits for A''s');
select dblink_exec('a', 'commit');
select count(*) from dblink_get_result('b') as x (id uuid);
select count(*) from dblink_get_result('b') as x (id uuid);
select is(pg_temp.statuses('race_cip'), '{"z1": "cancelled", "z2": "pending"}'::jsonb,
          'once A commits, B sees z1 and supersedes it');
select dblink_disconnect('a');
select dblink_disconnect('b');

-- an enqueue with a cancel strategy needs READ COMMITTED
commit;
begin isolation level repeatable read;
select throws_ok($$select durable.enqueue('race_new', 'job', '{}', '{"concurrency_key": "iso"}')$$, 'DU001', null,
                 'an enqueue with a cancel strategy under REPEATABLE READ is refused (DU001)');
commit;
select lives_ok($$select durable.enqueue('race_new', 'job', '{}', '{}')$$,
                'a keyless one is not concerned');

select * from finish();

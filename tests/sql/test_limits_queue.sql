-- Queue limit and per-key limits under the default strategy (queue): at most N running
-- per queue and per key; the excess waits, FIFO within its key; keys at their limit do
-- not hold back other keys (even behind 3,000 of their waiting tasks); priorities order
-- what the limits admit; tasks without a key only count against the queue limit; a task
-- with its own concurrency_key_limit; task name filter; and two sessions claiming at once
-- (dblink): the second claim waits for the first one's lock and sees what it started.
select plan(25);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);

-- tasks are named by their input {"n": ...}; held(n, id, token) are the claimed ones
create temp table held (n text primary key, id uuid, token uuid);
create function pg_temp.enq(p_queue text, p_n text, p_options jsonb default '{}', p_name text default 'job')
returns uuid language sql as $$
    select durable.enqueue(p_queue, p_name, jsonb_build_object('n', p_n), p_options)
$$;
-- claims up to p_max tasks; returns their names, sorted
create function pg_temp.take(p_queue text, p_max integer, p_names text[] default null) returns text[]
language sql as $$
    with c as (select * from durable.claim(p_queue, 'w', p_max, 300, p_names)),
    ins as (insert into held select c.input ->> 'n', c.task_id, c.lease_token from c returning n)
    select coalesce(array_agg(ins.n order by ins.n), '{}') from ins
$$;
create function pg_temp.done(p_n text) returns void language sql as $$
    select durable.complete(h.id, h.token, '{}') from held h where h.n = p_n;
    delete from held where n = p_n;
$$;
create function pg_temp.running(p_queue text) returns text[] language sql as $$
    select coalesce(array_agg(k.input ->> 'n' order by k.input ->> 'n'), '{}')
    from durable.all_tasks k where k.queue = p_queue and k.status = 'running'
$$;

-- 1. the queue limit
select durable.create_queue('ql', '{"concurrency_limit": 3}');
select pg_temp.enq('ql', 't' || i) from generate_series(1, 5) as i;
select is(pg_temp.take('ql', 10), array['t1', 't2', 't3'], 'queue limit 3: a claim of 10 starts 3, in claim order');
select is(pg_temp.take('ql', 10), '{}'::text[], 'the queue is full: the next claim starts nothing');
select pg_temp.done('t2');
select is(pg_temp.take('ql', 10), array['t4'], 'a completion frees one slot: one more starts');
select is((select count(*)::integer from durable.all_tasks where queue = 'ql' and status = 'pending'), 1,
          'the excess waits pending (not failed, not cancelled)');

-- 2. per-key limit, FIFO within the key
select durable.create_queue('kl', '{"concurrency_key_limit": 2}');
select pg_temp.enq('kl', n, jsonb_build_object('concurrency_key', left(n, 1)))
from unnest(array['a1', 'b1', 'a2', 'a3', 'b2', 'a4', 'b3', 'a5']) as n;
select is(pg_temp.take('kl', 10), array['a1', 'a2', 'b1', 'b2'], 'key limit 2: two of each key start');
select is(pg_temp.take('kl', 10), '{}'::text[], 'both keys are full');
select pg_temp.done('a2');
select is(pg_temp.take('kl', 10), array['a3'], 'a slot of key a frees: its next task in FIFO order starts (a3)');
select pg_temp.done('a1');
select pg_temp.done('a3');
select is(pg_temp.take('kl', 1), array['a4'], 'then a4 (FIFO within the key), one per max_tasks');
select is(pg_temp.running('kl'), array['a4', 'b1', 'b2'], 'running: a4 and b1, b2');

-- 3. a full key with 3,000 waiting tasks ahead does not hold back another key
select durable.create_queue('deep', '{"concurrency_key_limit": 1, "concurrency_limit": 10}');
select pg_temp.enq('deep', 'hot-first', '{"concurrency_key": "hot"}');
select count(*) from durable.enqueue_many('deep', (
    select jsonb_agg(jsonb_build_object('task_name', 'job', 'input', jsonb_build_object('n', 'hot' || i),
                                        'options', '{"concurrency_key": "hot"}'::jsonb))
    from generate_series(1, 3000) as i));
select pg_temp.enq('deep', 'cold', '{"concurrency_key": "cold"}');
select pg_temp.enq('deep', 'nokey');
analyze durable.tasks;
select is(pg_temp.take('deep', 1), array['hot-first'], 'the hot key starts its first task');
select is(pg_temp.take('deep', 5), array['cold', 'nokey'],
          'the hot key is full: the claim starts the cold key''s task and the keyless one behind its 3,000');
select pg_temp.enq('deep', 'hot-own-limit', '{"concurrency_key": "hot", "concurrency_key_limit": 2}');
select is(pg_temp.take('deep', 5), array['hot-own-limit'],
          'a hot task with its own limit 2 starts (one of its key runs), behind 3,000 that may not');
select is(pg_temp.take('deep', 5), '{}'::text[], 'nothing else may start');

-- 4. priorities order what the limits admit
select durable.create_queue('prio', '{"concurrency_key_limit": 1, "concurrency_limit": 2}');
select pg_temp.enq('prio', 'x-low', '{"concurrency_key": "x"}');
select is(pg_temp.take('prio', 1), array['x-low'], 'x starts its low-priority task');
select pg_temp.enq('prio', 'x-high', '{"concurrency_key": "x", "priority": 10}');
select pg_temp.enq('prio', 'y-mid', '{"concurrency_key": "y", "priority": 5}');
select pg_temp.enq('prio', 'z-high', '{"concurrency_key": "z", "priority": 10}');
select is(pg_temp.take('prio', 5), array['z-high'],
          'x-high waits (its key is full); z-high takes the last queue slot before y-mid');
select pg_temp.done('x-low');
select pg_temp.done('z-high');
select is(pg_temp.take('prio', 1), array['x-high'], 'x is free again: x-high (priority 10) starts before y-mid (5)');

-- 5. per-task limits: each task is admitted against its own limit
select durable.create_queue('own', '{"concurrency_strategy": "queue"}');
select pg_temp.enq('own', 'k1', '{"concurrency_key": "k", "concurrency_key_limit": 1}');
select pg_temp.enq('own', 'k2', '{"concurrency_key": "k", "concurrency_key_limit": 1}');
select pg_temp.enq('own', 'k3', '{"concurrency_key": "k", "concurrency_key_limit": 3}');
select pg_temp.enq('own', 'free', '{"concurrency_key": "k"}');
select is(pg_temp.take('own', 10), array['free', 'k1', 'k3'],
          'k2 (limit 1) waits behind k1; k3 (limit 3) starts; a task without a limit on a queue without key limit is free');

-- 6. the task name filter applies within the limits
select durable.create_queue('names', '{"concurrency_limit": 2}');
select pg_temp.enq('names', 'n1', '{}', 'other');
select pg_temp.enq('names', 'n2', '{}', 'mine');
select pg_temp.enq('names', 'n3', '{}', 'mine');
select pg_temp.enq('names', 'n4', '{}', 'mine');
select is(pg_temp.take('names', 10, array['mine']), array['n2', 'n3'], 'only names asked for, up to the limit');

-- 7. two sessions at once: the second claim waits for the first one's lock, then sees
-- what it started
\ir helpers/sessions.sql
select durable.create_queue('race', '{"concurrency_limit": 2, "concurrency_key_limit": 1}');
select pg_temp.enq('race', 'r' || i, jsonb_build_object('concurrency_key', 'k' || (i % 3))) from generate_series(1, 6) as i;
commit;
select pg_temp.connect_ab();

select dblink_exec('a', 'begin');
create temp table ra as
select x.task_id, x.lease_token from dblink('a', $$select task_id, lease_token from durable.claim('race', 'a', 10, 300)$$)
    as x (task_id uuid, lease_token uuid);
select is((select count(*)::integer from ra), 2, 'A claims 2 (the queue limit), not committed yet');
select dblink_send_query('b', $$select count(*) from durable.claim('race', 'b', 10, 300)$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          'B''s claim waits for A (the queue''s advisory lock), it does not count without it');
select dblink_exec('a', 'commit');
create temp table rb as select n from dblink_get_result('b') as x (n bigint);
select count(*) from dblink_get_result('b') as x (n bigint);
select is((select n from rb), 0::bigint, 'once A commits, B sees A''s 2 running tasks: it starts nothing');

-- a completion that has not committed still holds its slot; no lock is involved
select dblink_exec('a', 'begin');
select is(
    (select ok from dblink('a', format('select ok from durable.complete_many(array[%L]::uuid[], array[%L]::uuid[])',
                                       (select task_id from ra limit 1), (select lease_token from ra limit 1)))
         as x (ok boolean)),
    true, 'A completes one task, not committed yet');
select is((select n from dblink('b', $$select count(*) from durable.claim('race', 'b', 10, 300)$$) as x (n bigint)),
          0::bigint, 'B''s claim does not wait for a completion, and still counts that task as running');
select dblink_exec('a', 'commit');
select is((select n from dblink('b', $$select count(*) from durable.claim('race', 'b', 10, 300)$$) as x (n bigint)),
          1::bigint, 'once the completion commits, B starts one');
select is(
    (select jsonb_build_object('running', count(*) filter (where status = 'running'),
                               'max_per_key', (select max(c) from (select count(*) as c from durable.all_tasks
                                               where queue = 'race' and status = 'running' group by concurrency_key) m))
     from durable.all_tasks where queue = 'race'),
    '{"running": 2, "max_per_key": 1}'::jsonb,
    'the limits hold: 2 running, at most 1 per key'
);
select dblink_disconnect('a');
select dblink_disconnect('b');

select * from finish();

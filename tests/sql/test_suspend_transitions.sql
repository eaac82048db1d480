-- The state machine around sleeping and waiting (the trigger rejects every other way in
-- or out with DU012), and the claim: sleeping and waiting tasks are not claimed and not
-- in the claim's index path, however many there are; the claim's sweep is bounded.
select plan(27);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');
select durable.create_queue('big');

-- one sleeping, one waiting, one pending, one completed task
create temp table t as
select n, durable.enqueue('q', 'wf', jsonb_build_object('n', n), '{"durable": true}') as id
from generate_series(1, 3) as n;
create temp table c as select * from durable.claim('q', 'w', 3, 300);
select durable.sleep(c.task_id, c.lease_token, 1, 'nap', 60) from c where c.input ->> 'n' = '1';
select durable.wait_event(c.task_id, c.lease_token, 1, 'k') from c where c.input ->> 'n' = '2';
select durable.complete(c.task_id, c.lease_token, '{}') from c where c.input ->> 'n' = '3';
create temp table pend as select durable.enqueue('q', 'later', '{}', '{"durable": true, "delay": 3600}') as id;
select is(
    (select array_agg(k.status order by t.n) from t join durable.all_tasks k on k.task_id = t.id),
    array['sleeping', 'waiting', 'completed'],
    'one task sleeps, one waits, one completed'
);

create function pg_temp.set_status(p_id uuid, p_status text) returns void
language sql as $$
    update durable.tasks set status = p_status where task_id = p_id;
    update durable.finished_tasks set status = p_status where task_id = p_id;
$$;

select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'running'),
    'DU012', null, 'sleeping -> running by hand raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'completed'),
    'DU012', null, 'sleeping -> completed raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'failed'),
    'DU012', null, 'sleeping -> failed raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'waiting'),
    'DU012', null, 'sleeping -> waiting raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 2), 'running'),
    'DU012', null, 'waiting -> running raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 2), 'completed'),
    'DU012', null, 'waiting -> completed raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 2), 'sleeping'),
    'DU012', null, 'waiting -> sleeping raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from pend), 'sleeping'),
    'DU012', null, 'pending -> sleeping raises DU012 (only a running task suspends)'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from pend), 'waiting'),
    'DU012', null, 'pending -> waiting raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 3), 'sleeping'),
    'DU012', null, 'completed -> sleeping raises DU012'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 3), 'waiting'),
    'DU012', null, 'completed -> waiting raises DU012'
);
select is(
    (select array_agg(k.status order by t.n) from t join durable.all_tasks k on k.task_id = t.id)
        || (select status from durable.all_tasks, pend where task_id = pend.id),
    array['sleeping', 'waiting', 'completed', 'pending'],
    'the rejected updates changed nothing'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'bogus'),
    'DU012', null, 'an unknown status is rejected (the transition trigger, before the CHECK constraint)'
);

-- the verbs refuse a suspended task's ended lease
select throws_ok(
    $$select durable.release(c.task_id, c.lease_token, 0) from c where c.input ->> 'n' = '1'$$,
    'DU010', null, 'release of the sleeping task''s ended attempt raises DU010'
);
select throws_ok(
    $$select durable.fail(c.task_id, c.lease_token, '{"type": "X"}') from c where c.input ->> 'n' = '2'$$,
    'DU010', null, 'fail of the waiting task''s ended attempt raises DU010'
);
select throws_ok(
    format('select durable.retry(%L)', (select id from t where n = 1)),
    'DU012', null, 'a sleeping task cannot be retried (DU012)'
);
select throws_ok(
    format('select durable.replay(%L)', (select id from t where n = 2)),
    'DU012', null, 'a waiting task cannot be replayed (DU012)'
);

-- the way out the trigger allows
select lives_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 1), 'pending'),
    'sleeping -> pending is allowed'
);
select throws_ok(
    format('select pg_temp.set_status(%L, %L)', (select id from t where n = 2), 'cancelled'),
    'DU012', null, 'waiting -> cancelled by hand is DU012 (a task finishes by moving to the archive: durable.cancel)'
);

-- 1,000 sleeping and 1,000 waiting tasks of higher priority, and one ready task
create temp table sleepers as
select durable.enqueue('big', 'sleeper', '{}', '{"durable": true, "priority": 10}') as id
from generate_series(1, 1000);
select count(durable.sleep(c.task_id, c.lease_token, 1, 'nap', 3600))
from durable.claim('big', 'w', 1000, 300) as c;
create temp table waiters as
select durable.enqueue('big', 'waiter', '{}', '{"durable": true, "priority": 10}') as id
from generate_series(1, 1000);
select count(durable.wait_event(c.task_id, c.lease_token, 1, 'key-' || c.task_id))
from durable.claim('big', 'w', 1000, 300) as c;
create temp table ready as select durable.enqueue('big', 'ready', '{}') as id;
select is(
    (select jsonb_object_agg(s, n) from (select status as s, count(*) as n from durable.all_tasks
                                          where queue = 'big' group by status) x),
    '{"sleeping": 1000, "waiting": 1000, "pending": 1}'::jsonb,
    'the big queue holds 1,000 sleeping, 1,000 waiting and 1 pending task'
);

analyze durable.tasks;
create function pg_temp.plan_of(p_query text) returns jsonb
language plpgsql as $$
declare
    v jsonb;
begin
    execute 'explain (format json) ' || p_query into v;
    return v;
end;
$$;
-- the claim's pick, as in durable.claim
select ok(
    pg_temp.plan_of($$
        select k.task_id
        from durable.all_tasks k
        where k.queue = 'big'
          and k.status = 'pending'
          and k.run_at <= '2030-01-01 00:00:00+00'::timestamptz
          and (null::text[] is null or k.task_name = any(null::text[]))
          and (k.schedule_deadline is null or k.schedule_deadline > '2030-01-01 00:00:00+00'::timestamptz)
        order by k.priority desc, k.run_at, k.seq
        limit 10
        for update skip locked
    $$)::text like '%"Index Name": "tasks_claim_idx"%',
    'the claim''s pick reads the partial index tasks_claim_idx (pending tasks only)'
);

create temp table c_big as select * from durable.claim('big', 'w2', 10, 86400);
select is(
    (select array_agg(c_big.task_id) from c_big),
    (select array_agg(id) from ready),
    'the claim returns the one ready task, none of the 2,000 suspended ones'
);
select is(
    (select jsonb_object_agg(s, n) from (select status as s, count(*) as n from durable.all_tasks
                                          where queue = 'big' group by status) x),
    '{"sleeping": 1000, "waiting": 1000, "running": 1}'::jsonb,
    'the suspended tasks are untouched'
);

-- when they are all due, each claim's sweep wakes a bounded number of them
select set_config('durable.fake_now', '2030-01-01 01:00:00+00', false);
create temp table c_due as select * from durable.claim('big', 'w3', 1, 300);
select is(
    (select task_name from c_due), 'sleeper', 'a woken sleeper (priority 10) is claimed first'
);
select is(
    (select jsonb_object_agg(s, n) from (select status as s, count(*) as n from durable.all_tasks
                                          where queue = 'big' group by status) x),
    '{"sleeping": 900, "waiting": 1000, "pending": 99, "running": 2}'::jsonb,
    'one claim''s sweep woke 100 sleepers (its limit), the waiters without timeout stay'
);
select is(durable.next_wake('big'), '2030-01-01 01:00:00+00'::timestamptz, 'the next wake is already due');

select * from finish();

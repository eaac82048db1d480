-- durable.sleep: running -> sleeping (attempt ended as suspended, no lease, out of the
-- claim), woken by the claim's sweep when the time comes, re-runs that replay the
-- recorded sleep (at once when the time passed, only the remainder when early), and the
-- argument checks. A sleep returns {"seq", "kind", "name", "suspended": true} when it
-- parks the task, else its event {"seq", "kind", "name", "outcome", "result": {"until"}}.
select plan(55);

\ir helpers/errors.sql
\ir helpers/nondeterminism.sql

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');
select durable.create_queue('other');
select durable.create_queue('args');
select durable.create_queue('early');
select durable.create_queue('plain');

create temp table t1 as select durable.enqueue('q', 'wf', '{}', '{"durable": true}') as id;
create temp table c1 as select * from durable.claim('q', 'w1', 1, 300);
select is((select task_id from c1), (select id from t1), 'the durable task is claimed');

-- running -> sleeping
create temp table r1 as select durable.sleep(c1.task_id, c1.lease_token, 1, 'nap', 60) as r from c1;
select is(
    (select r from r1),
    '{"seq": 1, "kind": "sleep", "name": "nap", "suspended": true}'::jsonb,
    'a sleep with its time ahead returns {seq, kind, name, suspended: true}'
);
select is(
    (select jsonb_build_object(
        'status', k.status, 'wake_at', k.wake_at, 'lease_expires_at', k.lease_expires_at,
        'attempt_deadline', k.attempt_deadline, 'wait_kind', k.wait_kind, 'wait_key', k.wait_key,
        'wait_seq', k.wait_seq, 'wait_children', k.wait_children)
     from durable.all_tasks k where k.task_id = (select id from t1)),
    jsonb_build_object(
        'status', 'sleeping', 'wake_at', '2030-01-01 00:01:00+00'::timestamptz, 'lease_expires_at', null,
        'attempt_deadline', null, 'wait_kind', null, 'wait_key', null, 'wait_seq', null, 'wait_children', null),
    'the task sleeps until the wake time, with no lease and nothing to wait for'
);
select is(
    (select jsonb_agg(jsonb_build_object(
        'attempt', a.attempt, 'worker', a.worker, 'lease_token', a.lease_token, 'started_at', a.started_at,
        'ended_at', a.ended_at, 'outcome', a.outcome, 'error', a.error))
     from durable.attempts a where a.task_id = (select id from t1)),
    (select jsonb_build_array(jsonb_build_object(
        'attempt', 1, 'worker', 'w1', 'lease_token', c1.lease_token,
        'started_at', '2030-01-01 00:00:00+00'::timestamptz, 'ended_at', '2030-01-01 00:00:00+00'::timestamptz,
        'outcome', 'suspended', 'error', null)) from c1),
    'the attempt ended with one attempts row, outcome suspended'
);
select is(
    (select jsonb_agg(jsonb_build_object(
        'seq', h.seq, 'kind', h.kind, 'name', h.name, 'outcome', h.outcome,
        'until', (h.result ->> 'until')::timestamptz, 'attempt', h.attempt))
     from durable.history((select id from t1)) h),
    jsonb_build_array(jsonb_build_object(
        'seq', 1, 'kind', 'sleep', 'name', 'nap', 'outcome', 'ok',
        'until', '2030-01-01 00:01:00+00'::timestamptz, 'attempt', 1)),
    'the wake time is recorded as event 1 (kind sleep)'
);
select is(durable.next_wake('q'), '2030-01-01 00:01:00+00'::timestamptz, 'next_wake is the sleep''s wake time');

-- the ended attempt is fenced off
select throws_ok(
    $$select durable.heartbeat(c1.task_id, c1.lease_token) from c1$$,
    'DU010', null, 'a heartbeat on the suspended attempt raises DU010'
);
select throws_ok(
    $$select durable.complete(c1.task_id, c1.lease_token, '{}') from c1$$,
    'DU010', null, 'completing the suspended attempt raises DU010'
);
select throws_ok(
    $$select durable.sleep(c1.task_id, c1.lease_token, 1, 'nap', 60) from c1$$,
    'DU010', null, 'sleeping again on the suspended attempt raises DU010'
);

-- not claimable before the wake time; another queue's sleeper is not this claim's business
create temp table t_other as select durable.enqueue('other', 'wf', '{}', '{"durable": true}') as id;
create temp table c_other as select * from durable.claim('other', 'w1', 1, 300);
select durable.sleep(c_other.task_id, c_other.lease_token, 1, 'nap', 60) from c_other;

select is((select count(*) from durable.claim('q', 'w2', 10, 300)), 0::bigint, 'a sleeping task is not claimed at once');
select set_config('durable.fake_now', '2030-01-01 00:00:59.999+00', false);
select is((select count(*) from durable.claim('q', 'w2', 10, 300)), 0::bigint,
          'nor a millisecond before its wake time');
select is((select status from durable.all_tasks where task_id = (select id from t1)), 'sleeping',
          'it is still sleeping');

-- claimable once the time has come: the claim's sweep wakes it
select set_config('durable.fake_now', '2030-01-01 00:01:00+00', false);
create temp table c2 as select * from durable.claim('q', 'w2', 10, 300);
select is(
    (select jsonb_agg(jsonb_build_object('task_id', c2.task_id, 'attempt', c2.attempt)) from c2),
    (select jsonb_build_array(jsonb_build_object('task_id', t1.id, 'attempt', 2)) from t1),
    'at its wake time the claim wakes the sleeping task and claims it (attempt 2)'
);
select is(
    (select jsonb_agg(jsonb_build_object('seq', e ->> 'seq', 'kind', e ->> 'kind', 'name', e ->> 'name'))
     from c2, jsonb_array_elements(c2.history) as e),
    '[{"seq": "1", "kind": "sleep", "name": "nap"}]'::jsonb,
    'the claim hands over the recorded sleep'
);
select is(
    (select jsonb_build_object('status', k.status, 'wake_at', k.wake_at, 'worker', k.worker)
     from durable.all_tasks k where k.task_id = (select id from t1)),
    '{"status": "running", "wake_at": null, "worker": "w2"}'::jsonb,
    'the woken task is running again, its wake time cleared'
);
select is(
    (select status from durable.all_tasks where task_id = (select id from t_other)),
    'sleeping',
    'a claim on q does not wake a task sleeping on another queue'
);
select is(durable.next_wake('q'), null, 'next_wake is null once nothing sleeps on q');
select is(durable.next_wake('other'), '2030-01-01 00:01:00+00'::timestamptz, 'next_wake of the other queue');

-- the re-run reaches the recorded sleep after its time: no suspension
select is(
    (select durable.sleep(c2.task_id, c2.lease_token, 1, 'nap', 60) from c2),
    jsonb_build_object('seq', 1, 'kind', 'sleep', 'name', 'nap', 'outcome', 'ok',
                       'result', jsonb_build_object('until', '2030-01-01 00:01:00+00'::timestamptz)),
    'the re-run''s sleep at the recorded seq returns the recorded event (the recorded time), not suspended'
);
select is(
    (select durable.sleep(c2.task_id, c2.lease_token, 1, 'nap', 5) from c2),
    (select history -> 0 from c2),
    'a replayed sleep returns its history element, whatever duration the code passes now'
);
select is((select status from durable.all_tasks where task_id = (select id from t1)), 'running',
          'the re-run keeps running');
select is((select count(*) from durable.events where task_id = (select id from t1)), 1::bigint,
          'the replayed sleep records nothing new');
select is((select count(*) from durable.attempts where task_id = (select id from t1)), 1::bigint,
          'and ends no attempt');
-- (undone after its checks)
select pg_temp.nondeterminism_ok(
    format($$select durable.sleep(%L, %L, 1, 'siesta', 60)$$, c2.task_id, c2.lease_token),
    c2.task_id, c2.lease_token,
    jsonb_build_object(
        'task_id', c2.task_id, 'seq', 1,
        'recorded', '{"kind": "sleep", "name": "nap", "input_hash": null}'::jsonb,
        'presented', '{"kind": "sleep", "name": "siesta", "input_hash": null}'::jsonb,
        'message', format('non-determinism in task %s at event 1: recorded sleep "nap", the code did sleep "siesta"',
                          c2.task_id)),
    'a sleep of another name at the recorded seq is a non-determinism')
from c2;
select is(
    (select durable.complete(c2.task_id, c2.lease_token, '{"done": true}') from c2),
    '{"completed": true}'::jsonb,
    'the re-run, having gone through its sleep, completes'
);
select is(
    (select array_agg(a.outcome order by a.attempt) from durable.attempts a where a.task_id = (select id from t1)),
    array['suspended', 'completed'],
    'two attempts: suspended, then completed'
);

-- a sleep whose time is already there does not suspend, but is recorded
create temp table t_args as select durable.enqueue('args', 'wf', '{}', '{"durable": true}') as id;
create temp table c_args as select * from durable.claim('args', 'w1', 1, 300);
select is(
    (select durable.sleep(c_args.task_id, c_args.lease_token, 1, 'zero', 0) from c_args),
    jsonb_build_object('seq', 1, 'kind', 'sleep', 'name', 'zero', 'outcome', 'ok',
                       'result', jsonb_build_object('until', '2030-01-01 00:01:00+00'::timestamptz)),
    'a sleep of 0 seconds returns its event at once, not suspended'
);
select is(
    (select durable.sleep(c_args.task_id, c_args.lease_token, 2, 'past', p_until => '2029-06-01 00:00:00+00')
     from c_args),
    jsonb_build_object('seq', 2, 'kind', 'sleep', 'name', 'past', 'outcome', 'ok',
                       'result', jsonb_build_object('until', '2029-06-01 00:00:00+00'::timestamptz)),
    'a sleep until a past time returns at once'
);
select is(
    (select array_agg(e.kind || ':' || e.name order by e.seq) from durable.events e
     where e.task_id = (select id from t_args)),
    array['sleep:zero', 'sleep:past'],
    'both are recorded'
);
select is(
    (select jsonb_build_object('status', k.status, 'lease', k.lease_token = c_args.lease_token)
     from durable.all_tasks k, c_args where k.task_id = c_args.task_id),
    '{"status": "running", "lease": true}'::jsonb,
    'the task keeps running on the same lease'
);

-- argument checks write nothing
select throws_ok(
    $$select durable.sleep(c_args.task_id, c_args.lease_token, 3, 'nap') from c_args$$,
    'DU001', null, 'a sleep with neither seconds nor until raises DU001'
);
select throws_ok(
    $$select durable.sleep(c_args.task_id, c_args.lease_token, 3, 'nap', 5, '2031-01-01 00:00:00+00') from c_args$$,
    'DU001', null, 'a sleep with both seconds and until raises DU001'
);
select throws_ok(
    $$select durable.sleep(c_args.task_id, c_args.lease_token, 3, 'nap', -1) from c_args$$,
    'DU001', null, 'negative seconds raise DU001'
);
select throws_ok(
    $$select durable.sleep(c_args.task_id, c_args.lease_token, 3, '', 5) from c_args$$,
    'DU001', null, 'an empty sleep name raises DU001'
);
select throws_ok(
    $$select durable.sleep(c_args.task_id, c_args.lease_token, 4, 'nap', 5) from c_args$$,
    'DU021', null, 'a sleep past the end of the log raises DU021'
);
select throws_ok(
    $$select durable.sleep(c_args.task_id, gen_random_uuid(), 3, 'nap', 5) from c_args$$,
    'DU010', null, 'a sleep with a stale lease token raises DU010'
);
select is(
    (select jsonb_build_object('status', k.status, 'events', (select count(*) from durable.events e where e.task_id = k.task_id),
                               'attempts', (select count(*) from durable.attempts a where a.task_id = k.task_id))
     from durable.all_tasks k where k.task_id = (select id from t_args)),
    '{"status": "running", "events": 2, "attempts": 0}'::jsonb,
    'the rejected sleeps recorded nothing and did not suspend the task'
);

select durable.enqueue('plain', 'job', '{}');
create temp table c_plain as select * from durable.claim('plain', 'w1', 1, 300);
select throws_ok(
    $$select durable.sleep(c_plain.task_id, c_plain.lease_token, 1, 'nap', 60) from c_plain$$,
    'DU012', null, 'a plain (not durable) task cannot sleep (DU012)'
);
select is((select status from durable.all_tasks where task_id = (select task_id from c_plain)), 'running',
          'the plain task is still running');

-- a re-run that reaches the recorded sleep early sleeps only the remainder
create temp table t3 as select durable.enqueue('early', 'wf', '{}', '{"durable": true}') as id;
create temp table c3 as select * from durable.claim('early', 'w1', 1, 300);
select is(
    (select durable.sleep(c3.task_id, c3.lease_token, 1, 'hour', 3600) from c3),
    '{"seq": 1, "kind": "sleep", "name": "hour", "suspended": true}'::jsonb,
    'a one-hour sleep at 00:01 suspends the task'
);
select is(
    (select result from durable.events where task_id = (select id from t3)),
    jsonb_build_object('until', '2030-01-01 01:01:00+00'::timestamptz),
    'until 01:01'
);
-- cancelled then retried half-way: the re-run comes back early
select durable.cancel((select id from t3));
select durable.retry((select id from t3));
select set_config('durable.fake_now', '2030-01-01 00:31:00+00', false);
create temp table c3b as select * from durable.claim('early', 'w2', 1, 300);
select is((select task_id from c3b), (select id from t3), 'the retried task is claimed at 00:31');
select is(
    (select durable.sleep(c3b.task_id, c3b.lease_token, 1, 'hour', 3600) from c3b),
    '{"seq": 1, "kind": "sleep", "name": "hour", "suspended": true}'::jsonb,
    'the early re-run sleeps again'
);
select is(
    (select jsonb_build_object('status', k.status, 'wake_at', k.wake_at)
     from durable.all_tasks k where k.task_id = (select id from t3)),
    jsonb_build_object('status', 'sleeping', 'wake_at', '2030-01-01 01:01:00+00'::timestamptz),
    'it sleeps for the remaining 30 minutes'
);
select is((select count(*) from durable.events where task_id = (select id from t3)), 1::bigint,
          'the early re-run recorded no second sleep');
select set_config('durable.fake_now', '2030-01-01 01:00:59+00', false);
select is((select count(*) from durable.claim('early', 'w3', 1, 300)), 0::bigint,
          'not claimable a second before the recorded time');
select set_config('durable.fake_now', '2030-01-01 01:01:00+00', false);
create temp table c3c as select * from durable.claim('early', 'w3', 1, 300);
select is((select task_id from c3c), (select id from t3), 'claimable at the recorded time');
select is(
    (select durable.sleep(c3c.task_id, c3c.lease_token, 1, 'hour', 3600) from c3c),
    jsonb_build_object('seq', 1, 'kind', 'sleep', 'name', 'hour', 'outcome', 'ok',
                       'result', jsonb_build_object('until', '2030-01-01 01:01:00+00'::timestamptz)),
    'and its sleep is then over: the recorded event'
);
select is(
    (select array_agg(a.outcome order by a.attempt) from durable.attempts a where a.task_id = (select id from t3)),
    array['suspended', 'suspended'],
    'each sleep ended its attempt as suspended'
);

-- durable.reclaim alone (no claim) also wakes sleepers whose time came
select set_config('durable.fake_now', '2030-01-01 02:00:00+00', false);
select is(durable.reclaim('other'), 1, 'reclaim on the other queue wakes its one sleeper');
select is(
    (select jsonb_build_object('status', k.status, 'run_at', k.run_at, 'wake_at', k.wake_at)
     from durable.all_tasks k where k.task_id = (select id from t_other)),
    jsonb_build_object('status', 'pending', 'run_at', '2030-01-01 02:00:00+00'::timestamptz, 'wake_at', null),
    'the woken sleeper is pending, due now'
);

select * from finish();

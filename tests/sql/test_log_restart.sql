-- The three restarts of a durable task: retry (same history), replay (new generation,
-- old events kept) and fork (a new task with a prefix of the history).
select plan(63);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');
select durable.create_queue('fq');

-- ---------------------------------------------------------------- retry
select durable.enqueue('q', 'wf', '{"n": 1}', '{"durable": true, "max_attempts": 1}');
create temp table r1 as select * from durable.claim('q', 'w1', 1, 10);
select durable.checkpoint(r1.task_id, r1.lease_token, 1, 'step', 'a', '{"v": 1}') from r1;
-- the lease is lost once (a lost lease is counted, not a failure), then the task fails
select set_config('durable.fake_now', '2030-01-01 00:00:20+00', false);
create temp table r2 as select * from durable.claim('q', 'w2', 1, 10);
select durable.replay_check(r2.task_id, r2.lease_token, '[{"seq": 1, "kind": "step", "name": "a"}]') from r2;
select durable.checkpoint(r2.task_id, r2.lease_token, 2, 'step', 'b', null, '{"type": "StepError", "message": "b broke"}')
from r2;
select status from durable.fail((select task_id from r2), (select lease_token from r2), '{"type": "Boom"}');
create temp table r_log as select * from durable.events where task_id = (select task_id from r1);

select is(
    (select row(status, failures, lost_leases, attempt, error)::text from durable.all_tasks where task_id = (select task_id from r1)),
    row('failed', 1, 1, 2, '{"type": "Boom"}'::jsonb)::text,
    'retry setup: the task failed with one failure and one lost lease on attempt 2'
);

select set_config('durable.fake_now', '2030-01-01 00:05:00+00', false);
select lives_ok($$select durable.retry((select task_id from r1))$$, 'a failed task can be retried');
select is(
    (select row(status, failures, lost_leases, error, output, finished_at, lease_token, lease_expires_at)::text
     from durable.all_tasks where task_id = (select task_id from r1)),
    row('pending', 0, 0, null::jsonb, null::jsonb, null::timestamptz, null::uuid, null::timestamptz)::text,
    'retry: pending again, failure and lost-lease counts reset, error and lease cleared'
);
select is(
    (select run_at from durable.all_tasks where task_id = (select task_id from r1)),
    '2030-01-01 00:05:00+00'::timestamptz,
    'retry: runnable now'
);
select is(
    (select row(generation, attempt)::text from durable.all_tasks where task_id = (select task_id from r1)),
    row(1, 2)::text,
    'retry: same generation; the attempt number goes on'
);
select results_eq(
    $$select * from durable.events where task_id = (select task_id from r1) order by seq$$,
    $$select * from r_log order by seq$$,
    'retry: the history is kept as it was'
);

create temp table r3 as select * from durable.claim('q', 'w3', 1, 60);
select is(
    (select row(task_id, attempt, durable)::text from r3),
    (select row(task_id, 3, true)::text from r1),
    'the retried task is claimed as attempt 3'
);
select is(
    (select history from r3),
    jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'a', 'outcome', 'ok',
                           'result', '{"v": 1}'::jsonb),
        jsonb_build_object('seq', 2, 'kind', 'step', 'name', 'b', 'outcome', 'error',
                           'result', '{"type": "StepError", "message": "b broke"}'::jsonb)),
    'the claim hands the retried attempt the recorded history, the failed step included'
);
select is(
    (select durable.checkpoint(r3.task_id, r3.lease_token, 2, 'step', 'b', '{"v": "ran again"}') from r3),
    (select history -> 1 from r3),
    'the failed step is re-raised to the retried attempt (its recorded error event), not re-run'
);

select throws_ok(
    $$select durable.retry((select task_id from r1))$$,
    'DU012',
    format('durable: only a failed or cancelled task can be retried; task %s is running', (select task_id from r1)),
    'retry of a running task raises DU012'
);
select is(
    (select durable.replay_check(r3.task_id, r3.lease_token,
        '[{"seq": 1, "kind": "step", "name": "a"}, {"seq": 2, "kind": "step", "name": "b"}]') from r3),
    '{"checked": 2}'::jsonb,
    'the retried attempt presents both recorded calls'
);
select is(
    (select durable.complete(r3.task_id, r3.lease_token, '{"ok": true}') from r3),
    '{"completed": true}'::jsonb,
    'and completes'
);
select throws_ok(
    $$select durable.retry((select task_id from r1))$$,
    'DU012',
    format('durable: only a failed or cancelled task can be retried; task %s is completed', (select task_id from r1)),
    'retry of a completed task raises DU012'
);
select is(
    (select row(status, output)::text from durable.all_tasks where task_id = (select task_id from r1)),
    row('completed', '{"ok": true}'::jsonb)::text,
    'the refused retry left the completed task as it was'
);
select durable.enqueue('fq', 'waiting', '{}', '{"durable": true}');
create temp table pend as select task_id from durable.all_tasks where task_name = 'waiting';
select throws_ok(
    $$select durable.retry((select task_id from pend))$$,
    'DU012',
    format('durable: only a failed or cancelled task can be retried; task %s is pending', (select task_id from pend)),
    'retry of a pending task raises DU012'
);
select throws_ok(
    $$select durable.retry(gen_random_uuid())$$,
    'DU004', null,
    'retry of an unknown task raises DU004'
);

-- a cancelled task can be retried, with its history
select durable.enqueue('q', 'wf', '{"n": 2}', '{"durable": true}');
create temp table x1 as select * from durable.claim('q', 'w1', 1, 60);
create temp table x1_event as select durable.checkpoint(x1.task_id, x1.lease_token, 1, 'uuid', 'id') as e from x1;
select durable.cancel((select task_id from x1), 'not now');
select lives_ok($$select durable.retry((select task_id from x1))$$, 'a cancelled task can be retried');
select is(
    (select row(status, error, generation)::text from durable.all_tasks where task_id = (select task_id from x1)),
    row('pending', null::jsonb, 1)::text,
    'retry of the cancelled task: pending, error cleared, same generation'
);
create temp table x2 as select * from durable.claim('q', 'w2', 1, 60);
select is(
    (select history from x2 where task_id = (select task_id from x1)),
    (select jsonb_build_array(e) from x1_event),
    'the retried cancelled task is claimed with its history'
);
select durable.replay_check(x2.task_id, x2.lease_token, '[{"seq": 1, "kind": "uuid", "name": "id"}]') from x2;
select durable.complete(x2.task_id, x2.lease_token, null) from x2;

-- ---------------------------------------------------------------- replay
create temp table gen1 as select * from durable.history((select task_id from r1));
select is(
    durable.replay((select task_id from r1)),
    2,
    'replay of a completed task returns the new generation'
);
select is(
    (select row(status, generation, output, finished_at, failures)::text
     from durable.all_tasks where task_id = (select task_id from r1)),
    row('pending', 2, null::jsonb, null::timestamptz, 0)::text,
    'replay: pending, generation 2, output cleared'
);
select is(
    (select count(*) from durable.history((select task_id from r1))),
    0::bigint,
    'replay: the current generation is empty'
);
select results_eq(
    $$select * from durable.history((select task_id from r1), true)$$,
    $$select * from gen1$$,
    'replay: the old events are kept and listed with all generations'
);
select is(
    (select count(*) from durable.events where task_id = (select task_id from r1)),
    2::bigint,
    'replay: no event was deleted'
);
create temp table p1 as select * from durable.claim('q', 'w1', 1, 60);
select is(
    (select row(task_id, history)::text from p1),
    (select row(task_id, '[]'::jsonb)::text from r1),
    'the replayed task is claimed with an empty history'
);
select is(
    (select durable.checkpoint(p1.task_id, p1.lease_token, 1, 'step', 'other', '{"v": 10}') from p1),
    '{"seq": 1, "kind": "step", "name": "other", "outcome": "ok", "result": {"v": 10}}'::jsonb,
    'the new generation records seq 1 afresh (the old seq 1 is no determinism constraint)'
);
select results_eq(
    $$select generation, seq, name, result from durable.history((select task_id from r1), true)$$,
    $$values (1, 1, 'a', '{"v": 1}'::jsonb),
             (1, 2, 'b', '{"type": "StepError", "message": "b broke"}'::jsonb),
             (2, 1, 'other', '{"v": 10}'::jsonb)$$,
    'history(task, true) lists both generations in order'
);
select results_eq(
    $$select generation, seq, name from durable.history((select task_id from r1))$$,
    $$values (2, 1, 'other')$$,
    'history(task) lists the current generation only'
);
select throws_ok(
    $$select durable.replay((select task_id from r1))$$,
    'DU012',
    format('durable: only a finished task can be replayed; task %s is running', (select task_id from r1)),
    'replay of a running task raises DU012'
);
select throws_ok(
    $$select durable.replay((select task_id from pend))$$,
    'DU012',
    format('durable: only a finished task can be replayed; task %s is pending', (select task_id from pend)),
    'replay of a pending task raises DU012'
);
select throws_ok($$select durable.replay(gen_random_uuid())$$, 'DU004', null, 'replay of an unknown task raises DU004');
select is(
    (select durable.complete(p1.task_id, p1.lease_token, '{"gen": 2}') from p1),
    '{"completed": true}'::jsonb,
    'the new generation completes, its single event its own'
);
select is(durable.replay((select task_id from r1)), 3, 'a second replay starts generation 3');

-- failed and cancelled tasks can be replayed too
select durable.enqueue('q', 'wf3', '{"n": 3}', '{"durable": true, "max_attempts": 1}');
create temp table f1 as select * from durable.claim('q', 'w1', 1, 60, array['wf3']);
select durable.checkpoint(f1.task_id, f1.lease_token, 1, 'step', 's', '{}') from f1;
select status from durable.fail((select task_id from f1), (select lease_token from f1), '{"type": "Boom"}');
select is(durable.replay((select task_id from f1)), 2, 'a failed task can be replayed');
select is(
    (select row(status, failures, error)::text from durable.all_tasks where task_id = (select task_id from f1)),
    row('pending', 0, null::jsonb)::text,
    'replay of the failed task: pending, failures reset, error cleared'
);
select durable.cancel((select task_id from pend));
select is(durable.replay((select task_id from pend)), 2, 'a cancelled task can be replayed');

-- ---------------------------------------------------------------- fork
select durable.enqueue('fq', 'orig', '{"order": 42}',
                       '{"durable": true, "priority": 5, "max_attempts": 3, "max_lost_leases": 4, "timeout": 120}');
create temp table o1 as select * from durable.claim('fq', 'w1', 1, 60, array['orig']);
select durable.checkpoint(o1.task_id, o1.lease_token, 1, 'step', 'a', '{"v": 1}') from o1;
select durable.checkpoint(o1.task_id, o1.lease_token, 2, 'step', 'b', null, '{"type": "E"}') from o1;
select durable.spawn(o1.task_id, o1.lease_token, 3, 'q', 'c', '{"v": 3}') from o1;
select durable.complete(o1.task_id, o1.lease_token, '{"done": 1}') from o1;
create temp table o_task as select * from durable.all_tasks where task_id = (select task_id from o1);
create temp table o_log as select * from durable.events where task_id = (select task_id from o1);

select set_config('durable.fake_now', '2030-01-01 00:10:00+00', false);
create temp table forks as select 3 as at_seq, durable.fork((select task_id from o1), 3) as id;
select isnt((select id from forks), (select task_id from o1), 'fork returns a new task id');
select is(
    (select row(t.queue, t.task_name, t.input, t.priority, t.max_attempts, t.max_lost_leases, t.backoff, t.timeout_seconds)::text
     from durable.all_tasks t where t.task_id = (select id from forks)),
    (select row(o.queue, o.task_name, o.input, o.priority, o.max_attempts, o.max_lost_leases, o.backoff, o.timeout_seconds)::text
     from o_task o),
    'the fork has the original''s queue, name, input and options'
);
select is(
    (select row(status, durable, generation, forked_from, forked_at_seq, attempt, failures, output, run_at)::text
     from durable.all_tasks where task_id = (select id from forks)),
    (select row('pending', true, 1, task_id, 3, 0, 0, null::jsonb, '2030-01-01 00:10:00+00'::timestamptz)::text from o1),
    'the fork is a fresh pending durable task linked to its origin and fork point'
);
select results_eq(
    $$select seq, kind, name, outcome, result, input_hash, generation
      from durable.events where task_id = (select id from forks) order by seq$$,
    $$select seq, kind, name, outcome, result, input_hash, generation
      from o_log where seq < 3 order by seq$$,
    'fork at 3: the fork''s history is events 1 and 2 of the original'
);
create temp table fc as select * from durable.claim('fq', 'w2', 1, 60);
select is(
    (select row(task_id, jsonb_path_query_array(history, '$[*].name'))::text from fc),
    (select row(id, '["a", "b"]'::jsonb)::text from forks),
    'the fork is claimed with the copied prefix'
);
select is(
    (select durable.checkpoint(fc.task_id, fc.lease_token, 2, 'step', 'b', '{"v": "again"}') from fc),
    '{"seq": 2, "kind": "step", "name": "b", "outcome": "error", "result": {"type": "E"}}'::jsonb,
    'a copied failed step is re-raised in the fork'
);
select throws_ok(
    $$select durable.checkpoint(fc.task_id, fc.lease_token, 3, 'step', 'c-new', '{"v": 30}') from fc$$,
    'DU022', null,
    'the copied history is checked like any other: a new call before presenting it raises DU022'
);
select is(
    (select durable.replay_check(fc.task_id, fc.lease_token,
        '[{"seq": 1, "kind": "step", "name": "a"}, {"seq": 2, "kind": "step", "name": "b"}]') from fc),
    '{"checked": 2}'::jsonb,
    'the fork presents the copied calls'
);
select is(
    (select durable.checkpoint(fc.task_id, fc.lease_token, 3, 'step', 'c-new', '{"v": 30}') from fc),
    '{"seq": 3, "kind": "step", "name": "c-new", "outcome": "ok", "result": {"v": 30}}'::jsonb,
    'the fork re-executes from the fork point (a different call at seq 3 is fine)'
);

insert into forks values (1, durable.fork((select task_id from o1), 1));
insert into forks values (4, durable.fork((select task_id from o1), 4));
select is(
    (select count(*) from durable.events where task_id = (select id from forks where at_seq = 1)),
    0::bigint,
    'fork at 1: an empty history'
);
select results_eq(
    $$select seq, kind, name, outcome, result, input_hash
      from durable.events where task_id = (select id from forks where at_seq = 4) order by seq$$,
    $$select seq, kind, name, outcome, result, input_hash from o_log order by seq$$,
    'fork at last seq + 1: the whole history'
);
select is(
    (select forked_at_seq from durable.all_tasks where task_id = (select id from forks where at_seq = 4)),
    4,
    'fork at 4 records forked_at_seq 4'
);

select throws_ok(
    $$select durable.fork((select task_id from o1), 5)$$,
    'DU001',
    format('durable: task %s has events 1..3; a fork point must be between 1 and 4, got 5', (select task_id from o1)),
    'a fork point past last seq + 1 raises DU001'
);
select throws_ok($$select durable.fork((select task_id from o1), 0)$$, 'DU001', null, 'fork point 0 raises DU001');
select throws_ok($$select durable.fork((select task_id from o1), -1)$$, 'DU001', null, 'a negative fork point raises DU001');
select throws_ok(
    $$select durable.fork((select task_id from o1), null)$$,
    'DU001',
    format('durable: task %s has events 1..3; a fork point must be between 1 and 4, got null', (select task_id from o1)),
    'a null fork point raises DU001'
);
select durable.enqueue('fq', 'plain job', '{}');
select throws_ok(
    $$select durable.fork((select task_id from durable.all_tasks where task_name = 'plain job'), 1)$$,
    'DU012', null,
    'fork of a plain task raises DU012'
);
select throws_ok($$select durable.fork(gen_random_uuid(), 1)$$, 'DU004', null, 'fork of an unknown task raises DU004');
select is(
    (select count(*) from durable.all_tasks where forked_from = (select task_id from o1)),
    3::bigint,
    'the refused forks created no task'
);

select results_eq(
    $$select to_jsonb(t) from durable.all_tasks t where t.task_id = (select task_id from o1)$$,
    $$select to_jsonb(o) from o_task o$$,
    'the original task is untouched by its forks'
);
select results_eq(
    $$select * from durable.events where task_id = (select task_id from o1) order by seq$$,
    $$select * from o_log order by seq$$,
    'the original''s log is untouched by its forks'
);

-- a fork copies the current generation only
select is(
    (select durable.complete(fc.task_id, fc.lease_token, null) from fc),
    '{"completed": true}'::jsonb,
    'the fork completes'
);
select is(durable.replay((select task_id from o1)), 2, 'the original is replayed');
create temp table o2 as select * from durable.claim('fq', 'w3', 1, 60, array['orig']);
select is((select task_id from o2), (select task_id from o1), 'the replayed original is claimed');
select durable.checkpoint(o2.task_id, o2.lease_token, 1, 'step', 'gen2', '{"g": 2}') from o2;
insert into forks values (2, durable.fork((select task_id from o1), 2));
select results_eq(
    $$select seq, name, result from durable.events where task_id = (select id from forks where at_seq = 2)$$,
    $$values (1, 'gen2', '{"g": 2}'::jsonb)$$,
    'a fork of a replayed task copies its current generation, not the earlier one'
);
select throws_ok(
    $$select durable.fork((select task_id from o1), 3)$$,
    'DU001', null,
    'the fork point range is that of the current generation'
);
select is(
    (select row(status, generation)::text from durable.all_tasks where task_id = (select task_id from o1)),
    row('running', 2)::text,
    'forking a running task leaves it running'
);

select * from finish();

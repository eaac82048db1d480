-- Fencing of the durable-task verbs: once a lease is lost (expired, reclaimed by
-- another worker's claim) or the task cancelled, the old attempt's checkpoint,
-- replay_check and complete are rejected (DU010, DU011) and change nothing.
select plan(52);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');

\ir helpers/errors.sql

select durable.enqueue('q', 'wf', '{}', '{"durable": true}');
create temp table c1 as select * from durable.claim('q', 'w1', 1, 30);
select is(
    (select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'a', '{"v": 1}') from c1),
    '{"seq": 1, "kind": "step", "name": "a", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'the first attempt records event 1 while its lease is live'
);
create temp table log_1 as select * from durable.events;

-- the lease runs out: the old attempt is fenced even before anyone reclaims it
select set_config('durable.fake_now', '2030-01-01 00:01:00+00', false);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 2, 'step', 'b', '{"v": 2}') from c1$$,
    'DU010',
    format('durable: lease %s of task %s expired at %s',
           (select lease_token from c1), (select task_id from c1), (select lease_expires_at from c1)),
    'a checkpoint after the lease expired raises DU010'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'a', '{"v": 1}') from c1$$,
    'DU010', null,
    'even re-recording an event already in the log is fenced once the lease expired'
);
select results_eq(
    $$select * from durable.events order by seq$$,
    $$select * from log_1 order by seq$$,
    'the expired attempt wrote nothing'
);
commit;

-- another worker, in another session, claims the task: the lease is reclaimed
select dblink_connect('b', current_setting('durable_test.conninfo'));
select dblink_exec('b', $$set durable.fake_now = '2030-01-01 00:01:00+00'$$);
create temp table c2 as
select * from dblink('b', $$select task_id, attempt, lease_token, history from durable.claim('q', 'w2', 1, 30)$$)
    as r (task_id uuid, attempt integer, lease_token uuid, history jsonb);

select is((select task_id from c2), (select task_id from c1), 'the other worker claims the same task');
select is((select attempt from c2), 2, 'as attempt 2');
select isnt((select lease_token from c2), (select lease_token from c1), 'with a new lease token');
select is(
    (select history from c2),
    jsonb_build_array(jsonb_build_object(
        'seq', 1, 'kind', 'step', 'name', 'a', 'outcome', 'ok', 'result', '{"v": 1}'::jsonb)),
    'and the history the first attempt recorded'
);
select is(
    (select row(status, lost_leases, lease_token)::text from durable.all_tasks),
    (select row('running', 1, lease_token)::text from c2),
    'the task runs under the new lease, one lost lease counted'
);
create temp table task_2 as select * from durable.all_tasks;

-- the reclaimed attempt is fenced out of every durable verb
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 2, 'step', 'b', '{"v": 2}') from c1$$,
    'DU010',
    format('durable: lease %s is not the live lease of task %s', (select lease_token from c1), (select task_id from c1)),
    'the reclaimed attempt''s checkpoint of a new event raises DU010'
);
select is(
    pg_temp.error_of(format($$select durable.checkpoint(%L, %L, 2, 'step', 'b')$$,
                            (select task_id from c1), (select lease_token from c1))) ->> 'detail',
    'the task is running on attempt 2; the lease was reclaimed or the attempt ended',
    'its DETAIL says the task runs another attempt'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'a', '{"v": 1}') from c1$$,
    'DU010', null,
    'the reclaimed attempt cannot re-record event 1 either'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 3, 'step', 'c') from c1$$,
    'DU010', null,
    'the fence comes before the gap check (DU010, not DU021)'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'renamed') from c1$$,
    'DU010', null,
    'the fence comes before the determinism check (DU010, not DU020)'
);
select throws_ok(
    $$select durable.replay_check(c1.task_id, c1.lease_token, '[{"seq": 1, "kind": "step", "name": "renamed"}]') from c1$$,
    'DU010', null,
    'a mismatching replay_check of the reclaimed attempt raises DU010 too (and fails nothing)'
);
select throws_ok(
    $$select durable.replay_check(c1.task_id, c1.lease_token, '[{"seq": 1, "kind": "step", "name": "a"}]') from c1$$,
    'DU010', null,
    'the reclaimed attempt''s replay_check raises DU010'
);
select throws_ok(
    $$select durable.complete(c1.task_id, c1.lease_token, '{"stale": true}') from c1$$,
    'DU010', null,
    'the reclaimed attempt''s complete raises DU010'
);
select results_eq(
    $$select m.ok, m.reason from durable.complete_many(
          array[(select task_id from c1)], array[(select lease_token from c1)], array['{"stale": true}'::jsonb]) as m$$,
    $$values (false, 'lease_lost')$$,
    'complete_many reports lease_lost for the reclaimed attempt'
);
select results_eq(
    $$select * from durable.events order by seq$$,
    $$select * from log_1 order by seq$$,
    'the reclaimed attempt changed nothing in the log'
);
select results_eq(
    $$select to_jsonb(t) from durable.all_tasks t$$,
    $$select to_jsonb(t) from task_2 t$$,
    'nor in the task row'
);
commit;

-- the live attempt goes on in its own session: it presents the recorded call, then records
select is(
    (select x from dblink('b', format(
        $$select durable.replay_check(%L, %L, '[{"seq": 1, "kind": "step", "name": "a"}]')$$,
        (select task_id from c2), (select lease_token from c2))) as r (x jsonb)),
    '{"checked": 1}'::jsonb,
    'the live attempt checks event 1'
);
select is(
    (select x from dblink('b', format(
        $$select durable.checkpoint(%L, %L, 2, 'step', 'b', '{"v": 2}')$$,
        (select task_id from c2), (select lease_token from c2))) as r (x jsonb)),
    '{"seq": 2, "kind": "step", "name": "b", "outcome": "ok", "result": {"v": 2}}'::jsonb,
    'the live attempt records event 2'
);
select results_eq(
    $$select seq, name, attempt from durable.history((select task_id from c1))$$,
    $$values (1, 'a', 1), (2, 'b', 2)$$,
    'the log holds event 1 of attempt 1 and event 2 of attempt 2'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 3, 'step', 'c') from c1$$,
    'DU010', null,
    'the old attempt stays fenced after the live one wrote'
);
select is((select count(*) from durable.events), 2::bigint, 'and still wrote nothing');

-- a cancelled task: its live attempt learns it at its next durable call (DU011)
select is(durable.cancel((select task_id from c1), 'operator stop'), true, 'the task is cancelled');
create temp table log_3 as select * from durable.events;
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 3, 'step', 'c', '{"v": 3}') from c2$$,
    'DU011',
    format('durable: task %s was cancelled', (select task_id from c2)),
    'a checkpoint of the cancelled task raises DU011'
);
select is(
    pg_temp.error_of(format($$select durable.checkpoint(%L, %L, 3, 'step', 'c')$$,
                            (select task_id from c2), (select lease_token from c2))) ->> 'detail',
    'operator stop',
    'its DETAIL is the cancel reason'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 2, 'step', 'b', '{"v": 2}') from c2$$,
    'DU011', null,
    're-recording a recorded event of the cancelled task raises DU011 too'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '[{"seq": 1, "kind": "step", "name": "a"}]') from c2$$,
    'DU011', null,
    'replay_check of the cancelled task raises DU011'
);
select throws_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}') from c2$$,
    'DU011', null,
    'complete of the cancelled task raises DU011'
);
select throws_ok(
    $$select durable.checkpoint(c1.task_id, c1.lease_token, 3, 'step', 'c') from c1$$,
    'DU010', null,
    'the attempt reclaimed before the cancel still gets DU010'
);
select results_eq(
    $$select * from durable.events order by seq$$,
    $$select * from log_3 order by seq$$,
    'no call on the cancelled task changed the log'
);

-- a completed attempt's token is fenced too
select durable.enqueue('q', 'done', '{}', '{"durable": true}');
create temp table c4 as select * from durable.claim('q', 'w4', 1, 30);
select durable.checkpoint(c4.task_id, c4.lease_token, 1, 'step', 'only', '{}') from c4;
select durable.complete(c4.task_id, c4.lease_token, '{}') from c4;
select throws_ok(
    $$select durable.checkpoint(c4.task_id, c4.lease_token, 2, 'step', 'late') from c4$$,
    'DU010',
    format('durable: lease %s of task %s has ended (the task is completed)',
           (select lease_token from c4), (select task_id from c4)),
    'a checkpoint after complete raises DU010'
);
select is(
    (select count(*) from durable.events where task_id = (select task_id from c4)),
    1::bigint,
    'and writes nothing'
);


-- a lease whose task a non-determinism failed: every later call with it raises DU020
select durable.create_queue('nq', '{"backoff": {"kind": "none"}}');
select durable.enqueue('nq', 'nd', '{}', '{"durable": true}');
create temp table n1 as select * from durable.claim('nq', 'w5', 1, 30);
select durable.checkpoint(n1.task_id, n1.lease_token, 1, 'step', 'a', '{}') from n1;
select durable.checkpoint(n1.task_id, n1.lease_token, 2, 'step', 'b', '{}') from n1;
select durable.fail(n1.task_id, n1.lease_token, '{"type": "Crash"}') from n1;
create temp table n2 as select * from durable.claim('nq', 'w5', 1, 30);
select is((select task_id from n2), (select task_id from n1), 'the task is claimed again');
select is(
    (select durable.checkpoint(n2.task_id, n2.lease_token, 1, 'step', 'renamed') from n2) -> 'nondeterminism' -> 'seq',
    '1'::jsonb,
    'its re-run renames step 1: the checkpoint returns the non-determinism'
);
create temp table n_state as
select (select to_jsonb(t) from durable.all_tasks t where t.task_id = n2.task_id) as task,
       (select jsonb_agg(to_jsonb(e) order by e.seq) from durable.events e where e.task_id = n2.task_id) as events,
       (select count(*) from durable.all_tasks) as tasks
from n2;
select is(
    (select status from durable.all_tasks where task_id = (select task_id from n2)),
    'failed',
    'and has failed the task'
);
select throws_ok(format($$select durable.heartbeat(%L, %L)$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'heartbeat with that lease raises DU020') from n2;
select throws_ok(format($$select durable.checkpoint(%L, %L, 1, 'step', 'a')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'checkpoint of the recorded call raises DU020') from n2;
select throws_ok(format($$select durable.checkpoint(%L, %L, 3, 'step', 'c')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'checkpoint of a new call raises DU020') from n2;
select throws_ok(format($$select durable.replay_check(%L, %L, '[]')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'replay_check raises DU020') from n2;
select throws_ok(format($$select durable.sleep(%L, %L, 3, 'nap', 60)$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'sleep raises DU020') from n2;
select throws_ok(format($$select durable.wait_event(%L, %L, 3, 'key')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'wait_event raises DU020') from n2;
select throws_ok(format($$select durable.spawn(%L, %L, 3, 'q', 'kid')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'spawn raises DU020') from n2;
select throws_ok(format($$select durable.wait_children(%L, %L, 3, array[%L::uuid])$$, n2.task_id, n2.lease_token,
                        n2.task_id), 'DU020', null,
                 'wait_children raises DU020') from n2;
select throws_ok(format($$select durable.complete(%L, %L, '{}')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'complete raises DU020') from n2;
select throws_ok(format($$select durable.fail(%L, %L, '{"type": "E"}')$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'fail raises DU020') from n2;
select throws_ok(format($$select durable.release(%L, %L, 0)$$, n2.task_id, n2.lease_token), 'DU020', null,
                 'release raises DU020') from n2;
select results_eq(
    $$select m.ok, m.reason from durable.complete_many(array[(select task_id from n2)], array[(select lease_token from n2)]) as m$$,
    $$values (false, 'lease_lost')$$,
    'complete_many reports lease_lost: the attempt has ended'
);
select throws_ok(format($$select durable.heartbeat(%L, %L)$$, n1.task_id, n1.lease_token), 'DU010', null,
                 'the earlier attempt''s lease still gets DU010') from n1;
select is(
    (select row(
        (select to_jsonb(t) from durable.all_tasks t where t.task_id = n2.task_id),
        (select jsonb_agg(to_jsonb(e) order by e.seq) from durable.events e where e.task_id = n2.task_id),
        (select count(*) from durable.all_tasks))::text from n2),
    (select row(task, events, tasks)::text from n_state),
    'none of them changed anything'
);

select dblink_disconnect('b');
select * from finish();

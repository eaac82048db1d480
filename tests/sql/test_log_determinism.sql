-- The determinism check: a re-run must make the recorded calls in the recorded order
-- (renamed, reordered, removed steps, a changed spawn input and unconsumed history are
-- DU020); the message and DETAIL name the seq, the recorded event and what the code did.
select plan(49);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');

\ir helpers/errors.sql

select durable.enqueue('q', 'wf', '{"order": 7}', '{"durable": true}');
create temp table c1 as select * from durable.claim('q', 'w1', 1, 3600);
create temp table k as
select c1.task_id as id,
       durable.input_hash('{"queue": "q", "input": {"x": 1}}') as h1,
       durable.input_hash('{"queue": "q", "input": {"x": 2}}') as h2
from c1;

-- the first attempt records four events, then fails and is retried
select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'fetch', '{"n": 1}') from c1;
select durable.checkpoint(c1.task_id, c1.lease_token, 2, 'now', 'clock') from c1;
select durable.checkpoint(c1.task_id, c1.lease_token, 3, 'step', 'spawn child', '{"child": "x"}', null, k.h1)
from c1, k;
select durable.checkpoint(c1.task_id, c1.lease_token, 4, 'step', 'save', '{"saved": true}') from c1;
select durable.fail(c1.task_id, c1.lease_token, '{"type": "Crash"}') from c1;
create temp table c2 as select * from durable.claim('q', 'w2', 1, 3600);
create temp table before as select * from durable.events;

select is((select task_id from c2), (select id from k), 'the second attempt claims the task');
select is(
    (select jsonb_path_query_array(history, '$[*].name') from c2),
    '["fetch", "clock", "spawn child", "save"]'::jsonb,
    'it gets the four recorded events'
);

-- the same calls pass
select is(
    (select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input', '{"queue": "q", "input": {"x": 1}}'::jsonb),
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'save'))) from c2),
    4,
    'replay_check passes the recorded calls (spawn input hashed in SQL) and returns how many it checked'
);
select is(
    (select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1))) from c2, k),
    3,
    'a shorter prefix, with the input hash given directly, passes too'
);
select is(
    (select durable.checkpoint(c2.task_id, c2.lease_token, 1, 'step', 'fetch', '{"n": 99}') from c2),
    '{"result": {"n": 1}}'::jsonb,
    'checkpoint of a recorded call returns the recorded result'
);

-- renamed step
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token,
        '[{"seq": 1, "kind": "step", "name": "fetch_v2"}]') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 1: recorded step "fetch", the code did step "fetch_v2"',
           (select id from k)),
    'replay_check: a renamed step is a non-determinism naming seq, recorded and presented'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.replay_check(%L, %L, '[{"seq": 1, "kind": "step", "name": "fetch_v2"}]')$$,
        (select task_id from c2), (select lease_token from c2))) ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 1,
        'recorded', jsonb_build_object('kind', 'step', 'name', 'fetch', 'input_hash', null),
        'presented', jsonb_build_object('kind', 'step', 'name', 'fetch_v2', 'input_hash', null)),
    'replay_check: DETAIL of a renamed step is {task_id, seq, recorded, presented}'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 1, 'step', 'fetch_v2', '{"n": 2}') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 1: recorded step "fetch", the code did step "fetch_v2"',
           (select id from k)),
    'checkpoint: a renamed step is a non-determinism'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.checkpoint(%L, %L, 1, 'step', 'fetch_v2', '{"n": 2}')$$,
        (select task_id from c2), (select lease_token from c2))) ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 1,
        'recorded', jsonb_build_object('kind', 'step', 'name', 'fetch', 'input_hash', null),
        'presented', jsonb_build_object('kind', 'step', 'name', 'fetch_v2', 'input_hash', null)),
    'checkpoint: DETAIL of a renamed step'
);
select matches(
    pg_temp.error_of(format(
        $$select durable.checkpoint(%L, %L, 1, 'step', 'fetch_v2')$$,
        (select task_id from c2), (select lease_token from c2))) ->> 'hint',
    'durable\.replay.*durable\.fork',
    'the HINT points to replay and fork'
);

-- a changed kind under the same name
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token,
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "random", "name": "clock"}]') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 2: recorded now "clock", the code did random "clock"',
           (select id from k)),
    'a call of another kind under the recorded name is a non-determinism'
);

-- reordered steps
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'save'),
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1))) from c2, k$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child", the code did step "save"',
           (select id from k)),
    'replay_check: reordered steps fail at the first seq that differs'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.replay_check(%L, %L, %L)$$,
        (select task_id from c2), (select lease_token from c2),
        jsonb_build_array(
            jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
            jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
            jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'save'),
            jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'spawn child', 'input_hash', (select h1 from k)))))
     ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 3,
        'recorded', jsonb_build_object('kind', 'step', 'name', 'spawn child', 'input_hash', (select h1 from k)),
        'presented', jsonb_build_object('kind', 'step', 'name', 'save', 'input_hash', null)),
    'replay_check: DETAIL of reordered steps names seq 3 with its recorded input hash'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 3, 'step', 'save', '{"saved": true}') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child", the code did step "save"',
           (select id from k)),
    'checkpoint: a step moved earlier is a non-determinism'
);

-- removed step: the re-run skips a recorded call
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1))) from c2, k$$,
    'DU020',
    format('durable: non-determinism in task %s at event 2: recorded now "clock", the code did step "spawn child"',
           (select id from k)),
    'replay_check: a removed call shows as the next call at its seq'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.replay_check(%L, %L, %L)$$,
        (select task_id from c2), (select lease_token from c2),
        jsonb_build_array(
            jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
            jsonb_build_object('seq', 2, 'kind', 'step', 'name', 'spawn child', 'input_hash', (select h1 from k)))))
     ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 2,
        'recorded', jsonb_build_object('kind', 'now', 'name', 'clock', 'input_hash', null),
        'presented', jsonb_build_object('kind', 'step', 'name', 'spawn child', 'input_hash', (select h1 from k))),
    'replay_check: DETAIL of a removed call'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1),
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'save'))) from c2, k$$,
    'DU021',
    format('durable: task %s presents ''3'' as event 2; a replayed prefix is numbered 1, 2, 3, ... without gaps',
           (select id from k)),
    'replay_check: a presented prefix that skips seq 2 is rejected, not half checked'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'))) from c2$$,
    'DU021',
    null,
    'replay_check: a seq presented twice is rejected'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'save'))) from c2$$,
    'DU021',
    null,
    'replay_check: a prefix must start at seq 1'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1),
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'save'),
        jsonb_build_object('seq', 5, 'kind', 'step', 'name', 'notify'))) from c2, k$$,
    'DU020',
    format('durable: non-determinism in task %s at event 5: recorded nothing, the code did step "notify"',
           (select id from k)),
    'replay_check: presenting a call past the recorded end is not a replay'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '[{"seq": 1, "kind": "step"}]') from c2$$,
    'DU020', null,
    'replay_check: a presented call without a name matches nothing'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '[{"seq": 1, "name": "fetch"}]') from c2$$,
    'DU020', null,
    'replay_check: a presented call without a kind matches nothing'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '[{"seq": 1}]') from c2$$,
    'DU020', null,
    'replay_check: a presented call with only a seq matches nothing'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '[1]') from c2$$,
    'DU021', null,
    'replay_check: a presented element that is not an object has no seq (DU021)'
);
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, '{"seq": 1}') from c2$$,
    'DU001', null, 'replay_check takes a JSON array (DU001 otherwise)'
);

-- spawn-style input hash mismatch
select throws_ok(
    $$select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input', '{"queue": "q", "input": {"x": 2}}'::jsonb)))
     from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child" with input hash %s, the code did step "spawn child" with input hash %s',
           (select id from k), (select h1 from k), (select h2 from k)),
    'replay_check: the same call with another input is a non-determinism naming both hashes'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.replay_check(%L, %L, %L)$$,
        (select task_id from c2), (select lease_token from c2),
        jsonb_build_array(
            jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
            jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
            jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input', '{"queue": "q", "input": {"x": 2}}'::jsonb))))
     ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 3,
        'recorded', jsonb_build_object('kind', 'step', 'name', 'spawn child', 'input_hash', (select h1 from k)),
        'presented', jsonb_build_object('kind', 'step', 'name', 'spawn child', 'input_hash', (select h2 from k))),
    'replay_check: DETAIL of an input hash mismatch holds both hashes'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 3, 'step', 'spawn child', '{"child": "y"}', null, k.h2)
      from c2, k$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child" with input hash %s, the code did step "spawn child" with input hash %s',
           (select id from k), (select h1 from k), (select h2 from k)),
    'checkpoint: another input hash at a recorded spawn is a non-determinism'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 3, 'step', 'spawn child', '{"child": "y"}') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child" with input hash %s, the code did step "spawn child" with input hash none',
           (select id from k), (select h1 from k)),
    'checkpoint: dropping the input hash of a recorded spawn is a non-determinism'
);
select throws_ok(
    $$select durable.checkpoint(c2.task_id, c2.lease_token, 4, 'step', 'save', null, null, k.h1) from c2, k$$,
    'DU020',
    format('durable: non-determinism in task %s at event 4: recorded step "save" with input hash none, the code did step "save" with input hash %s',
           (select id from k), (select h1 from k)),
    'checkpoint: adding an input hash to a recorded call is a non-determinism'
);

-- every mismatch above wrote nothing
select results_eq(
    $$select * from durable.events order by task_id, generation, seq$$,
    $$select * from before order by task_id, generation, seq$$,
    'no rejected call changed the log'
);
select is(
    (select row(status, attempt, lease_token)::text from durable.tasks where task_id = (select id from k)),
    (select row('running', 2, lease_token)::text from c2),
    'the task is still running on the second attempt'
);

-- unconsumed history at complete
select throws_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}', 3) from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 4: recorded step "save", the code did nothing (it finished)',
           (select id from k)),
    'complete: finishing with event 4 unconsumed is a non-determinism at event 4'
);
select is(
    (pg_temp.error_of(format(
        $$select durable.complete(%L, %L, '{"done": true}', 3)$$,
        (select task_id from c2), (select lease_token from c2))) ->> 'detail')::jsonb,
    jsonb_build_object(
        'task_id', (select id from k), 'seq', 4,
        'recorded', jsonb_build_object('kind', 'step', 'name', 'save', 'input_hash', null),
        'presented', null),
    'complete: DETAIL names the first unconsumed event and presents nothing'
);
select throws_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}') from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 1: recorded step "fetch", the code did nothing (it finished)',
           (select id from k)),
    'complete: without p_consumed nothing was consumed (non-determinism at event 1)'
);
select throws_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}', 2) from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 3: recorded step "spawn child", the code did nothing (it finished)',
           (select id from k)),
    'complete: the first unconsumed event is the one named'
);
select is(
    (select row(status, output, finished_at)::text from durable.tasks where task_id = (select id from k)),
    row('running', null::jsonb, null::timestamptz)::text,
    'a rejected complete leaves the task running without output'
);
select is(
    (select count(*) from durable.attempts where task_id = (select id from k) and outcome = 'completed'),
    0::bigint,
    'a rejected complete records no completed attempt'
);

-- complete_many: the same rule, as a reason, without stopping the rest of the batch
select durable.enqueue('q', 'other', '{}', '{"durable": true}');
select durable.enqueue('q', 'plain', '{}');
create temp table c3 as select * from durable.claim('q', 'w3', 2, 3600);
select is((select count(*) from c3), 2::bigint, 'two more tasks are claimed');
select durable.checkpoint(c3.task_id, c3.lease_token, 1, 'step', 'only', '{}') from c3 where c3.task_name = 'other';
select results_eq(
    $$select m.task_id, m.ok, m.reason
      from durable.complete_many(
          array[(select task_id from c2), (select task_id from c3 where task_name = 'other'),
                (select task_id from c3 where task_name = 'plain')],
          array[(select lease_token from c2), (select lease_token from c3 where task_name = 'other'),
                (select lease_token from c3 where task_name = 'plain')],
          array['{"a": 1}'::jsonb, '{"b": 2}'::jsonb, '{"c": 3}'::jsonb],
          array[3, 1, 0]) as m$$,
    $$values ((select id from k), false, 'history_not_consumed'),
             ((select task_id from c3 where task_name = 'other'), true, 'completed'),
             ((select task_id from c3 where task_name = 'plain'), true, 'completed')$$,
    'complete_many: unconsumed history is reason history_not_consumed; the rest of the batch completes'
);
select is(
    (select status from durable.tasks where task_id = (select id from k)),
    'running',
    'complete_many left the task with unconsumed history running'
);
select results_eq(
    $$select m.ok, m.reason from durable.complete_many(
          array[(select task_id from c2)], array[(select lease_token from c2)], null, null) as m$$,
    $$values (false, 'history_not_consumed')$$,
    'complete_many without p_consumed: nothing consumed'
);

-- a step added after the recorded end is fine
select is(
    (select durable.replay_check(c2.task_id, c2.lease_token, jsonb_build_array(
        jsonb_build_object('seq', 1, 'kind', 'step', 'name', 'fetch'),
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock'),
        jsonb_build_object('seq', 3, 'kind', 'step', 'name', 'spawn child', 'input_hash', k.h1),
        jsonb_build_object('seq', 4, 'kind', 'step', 'name', 'save'))) from c2, k),
    4,
    'the re-run replays the whole history'
);
select is(
    (select durable.checkpoint(c2.task_id, c2.lease_token, 5, 'step', 'notify', '{"sent": true}') from c2),
    '{"result": {"sent": true}}'::jsonb,
    'a new step after the recorded end is recorded'
);
select is(
    (select durable.checkpoint(c2.task_id, c2.lease_token, 6, 'random', 'jitter', '0.5') from c2),
    '{"result": 0.5}'::jsonb,
    'and another one after it'
);
select results_eq(
    $$select seq, name, attempt from durable.history((select id from k))$$,
    $$values (1, 'fetch', 1), (2, 'clock', 1), (3, 'spawn child', 1), (4, 'save', 1), (5, 'notify', 2), (6, 'jitter', 2)$$,
    'the log keeps the first attempt''s events and appends the re-run''s new ones'
);
select throws_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}', 5) from c2$$,
    'DU020',
    format('durable: non-determinism in task %s at event 6: recorded random "jitter", the code did nothing (it finished)',
           (select id from k)),
    'complete: one event short is still a non-determinism'
);
select lives_ok(
    $$select durable.complete(c2.task_id, c2.lease_token, '{"done": true}', 6) from c2$$,
    'complete with the whole history consumed is accepted'
);
select is(
    (select row(status, output)::text from durable.tasks where task_id = (select id from k)),
    row('completed', '{"done": true}'::jsonb)::text,
    'the task completed with its output'
);

select * from finish();

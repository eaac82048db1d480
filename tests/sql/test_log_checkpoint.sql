-- durable.checkpoint: dense seq numbering, idempotent re-recording, recorded errors,
-- the recorded clock, and the argument checks (kind, name, non-durable task).
select plan(41);

select set_config('durable.fake_now', '2031-02-03 04:05:06.789+00', false);
select durable.create_queue('q');
select durable.create_queue('plain');

select durable.enqueue('q', 'wf', '{}', '{"durable": true}');
create temp table c as select * from durable.claim('q', 'w1', 1, 3600);

select is((select count(*) from c), 1::bigint, 'one durable task is claimed');

-- seq 1 comes first: a gap raises DU021 and writes nothing
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 2, 'step', 'a') from c$$,
    'DU021',
    format('durable: task %s records event 2 but its log ends at 0; events are numbered without gaps',
           (select task_id from c)),
    'the first event must be seq 1 (DU021 for seq 2)'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 0, 'step', 'a') from c$$,
    'DU021', null, 'seq 0 is out of order (DU021)'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, null, 'step', 'a') from c$$,
    'DU021', null, 'a null seq is out of order (DU021)'
);
select is((select count(*) from durable.events), 0::bigint, 'a rejected first event writes nothing');

select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'a', '{"v": 1}') from c),
    '{"result": {"v": 1}}'::jsonb,
    'seq 1 is recorded and its result returned'
);
select results_eq(
    $$select e.task_id, e.generation, e.seq, e.kind, e.name, e.outcome, e.result, e.input_hash, e.attempt, e.recorded_at
      from durable.events e$$,
    $$select c.task_id, 1, 1, 'step'::text, 'a'::text, 'ok'::text, '{"v": 1}'::jsonb, null::text, c.attempt,
             '2031-02-03 04:05:06.789+00'::timestamptz
      from c$$,
    'the event row holds generation, seq, kind, name, outcome, result, attempt and the (test) clock'
);

select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 3, 'step', 'c') from c$$,
    'DU021',
    format('durable: task %s records event 3 but its log ends at 1; events are numbered without gaps',
           (select task_id from c)),
    'skipping seq 2 raises DU021 naming the end of the log'
);
select is((select count(*) from durable.events), 1::bigint, 'the gap wrote nothing');

-- the same event written again is idempotent and returns the first recorded result
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'a', '{"v": 2}') from c),
    '{"result": {"v": 1}}'::jsonb,
    'writing seq 1 again returns the first recorded result, not the new one'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'a', null, '{"type": "Late"}') from c),
    '{"result": {"v": 1}}'::jsonb,
    'writing seq 1 again as an error still returns the first recorded result'
);
select is(
    (select array_agg(e.result) from durable.events e),
    array['{"v": 1}'::jsonb],
    'the second and third writes of seq 1 changed nothing'
);

-- a step recorded with p_error is re-raised (returned as {"error": ...}), not re-run
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 2, 'step', 'b', null, '{"type": "Boom", "message": "no"}')
     from c),
    '{"error": {"type": "Boom", "message": "no"}}'::jsonb,
    'a failed step is recorded and its error returned'
);
select is(
    (select row(e.outcome, e.result)::text from durable.events e where e.seq = 2),
    row('error', '{"type": "Boom", "message": "no"}'::jsonb)::text,
    'the failed step is stored with outcome error and the error as its result'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 2, 'step', 'b', '{"v": "second try"}') from c),
    '{"error": {"type": "Boom", "message": "no"}}'::jsonb,
    're-checkpointing a failed step returns {"error": ...} even when a result is given'
);

-- a "now" event without a result records the database (test) clock
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 3, 'now', 'clock') from c) -> 'result',
    to_jsonb('2031-02-03 04:05:06.789+00'::timestamptz),
    'a now event without a result returns the test clock'
);
select is(
    (select (e.result #>> '{}')::timestamptz from durable.events e where e.seq = 3),
    '2031-02-03 04:05:06.789+00'::timestamptz,
    'and records the test clock'
);
select set_config('durable.fake_now', '2031-02-03 04:06:00+00', false);
select is(
    ((select durable.checkpoint(c.task_id, c.lease_token, 3, 'now', 'clock') from c) ->> 'result')::timestamptz,
    '2031-02-03 04:05:06.789+00'::timestamptz,
    'a re-run of the now event gets the recorded time, not the current clock'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 4, 'now', 'client clock', '"2020-05-06T07:08:09+00:00"') from c),
    '{"result": "2020-05-06T07:08:09+00:00"}'::jsonb,
    'a now event with a result records the given result'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 5, 'random', 'dice', '0.25') from c),
    '{"result": 0.25}'::jsonb,
    'a random event is recorded'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 6, 'uuid', 'id', '"0b8c6a9e-6f4e-4f39-9a4d-6a1c7f0f0e55"') from c),
    '{"result": "0b8c6a9e-6f4e-4f39-9a4d-6a1c7f0f0e55"}'::jsonb,
    'a uuid event is recorded'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 7, 'step', 'spawn child', '{"child": 1}', null, 'sha256:abc') from c),
    '{"result": {"child": 1}}'::jsonb,
    'a step with an input hash is recorded'
);
select is(
    (select e.input_hash from durable.events e where e.seq = 7),
    'sha256:abc',
    'the input hash is stored'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 7, 'step', 'spawn child', '{"child": 2}', null, 'sha256:abc') from c),
    '{"result": {"child": 1}}'::jsonb,
    'the same spawn (same input hash) again returns the first result'
);

-- the history, in order
select results_eq(
    $$select h.generation, h.seq, h.kind, h.name, h.outcome from durable.history((select task_id from c)) h$$,
    $$values (1, 1, 'step', 'a', 'ok'), (1, 2, 'step', 'b', 'error'), (1, 3, 'now', 'clock', 'ok'),
             (1, 4, 'now', 'client clock', 'ok'), (1, 5, 'random', 'dice', 'ok'), (1, 6, 'uuid', 'id', 'ok'),
             (1, 7, 'step', 'spawn child', 'ok')$$,
    'durable.history lists the events in seq order'
);
select is(
    (select array_agg(distinct h.recorded_at) from durable.history((select task_id from c)) h where h.seq >= 4),
    array['2031-02-03 04:06:00+00'::timestamptz],
    'recorded_at follows the test clock'
);

-- argument checks
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, 'sleep', 'nap') from c$$,
    'DU001',
    'durable: checkpoint records events of kind step, now, random, uuid, got ''sleep'' (sleeps, waits and spawns have verbs of their own)',
    'an unknown kind raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, null, 'nap') from c$$,
    'DU001',
    'durable: checkpoint records events of kind step, now, random, uuid, got null (sleeps, waits and spawns have verbs of their own)',
    'a null kind raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 1, 'Step', 'a') from c$$,
    'DU001', null,
    'kinds are case-sensitive, even for a recorded seq (DU001)'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, 'step', '') from c$$,
    'DU001', null, 'an empty event name raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, 'step', null) from c$$,
    'DU001', null, 'a null event name raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, 'step', 'x', null, '"boom"') from c$$,
    'DU001',
    'durable: an event error must be a JSON object',
    'an error that is not a JSON object raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, 'step', 'big',
                                to_jsonb(repeat('x', durable.max_payload_bytes() + 1))) from c$$,
    'DU003', null, 'a result over the payload limit raises DU003'
);
select is((select count(*) from durable.events), 7::bigint, 'rejected checkpoints wrote nothing');

-- a checkpoint on a plain (non-durable) task raises DU012
select durable.enqueue('plain', 'job', '{}');
create temp table p as select * from durable.claim('plain', 'w1');
select is((select durable from p), false, 'the plain task is claimed as not durable');
select throws_ok(
    $$select durable.checkpoint(p.task_id, p.lease_token, 1, 'step', 'a') from p$$,
    'DU012',
    format('durable: task %s is not a durable task (enqueue it with {"durable": true})', (select task_id from p)),
    'checkpoint on a plain task raises DU012'
);
select throws_ok(
    $$select durable.replay_check(p.task_id, p.lease_token, '[]') from p$$,
    'DU012', null, 'replay_check on a plain task raises DU012'
);
select is(
    (select count(*) from durable.events e where e.task_id = (select task_id from p)),
    0::bigint,
    'nothing was recorded for the plain task'
);

-- unknown task, missing token
select throws_ok(
    $$select durable.checkpoint(gen_random_uuid(), gen_random_uuid(), 1, 'step', 'a')$$,
    'DU004', null, 'checkpoint on an unknown task raises DU004'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, null, 8, 'step', 'a') from c$$,
    'DU001', null, 'checkpoint without a lease token raises DU001'
);
select is((select count(*) from durable.events), 7::bigint, 'the log still holds the seven events');

select * from finish();

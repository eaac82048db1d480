-- durable.checkpoint: dense seq numbering, idempotent re-recording, recorded errors,
-- the values the server supplies (clock, random, uuid), the event each call returns
-- ({"seq", "kind", "name", "outcome", "result"}, as the claim's history lists it), the
-- kinds (durable.event_kinds) and the argument checks (kind, name, non-durable task).
select plan(50);

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
    '{"seq": 1, "kind": "step", "name": "a", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'seq 1 is recorded and returned as an event {seq, kind, name, outcome, result}'
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

-- the same event written again is idempotent and returns the first recorded event
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'a', '{"v": 2}') from c),
    '{"seq": 1, "kind": "step", "name": "a", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'writing seq 1 again returns the first recorded event, not the new result'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'a', null, '{"type": "Late"}') from c),
    '{"seq": 1, "kind": "step", "name": "a", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'writing seq 1 again as an error still returns the first recorded event'
);
select is(
    (select array_agg(e.result) from durable.events e),
    array['{"v": 1}'::jsonb],
    'the second and third writes of seq 1 changed nothing'
);

-- a step recorded with p_error is re-raised (returned with outcome error), not re-run
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 2, 'step', 'b', null, '{"type": "Boom", "message": "no"}')
     from c),
    '{"seq": 2, "kind": "step", "name": "b", "outcome": "error", "result": {"type": "Boom", "message": "no"}}'::jsonb,
    'a failed step is recorded and returned with outcome error, the error as its result'
);
select is(
    (select row(e.outcome, e.result)::text from durable.events e where e.seq = 2),
    row('error', '{"type": "Boom", "message": "no"}'::jsonb)::text,
    'the failed step is stored with outcome error and the error as its result'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 2, 'step', 'b', '{"v": "second try"}') from c),
    '{"seq": 2, "kind": "step", "name": "b", "outcome": "error", "result": {"type": "Boom", "message": "no"}}'::jsonb,
    're-checkpointing a failed step returns its error event even when a result is given'
);

-- a "now" event records the database (test) clock
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 3, 'now', 'clock') from c),
    jsonb_build_object('seq', 3, 'kind', 'now', 'name', 'clock', 'outcome', 'ok',
                       'result', to_jsonb('2031-02-03 04:05:06.789+00'::timestamptz)),
    'a now event returns the test clock as its result'
);
select is(
    (select (e.result #>> '{}')::timestamptz from durable.events e where e.seq = 3),
    '2031-02-03 04:05:06.789+00'::timestamptz,
    'and records the test clock'
);
select set_config('durable.fake_now', '2031-02-03 04:06:00+00', false);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 3, 'now', 'clock') from c),
    jsonb_build_object('seq', 3, 'kind', 'now', 'name', 'clock', 'outcome', 'ok',
                       'result', to_jsonb('2031-02-03 04:05:06.789+00'::timestamptz)),
    'a re-run of the now event gets the recorded time, not the current clock'
);

-- the server supplies the values of now, random and uuid events: a client cannot give one
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 4, 'now', 'client clock', '"2020-05-06T07:08:09+00:00"') from c$$,
    'DU001',
    'durable: the server supplies the value of a now event; give no result',
    'a now event with a result raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 4, 'random', 'dice', '0.25') from c$$,
    'DU001',
    'durable: the server supplies the value of a random event; give no result',
    'a random event with a result raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 4, 'uuid', 'id', '"0b8c6a9e-6f4e-4f39-9a4d-6a1c7f0f0e55"') from c$$,
    'DU001',
    'durable: the server supplies the value of a uuid event; give no result',
    'a uuid event with a result raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 4, 'random', 'dice', null, '{"type": "E"}') from c$$,
    'DU001', null,
    'a random event with an error raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 3, 'now', 'clock', '"2020-05-06T07:08:09+00:00"') from c$$,
    'DU001', null,
    'a now event with a result raises DU001 even at its recorded seq'
);
select is((select count(*) from durable.events), 3::bigint, 'the refused events wrote nothing');

select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 4, 'now', 'later clock') from c),
    jsonb_build_object('seq', 4, 'kind', 'now', 'name', 'later clock', 'outcome', 'ok',
                       'result', to_jsonb('2031-02-03 04:06:00+00'::timestamptz)),
    'a later now event records the clock as it is then'
);
create temp table dice as select durable.checkpoint(c.task_id, c.lease_token, 5, 'random', 'dice') as e from c;
select is(
    (select jsonb_build_object('event', e - 'result', 'type', jsonb_typeof(e -> 'result'),
                               'in [0, 1)', (e ->> 'result')::double precision >= 0
                                            and (e ->> 'result')::double precision < 1) from dice),
    '{"event": {"seq": 5, "kind": "random", "name": "dice", "outcome": "ok"}, "type": "number", "in [0, 1)": true}'::jsonb,
    'a random event records a number in [0, 1)'
);
create temp table uuids as select durable.checkpoint(c.task_id, c.lease_token, 6, 'uuid', 'id') as e from c;
select is(
    (select jsonb_build_object('event', e - 'result', 'type', jsonb_typeof(e -> 'result'),
                               'uuid', (e ->> 'result')::uuid::text = e ->> 'result') from uuids),
    '{"event": {"seq": 6, "kind": "uuid", "name": "id", "outcome": "ok"}, "type": "string", "uuid": true}'::jsonb,
    'a uuid event records a uuid string'
);
select is(
    (select array[durable.checkpoint(c.task_id, c.lease_token, 5, 'random', 'dice'),
                  durable.checkpoint(c.task_id, c.lease_token, 6, 'uuid', 'id')] from c),
    array[(select e from dice), (select e from uuids)],
    'their re-runs get the recorded values, not new ones'
);
select is(
    (select array_agg(jsonb_build_object('seq', e.seq, 'kind', e.kind, 'name', e.name, 'outcome', e.outcome,
                                         'result', e.result) order by e.seq)
     from durable.events e where e.seq in (5, 6)),
    array[(select e from dice), (select e from uuids)],
    'the recorded events are the ones returned'
);
select is(
    (select durable.checkpoint(c.task_id, c.lease_token, 7, 'step', 'no value') from c),
    '{"seq": 7, "kind": "step", "name": "no value", "outcome": "ok", "result": null}'::jsonb,
    'a step without a result records a null result'
);
select is(
    (select array_agg(e.input_hash) from durable.events e),
    array[null, null, null, null, null, null, null]::text[],
    'checkpoint events carry no input hash'
);

-- the history, in order
select results_eq(
    $$select h.generation, h.seq, h.kind, h.name, h.outcome from durable.history((select task_id from c)) h$$,
    $$values (1, 1, 'step', 'a', 'ok'), (1, 2, 'step', 'b', 'error'), (1, 3, 'now', 'clock', 'ok'),
             (1, 4, 'now', 'later clock', 'ok'), (1, 5, 'random', 'dice', 'ok'), (1, 6, 'uuid', 'id', 'ok'),
             (1, 7, 'step', 'no value', 'ok')$$,
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
    'durable: checkpoint records events of kind step, now, random, uuid, patch, got ''sleep'' (sleeps, waits and spawns have verbs of their own)',
    'an unknown kind raises DU001'
);
select throws_ok(
    $$select durable.checkpoint(c.task_id, c.lease_token, 8, null, 'nap') from c$$,
    'DU001',
    'durable: checkpoint records events of kind step, now, random, uuid, patch, got null (sleeps, waits and spawns have verbs of their own)',
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

-- the kinds of event, and the verb that records each
select results_eq(
    $$select kind, verb from durable.event_kinds()$$,
    $$values ('step', 'checkpoint'), ('now', 'checkpoint'), ('random', 'checkpoint'), ('uuid', 'checkpoint'),
             ('sleep', 'sleep'), ('wait', 'wait_event'), ('spawn', 'spawn'), ('children', 'wait_children'),
             ('patch', 'checkpoint')$$,
    'durable.event_kinds() lists the nine kinds, each with the verb that records it'
);
select is(
    (select count(*) from durable.event_kinds() k
     where coalesce(k.name, '') = '' or coalesce(k.arguments, '') = '' or coalesce(k.result, '') = ''),
    0::bigint,
    'each kind says what its name, its arguments and its result are'
);

select * from finish();

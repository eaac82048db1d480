-- One event shape for every kind: each durable verb returns the event it records as
-- {"seq", "kind", "name", "outcome", "result"}; the claim's history lists exactly those
-- objects; a re-run calling a verb again at a recorded seq gets exactly the history's
-- element, whatever the kind; replay_check takes the calls of every kind (with a spawn's
-- queue and input, a children wait's ids).
select plan(20);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');
select durable.create_queue('kids');

select durable.enqueue('q', 'wf', '{}', '{"durable": true}');
create temp table a1 as select * from durable.claim('q', 'w1', 1, 3600);
select durable.emit_event('q', 'key', '{"p": 1}');

-- the first attempt records one event of each kind, and keeps what each verb returned
create temp table live (seq integer primary key, e jsonb);
insert into live select 1, durable.checkpoint(a1.task_id, a1.lease_token, 1, 'step', 'fetch', '{"n": 1}') from a1;
insert into live select 2, durable.checkpoint(a1.task_id, a1.lease_token, 2, 'step', 'broken', null,
                                              '{"type": "E", "message": "m"}') from a1;
insert into live select 3, durable.checkpoint(a1.task_id, a1.lease_token, 3, 'now', 'clock') from a1;
insert into live select 4, durable.checkpoint(a1.task_id, a1.lease_token, 4, 'random', 'dice') from a1;
insert into live select 5, durable.checkpoint(a1.task_id, a1.lease_token, 5, 'uuid', 'id') from a1;
insert into live select 6, durable.sleep(a1.task_id, a1.lease_token, 6, 'nap', 0) from a1;
insert into live select 7, durable.wait_event(a1.task_id, a1.lease_token, 7, 'key', 60) from a1;
insert into live select 8, durable.spawn(a1.task_id, a1.lease_token, 8, 'kids', 'child', '{"x": 1}') from a1;
create temp table kid as select * from durable.claim('kids', 'w9', 1, 60);
select durable.complete(kid.task_id, kid.lease_token, '{"done": 1}') from kid;
insert into live select 9, durable.wait_children(a1.task_id, a1.lease_token, 9, array[kid.task_id], 'all') from a1, kid;

select is(
    (select jsonb_agg(jsonb_build_object('seq', l.e -> 'seq', 'kind', l.e -> 'kind', 'name', l.e -> 'name',
                                         'outcome', l.e -> 'outcome') order by l.seq) from live l),
    '[{"seq": 1, "kind": "step", "name": "fetch", "outcome": "ok"},
      {"seq": 2, "kind": "step", "name": "broken", "outcome": "error"},
      {"seq": 3, "kind": "now", "name": "clock", "outcome": "ok"},
      {"seq": 4, "kind": "random", "name": "dice", "outcome": "ok"},
      {"seq": 5, "kind": "uuid", "name": "id", "outcome": "ok"},
      {"seq": 6, "kind": "sleep", "name": "nap", "outcome": "ok"},
      {"seq": 7, "kind": "wait", "name": "key", "outcome": "ok"},
      {"seq": 8, "kind": "spawn", "name": "child", "outcome": "ok"},
      {"seq": 9, "kind": "children", "name": "all", "outcome": "ok"}]'::jsonb,
    'every verb returns the event it recorded: seq, kind, name, outcome'
);
select is(
    (select count(*) from live l
     where (select array_agg(k order by k) from jsonb_object_keys(l.e) as k) <> array['kind', 'name', 'outcome', 'result', 'seq']),
    0::bigint,
    'and result: no event has any other key'
);
select is(
    -- (the patch marker, a checkpoint with no result: test_log_patch.sql)
    (select array_agg(k.kind order by k.kind) from durable.event_kinds() k where k.kind <> 'patch'),
    (select array_agg(l.e ->> 'kind' order by l.e ->> 'kind') from (select distinct on (l.e ->> 'kind') l.e from live l) as l),
    'the nine events cover the eight kinds durable.event_kinds() lists besides the patch marker'
);
select is(
    (select jsonb_object_agg(l.seq, l.e -> 'result') from live l where l.seq in (1, 2, 3, 6, 7)),
    jsonb_build_object(
        '1', '{"n": 1}'::jsonb,
        '2', '{"type": "E", "message": "m"}'::jsonb,
        '3', to_jsonb('2030-01-01 00:00:00+00'::timestamptz),
        '6', jsonb_build_object('until', '2030-01-01 00:00:00+00'::timestamptz),
        '7', '{"payload": {"p": 1}, "timed_out": false}'::jsonb),
    'the results: a step''s value or error, the clock, the wake time, the payload'
);
select is(
    (select jsonb_build_object(
        'random', (select (l.e ->> 'result')::double precision >= 0 and (l.e ->> 'result')::double precision < 1
                   from live l where l.seq = 4),
        'uuid', (select (l.e ->> 'result')::uuid::text = l.e ->> 'result' from live l where l.seq = 5))),
    '{"random": true, "uuid": true}'::jsonb,
    'a random number in [0, 1), a uuid string'
);
select is(
    (select jsonb_build_object('spawn', (select l.e -> 'result' from live l where l.seq = 8),
                               'children', (select l.e -> 'result' from live l where l.seq = 9))),
    (select jsonb_build_object(
        'spawn', jsonb_build_object('task_id', kid.task_id, 'queue', 'kids'),
        'children', jsonb_build_array(jsonb_build_object(
            'task_id', kid.task_id, 'status', 'completed', 'output', '{"done": 1}'::jsonb, 'error', null))) from kid),
    'the child spawned, and the outcome of the children waited for'
);
select is(
    (select row(status, lease_token)::text from durable.all_tasks where task_id = (select task_id from a1)),
    (select row('running', lease_token)::text from a1),
    'nothing suspended the attempt'
);

-- the claim's history is exactly what the verbs returned
select durable.fail(a1.task_id, a1.lease_token, '{"type": "Crash"}') from a1;
create temp table a2 as select * from durable.claim('q', 'w2', 1, 3600);
select is((select attempt from a2), 2, 'the second attempt is claimed');
select is(
    (select history from a2),
    (select jsonb_agg(l.e order by l.seq) from live l),
    'its history is exactly the events the verbs returned, in seq order'
);
select is(
    (select jsonb_agg(jsonb_build_object('seq', h.seq, 'kind', h.kind, 'name', h.name, 'outcome', h.outcome,
                                         'result', h.result) order by h.seq)
     from durable.history((select task_id from a1)) h),
    (select history from a2),
    'as durable.history lists them'
);

-- a re-run calling each verb again at its seq gets exactly the history's element
create temp table replayed (seq integer primary key, e jsonb);
insert into replayed select 1, durable.checkpoint(a2.task_id, a2.lease_token, 1, 'step', 'fetch', '{"n": 2}') from a2;
insert into replayed select 2, durable.checkpoint(a2.task_id, a2.lease_token, 2, 'step', 'broken', '{"n": 2}') from a2;
insert into replayed select 3, durable.checkpoint(a2.task_id, a2.lease_token, 3, 'now', 'clock') from a2;
insert into replayed select 4, durable.checkpoint(a2.task_id, a2.lease_token, 4, 'random', 'dice') from a2;
insert into replayed select 5, durable.checkpoint(a2.task_id, a2.lease_token, 5, 'uuid', 'id') from a2;
insert into replayed select 6, durable.sleep(a2.task_id, a2.lease_token, 6, 'nap', 3600) from a2;
insert into replayed select 7, durable.wait_event(a2.task_id, a2.lease_token, 7, 'key', 60) from a2;
insert into replayed select 8, durable.spawn(a2.task_id, a2.lease_token, 8, 'kids', 'child', '{"x": 1}') from a2;
insert into replayed select 9, durable.wait_children(a2.task_id, a2.lease_token, 9, array[kid.task_id], 'all') from a2, kid;
select results_eq(
    $$select r.seq, r.e from replayed r order by r.seq$$,
    $$select (h.e ->> 'seq')::integer, h.e from a2, jsonb_array_elements(a2.history) as h (e)
      order by (h.e ->> 'seq')::integer$$,
    'each verb called again at its recorded seq returns exactly the history''s element'
);
select is(
    (select jsonb_agg(r.e order by r.seq) from replayed r),
    (select jsonb_agg(l.e order by l.seq) from live l),
    'live and replayed results of every kind are identical'
);
select is(
    (select row(
        (select count(*) from durable.events), (select count(*) from durable.all_tasks),
        (select status from durable.all_tasks where task_id = (select task_id from a1)))::text),
    row(9, 2, 'running')::text,
    'the re-run recorded nothing, spawned nothing, and did not suspend'
);
select is(
    (select replayed_to from durable.all_tasks where task_id = (select task_id from a1)),
    9,
    'its calls, in order from seq 1, checked the history'
);
select is(
    (select durable.checkpoint(a2.task_id, a2.lease_token, 10, 'step', 'after', '{}') from a2),
    '{"seq": 10, "kind": "step", "name": "after", "outcome": "ok", "result": {}}'::jsonb,
    'so it may record a new event'
);

-- a third attempt presents every call at once, arguments and all
select durable.fail(a2.task_id, a2.lease_token, '{"type": "Crash"}') from a2;
create temp table a3 as select * from durable.claim('q', 'w3', 1, 3600);
create temp table calls as
select jsonb_build_array(
    '{"seq": 1, "kind": "step", "name": "fetch"}'::jsonb,
    '{"seq": 2, "kind": "step", "name": "broken"}'::jsonb,
    '{"seq": 3, "kind": "now", "name": "clock"}'::jsonb,
    '{"seq": 4, "kind": "random", "name": "dice"}'::jsonb,
    '{"seq": 5, "kind": "uuid", "name": "id"}'::jsonb,
    '{"seq": 6, "kind": "sleep", "name": "nap"}'::jsonb,
    '{"seq": 7, "kind": "wait", "name": "key"}'::jsonb,
    '{"seq": 8, "kind": "spawn", "name": "child", "queue": "kids", "input": {"x": 1}}'::jsonb,
    jsonb_build_object('seq', 9, 'kind', 'children', 'name', 'all', 'children', jsonb_build_array(kid.task_id::text)),
    '{"seq": 10, "kind": "step", "name": "after"}'::jsonb) as presented
from kid;
select is((select attempt from a3), 3, 'the third attempt is claimed');
select is(
    (select history from a3),
    (select jsonb_agg(l.e order by l.seq) from live l)
        || '[{"seq": 10, "kind": "step", "name": "after", "outcome": "ok", "result": {}}]'::jsonb,
    'with the ten events'
);
select is(
    (select durable.replay_check(a3.task_id, a3.lease_token, calls.presented) from a3, calls),
    '{"checked": 10}'::jsonb,
    'replay_check takes the calls of every kind, with the spawn''s queue and input and the children''s ids'
);
select is(
    (select durable.wait_children(a3.task_id, a3.lease_token, 9, array[kid.task_id], 'all') from a3, kid),
    (select history -> 8 from a3),
    'a call at a checked seq still returns its event'
);
select is(
    (select durable.complete(a3.task_id, a3.lease_token, '{"all": "done"}') from a3),
    '{"completed": true}'::jsonb,
    'and the attempt completes'
);

select * from finish();

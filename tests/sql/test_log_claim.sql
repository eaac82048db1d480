-- What durable.claim hands a worker: `durable` and, for durable tasks, the recorded
-- history of the current generation, in seq order (null for plain tasks).
select plan(14);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');

-- a durable task records twelve events whose names sort the other way round
select durable.enqueue('q', 'long', '{}', '{"durable": true}');
create temp table a1 as select * from durable.claim('q', 'w1', 1, 60);
select durable.checkpoint(
    a1.task_id, a1.lease_token, s, 'step', 'step ' || chr(ascii('z') - s), jsonb_build_object('i', s)
)
from a1, generate_series(1, 12) as s
order by s;
select durable.checkpoint(a1.task_id, a1.lease_token, 13, 'step', 'failed step', null, '{"type": "E"}') from a1;
select status from durable.fail((select task_id from a1), (select lease_token from a1), '{"type": "Crash"}');

-- and two more tasks: a plain one and a durable one without events
select durable.enqueue('q', 'plain', '{"p": 1}');
select durable.enqueue('q', 'fresh', '{}', '{"durable": true}');

create temp table batch as select * from durable.claim('q', 'w2', 3, 60);
select is((select count(*) from batch), 3::bigint, 'one claim takes the three tasks');

select is(
    (select history from batch where task_name = 'long'),
    (select jsonb_agg(x.event order by x.s)
     from (
         select s, jsonb_build_object(
             'seq', s, 'kind', 'step', 'name', 'step ' || chr(ascii('z') - s), 'outcome', 'ok',
             'result', jsonb_build_object('i', s)) as event
         from generate_series(1, 12) as s
         union all
         select 13, jsonb_build_object(
             'seq', 13, 'kind', 'step', 'name', 'failed step', 'outcome', 'error', 'result', '{"type": "E"}'::jsonb)
     ) as x),
    'the durable task comes with its thirteen events, in seq order, each {seq, kind, name, outcome, result}'
);
select is(
    (select jsonb_path_query_array(history, '$[*].seq') from batch where task_name = 'long'),
    '[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]'::jsonb,
    'ordered by seq as a number (10 after 9)'
);
select is(
    (select row(durable, attempt)::text from batch where task_name = 'long'),
    row(true, 2)::text,
    'the durable task is flagged durable, on attempt 2'
);
select is(
    (select row(durable, history)::text from batch where task_name = 'plain'),
    row(false, null::jsonb)::text,
    'a plain task is not durable and has a null history'
);
select is(
    (select row(durable, history)::text from batch where task_name = 'fresh'),
    row(true, '[]'::jsonb)::text,
    'a durable task without events has an empty history'
);

-- the fresh task records an event; its history is its own, not its batch neighbour's
create temp table fresh_event as
select durable.checkpoint(b.task_id, b.lease_token, 1, 'random', 'r') as e from batch b where b.task_name = 'fresh';
select f.status from batch b, lateral durable.fail(b.task_id, b.lease_token, '{"type": "Crash"}') as f where b.task_name = 'fresh';
create temp table fresh2 as select * from durable.claim('q', 'w3', 1, 60, array['fresh']);
select is(
    (select history from fresh2),
    (select jsonb_build_array(e) from fresh_event),
    'a re-claimed task gets exactly its own recorded events, each as the verb returned it'
);

-- after a replay: the history of the current generation only
select is(
    (select durable.replay_check(b.task_id, b.lease_token, (
         select jsonb_agg(jsonb_build_object('seq', e -> 'seq', 'kind', e -> 'kind', 'name', e -> 'name')
                          order by (e ->> 'seq')::integer)
         from jsonb_array_elements(b.history) as e))
     from batch b where b.task_name = 'long'),
    '{"checked": 13}'::jsonb,
    'the re-run of the long task presents its thirteen calls'
);
select is(
    (select durable.complete(b.task_id, b.lease_token, null) from batch b where b.task_name = 'long'),
    '{"completed": true}'::jsonb,
    'and completes'
);
select is(durable.replay((select task_id from a1)), 2, 'the long task is replayed');
create temp table g2 as select * from durable.claim('q', 'w4', 1, 60, array['long']);
select is((select history from g2), '[]'::jsonb, 'its claim hands over the new, empty generation');
select durable.checkpoint(g2.task_id, g2.lease_token, 1, 'step', 'gen two', '{"g": 2}') from g2;
select f.status from g2, lateral durable.fail(g2.task_id, g2.lease_token, '{"type": "Crash"}') as f;
create temp table g2b as select * from durable.claim('q', 'w5', 1, 60, array['long']);
select is(
    (select history from g2b),
    '[{"seq": 1, "kind": "step", "name": "gen two", "outcome": "ok", "result": {"g": 2}}]'::jsonb,
    'the next attempt gets the events of generation 2 only'
);
select is(
    (select count(*) from durable.events where task_id = (select task_id from a1) and generation = 1),
    13::bigint,
    'while generation 1 is still in the log'
);

-- a plain task stays history-less on every attempt
select f.status from batch b, lateral durable.fail(b.task_id, b.lease_token, '{"type": "Crash"}') as f where b.task_name = 'plain';
select is(
    (select row(durable, history, attempt)::text from durable.claim('q', 'w6', 1, 60, array['plain'])),
    row(false, null::jsonb, 2)::text,
    'a retried plain task is claimed again without a history'
);

select * from finish();

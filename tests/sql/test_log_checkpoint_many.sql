-- durable.checkpoint_many: the checkpoints of several tasks in one call. Each element
-- answers what durable.checkpoint would (the event, the recorded event of a re-run, a
-- non-determinism), or the error it would raise, in its row: a rejected element writes
-- nothing and does not stop the others; each is fenced by its own lease token; two
-- elements of one task are taken in the order given; the server supplies the values of
-- now, random and uuid events; arrays of different lengths reject the whole call.
select plan(27);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select pg_temp.enq('a', 'q', '{"durable": true}');
select pg_temp.enq('b', 'q', '{"durable": true}');
select pg_temp.enq('c', 'q', '{"durable": true}');
select pg_temp.enq('plain', 'q');
select pg_temp.enq('canc', 'q', '{"durable": true}');
select pg_temp.enq('odd', 'q', '{"durable": true}');
select pg_temp.claim_as('a', 'q');
select pg_temp.claim_as('b', 'q');
select pg_temp.claim_as('c', 'q');
select pg_temp.claim_as('plain', 'q');
select pg_temp.claim_as('canc', 'q');
select pg_temp.claim_as('odd', 'q');
select durable.cancel(pg_temp.id('canc'));
insert into ids (name, id) values ('unknown', gen_random_uuid());

-- a batch: new events of three tasks (b twice: seq 1 then 2), and elements each
-- checkpoint would reject
create temp table r1 as
select * from durable.checkpoint_many(
    array[pg_temp.id('a'), pg_temp.id('b'), pg_temp.id('c'), pg_temp.id('b'), pg_temp.id('plain'),
          pg_temp.id('canc'), pg_temp.id('unknown'), pg_temp.id('odd'), pg_temp.id('odd'), pg_temp.id('odd')],
    array[pg_temp.tok('a'), pg_temp.tok('b'), gen_random_uuid(), pg_temp.tok('b'), pg_temp.tok('plain'),
          pg_temp.tok('canc'), gen_random_uuid(), pg_temp.tok('odd'), pg_temp.tok('odd'), pg_temp.tok('odd')],
    array[1, 1, 1, 2, 1, 1, 1, 2, 1, 2],
    array['step', 'step', 'step', 'now', 'step', 'step', 'step', 'step', 'random', 'bogus'],
    array['s1', 's1', 's1', 'clock', 's1', 's1', 's1', 's2', 'r', 'x'],
    array['{"v": 1}', '[1, 2]', '1', null, '1', '1', '1', '1', '0.5', '1']::jsonb[],
    null
);

select results_eq(
    'select ord from r1',
    'select generate_series(1, 10)',
    'one row per element, in the order given'
);
select is(
    (select event from r1 where ord = 1),
    '{"seq": 1, "kind": "step", "name": "s1", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'a new event is recorded and answered as durable.checkpoint answers it'
);
select is(
    (select event from r1 where ord = 2),
    '{"seq": 1, "kind": "step", "name": "s1", "outcome": "ok", "result": [1, 2]}'::jsonb,
    'the first element of task b is recorded'
);
select is(
    (select event from r1 where ord = 4),
    jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock', 'outcome', 'ok', 'result', to_jsonb(pg_temp.t(0))),
    'a later element of the same task follows it (seq 2), with the server''s clock as its value'
);
select results_eq(
    'select ord, error_code from r1 where event is null order by ord',
    $$values (3, 'DU010'), (5, 'DU012'), (6, 'DU011'), (7, 'DU004'), (8, 'DU021'), (9, 'DU001'), (10, 'DU001')$$,
    'the rejected elements: a dead token DU010, a plain task DU012, a cancelled task DU011, an unknown task DU004, a gap DU021, a value for a random event DU001, an unknown kind DU001'
);
select is(
    (select error_message from r1 where ord = 8),
    format('durable: task %s records event 2 but its log ends at 0; events are numbered without gaps', pg_temp.id('odd')),
    'a rejected element carries the message the single verb raises'
);
select ok(
    (select error_detail is not null from r1 where ord = 3),
    'and its detail (the lease''s task state, for DU010)'
);
select is(
    (select count(*) from r1 where (event is null) = (error_code is null)),
    0::bigint,
    'each row has an event or an error, never both'
);
select results_eq(
    $$select i.name, e.seq, e.kind, e.name, e.result, e.attempt from durable.events e join ids i on i.id = e.task_id
      order by i.name, e.seq$$,
    $$values ('a', 1, 'step', 's1', '{"v": 1}'::jsonb, 1), ('b', 1, 'step', 's1', '[1, 2]'::jsonb, 1),
             ('b', 2, 'now', 'clock', to_jsonb(pg_temp.t(0)), 1)$$,
    'only the accepted elements wrote events: the rejected ones wrote nothing'
);
select is(
    (select status from durable.all_tasks where task_id = pg_temp.id('c')),
    'running',
    'an element rejected for its token leaves its task as it was'
);

-- a re-run passing through: an element at a recorded seq answers the recorded event;
-- one that differs is a non-determinism (the task is failed), and the others go on
select pg_temp.enq('d', 'q', '{"durable": true}');
select pg_temp.claim_as('d', 'q');
select durable.checkpoint(pg_temp.id('d'), pg_temp.tok('d'), 1, 'step', 's1', '"first"');
create temp table r2 as
select * from durable.checkpoint_many(
    array[pg_temp.id('a'), pg_temp.id('b'), pg_temp.id('d'), pg_temp.id('c')],
    array[pg_temp.tok('a'), pg_temp.tok('b'), pg_temp.tok('d'), gen_random_uuid()],
    array[1, 3, 1, 1],
    array['step', 'uuid', 'step', 'step'],
    array['s1', 'u', 'renamed', 's1'],
    array['{"v": 2}', null, '"second"', '3']::jsonb[],
    array[null, null, null, '{"type": "Boom"}']::jsonb[]
);
select is(
    (select event from r2 where ord = 1),
    '{"seq": 1, "kind": "step", "name": "s1", "outcome": "ok", "result": {"v": 1}}'::jsonb,
    'an element at a recorded seq, same call: the recorded event (the new result is ignored)'
);
select ok(
    (select (event ->> 'result')::uuid is not null and event ->> 'kind' = 'uuid' from r2 where ord = 2),
    'a uuid event records a uuid the server made'
);
select ok(
    (select event ? 'nondeterminism' from r2 where ord = 3),
    'an element that differs from the recorded event answers {"nondeterminism": ...}'
);
select is(
    (select status || ' ' || (error ->> 'type') from durable.all_tasks where task_id = pg_temp.id('d')),
    'failed NonDeterminismError',
    'and its task has been failed'
);
select is(
    (select error_code from r2 where ord = 4),
    'DU010',
    'the dead token of task c is still refused, beside them'
);
select is(
    (select count(*) from durable.events where task_id in (pg_temp.id('a'), pg_temp.id('b'))),
    4::bigint,
    'the new uuid event of b is recorded; the re-recorded event of a adds nothing'
);

-- a step that failed: its error object is the event's result, outcome error
select pg_temp.enq('e', 'q', '{"durable": true}');
select pg_temp.claim_as('e', 'q');
select is(
    (select event from durable.checkpoint_many(
        array[pg_temp.id('e')], array[pg_temp.tok('e')], array[1], array['step'], array['s1'],
        null, array['{"type": "Boom", "message": "no"}']::jsonb[])),
    '{"seq": 1, "kind": "step", "name": "s1", "outcome": "error", "result": {"type": "Boom", "message": "no"}}'::jsonb,
    'an error object records outcome error'
);
select is(
    (select error_code from durable.checkpoint_many(
        array[pg_temp.id('e')], array[pg_temp.tok('e')], array[2], array['step'], array['s2'],
        null, array['"not an object"']::jsonb[])),
    'DU001',
    'an error that is not an object is refused (DU001)'
);
select is(
    (select error_code from durable.checkpoint_many(
        array[pg_temp.id('e')], array[pg_temp.tok('e')], array[2], array['step'], array[''],
        array['1']::jsonb[], null)),
    'DU001',
    'an empty name is refused (DU001)'
);
select is(
    (select error_code from durable.checkpoint_many(
        array[pg_temp.id('e')], array[pg_temp.tok('e')], array[2], array['step'], array['big'],
        array[to_jsonb(repeat('x', durable.max_payload_bytes() + 1))], null)),
    'DU003',
    'a result over max_payload_bytes is refused (DU003)'
);

-- an expired lease is refused, as by durable.checkpoint
select pg_temp.clock(3600);
select is(
    (select error_code from durable.checkpoint_many(
        array[pg_temp.id('a')], array[pg_temp.tok('a')], array[2], array['step'], array['s2'],
        array['1']::jsonb[], null)),
    'DU010',
    'an expired lease is refused (DU010)'
);
select pg_temp.clock(0);

-- the whole call: arrays of different lengths, too many elements, an empty batch
select pg_temp.save('before');
select throws_ok(
    $$select * from durable.checkpoint_many(array[pg_temp.id('a')], array[pg_temp.tok('a')], array[2, 3],
                                            array['step'], array['s2'])$$,
    'DU001',
    'durable: checkpoint_many takes arrays of equal length (tasks, lease tokens, seqs, kinds, names, results, errors)',
    'arrays of different lengths reject the whole call (DU001)'
);
select throws_ok(
    $$select * from durable.checkpoint_many(array[pg_temp.id('a')], array[pg_temp.tok('a')], array[2],
                                            array['step'], array['s2'], '{}'::jsonb[])$$,
    'DU001', null,
    'a results array of another length rejects the whole call (DU001)'
);
select throws_ok(
    $$select * from durable.checkpoint_many(
        array(select pg_temp.id('a') from generate_series(1, 1001)),
        array(select pg_temp.tok('a') from generate_series(1, 1001)),
        array(select g from generate_series(2, 1002) g),
        array(select 'step'::text from generate_series(1, 1001)),
        array(select 's' || g from generate_series(1, 1001) g))$$,
    'DU001',
    'durable: checkpoint_many takes at most 1000 checkpoints, got 1001',
    'more than 1000 elements reject the whole call (DU001)'
);
select is(pg_temp.everything(), pg_temp.saved('before'), 'a rejected call changed nothing');
select is(
    (select count(*) from durable.checkpoint_many('{}', '{}', '{}', '{}', '{}')),
    0::bigint,
    'an empty batch answers no rows'
);
select is(
    (select count(*) from durable.events e where e.task_id = pg_temp.id('a')),
    1::bigint,
    'nothing of the rejected calls was written'
);

select * from finish();

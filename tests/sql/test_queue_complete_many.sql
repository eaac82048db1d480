-- durable.complete_many and durable.complete: per-element results (completed,
-- lease_lost, cancelled, unknown_task) in input order; a rejected element changes nothing
-- and does not stop the others; argument errors reject the whole batch.
select plan(23);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');
select pg_temp.enq('ok1', 'q');
select pg_temp.enq('wrong', 'q');
select pg_temp.enq('canc', 'q');
select pg_temp.enq('exp', 'q');
select pg_temp.enq('done', 'q');
select pg_temp.enq('ok2', 'q');
select pg_temp.enq('pend', 'q', '{"delay": 3600}');
select pg_temp.claim_as('ok1', 'q', 'w1', 60);
select pg_temp.claim_as('wrong', 'q', 'w1', 60);
select pg_temp.claim_as('canc', 'q', 'w1', 60);
select pg_temp.claim_as('exp', 'q', 'w1', 5);
select pg_temp.claim_as('done', 'q', 'w1', 60);
select pg_temp.claim_as('ok2', 'q', 'w2', 60);
select durable.cancel(pg_temp.id('canc'));
select durable.complete(pg_temp.id('done'), pg_temp.tok('done'), '{"first": true}');
select pg_temp.clock(10);

create temp table before as
select i.name, pg_temp.state(i.id) as state from ids i;
insert into ids (name, id) values ('unknown', gen_random_uuid());

create temp table result as
select r.*, o.name
from durable.complete_many(
    array[pg_temp.id('ok1'), pg_temp.id('wrong'), pg_temp.id('canc'), pg_temp.id('unknown'),
          pg_temp.id('exp'), pg_temp.id('done'), pg_temp.id('pend'), pg_temp.id('ok2')],
    array[pg_temp.tok('ok1'), gen_random_uuid(), pg_temp.tok('canc'), pg_temp.tok('ok1'),
          pg_temp.tok('exp'), pg_temp.tok('done'), gen_random_uuid(), pg_temp.tok('ok2')],
    array['{"n": 1}', '{"n": 2}', '{"n": 3}', '{"n": 4}', '{"n": 5}', '{"n": 6}', '{"n": 7}', '[8]']::jsonb[]
) with ordinality as r (task_id, ok, reason, ord)
join (select * from unnest(array['ok1', 'wrong', 'canc', 'unknown', 'exp', 'done', 'pend', 'ok2'])
      with ordinality as n (name, ord)) o on o.ord = r.ord;

select is(
    (select array_agg(task_id order by ord) from result),
    array[pg_temp.id('ok1'), pg_temp.id('wrong'), pg_temp.id('canc'), pg_temp.id('unknown'),
          pg_temp.id('exp'), pg_temp.id('done'), pg_temp.id('pend'), pg_temp.id('ok2')],
    'one result per element, in input order'
);
select is(
    (select array_agg(ok order by ord) from result),
    array[true, false, false, false, false, false, false, true],
    'only the elements with a live lease are accepted'
);
select is(
    (select array_agg(reason order by ord) from result),
    array['completed', 'lease_lost', 'cancelled', 'unknown_task', 'lease_lost', 'lease_lost', 'lease_lost', 'completed'],
    'each rejected element says why: a wrong token, an expired lease, a finished or pending task is lease_lost'
);
select is(
    (select jsonb_agg(jsonb_build_object('status', status, 'output', output, 'finished_at', finished_at,
                                         'lease_expires_at', lease_expires_at, 'error', error) order by seq)
     from durable.all_tasks where task_id in (pg_temp.id('ok1'), pg_temp.id('ok2'))),
    jsonb_build_array(
        jsonb_build_object('status', 'completed', 'output', '{"n": 1}'::jsonb, 'finished_at', pg_temp.t(10),
                           'lease_expires_at', null, 'error', null),
        jsonb_build_object('status', 'completed', 'output', '[8]'::jsonb, 'finished_at', pg_temp.t(10),
                           'lease_expires_at', null, 'error', null)),
    'accepted elements are completed with their own output'
);
select is(
    (select jsonb_agg(jsonb_build_object('attempt', attempt, 'worker', worker, 'outcome', outcome,
                                         'started_at', started_at, 'ended_at', ended_at, 'error', error,
                                         'token_ok', lease_token = (select i.token from ids i where i.id = a.task_id))
                      order by worker)
     from durable.attempts a where task_id in (pg_temp.id('ok1'), pg_temp.id('ok2'))),
    jsonb_build_array(
        jsonb_build_object('attempt', 1, 'worker', 'w1', 'outcome', 'completed', 'started_at', pg_temp.t(0),
                           'ended_at', pg_temp.t(10), 'error', null, 'token_ok', true),
        jsonb_build_object('attempt', 1, 'worker', 'w2', 'outcome', 'completed', 'started_at', pg_temp.t(0),
                           'ended_at', pg_temp.t(10), 'error', null, 'token_ok', true)),
    'each accepted element leaves one completed attempt'
);
select is(
    (select count(*)::int from before b where b.state is distinct from pg_temp.state(pg_temp.id(b.name))
       and b.name not in ('ok1', 'ok2')),
    0,
    'the rejected elements changed nothing (task rows and attempts)'
);
select is(
    (select count(*)::int from durable.all_tasks where task_id = pg_temp.id('unknown')), 0,
    'an unknown task is not created'
);

-- outputs may be left out
select pg_temp.enq('n1', 'q');
select pg_temp.enq('n2', 'q');
select pg_temp.claim_as('n1', 'q', 'w1', 60);
select pg_temp.claim_as('n2', 'q', 'w1', 60);
select is(
    (select array_agg(reason) from durable.complete_many(array[pg_temp.id('n1'), pg_temp.id('n2')],
                                                         array[pg_temp.tok('n1'), pg_temp.tok('n2')])),
    array['completed', 'completed'],
    'without outputs every element can complete'
);
select is(
    (select count(*)::int from durable.all_tasks where task_id in (pg_temp.id('n1'), pg_temp.id('n2'))
       and status = 'completed' and output is null), 2,
    'with a null output'
);
select is((select count(*)::int from durable.complete_many('{}', '{}', '{}')), 0, 'an empty batch returns nothing');

-- the same task twice in one batch, once with a wrong token
select pg_temp.enq('dup', 'q');
select pg_temp.claim_as('dup', 'q', 'w1', 60);
select is(
    (select array_agg(r.ok::text || ':' || r.reason order by r.ord)
     from durable.complete_many(array[pg_temp.id('dup'), pg_temp.id('dup')],
                                array[gen_random_uuid(), pg_temp.tok('dup')],
                                array['{"by": "stranger"}', '{"by": "owner"}']::jsonb[])
          with ordinality as r (task_id, ok, reason, ord)),
    array['false:lease_lost', 'true:completed'],
    'the same task twice in a batch: only the element with the live token is accepted'
);
select is((pg_temp.task('dup')).output, '{"by": "owner"}'::jsonb, 'with its own output');

-- errors of the whole batch: nothing of it is written
select pg_temp.enq('x1', 'q');
select pg_temp.enq('x2', 'q');
select pg_temp.claim_as('x1', 'q', 'w1', 60);
select pg_temp.claim_as('x2', 'q', 'w1', 60);
select pg_temp.rejects(format('select * from durable.complete_many(%L::uuid[], %L::uuid[])',
    array[pg_temp.id('x1'), pg_temp.id('x2')], array[pg_temp.tok('x1')]),
    'DU001', 'complete_many with fewer tokens than tasks');
select pg_temp.rejects(format('select * from durable.complete_many(%L::uuid[], %L::uuid[], %L::jsonb[])',
    array[pg_temp.id('x1'), pg_temp.id('x2')], array[pg_temp.tok('x1'), pg_temp.tok('x2')], array['{}'::jsonb]),
    'DU001', 'complete_many with fewer outputs than tasks');
select pg_temp.rejects(format('select * from durable.complete_many(null, %L::uuid[])', array[pg_temp.tok('x1')]),
    'DU001', 'complete_many without task ids');
select pg_temp.rejects(format(
    'select * from durable.complete_many(%L::uuid[], %L::uuid[], array[%L::jsonb, jsonb_build_object(''x'', repeat(''x'', durable.max_payload_bytes()))])',
    array[pg_temp.id('x1'), pg_temp.id('x2')], array[pg_temp.tok('x1'), pg_temp.tok('x2')], '{"small": 1}'),
    'DU003', 'complete_many with one output over the payload limit');

-- complete, the single form: returns {"completed": true}
select is(durable.complete(pg_temp.id('x1'), pg_temp.tok('x1')), '{"completed": true}'::jsonb,
          'complete returns {"completed": true}');
select is((select array[status, coalesce(output::text, 'NULL')] from durable.all_tasks where task_id = pg_temp.id('x1')),
          array['completed', 'NULL'], 'complete without an output stores none');
select durable.complete(pg_temp.id('x2'), pg_temp.tok('x2'), '"just a string"');
select is((pg_temp.task('x2')).output, '"just a string"'::jsonb, 'an output may be any JSON value');

select * from finish();

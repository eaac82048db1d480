-- The queue option async_checkpoints: the step records of its tasks commit without
-- waiting for the disk flush (synchronous_commit off for the verb's own transaction, set
-- by the verb from the queue's option); only for a new event written by the
-- one-statement path; a batch with an element of another queue, or one the checked path
-- took, stays synchronous. Each check reads the setting in the statement that called the
-- verb (the verb sets it for the rest of its transaction).
select plan(10);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select is(
    durable.create_queue('fast', '{"async_checkpoints": true}'),
    '{"async_checkpoints": true}'::jsonb,
    'a queue takes the option async_checkpoints'
);
select throws_ok(
    $$select durable.create_queue('bad', '{"async_checkpoints": "yes"}')$$,
    'DU001', null,
    'async_checkpoints must be a boolean (DU001)'
);
select durable.create_queue('slow');
select pg_temp.enq('f1', 'fast', '{"durable": true}');
select pg_temp.enq('f2', 'fast', '{"durable": true}');
select pg_temp.enq('s1', 'slow', '{"durable": true}');
select pg_temp.claim_as('f1', 'fast', 'w', 600);
select pg_temp.claim_as('f2', 'fast', 'w', 600);
select pg_temp.claim_as('s1', 'slow', 'w', 600);

-- the setting in effect right after the call, in the call's own statement (OFFSET 0 keeps
-- the call first); the setting is put back on before each
create function pg_temp.after(p_call text) returns text language plpgsql as $$
declare
    v text;
begin
    perform set_config('synchronous_commit', 'on', true);
    execute format('select current_setting(''synchronous_commit'') from (%s offset 0) as x', p_call) into v;
    return v;
end;
$$;

select is(
    pg_temp.after(format($$select durable.checkpoint(%L, %L, 1, 'step', 'a', '1')$$, pg_temp.id('f1'), pg_temp.tok('f1'))),
    'off',
    'a new step of a task of an async_checkpoints queue commits without waiting for the flush'
);
select is(
    pg_temp.after(format($$select durable.checkpoint(%L, %L, 1, 'step', 'a', '1')$$, pg_temp.id('s1'), pg_temp.tok('s1'))),
    'on',
    'a new step of a task of another queue waits for it'
);
select is(
    pg_temp.after(format($$select durable.checkpoint(%L, %L, 1, 'step', 'a', '2')$$, pg_temp.id('f1'), pg_temp.tok('f1'))),
    'on',
    'a call that wrote no new event (the recorded one answered) changes nothing'
);
select is(
    pg_temp.after(format(
        $$select * from durable.checkpoint_many(array[%L, %L]::uuid[], array[%L, %L]::uuid[], array[2, 1],
                                                array['step', 'step'], array['b', 'a'], array['1', '1']::jsonb[])$$,
        pg_temp.id('f1'), pg_temp.id('f2'), pg_temp.tok('f1'), pg_temp.tok('f2'))),
    'off',
    'a batch of new steps, all of async_checkpoints queues, commits without waiting for the flush'
);
select is(
    pg_temp.after(format(
        $$select * from durable.checkpoint_many(array[%L, %L]::uuid[], array[%L, %L]::uuid[], array[3, 2],
                                                array['step', 'step'], array['c', 'b'], array['1', '1']::jsonb[])$$,
        pg_temp.id('f1'), pg_temp.id('s1'), pg_temp.tok('f1'), pg_temp.tok('s1'))),
    'on',
    'a batch with a task of another queue waits for it'
);
select is(
    pg_temp.after(format(
        $$select * from durable.checkpoint_many(array[%L, %L]::uuid[], array[%L, %L]::uuid[], array[4, 2],
                                                array['step', 'step'], array['d', 'b'], array['1', '1']::jsonb[])$$,
        pg_temp.id('f1'), pg_temp.id('f2'), pg_temp.tok('f1'), gen_random_uuid())),
    'on',
    'a batch with an element the checked path took (here: refused) waits for it'
);
select is(
    pg_temp.after(format(
        $$select * from durable.checkpoint_many(array[%L]::uuid[], array[%L]::uuid[], array[1],
                                                array['step'], array['renamed'], array['1']::jsonb[])$$,
        pg_temp.id('f2'), pg_temp.tok('f2'))),
    'on',
    'a batch that failed a task on a non-determinism waits for it'
);
select results_eq(
    $$select i.name, e.seq, e.name from durable.events e join ids i on i.id = e.task_id order by i.name, e.seq$$,
    $$values ('f1', 1, 'a'), ('f1', 2, 'b'), ('f1', 3, 'c'), ('f1', 4, 'd'), ('f2', 1, 'a'),
             ('s1', 1, 'a'), ('s1', 2, 'b')$$,
    'the events recorded either way are the same'
);

select * from finish();

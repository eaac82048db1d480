-- The enqueue option trace_context (README, "Tracing"): checked by durable._task_row
-- (a JSON object of at most 8 string fields, at most 512 bytes; DU001 and nothing written
-- otherwise), stored with the task, handed back by durable.claim (its last column), shown
-- by durable.get_task; set on a child from spawn's options; kept by a fork.
select plan(24);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('kids');

-- bad shapes and sizes: DU001, nothing written ------------------------------------------
select pg_temp.rejects(
    $$select durable.enqueue('q', 'job', '{}', '{"trace_context": "00-abc"}')$$,
    'DU001', 'a trace_context that is not an object');
select pg_temp.rejects(
    $$select durable.enqueue('q', 'job', '{}', '{"trace_context": {"traceparent": 1}}')$$,
    'DU001', 'a field that is not a string');
select pg_temp.rejects(
    $$select durable.enqueue('q', 'job', '{}', '{"trace_context": {"": "x"}}')$$,
    'DU001', 'an empty field name');
select pg_temp.rejects(
    format($$select durable.enqueue('q', 'job', '{}', %L)$$,
           jsonb_build_object('trace_context', jsonb_build_object('tracestate', repeat('a', 600)))),
    'DU001', 'more than 512 bytes');
select pg_temp.rejects(
    format($$select durable.enqueue('q', 'job', '{}', %L)$$,
           jsonb_build_object('trace_context',
               (select jsonb_object_agg('f' || i, 'v') from generate_series(1, 9) as i))),
    'DU001', 'more than 8 fields');
select pg_temp.rejects(
    $$select durable.enqueue_many('q', '[{"task_name": "a"}, {"task_name": "b", "options": {"trace_context": []}}]')$$,
    'DU001', 'a bad trace_context in a batch');

-- stored, claimed, shown -------------------------------------------------------------
select pg_temp.enq('traced', 'q', '{"trace_context": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "v=1"}}');
select pg_temp.enq('plain', 'q', '{"trace_context": {}}');
select is((pg_temp.task('traced')).trace_context,
          '{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "v=1"}'::jsonb,
          'the option is stored with the task');
select is((pg_temp.task('plain')).trace_context, null, 'an empty trace_context stores nothing');
select is(durable.get_task(pg_temp.id('traced')) -> 'trace_context',
          (pg_temp.task('traced')).trace_context, 'get_task shows it');
select is(durable.get_task(pg_temp.id('plain')) -> 'trace_context', 'null'::jsonb, 'get_task: null when none');

create temp table c as select * from durable.claim('q', 'w', 2, 60);
select is((select trace_context from c where task_id = pg_temp.id('traced')),
          (pg_temp.task('traced')).trace_context, 'claim returns it');
select is((select trace_context from c where task_id = pg_temp.id('plain')), null, 'claim: null when none');
select is((select (p.proargnames)[array_length(p.proargnames, 1)]
           from pg_proc p where p.oid = 'durable.claim(text, text, integer, integer, text[])'::regprocedure),
          'trace_context', 'trace_context is claim''s last column');

create temp table b as select * from durable.enqueue_many('q',
    '[{"task_name": "a", "options": {"trace_context": {"traceparent": "p1"}}}, {"task_name": "b"}]');
select is((select jsonb_agg(t.trace_context order by t.seq) from durable.all_tasks t
           where t.task_id in (select b.task_id from b)),
          '[{"traceparent": "p1"}, null]'::jsonb, 'enqueue_many stores each spec''s own');

-- spawn: the child gets the trace_context of spawn's options -------------------------
select pg_temp.enq('parent', 'q', '{"durable": true, "priority": 10, "trace_context": {"traceparent": "parent"}}');
select pg_temp.claim_as('parent', 'q');
create temp table sp as
select (durable.spawn(pg_temp.id('parent'), pg_temp.tok('parent'), 1, 'kids', 'child', '{}',
                      '{"trace_context": {"traceparent": "from-the-attempt"}}') #>> '{result,task_id}')::uuid as id;
select is((select t.trace_context from durable.all_tasks t where t.task_id = (select id from sp)),
          '{"traceparent": "from-the-attempt"}'::jsonb, 'spawn stores the trace_context of its options on the child');
select throws_ok(
    format($$select durable.spawn(%L, %L, 2, 'kids', 'child', '{}', '{"trace_context": 5}')$$,
           pg_temp.id('parent'), pg_temp.tok('parent')),
    'DU001', null, 'spawn checks it as enqueue does');
select is((select count(*) from durable.all_tasks t where t.queue = 'kids'), 1::bigint, 'and creates no child then');

-- fork: the new task keeps its origin's ---------------------------------------------
select durable.complete(pg_temp.id('parent'), pg_temp.tok('parent'), '{}');
create temp table f as select durable.fork(pg_temp.id('parent'), 1) as id;
select is((select t.trace_context from durable.all_tasks t where t.task_id = (select f.id from f)),
          '{"traceparent": "parent"}'::jsonb, 'a fork keeps the trace context of its origin');

select * from finish();

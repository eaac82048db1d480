--
-- The retention purge is the one thing allowed to delete events: it deletes a finished
-- task with its attempts and its events of every generation, and closes the door
-- (DU013 again) behind it.
select plan(10);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');

-- task a finishes (two generations of events); task b is still running with one event
select durable.enqueue('q', 'a', '{}', '{"durable": true}');
create temp table a as select * from durable.claim('q', 'w1', 1, 60);
select durable.checkpoint(a.task_id, a.lease_token, 1, 'step', 'one', '{"v": 1}') from a;
select durable.checkpoint(a.task_id, a.lease_token, 2, 'step', 'two', '{"v": 2}') from a;
select durable.complete(a.task_id, a.lease_token, '{}') from a;
select durable.enqueue('q', 'b', '{}', '{"durable": true}');
create temp table b as select * from durable.claim('q', 'w1', 1, 86400);
select durable.checkpoint(b.task_id, b.lease_token, 1, 'step', 'only', '{"v": 3}') from b;
create temp table log_before as select * from durable.events;

select durable.replay((select task_id from a));
select is(
    (select count(*) from durable.events where task_id = (select task_id from a)),
    2::bigint,
    'a replay keeps the events of the old generation'
);
create temp table a2 as select * from durable.claim('q', 'w2', 1, 60, array['a']);
select durable.checkpoint(a2.task_id, a2.lease_token, 1, 'step', 'one again', '{"v": 10}') from a2;
select durable.complete(a2.task_id, a2.lease_token, '{}') from a2;

select set_config('durable.fake_now', '2030-01-02 00:00:00+00', false);
select is(durable.purge('q', 3600), 1, 'purge deletes the one finished task');
select is(
    (select count(*) from durable.all_tasks where task_id = (select task_id from a)),
    0::bigint,
    'the finished task is gone'
);
select is(
    (select count(*) from durable.events where task_id = (select task_id from a)),
    0::bigint,
    'its events of both generations are gone'
);
select is(
    (select count(*) from durable.attempts where task_id = (select task_id from a)),
    0::bigint,
    'its attempts are gone'
);
select results_eq(
    $$select * from durable.events$$,
    $$select * from log_before where task_id = (select task_id from b)$$,
    'the running task''s events are kept'
);
select is(
    (select count(*) from durable.all_tasks where task_id = (select task_id from b)),
    1::bigint,
    'the running task is kept'
);
select is(
    (select count(*) from durable.events e where not exists (select 1 from durable.all_tasks t where t.task_id = e.task_id)),
    0::bigint,
    'no event outlives its task'
);
select throws_ok(
    $$delete from durable.events where task_id = (select task_id from b)$$,
    'DU013', null,
    'after a purge a DELETE raises DU013 again'
);
select throws_ok(
    $$update durable.events set name = 'renamed'$$,
    'DU013', null,
    'and so does an UPDATE'
);

select * from finish();

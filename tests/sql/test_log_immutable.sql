-- The event log is append-only: UPDATE, DELETE and TRUNCATE of durable.events raise
-- DU013, even for the owner (this file runs as a superuser) and whatever a session
-- sets: events go only once their task is gone (test_log_purge.sql: retention).
select plan(10);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');

\ir helpers/errors.sql

-- task a finishes with two events; task b is still running with one
select durable.enqueue('q', 'a', '{}', '{"durable": true}');
create temp table a as select * from durable.claim('q', 'w1', 1, 60);
select durable.checkpoint(a.task_id, a.lease_token, 1, 'step', 'one', '{"v": 1}') from a;
select durable.checkpoint(a.task_id, a.lease_token, 2, 'step', 'two', '{"v": 2}') from a;
select durable.complete(a.task_id, a.lease_token, '{}') from a;
select durable.enqueue('q', 'b', '{}', '{"durable": true}');
create temp table b as select * from durable.claim('q', 'w1', 1, 86400);
select durable.checkpoint(b.task_id, b.lease_token, 1, 'step', 'only', '{"v": 3}') from b;
create temp table log_before as select * from durable.events;
select is((select count(*) from log_before), 3::bigint, 'three events are recorded');

select throws_ok(
    $$update durable.events set result = '{"v": 100}' where task_id = (select task_id from a) and seq = 1$$,
    'DU013',
    'durable: events are immutable (UPDATE on durable.events)',
    'UPDATE of an event raises DU013'
);
select throws_ok(
    $$update durable.events set attempt = attempt$$,
    'DU013', null,
    'even a no-op UPDATE of every event raises DU013'
);
select throws_ok(
    $$delete from durable.events where task_id = (select task_id from a) and seq = 2$$,
    'DU013',
    format('durable: events are immutable (DELETE on durable.events of task %s, which exists)', (select task_id from a)),
    'DELETE of an event of a finished task raises DU013'
);
select throws_ok(
    $$delete from durable.events$$,
    'DU013', null,
    'DELETE of every event raises DU013'
);
select throws_ok(
    $$truncate durable.events$$,
    'DU013',
    'durable: events are immutable (TRUNCATE on durable.events)',
    'TRUNCATE of the log raises DU013'
);
select is(
    pg_temp.error_of($$update durable.events set attempt = attempt$$) ->> 'hint',
    'use durable.replay() to start a new history, or durable.fork() to branch from an event',
    'the HINT of an UPDATE points to replay and fork'
);
select is(
    pg_temp.error_of($$delete from durable.events$$) ->> 'hint',
    'events go only with their task, by retention (durable.purge)',
    'the HINT of a DELETE points to retention'
);
-- the old door, a setting any session can set, opens nothing
select set_config('durable.purging', 'on', false);
select throws_ok(
    $$delete from durable.events where task_id = (select task_id from b)$$,
    'DU013', null,
    'with durable.purging = on, DELETE of a running task''s events still raises DU013'
);
select results_eq(
    $$select * from durable.events order by task_id, generation, seq$$,
    $$select * from log_before order by task_id, generation, seq$$,
    'the log is unchanged'
);

select * from finish();

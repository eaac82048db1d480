-- The queue option notify: enqueue announces ready work with NOTIFY durable unless the
-- queue says {"notify": false}; a delayed task is never announced. The same holds for a
-- task made ready again (a retry here; a wake-up and a fork go through the same helper).
-- (what a step sent is what the listener received before a sentinel: helpers/notify.sql)
select plan(9);

select durable.create_queue('loud');
select durable.create_queue('quiet', '{"notify": false}');

\ir helpers/notify.sql
commit;

select dblink_connect('listener', current_setting('durable_test.conninfo'));
select dblink_exec('listener', 'listen durable');

select durable.enqueue('quiet', 't');
select durable.enqueue_many('quiet', '[{"task_name": "t"}]');
select pg_notify('durable', 'sentinel');
commit;
select is(
    pg_temp.notified_before_sentinel('listener'), '{}'::text[],
    'a queue with notify false sends no notification, single or batched'
);

select durable.enqueue('loud', 't', '{}', '{"delay": 60}');
select pg_notify('durable', 'sentinel');
commit;
select is(pg_temp.notified_before_sentinel('listener'), '{}'::text[], 'a task that is not due yet is not announced');

select durable.enqueue('loud', 't');
commit;
select pg_notify('durable', 'sentinel');
commit;
select is(
    pg_temp.notified_before_sentinel('listener'), array['loud'],
    'a due task on a notifying queue sends one NOTIFY durable with the queue name'
);

select durable.enqueue_many('loud', '[{"task_name": "a"}, {"task_name": "b"}, {"task_name": "c"}]');
commit;
select pg_notify('durable', 'sentinel');
commit;
select is(pg_temp.notified_before_sentinel('listener'), array['loud'], 'a batch sends one notification, not one per task');

create function pg_temp.failed_task(p_queue text) returns uuid
language plpgsql as $$
declare
    c record;
begin
    perform durable.enqueue(p_queue, 'r');
    select * into c from durable.claim(p_queue, 'w', 1, 60, array['r']);
    perform durable.fail(c.task_id, c.lease_token, '{"type": "E", "message": "m"}', false);
    return c.task_id;
end;
$$;
create temp table failed as
select pg_temp.failed_task('quiet') as quiet, pg_temp.failed_task('loud') as loud;
commit;
select pg_notify('durable', 'sentinel');
commit;
select pg_temp.notified_before_sentinel('listener');  -- the enqueue on loud
select durable.retry(quiet) from failed;
commit;
select pg_notify('durable', 'sentinel');
commit;
select is(pg_temp.notified_before_sentinel('listener'), '{}'::text[], 'a retry on a queue with notify false sends nothing');
select durable.retry(loud) from failed;
commit;
select pg_notify('durable', 'sentinel');
commit;
select is(pg_temp.notified_before_sentinel('listener'), array['loud'], 'a retry on a notifying queue announces it');

select is(durable.create_queue('loud', '{"notify": false}') ->> 'notify', 'false', 'notify can be turned off');
select throws_ok(
    $$select durable.create_queue('loud', '{"notify": "yes"}')$$, 'DU001', null,
    'notify must be a boolean'
);
select is(durable.create_queue('loud', '{"notify": null}') ? 'notify', false, 'a JSON null removes it');

select dblink_disconnect('listener');
select * from finish();

-- Queue metrics (durable.queue_metrics), on the test clock:
--   1. the counts now: pending, running, sleeping, waiting, oldest_pending_seconds (ready
--      tasks only), concurrency_limit from the queue's options, zeros for an empty queue;
--   2. the window: completed, failed and cancelled in the last p_window_minutes whole
--      minutes, and the per-minute series (oldest minute first, the current one last);
--      tasks that ended before the window are not counted; the clock moving on shifts them
--      out;
--   3. permissions: a restricted reader sees its queues only, a worker capability nothing;
--   4. bad input: DU001, nothing changed.
select plan(21);

\ir helpers/tasks.sql
\ir helpers/security.sql

create function pg_temp.metrics(p_queue text, p_window integer default 15) returns jsonb language sql as $$
    select to_jsonb(m) from durable.queue_metrics(p_window) as m where m.queue = p_queue
$$;
-- enqueues, claims and ends one task of p_queue now ('complete', 'fail' or 'cancel')
create function pg_temp.ended(p_name text, p_queue text, p_how text) returns uuid
language plpgsql as $$
begin
    perform pg_temp.enq(p_name, p_queue);
    if p_how = 'cancel' then
        perform durable.cancel(pg_temp.id(p_name));
        return pg_temp.id(p_name);
    end if;
    perform pg_temp.claim_as(p_name, p_queue);
    if p_how = 'complete' then
        perform durable.complete(pg_temp.id(p_name), pg_temp.tok(p_name));
    else
        perform durable.fail(pg_temp.id(p_name), pg_temp.tok(p_name), '{"message": "no"}', false);
    end if;
    return pg_temp.id(p_name);
end;
$$;

-- ---------------------------------------------------------------------------------------
-- the tasks: queue ma (concurrency_limit 3), mb, mc (empty), on the test clock from T0
select pg_temp.clock(0);
select durable.create_queue('ma', '{"concurrency_limit": 3}');
select durable.create_queue('mb');
select durable.create_queue('mc');
-- ended long before the window (T0): never counted
select pg_temp.ended('old1', 'ma', 'complete');
select pg_temp.ended('old2', 'ma', 'fail');
-- ended in the window: the clock at T0 + 1 h + 30 s (the window of 15 minutes starts at
-- 00:46:00 and its last minute is 01:00)
select pg_temp.clock(3600 - 10 * 60 + 5);    -- 00:50:05, minute 4 of the window
select pg_temp.ended('c1', 'ma', 'complete');
select pg_temp.ended('c2', 'ma', 'complete');
select pg_temp.ended('f1', 'ma', 'fail');
select pg_temp.clock(3600 - 14 * 60);        -- 00:46:00, minute 0
select pg_temp.ended('c3', 'ma', 'complete');
select pg_temp.clock(3600 - 14 * 60 - 1);    -- 00:45:59, just before the window
select pg_temp.ended('c4', 'ma', 'complete');
select pg_temp.clock(3600 + 20);             -- 01:00:20, minute 14 (the current one)
select pg_temp.ended('c5', 'ma', 'complete');
select pg_temp.ended('x1', 'ma', 'cancel');
select pg_temp.ended('b1', 'mb', 'fail');
-- unfinished: running, sleeping, waiting, pending (one due at 01:00:00, one due later)
select pg_temp.clock(3600);
select pg_temp.enq('r1', 'ma');
select pg_temp.claim_as('r1', 'ma');
select pg_temp.enq('s1', 'ma', '{"durable": true}');
select pg_temp.claim_as('s1', 'ma');
select durable.sleep(pg_temp.id('s1'), pg_temp.tok('s1'), 1, 'nap', 600);
select pg_temp.enq('w1', 'ma', '{"durable": true}');
select pg_temp.claim_as('w1', 'ma');
select durable.wait_event(pg_temp.id('w1'), pg_temp.tok('w1'), 1, 'go');
select pg_temp.enq('p1', 'ma');
select pg_temp.enq('p2', 'ma', '{"delay": 600}');
select pg_temp.clock(3600 + 30);

-- ---------------------------------------------------------------------------------------
-- 1. counts now
select is(
    pg_temp.metrics('ma') - array['completed', 'failed', 'cancelled', 'completed_per_minute', 'failed_per_minute'],
    '{"queue": "ma", "pending": 2, "running": 1, "sleeping": 1, "waiting": 1, "oldest_pending_seconds": 30,
      "concurrency_limit": 3, "window_minutes": 15}'::jsonb,
    'ma: pending, running, sleeping, waiting now; its oldest ready task (p1) waited 30 s; its concurrency_limit'
);
select is(
    pg_temp.metrics('mc'),
    jsonb_build_object('queue', 'mc', 'pending', 0, 'running', 0, 'sleeping', 0, 'waiting', 0,
                       'oldest_pending_seconds', null, 'completed', 0, 'failed', 0, 'cancelled', 0,
                       'completed_per_minute', to_jsonb(array_fill(0, array[15])),
                       'failed_per_minute', to_jsonb(array_fill(0, array[15])),
                       'concurrency_limit', null, 'window_minutes', 15),
    'an empty queue: zeros, a series of 15 zeros, no oldest pending age, no limit'
);
select is(array(select m.queue from durable.queue_metrics() as m), '{ma,mb,mc}'::text[], 'every queue, by name');

-- ---------------------------------------------------------------------------------------
-- 2. the window
select is(
    (select jsonb_build_object('completed', m ->'completed', 'failed', m -> 'failed', 'cancelled', m -> 'cancelled')
     from pg_temp.metrics('ma') as m),
    '{"completed": 4, "failed": 1, "cancelled": 1}'::jsonb,
    'ma: completed c1 c2 c3 c5, failed f1, cancelled x1 in the window; not old1, old2, c4 (before it)'
);
select is(
    (select m.completed_per_minute from durable.queue_metrics() as m where m.queue = 'ma'),
    array[1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]::bigint[],
    'completed per minute: c3 in the first minute, c1 c2 in the fifth, c5 in the current one'
);
select is(
    (select m.failed_per_minute from durable.queue_metrics() as m where m.queue = 'ma'),
    array[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]::bigint[],
    'failed per minute: f1 in the fifth minute'
);
select is(
    (select jsonb_build_object('failed', m -> 'failed', 'series', m -> 'failed_per_minute') from pg_temp.metrics('mb') as m),
    jsonb_build_object('failed', 1, 'series', to_jsonb(array[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])),
    'mb: b1 failed in the current minute'
);
select is(
    (select m.completed_per_minute from durable.queue_metrics(5) as m where m.queue = 'ma'),
    array[0, 0, 0, 0, 1]::bigint[],
    'a window of 5 minutes: five elements, c5 only'
);
select is((pg_temp.metrics('ma', 5) -> 'completed')::integer, 1, 'and its count');
select is(
    (select m.completed_per_minute from durable.queue_metrics(1) as m where m.queue = 'ma'),
    array[1]::bigint[],
    'a window of 1 minute: the current minute only'
);
select is(
    (select count(*)::integer from durable.queue_metrics(1440) as m
     where m.queue = 'ma' and cardinality(m.completed_per_minute) = 1440 and m.completed = 6 and m.failed = 2),
    1,
    'a window of a day: 1440 minutes, old1 and old2 counted too'
);
select pg_temp.clock(3600 + 6 * 60);   -- 01:06:00: the window starts at 00:52
select is(
    (select m.completed_per_minute from durable.queue_metrics() as m where m.queue = 'ma'),
    array[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]::bigint[],
    'the clock moved 6 minutes on: c1, c2 and c3 left the window, c5 moved back 6 minutes'
);
select is((pg_temp.metrics('ma') -> 'oldest_pending_seconds')::integer, 360,
          'oldest_pending_seconds follows the clock');
select pg_temp.clock(3600 + 30);

-- ---------------------------------------------------------------------------------------
-- 3. permissions
select pg_temp.login('rd', '{durable_reader}');
select pg_temp.login('wk', '{durable_reader,durable_worker}');
select durable.grant_queue(pg_temp.role('rd'), 'mb', '{reader}');
select durable.grant_queue(pg_temp.role('wk'), 'ma', '{worker}');
select is(pg_temp.value_as(pg_temp.role('rd'), 'select array(select m.queue from durable.queue_metrics() m)::text'),
          '{mb}', 'restricted to mb: its metrics only');
select is(pg_temp.value_as(pg_temp.role('wk'), 'select count(*) from durable.queue_metrics()'),
          '0', 'a worker capability only: nothing');

-- ---------------------------------------------------------------------------------------
-- 4. bad input
select pg_temp.rejects('select * from durable.queue_metrics(0)', 'DU001', 'a window of 0 minutes');
select pg_temp.rejects('select * from durable.queue_metrics(1441)', 'DU001', 'a window over a day');
select pg_temp.rejects('select * from durable.queue_metrics(null)', 'DU001', 'a window of null');

select pg_temp.drop_roles();

select * from finish();

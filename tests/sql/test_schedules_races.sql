-- Schedule ticks under concurrency, forced with two sessions (dblink 'a' and 'b'), no sleeps:
--   1. two claimers at one tick: A's claim ticks the schedule in an open transaction; B's
--      claim does not wait for it (SKIP LOCKED) and enqueues nothing; after A commits, the
--      tick has exactly one task, whatever B claims again;
--   2. a schedule row held by another transaction (as create_schedule or pause_schedule
--      would hold it): the claim neither waits nor ticks; the next claim after the commit
--      ticks it once.
select plan(9);

\ir helpers/sessions.sql

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue(q) from unnest(array['rq1', 'rq2']) as q;
select durable.create_schedule('r', q, 'job', '* * * * *') from unnest(array['rq1', 'rq2']) as q;
select set_config('durable.fake_now', '2030-01-01 00:01:30+00', false);
commit;
select pg_temp.connect_ab();

-- 1. two claimers
select dblink_exec('a', 'begin');
select is((select n from dblink('a', $$select count(*) from durable.claim('rq1', 'wa', 10)$$) as x (n bigint)), 1::bigint,
          '1: A''s claim ticks the schedule and claims the task (not committed)');
select dblink_send_query('b', $$select count(*) from durable.claim('rq1', 'wb', 10)$$);
select is(pg_temp.blockers('b', (select b from pids)), '{}'::integer[], '1: B''s claim does not wait for A');
select is((select n from dblink_get_result('b') as x (n bigint)), 0::bigint, '1: B''s claim enqueues and claims nothing');
select count(*) from dblink_get_result('b') as x (n bigint);
select dblink_exec('a', 'commit');
select is((select n from dblink('b', $$select count(*) from durable.claim('rq1', 'wb', 10)$$) as x (n bigint)), 0::bigint,
          '1: after A commits, B''s claim enqueues nothing more');
select is((select array_agg(k.idempotency_key) from durable.all_tasks k where k.queue = 'rq1'),
          array['schedule:r:2030-01-01T00:01:00Z'], '1: the tick has exactly one task');

-- 2. the schedule's row held by another transaction
select dblink_exec('a', 'begin');
select is((select n from dblink('a', $$select 1 from durable.schedules s where s.queue = 'rq2' for update$$) as x (n integer)), 1,
          '2: A locks the schedule''s row');
select dblink_send_query('b', $$select count(*) from durable.claim('rq2', 'wb', 10)$$);
select is(pg_temp.blockers('b', (select b from pids)), '{}'::integer[], '2: the claim does not wait for the schedule''s row');
select is((select n from dblink_get_result('b') as x (n bigint)), 0::bigint, '2: and does not tick it');
select count(*) from dblink_get_result('b') as x (n bigint);
select dblink_exec('a', 'commit');
select is((select n from dblink('b', $$select count(*) from durable.claim('rq2', 'wb', 10)$$) as x (n bigint)), 1::bigint,
          '2: once it is free, the next claim ticks it once');

select dblink_disconnect(s) from unnest(array['a', 'b']) as s;

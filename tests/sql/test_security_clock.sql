-- The test clock is no door (security spec, "No doors"): in a database NOT marked for
-- testing (durable.settings.test_clock = false; the test template is marked, so this file
-- unmarks its own copy first), a session that sets durable.fake_now to a far future or
-- past moves nothing:
--   1. durable.current_time() stays within a second of clock_timestamp(), for a worker
--      role (SET ROLE, and a session logged in as it) and a superuser alike;
--   2. a claim (or reclaim, or heartbeat) does not see a live lease as expired;
--   3. a sleeper does not wake early, and a sleep is timed on the real clock;
--   4. a rate limit is neither bypassed (a start in the window counts) nor poisoned (a
--      claim does not record a start in the far future that would block the queue);
--   5. no role but the owner can change durable.settings (42501);
--   6. once the owner marks the database again, the fake clock works (what the other
--      test files rely on): the same calls now see the far future.
select plan(35);

\ir helpers/security.sql

select pg_temp.login('w', '{durable_worker}');
select pg_temp.login('p', '{durable_producer}');
select pg_temp.login('o', '{durable_operator}');
select pg_temp.login('r', '{durable_reader}');
update durable.settings set test_clock = false;
-- committed: sessions opened through dblink see the roles and the unmarked database
commit;

-- far future and far past, as SQL to run first
create temp table fakes as
select $$select set_config('durable.fake_now', '2999-01-01 00:00:00+00', false);$$ as future,
       $$select set_config('durable.fake_now', '1970-01-02 00:00:00+00', false);$$ as past;
create function pg_temp.future(p_sql text) returns text language sql as $$ select f.future || p_sql from fakes f $$;
create function pg_temp.past(p_sql text) returns text language sql as $$ select f.past || p_sql from fakes f $$;
-- whether the clock durable.current_time() is the real one, as a statement
create temp table real_clock as
select $$select (abs(extract(epoch from durable.current_time() - clock_timestamp())) < 1)::text$$ as stmt;

-- ---------------------------------------------------------------------------------
-- 1. current_time()
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future((select stmt from real_clock))), 'true',
          'a worker that sets durable.fake_now to 2999: current_time() is the real clock');
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.past((select stmt from real_clock))), 'true',
          'a worker that sets durable.fake_now to 1970: current_time() is the real clock');
select is(pg_temp.value_as(session_user, pg_temp.future((select stmt from real_clock))), 'true',
          'a superuser that sets durable.fake_now to 2999: current_time() is the real clock');
select dblink_connect('w', pg_temp.conninfo_as(pg_temp.role('w')));
select dblink_exec('w', $$set durable.fake_now = '2999-01-01 00:00:00+00'$$);
select is(pg_temp.remote('w', (select stmt from real_clock)), 'true',
          'a session logged in as a worker, with durable.fake_now = 2999: current_time() is the real clock');
select dblink_disconnect('w');

-- ---------------------------------------------------------------------------------
-- 2. a live lease (60 s, real clock)
select durable.create_queue('lease_q');
select durable.enqueue('lease_q', 'job');
create temp table live as select c.task_id, c.lease_token from durable.claim('lease_q', 'owner-worker', 1, 60) c;
create temp table live_before as
select t.status, t.worker, t.lease_token, t.lease_expires_at, t.attempt, t.lost_leases
from durable.all_tasks t join live using (task_id);
create function pg_temp.live_row() returns jsonb language sql as $$
    select to_jsonb(x) from (select t.status, t.worker, t.lease_token, t.lease_expires_at, t.attempt, t.lost_leases
                             from durable.all_tasks t join live using (task_id)) x
$$;
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('lease_q', 'thief')$$)),
          '0', 'a worker claiming on the clock of 2999 gets nothing: the live lease is not expired');
select is(pg_temp.live_row(), (select to_jsonb(b) from live_before b), 'the task keeps its lease, worker and counters');
select is(pg_temp.value_as(pg_temp.role('o'), pg_temp.future($$select durable.reclaim('lease_q')::text$$)), '0',
          'an operator reclaiming on the clock of 2999 reclaims nothing');
select is(pg_temp.live_row(), (select to_jsonb(b) from live_before b), 'the task still keeps its lease');
select is(
    pg_temp.value_as(pg_temp.role('w'), pg_temp.future(format(
        $$select (abs(extract(epoch from durable.heartbeat(%L, %L, 60) - clock_timestamp()) - 60) < 2)::text$$,
        (select task_id from live), (select lease_token from live)))),
    'true',
    'a heartbeat on the clock of 2999 extends the lease by 60 s of the real clock'
);

-- ---------------------------------------------------------------------------------
-- 3. sleepers
select durable.create_queue('sleep_q');
select durable.enqueue('sleep_q', 'nap', '{}', '{"durable": true}');
create temp table nap as select c.task_id, c.lease_token from durable.claim('sleep_q', 'owner-worker', 1, 60) c;
select durable.sleep(nap.task_id, nap.lease_token, 1, 'nap', 3600) from nap;
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('sleep_q', 'w1')$$)),
          '0', 'a worker claiming on the clock of 2999 does not wake a task sleeping for an hour');
select is((select t.status from durable.all_tasks t join nap using (task_id)), 'sleeping', 'the task still sleeps');
select durable.enqueue('sleep_q', 'nap2', '{}', '{"durable": true}');
create temp table nap2 as select c.task_id, c.lease_token from durable.claim('sleep_q', 'owner-worker', 1, 60) c;
select is(
    pg_temp.value_as(pg_temp.role('w'), pg_temp.past(format(
        $$select durable.sleep(%L, %L, 1, 'nap', 60) ->> 'suspended'$$, (select task_id from nap2), (select lease_token from nap2)))),
    'true',
    'a worker sleeping 60 s on the clock of 1970 suspends'
);
select cmp_ok(
    (select abs(extract(epoch from t.wake_at - clock_timestamp()) - 60) from durable.all_tasks t join nap2 using (task_id)),
    '<', 2::numeric,
    'its wake time is 60 s ahead on the real clock'
);
select is(pg_temp.value_as(pg_temp.role('w'), $$select count(*)::text from durable.claim('sleep_q', 'w1')$$), '0',
          'a claim does not wake it');

-- ---------------------------------------------------------------------------------
-- 4. rate limits (one start per 60 s for the whole queue)
select durable.create_queue(q, '{"rate_limit": {"limit": 1, "period": 60, "per": "queue"}}')
from unnest(array['rate_b', 'rate_p']) as q;
select durable.enqueue(q, 'job') from unnest(array['rate_b', 'rate_b', 'rate_p', 'rate_p']) as q;
select is((select count(*)::integer from durable.claim('rate_b', 'owner-worker')), 1, 'rate_b: a first start now');
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('rate_b', 'w1')$$)),
          '0', 'rate_b: a worker claiming on the clock of 2999 does not get past the rate limit');
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('rate_p', 'w1')$$)),
          '1', 'rate_p: a worker claiming on the clock of 2999 starts a task (the window is empty)');
-- (whether that start was recorded in 2999, blocking the queue, is checked in part 6)

-- ---------------------------------------------------------------------------------
-- 5. durable.settings belongs to the owner
select pg_temp.refused_as(pg_temp.role(k.kind), 'update durable.settings set test_clock = true', '42501',
                          format('as %s: UPDATE durable.settings is 42501', k.grp))
from (values (1, 'w', 'durable_worker'), (2, 'p', 'durable_producer'), (3, 'o', 'durable_operator'),
             (4, 'r', 'durable_reader')) as k (ord, kind, grp)
order by k.ord;
select pg_temp.refused_as(pg_temp.role('o'), 'delete from durable.settings', '42501',
                          'as durable_operator: DELETE FROM durable.settings is 42501');
select pg_temp.refused_as(pg_temp.role('o'), 'insert into durable.settings (test_clock) values (true)', '42501',
                          'as durable_operator: INSERT INTO durable.settings is 42501');
select is((select array_agg(test_clock) from durable.settings), array[false], 'the database is still not marked for testing');

-- ---------------------------------------------------------------------------------
-- 6. marked for testing again (by the owner's member, this superuser): the fake clock works
update durable.settings set test_clock = true;
commit;
select is(
    pg_temp.value_as(pg_temp.role('w'),
        $$select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
          select (durable.current_time() = '2030-01-01 00:00:00+00')::text$$),
    'true',
    'marked for testing: a worker''s durable.fake_now is the clock'
);
select dblink_connect('w', pg_temp.conninfo_as(pg_temp.role('w')));
select dblink_exec('w', $$set durable.fake_now = '2030-01-01 00:00:00+00'$$);
select is(pg_temp.remote('w', $$select (durable.current_time() = '2030-01-01 00:00:00+00')::text$$), 'true',
          'marked for testing: so it is in a session logged in as a worker');
select dblink_disconnect('w');
select is(pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('lease_q', 'thief')$$)),
          '1', 'marked for testing: a claim on the clock of 2999 reclaims the lease that was live (part 2 was the guard)');
select cmp_ok(
    pg_temp.value_as(pg_temp.role('w'), pg_temp.future($$select count(*)::text from durable.claim('sleep_q', 'w1', 10)$$))::integer,
    '>=', 1,
    'marked for testing: a claim on the clock of 2999 wakes the sleepers (part 3 was the guard)'
);
select is(
    pg_temp.value_as(session_user,
        $$select set_config('durable.fake_now', (clock_timestamp() + interval '120 seconds')::text, false);
          select count(*)::text from durable.claim('rate_p', 'owner-worker')$$),
    '1',
    'rate_p two minutes later: a task starts (the start of part 4 was recorded on the real clock, not in 2999)'
);

select pg_temp.drop_roles();

select * from finish();

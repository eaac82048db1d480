-- The shared test clock of a test database (plpgsql/test_clock.sql):
--   1. a session with durable.fake_now = 'shared' reads clock_timestamp() + the offset;
--      advance_test_clock moves it for every such session (a dblink session too);
--   2. advance_test_clock's bad input is DU001 and changes nothing;
--   3. skip_test_clock: null while a task can run; with none, moves the clock to the
--      earliest wake-up, then the claim wakes that sleeper (and only it);
--   4. a move keeps live workers alive and running leases live (they move with the clock);
--   5. test_clock() reads the clock, the runnable count and the next due time;
--   6. who may call: durable_operator only (42501 for the other roles);
--   7. not a test database: every verb is DU055 (a superuser's and an operator's call alike),
--      changes nothing, and an offset stored by the owner moves no session's clock.
select plan(42);

\ir helpers/security.sql

select pg_temp.login('w', '{durable_worker}');
select pg_temp.login('p', '{durable_producer}');
select pg_temp.login('o', '{durable_operator}');
select pg_temp.login('r', '{durable_reader}');
commit;

-- how far the shared clock is ahead of the real one, in whole days
create function pg_temp.days_ahead() returns integer language sql as $$
    select round(extract(epoch from durable.current_time() - clock_timestamp()) / 86400)::integer
$$;

-- ---------------------------------------------------------------------------------
-- 1. the shared clock
set durable.fake_now = 'shared';
select is(pg_temp.days_ahead(), 0, 'shared clock: the real time at first');
select cmp_ok(
    extract(epoch from durable.advance_test_clock(86400) - clock_timestamp())::numeric, '>', 86399::numeric,
    'advance_test_clock(1 day) returns a time a day ahead'
);
select is(pg_temp.days_ahead(), 1, 'this session reads the clock a day ahead');
commit;
select dblink_connect('w', pg_temp.conninfo_as(pg_temp.role('w')));
select dblink_exec('w', $$set durable.fake_now = 'shared'$$);
select is(pg_temp.remote('w', $$select round(extract(epoch from durable.current_time() - clock_timestamp()) / 86400)::text$$),
          '1', 'a worker session on the shared clock reads it a day ahead too');
select is(pg_temp.remote('w', $$select (abs(extract(epoch from durable.current_time() - clock_timestamp())) < 1)::text
                                from (select set_config('durable.fake_now', '', false)) x$$),
          'true', 'a session without durable.fake_now reads the real clock');
select dblink_disconnect('w');

-- ---------------------------------------------------------------------------------
-- 2. bad input
select pg_temp.refused_as(session_user, format('select durable.advance_test_clock(%s)', v.arg), 'DU001',
                          format('advance_test_clock(%s) is DU001', v.arg))
from (values (1, '-1'), (2, $$'NaN'$$), (3, 'null'), (4, '3153600001')) as v (ord, arg)
order by v.ord;

-- ---------------------------------------------------------------------------------
-- 3. skip_test_clock
select durable.create_queue('q');
select durable.enqueue('q', 'now');
select is(durable.skip_test_clock(), null, 'a task can run now: skip_test_clock moves nothing');
select count(*) from durable.claim('q', 'w1');
select durable.enqueue('q', 'a', '{}', '{"durable": true}');
select durable.enqueue('q', 'b', '{}', '{"durable": true}');
create temp table naps as
select c.task_id, c.lease_token, c.task_name from durable.claim('q', 'w1', 2, 60, '{a,b}') c;
select durable.sleep(n.task_id, n.lease_token, 1, 'nap', case n.task_name when 'a' then 10 * 86400 else 20 * 86400 end)
from naps n order by n.task_name;
select is(durable.skip_test_clock(), null, 'a task still runs (the first claim''s): skip_test_clock moves nothing');
select durable.complete(t.task_id, t.lease_token)
from durable.all_tasks t where t.status = 'running';
select is(durable.skip_test_clock(), (select t.wake_at from durable.all_tasks t join naps n using (task_id) where n.task_name = 'a'),
          'nothing can run: skip_test_clock moves the clock to the earlier sleeper''s wake-up and returns it');
select is(pg_temp.days_ahead(), 11, 'the clock is 10 days further on');
select is((select count(*)::integer from durable.claim('q', 'w1', 10)), 1, 'the claim wakes and hands out that sleeper');
select is((select t.status from durable.all_tasks t join naps n using (task_id) where n.task_name = 'b'), 'sleeping',
          'the later sleeper sleeps on');
select is(durable.skip_test_clock(), null, 'the woken task runs: nothing moves');

-- ---------------------------------------------------------------------------------
-- 4. leases and workers move with the clock
create temp table regs as select durable.register_worker('reg-w', '{q}') as token;
create temp table before as
select t.task_id, t.lease_expires_at, t.attempt_deadline from durable.all_tasks t where t.status = 'running';
select durable.advance_test_clock(30 * 86400);
select is((select count(*)::integer from durable.all_tasks t join before b using (task_id)
           where t.lease_expires_at = b.lease_expires_at + interval '30 days'
             and t.attempt_deadline is not distinct from b.attempt_deadline + interval '30 days'), 1,
          'the running task''s lease and deadline moved 30 days with the clock');
select is((select w.alive from durable.workers() w where w.name = 'reg-w'), true,
          'the registered worker is still alive 30 days on');
select is((select count(*)::integer from durable.claim('q', 'w2', 10, 60, '{z}')), 0, 'a claim reclaims nothing');
select is((select t.status from durable.all_tasks t join before b using (task_id)), 'running', 'the task still runs');

-- ---------------------------------------------------------------------------------
-- 5. test_clock()
select is((select c.runnable from durable.test_clock() c), 2,
          'test_clock: two tasks can run (the running one, and the sleeper the claim woke)');
select is((select abs(extract(epoch from c.now - durable.current_time())) < 1 from durable.test_clock() c), true,
          'test_clock: its now is the shared clock');
select is((select c.next_due from durable.test_clock() c),
          (select t.run_at from durable.all_tasks t where t.status = 'pending'),
          'test_clock: the next due time is the woken task''s run time');
commit;

-- ---------------------------------------------------------------------------------
-- 6. who may call
select is(pg_temp.verdict(pg_temp.state_as(pg_temp.role(k.kind), 'select durable.advance_test_clock(1)')),
          k.expected, format('advance_test_clock as %s: %s', k.grp, k.expected))
from (values (1, 'w', 'durable_worker', '42501'), (2, 'p', 'durable_producer', '42501'),
             (3, 'r', 'durable_reader', '42501'), (4, 'o', 'durable_operator', 'allowed')) as k (ord, kind, grp, expected)
order by k.ord;

-- ---------------------------------------------------------------------------------
-- 7. not a test database
update durable.settings set test_clock = false, test_clock_offset = interval '1000 days';
commit;
select pg_temp.refused_as(r.who, v.stmt, 'DU055', format('not a test database: %s as %s is DU055', v.verb, r.label))
from (values (1, 'advance_test_clock', 'select durable.advance_test_clock(60)'),
             (2, 'skip_test_clock', 'select durable.skip_test_clock()'),
             (3, 'test_clock', 'select * from durable.test_clock()')) as v (ord, verb, stmt)
cross join (values (1, session_user::text, 'a superuser'), (2, pg_temp.role('o'), 'an operator')) as r (ord, who, label)
where v.ord < 3 or r.ord = 1
order by v.ord, r.ord;
select is(pg_temp.value_as(pg_temp.role('w'),
              $$select set_config('durable.fake_now', 'shared', false);
                select (abs(extract(epoch from durable.current_time() - clock_timestamp())) < 1)::text$$),
          'true', 'not a test database: a worker on the shared clock reads the real clock (the stored offset is ignored)');

select pg_temp.drop_roles();

select * from finish();

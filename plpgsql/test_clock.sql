-- test_clock.sql: the shared test clock of a test database, which skips over durable time.
--
-- In a database the owner marked as a test database (durable.settings.test_clock, set by
-- `durable migrate --test-clock`), a session whose setting durable.fake_now is 'shared'
-- reads the database's shared test clock: clock_timestamp() + test_clock_offset
-- (durable.current_time(), common.sql). The time-skipping test harness (durable.testing)
-- connects with durable.fake_now = 'shared' (libpq options), so its worker's connections,
-- its client's and the test's own all see one clock, which these verbs move forward:
--
-- * durable.advance_test_clock(seconds) moves it forward by that much;
-- * durable.skip_test_clock() moves it to the earliest time a task of the database is
--   due (a sleeper's wake-up, an event wait's timeout, a delayed or retried task's run
--   time), but only when no task could run now (none running, none pending and due):
--   the harness calls it while it waits, so durable time between steps passes at once;
-- * durable.test_clock() reads it: the time, how many tasks could run now, and when the
--   next one is due.
--
-- The time skipped is time no process lived through: the leases and attempt deadlines of
-- running tasks and the last heartbeats of live registered workers move forward with the
-- clock (a skip does not make a worker dead or a lease expire). Each verb notifies the
-- queues (NOTIFY durable, as enqueue does) where a task came due, so their workers claim
-- at once instead of at their next poll.
--
-- Security: in any other database both verbs refuse (DU055) before they change anything,
-- and current_time() ignores the offset (and every durable.fake_now); only the owner may
-- write durable.settings otherwise. Granted to durable_operator.
--
-- Locks: the row of durable.settings first (the test clock, taken by these verbs only),
-- then the running tasks oldest first, then the registry rows of the live workers (the
-- lock order, plpgsql/README.md).

-- Moves the shared test clock forward by p_delta from p_now (its reading): leases,
-- attempt deadlines and live workers' heartbeats move with it; the queues with a task
-- due at the new time are notified. Returns the new time. The caller holds the
-- settings row.
create or replace function durable._move_test_clock(p_now timestamptz, p_delta interval)
returns timestamptz
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_then timestamptz := p_now + p_delta;
    v_running uuid[];
begin
    update durable.settings s set test_clock_offset = s.test_clock_offset + p_delta;
    v_running := array(
        select k.task_id from durable.tasks k where k.status = 'running' order by k.task_id for update
    );
    update durable.tasks k
    set lease_expires_at = k.lease_expires_at + p_delta,
        attempt_deadline = k.attempt_deadline + p_delta
    where k.task_id = any(v_running) and k.status = 'running';
    update durable.workers w
    set last_seen_at = w.last_seen_at + p_delta
    where w.name in (
        select a.name from durable.workers a
        where greatest(a.last_seen_at, pg_postmaster_start_time())
              >= p_now - make_interval(secs => a.dead_after_seconds)
        order by a.name
        for update
    );
    perform pg_notify('durable', d.queue)
    from (
        select distinct k.queue from durable.tasks k
        where (k.status = 'pending' and k.run_at <= v_then)
           or (k.status in ('sleeping', 'waiting') and k.wake_at <= v_then)
        order by k.queue
    ) as d;
    return v_then;
end;
$$;

comment on function durable._move_test_clock(timestamptz, interval) is
'Internal: moves the shared test clock of a test database forward by p_delta from its reading p_now, with the leases and attempt deadlines of running tasks and the heartbeats of live workers; notifies the queues with a task due then; returns the new time.';

-- Locks the test clock (the row of durable.settings) and returns its reading; DU055 in a
-- database that is not marked as a test database.
create or replace function durable._lock_test_clock(p_verb text)
returns timestamptz
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_offset interval;
begin
    select s.test_clock_offset into v_offset from durable.settings s where s.test_clock for update;
    if not found then
        raise exception 'durable: % works only in a test database', p_verb
            using errcode = 'DU055',
                  hint = 'mark a test database with durable migrate --test-clock; the real clock never moves';
    end if;
    return clock_timestamp() + v_offset;
end;
$$;

comment on function durable._lock_test_clock(text) is
'Internal: locks the row of durable.settings and returns the shared test clock; raises DU055 when the database is not a test database.';

create or replace function durable.advance_test_clock(p_seconds double precision)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz;
begin
    if p_seconds is null or p_seconds = 'NaN'::double precision or p_seconds < 0
        or p_seconds > 3153600000 then
        raise exception 'durable: the test clock moves forward by 0 to 3153600000 seconds (100 years), got %', p_seconds
            using errcode = 'DU001';
    end if;
    v_now := durable._lock_test_clock('advance_test_clock');
    return durable._move_test_clock(v_now, make_interval(secs => p_seconds));
end;
$$;

comment on function durable.advance_test_clock(double precision) is
'In a test database (durable.settings.test_clock): moves the shared test clock (durable.fake_now = ''shared'') forward by p_seconds (0 to 100 years); the leases and attempt deadlines of running tasks and the heartbeats of live workers move with it; the queues with a task due then are notified. Returns the new time. Errors: DU001, DU055 (not a test database), 42501.';

-- How many tasks could run at p_now (running, or pending and due), and the earliest time
-- a task not due yet comes due (a pending task's run time, a sleeper's wake-up, an
-- event wait's timeout).
create or replace function durable._test_clock_due(p_now timestamptz, out runnable integer, out next_due timestamptz)
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    select count(*)::integer into runnable
    from durable.tasks k
    where k.status = 'running' or (k.status = 'pending' and k.run_at <= p_now);
    select min(d.at) into next_due
    from (
        select min(k.run_at) as at from durable.tasks k where k.status = 'pending'
        union all
        select min(k.wake_at) from durable.tasks k where k.status in ('sleeping', 'waiting')
    ) as d;
end;
$$;

comment on function durable._test_clock_due(timestamptz) is
'Internal: how many tasks could run at p_now (running, or pending and due), and the earliest time a task is due (pending run_at, sleeping or waiting wake_at).';

create or replace function durable.skip_test_clock()
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz;
    v_due record;
begin
    v_now := durable._lock_test_clock('skip_test_clock');
    v_due := durable._test_clock_due(v_now);
    if v_due.runnable > 0 or v_due.next_due is null then
        return null;
    end if;
    return durable._move_test_clock(v_now, greatest(v_due.next_due - v_now, interval '0'));
end;
$$;

comment on function durable.skip_test_clock() is
'In a test database (durable.settings.test_clock): when no task can run now (none running, none pending and due), moves the shared test clock (durable.fake_now = ''shared'') to the earliest time a task is due (a sleep''s end, an event wait''s timeout, a delayed task''s run time), as durable.advance_test_clock would, and returns that time; null (nothing moved) when a task can run now or none is ever due. Errors: DU055 (not a test database), 42501.';

create or replace function durable.test_clock()
returns table (now timestamptz, runnable integer, next_due timestamptz)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_offset interval;
begin
    select s.test_clock_offset into v_offset from durable.settings s where s.test_clock;
    if not found then
        raise exception 'durable: test_clock works only in a test database'
            using errcode = 'DU055',
                  hint = 'mark a test database with durable migrate --test-clock; the real clock never moves';
    end if;
    now := clock_timestamp() + v_offset;
    select d.runnable, d.next_due into runnable, next_due from durable._test_clock_due(now) as d;
    return next;
end;
$$;

comment on function durable.test_clock() is
'In a test database (durable.settings.test_clock): the shared test clock (durable.fake_now = ''shared''), how many tasks could run now (running, or pending and due) and the earliest time a task is due (null: none). Errors: DU055 (not a test database), 42501.';

grant execute on function durable.advance_test_clock(double precision) to durable_operator;
grant execute on function durable.skip_test_clock() to durable_operator;
grant execute on function durable.test_clock() to durable_operator;

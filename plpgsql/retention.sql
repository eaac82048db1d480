-- retention.sql: deleting what has been kept long enough.
--
-- Finished tasks (the archive, durable.finished_tasks: finish.sql) go with their attempts
-- and their event log: by the DROP of their day's partitions (below), or row by row by
-- durable.purge, which the claim's maintenance path (durable.claim) also runs for a queue
-- with a retention option, at most once a minute per queue (or once per retention period,
-- when that is shorter). Event latches go with durable.purge_event_keys.
--
-- The event log is append-only (log.sql): an event can be deleted only once its task is
-- gone, so retention deletes the tasks first and their events in a later statement.
--
-- ## History partitions
-- durable.finished_tasks, durable.attempts and durable.events (the archive of finished
-- tasks and the append-only history: an attempt row per ended attempt, an event row per
-- step) are partitioned BY RANGE (task_id), one partition per UTC day of task creation,
-- the same days for the three: ids are uuidv7, whose first 48 bits are the creation time
-- in milliseconds, so a task's archived row and its whole history lie in the partitions of
-- the day it was created, whenever it runs and ends. Besides the days: *_legacy (the rows
-- from before migration 0018) and *_default (ids outside every day: a day that could not be
-- made in time, a day already dropped), which are never dropped.
-- durable.history_partitions lists the days.
--
-- The claim's maintenance (durable._reclaim) calls durable._history_partitions, which
-- does nothing unless a minute has passed since it last looked (a read of the row of
-- durable.history_state). Then it (1) makes the partitions of the days up to 7 days
-- ahead when fewer than 3 are left, so DDL happens once every few days, and (2) drops
-- the partitions of every past day (ended more than an hour ago) of which no live task is
-- left in durable.tasks and whose archived tasks are all past their queue's retention (one
-- probe of the day's index (queue, finished_at) per queue): one DROP TABLE of its three
-- partitions. A day holding a finished task of a queue without retention, or one whose
-- retention has not passed, or any live task (pending, running, sleeping, waiting: a
-- long-running or long-sleeping task keeps its day, so its history is never dropped), stays.
-- Both need the ACCESS EXCLUSIVE lock of the three tables, which every writer and reader
-- takes in a weaker mode: it waits for it at most 100 ms (lock_timeout)
-- and else leaves the work to a later minute, so a claim never waits longer and never
-- deadlocks for it (a deadlock would need a wait longer than deadlock_timeout); once it
-- holds the lock, the history of other sessions waits for the end of the claim's
-- transaction (a few ms): only a claim that is the first statement of its transaction
-- does this work (one inside a longer transaction would hold the lock to its end). Each
-- migrate that applies this file makes the first week at once. The DDL runs as the
-- owner role (the verbs are SECURITY DEFINER): new partitions belong to the owner and
-- carry no grant, like every table.
--
-- Each pass over the past days records when each can go (durable.history_partitions.drop_at:
-- the latest end + retention among its archived tasks, one probe per queue; infinity while a
-- task of a queue without retention is left, looked at again hourly; null while a live task
-- of it is left).
--
-- Retention per queue inside a kept day: the queue's retention option (durable._retention,
-- from the claim) still deletes its expired archived tasks row by row (1,000 a pass), and
-- leaves the attempts and events of those in a day partition to the day's DROP (nothing
-- reaches them once their task is gone: every read goes through the task); but it leaves
-- alone the days whose drop_at is within a day, whose DROP is near: so the expired tasks of
-- a day of one queue wait at most a day (and an hour) past their retention for its DROP,
-- rather than going row by row ahead of it. durable.purge (an operator's explicit purge)
-- deletes every expired task and its history rows at once; so does retention for the
-- legacy and default partitions. So a day of a million finished tasks of queues whose
-- retention has passed goes in one DROP of three tables, without a DELETE of any row.
--
-- Not partitioned: durable.tasks (the live tasks). Its claim index would become one index
-- per partition, which every claim merges, and a generic plan locks every partition: the
-- hot verbs would slow with the number of days (a branch that did it measured, at 33 day
-- partitions against 3: claim 2.55x, checkpoint 3.13x, get_task 2.66x), and the days of
-- queues without retention never go. The live paths read and write
-- durable.tasks only; a finish inserts its row into the archive (tuple routing opens the
-- one partition of the task's day), and the archive is read only by the readers (get_task,
-- list_tasks, queue_stats, ...: by id with plans made for the id, which read one day's
-- partition), by the error paths of the fence, by the restarts, and by idempotency-key
-- look-ups (one probe of each partition's key index: the archive has no unique index
-- across days, and a finished task keeps its key until retention removes it).
-- event_values, child_waits and wait_counts are small (live state, deleted as it ends).
--
-- Measured: bench/retention_bench.py (removing a day: DROP against DELETE) and
-- bench/archive_bench.py (the hot verbs against main and against 30 more days); the README's
-- table has the figures.

-- The smallest uuid of a millisecond: the bound between the ids created before p_at and
-- from p_at on (uuids compare byte by byte, and a uuidv7 starts with its milliseconds).
create or replace function durable._uuid_floor(p_at timestamptz)
returns uuid
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return encode(
        substring(int8send(floor(extract(epoch from p_at) * 1000)::bigint) from 3)
        || '\x00000000000000000000'::bytea,
        'hex'
    )::uuid;
end;
$$;

comment on function durable._uuid_floor(timestamptz) is
'Internal: the smallest uuidv7 of the millisecond of p_at: the ids created before p_at sort below it, the later ones from it on (the bounds of the history partitions).';

-- The partitions' maintenance: see "History partitions" above. Called by every claim: a
-- read of durable.history_state, unless a minute has passed.
create or replace function durable._history_partitions(p_now timestamptz default null)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    -- real time, as the ids (durable.uuidv7 reads clock_timestamp(), never the test clock);
    -- p_now: another time, for tests (the owner's)
    v_now timestamptz := coalesce(p_now, clock_timestamp());
    v_until timestamptz;
begin
    if (select s.checked_at from durable.history_state s) > v_now - interval '1 minute'
        -- a claim that is not the first statement of its transaction may be in a long
        -- one, which would hold the DDL's lock to its end: a later claim does the work
        or (p_now is null and not durable._alone_in_transaction()) then
        return;
    end if;
    update durable.history_state s
    set checked_at = v_now
    where s.id = (
        select c.id from durable.history_state c
        where c.checked_at is null or c.checked_at <= v_now - interval '1 minute'
        for update skip locked
    )
    returning s.made_until into v_until;
    if found then
        perform durable._history_ddl(v_now, v_until);
    end if;
end;
$$;

comment on function durable._history_partitions(timestamptz) is
'Internal: at most once a minute (the claim''s maintenance calls it), makes the day partitions of durable.finished_tasks, durable.attempts and durable.events up to 7 days ahead when fewer than 3 are left, and drops those of past days of which no live task is left and whose archived tasks are all past their queue''s retention (durable._history_ddl). p_now: the time to take for now (default the real time, as task ids; for tests).';

-- The DDL of the maintenance, under a lock_timeout of its own (restored on return).
create or replace function durable._history_ddl(p_now timestamptz, p_until timestamptz)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set lock_timeout = '100ms'
as $$
declare
    v_from timestamptz;
    v_to timestamptz;
    v_day date;
    d durable.history_partitions;
    v_clock timestamptz;
    v_part text;
    v_drop_at timestamptz;
begin
    if p_until < p_now + interval '3 days' then
        begin
            lock table durable.attempts, durable.events, durable.finished_tasks,
                durable.attempts_default, durable.events_default, durable.finished_tasks_default
            in access exclusive mode;
            v_from := p_until;
            while v_from < (date_trunc('day', p_now at time zone 'UTC') at time zone 'UTC') + interval '8 days' loop
                v_day := (v_from at time zone 'UTC')::date;
                v_to := (v_day + 1)::timestamp at time zone 'UTC';
                begin
                    execute format('create table if not exists durable.%I partition of durable.attempts for values from (%L) to (%L)',
                                   'attempts_p' || to_char(v_day, 'YYYYMMDD'),
                                   durable._uuid_floor(v_from), durable._uuid_floor(v_to));
                    execute format('create table if not exists durable.%I partition of durable.events for values from (%L) to (%L)',
                                   'events_p' || to_char(v_day, 'YYYYMMDD'),
                                   durable._uuid_floor(v_from), durable._uuid_floor(v_to));
                    execute format('create table if not exists durable.%I partition of durable.finished_tasks for values from (%L) to (%L)',
                                   'finished_tasks_p' || to_char(v_day, 'YYYYMMDD'),
                                   durable._uuid_floor(v_from), durable._uuid_floor(v_to));
                    perform durable._guard_event_partition(format('durable.%I', 'events_p' || to_char(v_day, 'YYYYMMDD'))::regclass);
                    insert into durable.history_partitions (day, lo, hi)
                    values (v_day, durable._uuid_floor(v_from), durable._uuid_floor(v_to))
                    on conflict (day) do nothing;
                exception when check_violation then
                    -- the default partition already holds rows of that day (made too late):
                    -- the day stays there, and its rows go one by one
                    null;
                end;
                v_from := v_to;
            end loop;
            update durable.history_state s set made_until = v_from where s.id;
        exception when lock_not_available then
            -- busy: a later minute makes them (until then, new days land in the default)
            update durable.history_state s set checked_at = p_now - interval '50 seconds' where s.id;
            return;
        end;
    end if;

    -- the past days: for each, when it can go (drop_at: the latest end + retention of its
    -- archived tasks; infinity while a task of a queue without retention is left, looked at
    -- again hourly; null while a live task of it is left); those whose time has come are
    -- dropped. A finite drop_at is only looked at again when it comes: nothing moves it but a
    -- restart, which makes a live task of the day, found first
    v_clock := durable.current_time();
    for d in
        select p.* from durable.history_partitions p
        where p.day < ((p_now - interval '1 hour') at time zone 'UTC')::date
        order by p.day
    loop
        if exists (select 1 from durable.tasks k where k.task_id >= d.lo and k.task_id < d.hi) then
            if d.drop_at is not null then
                update durable.history_partitions p set drop_at = null where p.day = d.day;
            end if;
            continue;
        end if;
        continue when d.drop_at > v_clock
                      and (isfinite(d.drop_at) or d.drop_checked_at > v_clock - interval '1 hour');
        v_part := 'finished_tasks_p' || to_char(d.day, 'YYYYMMDD');
        -- a day made without its partition of the archive (by code before migration 0020,
        -- racing it): its finished tasks are in the default partition; it is never dropped,
        -- the claims' retention deletes its expired rows one by one
        continue when to_regclass(format('durable.%I', v_part)) is null;
        -- one probe of the partition's index (queue, finished_at) per queue (queues are never
        -- deleted: every task's queue is one of them); infinity: a queue without retention
        execute format(
            'select max(case when q.options ? ''retention''
                             then m.last + make_interval(secs => (q.options ->> ''retention'')::double precision)
                             else ''infinity''::timestamptz end)
             from durable.queues q
             cross join lateral (select max(f.finished_at) as last from durable.%I f where f.queue = q.queue) as m
             where m.last is not null',
            v_part)
        into v_drop_at;
        -- (an empty day can go at once)
        v_drop_at := coalesce(v_drop_at, '-infinity'::timestamptz);
        if v_drop_at > v_clock then
            update durable.history_partitions p set drop_at = v_drop_at, drop_checked_at = v_clock
            where p.day = d.day;
            continue;
        end if;
        begin
            lock table durable.attempts, durable.events, durable.finished_tasks in access exclusive mode;
            -- the lock is held now: no writer of the history (nor a finish, nor a restart) can
            -- be in the middle of it
            continue when exists (select 1 from durable.tasks k where k.task_id >= d.lo and k.task_id < d.hi);
            execute format('drop table durable.%I, durable.%I, durable.%I',
                           'attempts_p' || to_char(d.day, 'YYYYMMDD'), 'events_p' || to_char(d.day, 'YYYYMMDD'),
                           v_part);
            delete from durable.history_partitions p where p.day = d.day;
        exception when lock_not_available then
            return;
        end;
    end loop;
end;
$$;

comment on function durable._history_ddl(timestamptz, timestamptz) is
'Internal: the work of durable._history_partitions at p_now, with partitions made up to p_until so far: makes the days up to 7 days ahead when fewer than 3 are left (finished_tasks, attempts, events), drops the past days of which no live task is left and whose archived tasks are all past their queue''s retention (at durable.current_time()), the three partitions in one DROP; waits at most 100 ms for the tables'' lock, else leaves the work to a later minute.';

-- The days ahead are made right away by the migration that applies this file (its
-- transaction, as the owner), so that the first claims have nothing to make.
select durable._history_partitions(clock_timestamp());

-- Deletes up to p_limit finished tasks of a queue that ended before p_cutoff, with their
-- attempts and events (p_history false: only those outside the day partitions, which go
-- by a DROP once their day has no task left). No permission check: callers check.
create or replace function durable._purge_finished(
    p_queue text, p_cutoff timestamptz, p_limit integer, p_history boolean default true
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_gone uuid[];
    v_rows uuid[];
    v_part name;
    v_some uuid[];
begin
    if p_history then
        with gone as (
            delete from durable.finished_tasks t
            where t.task_id in (
                select f.task_id from durable.finished_tasks f
                where f.queue = p_queue
                  and f.finished_at < p_cutoff
                order by f.finished_at
                limit p_limit
                for update skip locked
            )
            returning t.task_id
        )
        select coalesce(array_agg(gone.task_id order by gone.task_id), '{}') into v_gone from gone;
    else
        -- the claim's pass leaves alone the days whose DROP is near (within a day: the
        -- maintenance's drop_at), so that a day of a million tasks goes by its DROP, not row
        -- by row ahead of it: it deletes from the other partitions, one at a time, the oldest
        -- first, until p_limit. A day whose DROP is more than an hour late (its lock never
        -- got: a long reader of the history) is not left to it any longer
        v_gone := '{}'::uuid[];
        for v_part in
            select c.relname from pg_catalog.pg_inherits i
            join pg_catalog.pg_class c on c.oid = i.inhrelid
            where i.inhparent = 'durable.finished_tasks'::regclass
              and c.relname not in (select 'finished_tasks_p' || to_char(p.day, 'YYYYMMDD')
                                    from durable.history_partitions p
                                    where p.drop_at <= durable.current_time() + interval '1 day'
                                      and p.drop_at > durable.current_time() - interval '1 hour')
            order by c.relname
        loop
            execute format(
                'with gone as (
                     delete from durable.%1$I t
                     where t.task_id in (
                         select f.task_id from durable.%1$I f
                         where f.queue = $1 and f.finished_at < $2
                         order by f.finished_at
                         limit $3
                         for update skip locked
                     )
                     returning t.task_id
                 )
                 select coalesce(array_agg(gone.task_id), ''{}'') from gone',
                v_part)
            into v_some
            using p_queue, p_cutoff, p_limit - cardinality(v_gone);
            v_gone := v_gone || v_some;
            exit when cardinality(v_gone) >= p_limit;
        end loop;
    end if;
    if cardinality(v_gone) = 0 then
        return 0;
    end if;
    v_rows := case when p_history then v_gone
                   else array(select g.id from unnest(v_gone) as g (id)
                              where not exists (select 1 from durable.history_partitions p
                                                where p.lo <= g.id and g.id < p.hi)) end;
    if cardinality(v_rows) > 0 then
        delete from durable.attempts a where a.task_id = any(v_rows);
        delete from durable.events e where e.task_id = any(v_rows);
    end if;
    return cardinality(v_gone);
end;
$$;

comment on function durable._purge_finished(text, timestamptz, integer, boolean) is
'Internal: deletes up to p_limit finished tasks (durable.finished_tasks) of the queue that ended before p_cutoff, then their attempts and events (which the log lets go only once their task is gone). p_history false (the claim''s retention pass): leaves the tasks of the days whose DROP is within a day (durable.history_partitions.drop_at) to that DROP, and the attempts and events of the day partitions to their day''s DROP. Returns how many tasks.';

create or replace function durable.purge(
    p_queue text, p_older_than_seconds double precision default null, p_limit integer default 10000
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue durable.queues := durable._queue(p_queue);
    v_keep double precision := coalesce(p_older_than_seconds, (v_queue.options ->> 'retention')::double precision);
    v_count integer;
begin
    perform durable._require(p_queue, array['operator'], 'purge tasks');
    if p_limit is null or p_limit < 1 or p_limit > 1000000 then
        raise exception 'durable: limit must be between 1 and 1000000, got %', p_limit using errcode = 'DU001';
    end if;
    if v_keep is null then
        return 0;
    end if;
    if v_keep < 0 then
        raise exception 'durable: older_than_seconds must not be negative, got %', v_keep using errcode = 'DU001';
    end if;
    v_count := durable._purge_finished(p_queue, durable.current_time() - make_interval(secs => v_keep), p_limit);
    perform durable._forget_idle_keys(p_queue);
    return v_count;
end;
$$;

comment on function durable.purge(text, double precision, integer) is
'Deletes up to p_limit (1 to 1,000,000) finished (completed, failed, cancelled) tasks of the queue, with their attempt history and event log, that ended more than p_older_than_seconds ago (default: the queue''s retention option; nothing when neither is set), and the limit state of keys with nothing left (round_robin tags of keys without unfinished tasks, rate logs past their window). Returns how many tasks it deleted. Claims apply the queue''s retention by themselves (at most once a minute); call it to purge now or with another age. Errors: DU001, DU002, 42501.';

-- The claim's maintenance path: the queue's retention, at most once a minute (or once
-- per retention period, when that is shorter). The queue row is taken with SKIP LOCKED,
-- so concurrent claims do not wait for each other here.
create or replace function durable._retention(p_queue text)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_keep double precision;
    v_count integer;
begin
    update durable.queues q
    set purged_at = v_now
    where q.queue = (
        select d.queue from durable.queues d
        where d.queue = p_queue
          and (d.purged_at is null
               or d.purged_at <= v_now - make_interval(secs => least(60, (d.options ->> 'retention')::double precision)))
        for update skip locked
    )
    returning (q.options ->> 'retention')::double precision into v_keep;
    if v_keep is null then
        return 0;
    end if;
    v_count := durable._purge_finished(p_queue, v_now - make_interval(secs => v_keep), 1000, false);
    perform durable._forget_idle_keys(p_queue);
    if v_count = 1000 then
        -- more to delete: the next claim goes on
        update durable.queues q set purged_at = null where q.queue = p_queue;
    end if;
    return v_count;
end;
$$;

comment on function durable._retention(text) is
'Internal: applies the queue''s retention option (deleting at most 1,000 finished tasks, and the history rows of those outside the day partitions) when the last pass is a minute old (or as old as the retention, when shorter); the claim calls it. Returns how many tasks it deleted.';

-- The limit state of keys that have nothing left: round_robin tags of keys without an
-- unfinished task (a new task of the key starts at the queue's clock, as a new key's
-- does), and rate-limit logs whose every start left the window. Rows in use are skipped.
create or replace function durable._forget_idle_keys(p_queue text)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_options jsonb := (select q.options from durable.queues q where q.queue = p_queue);
    v_window interval := make_interval(secs => coalesce((v_options #>> '{rate_limit,period}')::double precision, 0));
begin
    delete from durable.fair_keys f
    where (f.queue, f.concurrency_key) in (
        select i.queue, i.concurrency_key from durable.fair_keys i
        where i.queue = p_queue
          and not exists (
              select 1 from durable.tasks k
              where k.queue = p_queue and coalesce(k.concurrency_key, '') = i.concurrency_key
                and k.status in ('pending', 'running', 'sleeping', 'waiting'))
        for update skip locked
    );
    delete from durable.limit_state ls
    where (ls.queue, ls.concurrency_key) in (
        select i.queue, i.concurrency_key from durable.limit_state i
        where i.queue = p_queue and i.concurrency_key <> ''
          and not exists (select 1 from unnest(i.start_times) as t (at) where t.at > durable.current_time() - v_window)
        for update skip locked
    );
end;
$$;

comment on function durable._forget_idle_keys(text) is
'Internal: deletes the round_robin rows (durable.fair_keys) of keys without an unfinished task and the rate-limit logs (durable.limit_state) with no start left in the window; retention runs it.';

create or replace function durable.purge_event_keys(
    p_queue text, p_older_than_seconds double precision, p_limit integer default 10000
)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_cutoff timestamptz;
    v_count integer;
begin
    perform durable._queue(p_queue);
    perform durable._require(p_queue, array['operator'], 'purge event keys');
    if p_older_than_seconds is null or p_older_than_seconds < 0 then
        raise exception 'durable: older_than_seconds must be a number >= 0, got %', p_older_than_seconds
            using errcode = 'DU001';
    end if;
    if p_limit is null or p_limit < 1 or p_limit > 1000000 then
        raise exception 'durable: limit must be between 1 and 1000000, got %', p_limit using errcode = 'DU001';
    end if;
    v_cutoff := durable.current_time() - make_interval(secs => p_older_than_seconds);
    -- a key row is locked by waits and emits first; skip the ones in use right now
    delete from durable.event_values v
    where v.queue = p_queue
      and v.key in (
        select ev.key from durable.event_values ev
        where ev.queue = p_queue
          and (ev.emitted_at < v_cutoff
               or (ev.emitted_at is null
                   and not exists (select 1 from durable.tasks k
                                   where k.queue = p_queue and k.status = 'waiting' and k.wait_kind = 'event'
                                     and k.wait_key = ev.key)))
        limit p_limit
        for update skip locked
    );
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

comment on function durable.purge_event_keys(text, double precision, integer) is
'Retention for the event latches of a queue: deletes up to p_limit keys emitted more than p_older_than_seconds ago, and keys that were never emitted and have no waiter left. A wait for a deleted key waits for the next emit, as for a new key. Returns how many keys it deleted. Errors: DU001, DU002, 42501.';

grant execute on function durable.purge(text, double precision, integer) to durable_operator;
grant execute on function durable.purge_event_keys(text, double precision, integer) to durable_operator;

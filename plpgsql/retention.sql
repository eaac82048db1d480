-- retention.sql: deleting what has been kept long enough.
--
-- Finished tasks go with their attempts and their event log: durable.purge, which the
-- claim's maintenance path (durable.claim) also runs for a queue with a retention option,
-- at most once a minute per queue (or once per retention period, when that is shorter). Event latches go with durable.purge_event_keys.
--
-- The event log is append-only (log.sql): an event can be deleted only once its task is
-- gone, so retention deletes the tasks first and their events in a later statement.

-- Deletes up to p_limit finished tasks of a queue that ended before p_cutoff, with their
-- attempts and events. No permission check: callers check.
create or replace function durable._purge_finished(p_queue text, p_cutoff timestamptz, p_limit integer)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_gone uuid[];
begin
    with gone as (
        delete from durable.tasks t
        where t.task_id in (
            select f.task_id from durable.tasks f
            where f.queue = p_queue
              and f.status in ('completed', 'failed', 'cancelled')
              and f.finished_at < p_cutoff
            order by f.finished_at
            limit p_limit
            for update skip locked
        )
        returning t.task_id
    )
    select coalesce(array_agg(gone.task_id order by gone.task_id), '{}') into v_gone from gone;
    if cardinality(v_gone) = 0 then
        return 0;
    end if;
    delete from durable.attempts a where a.task_id = any(v_gone);
    delete from durable.events e where e.task_id = any(v_gone);
    return cardinality(v_gone);
end;
$$;

comment on function durable._purge_finished(text, timestamptz, integer) is
'Internal: deletes up to p_limit finished tasks of the queue that ended before p_cutoff, then their attempts and events (which the log lets go only once their task is gone). Returns how many tasks.';

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
    v_count := durable._purge_finished(p_queue, v_now - make_interval(secs => v_keep), 1000);
    perform durable._forget_idle_keys(p_queue);
    if v_count = 1000 then
        -- more to delete: the next claim goes on
        update durable.queues q set purged_at = null where q.queue = p_queue;
    end if;
    return v_count;
end;
$$;

comment on function durable._retention(text) is
'Internal: applies the queue''s retention option (deleting at most 1,000 finished tasks) when the last pass is a minute old (or as old as the retention, when shorter); the claim calls it. Returns how many tasks it deleted.';

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

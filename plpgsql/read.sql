-- read.sql: reading tasks, queue statistics and retention.

create or replace function durable.get_task(p_task uuid)
returns jsonb
language sql
stable
set search_path = pg_catalog, durable
as $$
    select jsonb_build_object(
        'task_id', t.task_id,
        'queue', t.queue,
        'task_name', t.task_name,
        'input', t.input,
        'status', t.status,
        'priority', t.priority,
        'run_at', t.run_at,
        'attempt', t.attempt,
        'failures', t.failures,
        'lost_leases', t.lost_leases,
        'max_attempts', t.max_attempts,
        'max_lost_leases', t.max_lost_leases,
        'backoff', t.backoff,
        'timeout', t.timeout_seconds,
        'schedule_deadline', t.schedule_deadline,
        'idempotency_key', t.idempotency_key,
        'worker', t.worker,
        'lease_expires_at', t.lease_expires_at,
        'started_at', t.started_at,
        'output', t.output,
        'error', t.error,
        'created_at', t.created_at,
        'finished_at', t.finished_at,
        'durable', t.durable,
        'generation', t.generation,
        'forked_from', t.forked_from,
        'forked_at_seq', t.forked_at_seq,
        'concurrency_key', t.concurrency_key,
        'concurrency_key_limit', t.concurrency_key_limit,
        'attempts', coalesce((
            select jsonb_agg(jsonb_build_object(
                'attempt', a.attempt,
                'worker', a.worker,
                'started_at', a.started_at,
                'ended_at', a.ended_at,
                'outcome', a.outcome,
                'error', a.error
            ) order by a.attempt)
            from durable.attempts a
            where a.task_id = t.task_id
        ), '[]'::jsonb)
    )
    from durable.tasks t
    where t.task_id = p_task
$$;

comment on function durable.get_task(uuid) is
'The task as one JSON object: status, attempt counters, options, output or error, timestamps, and "attempts", the history of its ended attempts (worker, start, end, outcome, error) in order. NULL when there is no such task.';

create or replace function durable.queue_stats(p_queue text)
returns table (status text, tasks bigint, oldest timestamptz)
language sql
stable
set search_path = pg_catalog, durable
as $$
    select t.status, count(*), min(t.created_at)
    from durable.tasks t
    where t.queue = p_queue
    group by t.status
    order by t.status
$$;

comment on function durable.queue_stats(text) is
'How many tasks of the queue are in each status, with the creation time of the oldest.';

create or replace function durable.purge(
    p_queue text, p_older_than_seconds double precision default null, p_limit integer default 10000
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable
as $$
declare
    v_queue durable.queues := durable._queue(p_queue);
    v_keep double precision := coalesce(p_older_than_seconds, (v_queue.options ->> 'retention')::double precision);
    v_cutoff timestamptz;
    v_count bigint;
begin
    if v_keep is null then
        return 0;
    end if;
    if v_keep < 0 then
        raise exception 'durable: older_than_seconds must not be negative, got %', v_keep using errcode = 'DU001';
    end if;
    v_cutoff := durable.current_time() - make_interval(secs => v_keep);
    -- the event log is append-only; retention is the one thing allowed to delete from it
    perform set_config('durable.purging', 'on', true);
    with gone as (
        delete from durable.tasks t
        where t.task_id in (
            select f.task_id from durable.tasks f
            where f.queue = p_queue
              and f.status in ('completed', 'failed', 'cancelled')
              and f.finished_at < v_cutoff
            order by f.finished_at
            limit p_limit
            for update skip locked
        )
        returning t.task_id
    ),
    gone_attempts as (
        delete from durable.attempts a using gone where a.task_id = gone.task_id
    ),
    gone_events as (
        delete from durable.events e using gone where e.task_id = gone.task_id
    )
    select count(*) into v_count from gone;
    perform set_config('durable.purging', 'off', true);
    return v_count::integer;
end;
$$;

comment on function durable.purge(text, double precision, integer) is
'Deletes up to p_limit finished (completed, failed, cancelled) tasks of the queue, with their attempt history and event log, that ended more than p_older_than_seconds ago (default: the queue''s retention option; nothing when neither is set). Returns how many tasks it deleted. Python workers call it every minute (maintenance_interval); other clients call it from cron.';

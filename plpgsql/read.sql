-- read.sql: reading tasks and queue statistics.

-- The capabilities that may read a queue's tasks.
create or replace function durable._readers()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['reader', 'producer', 'operator'];
end;
$$;

comment on function durable._readers() is
'Internal: the queue capabilities that may read a queue''s tasks, histories and statistics (reader, producer, operator).';

create or replace function durable.get_task(p_task uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue text;
begin
    select k.queue into v_queue from durable.tasks k where k.task_id = p_task;
    if not found then
        return null;
    end if;
    perform durable._require(v_queue, durable._readers(), 'read tasks');
    return (
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
        'restarts', t.restarts,
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
    );
end;
$$;

comment on function durable.get_task(uuid) is
'The task as one JSON object: status, attempt counters, restarts, options, output or error, timestamps, and "attempts", the history of its ended attempts (worker, start, end, outcome, error) in order. Never a lease token. NULL when there is no such task. Errors: 42501 (the caller may not read the task''s queue).';

create or replace function durable.queue_stats(p_queue text)
returns table (status text, tasks bigint, oldest timestamptz)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._require(p_queue, durable._readers(), 'read statistics');
    return query
    select t.status, count(*), min(t.created_at)
    from durable.tasks t
    where t.queue = p_queue
    group by t.status
    order by t.status;
end;
$$;

comment on function durable.queue_stats(text) is
'How many tasks of the queue are in each status, with the creation time of the oldest. Errors: 42501.';

grant execute on function durable.get_task(uuid) to durable_reader;
grant execute on function durable.queue_stats(text) to durable_reader;

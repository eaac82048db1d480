-- metrics.sql: queue metrics for dashboards and scrapers (durable dashboard, /metrics).

-- Cheap enough to scrape every 15 s on a big table: each count reads an index that holds
-- only the tasks it counts (pending from the claim's, running from the leases', sleeping
-- and waiting from the suspended tasks', the finished tasks of the window from the
-- archive's finished_tasks_finished_idx, (queue, finished_at), from the window's start),
-- never the finished tasks older than the window. (jit off, as list_queues: compiling costs more than it saves.)
create or replace function durable.queue_metrics(p_window_minutes integer default 15)
returns table (
    queue text,
    pending bigint,
    running bigint,
    sleeping bigint,
    waiting bigint,
    oldest_pending_seconds double precision,
    completed bigint,
    failed bigint,
    cancelled bigint,
    completed_per_minute bigint[],
    failed_per_minute bigint[],
    concurrency_limit integer,
    window_minutes integer
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
set jit = off
as $$
declare
    v_now timestamptz := durable.current_time();
    v_start timestamptz;
begin
    if p_window_minutes is null or p_window_minutes < 1 or p_window_minutes > 1440 then
        raise exception 'durable: window must be between 1 and 1440 minutes, got %',
            coalesce(p_window_minutes::text, 'null')
            using errcode = 'DU001';
    end if;
    -- the window ends with the current minute: p_window_minutes whole minutes, the last
    -- one (the current one) still filling
    v_start := date_trunc('minute', v_now) - make_interval(mins => p_window_minutes - 1);
    return query
    select q.queue,
           (select count(*) from durable.tasks t where t.queue = q.queue and t.status = 'pending'),
           (select count(*) from durable.tasks t where t.queue = q.queue and t.status = 'running'),
           coalesce(s.sleeping, 0), coalesce(s.waiting, 0),
           extract(epoch from v_now - (
               select min(t.run_at) from durable.tasks t
               where t.queue = q.queue and t.status = 'pending' and t.run_at <= v_now
           ))::double precision,
           coalesce(f.completed, 0), coalesce(f.failed, 0), coalesce(f.cancelled, 0),
           coalesce(f.completed_series, array_fill(0::bigint, array[p_window_minutes])),
           coalesce(f.failed_series, array_fill(0::bigint, array[p_window_minutes])),
           (q.options ->> 'concurrency_limit')::integer,
           p_window_minutes
    from durable.queues q
    left join lateral (
        select count(*) filter (where t.status = 'sleeping') as sleeping,
               count(*) filter (where t.status = 'waiting') as waiting
        from durable.tasks t
        where t.queue = q.queue and t.status in ('sleeping', 'waiting')
    ) as s on true
    left join lateral (
        -- one row per minute of the window (0 = the oldest), each with its counts
        select sum(m.completed)::bigint as completed,
               sum(m.failed)::bigint as failed,
               sum(m.cancelled)::bigint as cancelled,
               array_agg(m.completed order by m.minute) as completed_series,
               array_agg(m.failed order by m.minute) as failed_series
        from (
            select g.minute,
                   coalesce(c.completed, 0) as completed,
                   coalesce(c.failed, 0) as failed,
                   coalesce(c.cancelled, 0) as cancelled
            from generate_series(0, p_window_minutes - 1) as g (minute)
            left join (
                select floor(extract(epoch from t.finished_at - v_start) / 60)::integer as minute,
                       count(*) filter (where t.status = 'completed') as completed,
                       count(*) filter (where t.status = 'failed') as failed,
                       count(*) filter (where t.status = 'cancelled') as cancelled
                from durable.finished_tasks t
                where t.queue = q.queue
                  and t.finished_at >= v_start
                  and t.finished_at <= v_now
                group by 1
            ) as c on c.minute = g.minute
        ) as m
    ) as f on true
    where durable._allowed(q.queue, durable._readers())
    order by q.queue;
end;
$$;

comment on function durable.queue_metrics(integer) is
'Metrics of every queue the caller may read, by name, for dashboards and scrapers: how many of its tasks are pending, running, sleeping and waiting now; oldest_pending_seconds, how long the oldest ready pending task (run_at passed) has waited since its run_at (null when none is ready); completed, failed and cancelled, the tasks that ended so in the window, the last p_window_minutes minutes (1 to 1440, default 15) counted in whole minutes, the current minute the last one; completed_per_minute and failed_per_minute, those counts minute by minute (p_window_minutes elements, the oldest minute first, the current one last); concurrency_limit, the queue''s option (null: none), to set against running; window_minutes, p_window_minutes. Each count reads an index holding only the tasks it counts (the finished ones of the window only, by end time). Errors: DU001 (a window out of range).';

grant execute on function durable.queue_metrics(integer) to durable_reader;

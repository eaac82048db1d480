-- restart.sql: the three restarts, never to be confused.
--
--   retry   the same task runs again with its history: recorded events are replayed,
--           not re-executed (a step recorded as failed is re-raised, not re-run);
--   replay  the same task runs again from scratch: a new history generation begins,
--           the old events stay in the log for audit;
--   fork    a new task (same queue, name, input and options) whose history is the old
--           one's events before a chosen seq; it is linked to its origin.
--
-- retry and replay move a finished task back to pending; they are the only ways out of
-- a terminal state: the state machine (finish.sql) lets a terminal task out only in an
-- UPDATE that counts a restart (restarts + 1), which only they write. Each refuses, with
-- DU012, a task in a state where it makes no sense.

-- Moves a terminal task back to pending, with fresh attempt budgets.
create or replace function durable._restart(t durable.tasks, p_new_generation boolean)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    update durable.tasks k
    set status = 'pending',
        restarts = k.restarts + 1,
        run_at = durable.current_time(),
        generation = k.generation + case when p_new_generation then 1 else 0 end,
        failures = 0,
        lost_leases = 0,
        output = null,
        error = null,
        finished_at = null,
        lease_token = null,
        lease_expires_at = null,
        attempt_deadline = null,
        -- a restarted task is on its own: it no longer holds its debounce key (queue.sql)
        debounce_key = null
    where k.task_id = t.task_id;
    perform durable._notify(t.queue);
end;
$$;

comment on function durable._restart(durable.tasks, boolean) is
'Internal: moves a finished task back to pending (new history generation when asked), counting the restart and resetting its failure and lost-lease counts.';

create or replace function durable.retry(p_task uuid)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._locked_task(p_task);
begin
    perform durable._require(t.queue, array['operator'], 'retry tasks');
    if t.status not in ('failed', 'cancelled') then
        raise exception 'durable: only a failed or cancelled task can be retried; task % is %', p_task, t.status
            using errcode = 'DU012',
                  hint = case when t.status = 'completed' then 'use durable.replay() or durable.fork() to run a completed task again'
                              else 'the task has not finished' end;
    end if;
    perform durable._restart(t, false);
end;
$$;

comment on function durable.retry(uuid) is
'Runs a failed or cancelled task again, keeping its history: recorded events are replayed, not re-executed (a step recorded as failed is re-raised; fork before it to run it again). Resets the failure and lost-lease counts. Errors: DU004, DU012 (the task is not failed or cancelled), 42501.';

create or replace function durable.replay(p_task uuid)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._locked_task(p_task);
begin
    perform durable._require(t.queue, array['operator'], 'replay tasks');
    if t.status not in ('completed', 'failed', 'cancelled') then
        raise exception 'durable: only a finished task can be replayed; task % is %', p_task, t.status
            using errcode = 'DU012', hint = 'cancel it first';
    end if;
    perform durable._restart(t, true);
    return t.generation + 1;
end;
$$;

comment on function durable.replay(uuid) is
'Runs a finished (completed, failed or cancelled) task again from scratch: a new history generation starts empty; the events of earlier generations are kept for audit (durable.history(task, true)). Returns the new generation. Errors: DU004, DU012 (the task has not finished), 42501.';

create or replace function durable.fork(p_task uuid, p_at_seq integer)
returns uuid
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_last integer;
    v_new uuid := durable.uuidv7();
    v_now timestamptz := durable.current_time();
    v_queue durable.queues;
    v_row durable.tasks;
begin
    select * into t from durable.tasks k where k.task_id = p_task;
    if not found then
        raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
    end if;
    perform durable._require(t.queue, array['operator'], 'fork tasks');
    if not t.durable then
        raise exception 'durable: task % is not a durable task; only durable tasks have a history to fork', p_task
            using errcode = 'DU012';
    end if;
    select coalesce(max(e.seq), 0) into v_last
    from durable.events e
    where e.task_id = p_task and e.generation = t.generation;
    if p_at_seq is null or p_at_seq < 1 or p_at_seq > v_last + 1 then
        raise exception 'durable: task % has events 1..%; a fork point must be between 1 and %, got %',
            p_task, v_last, v_last + 1, coalesce(p_at_seq::text, 'null')
            using errcode = 'DU001';
    end if;

    -- the new task is created as every task is (durable._create_tasks): its queue's
    -- round_robin tag, cancel strategies and schedule timeout apply. It keeps the options
    -- of its origin, but not its idempotency key (which names the origin) nor its parent
    -- (whose log records only the origin)
    v_queue := durable._queue(t.queue);
    v_row.task_id := v_new;
    v_row.task_name := t.task_name;
    v_row.input := t.input;
    v_row.priority := t.priority;
    v_row.run_at := v_now;
    v_row.max_attempts := t.max_attempts;
    v_row.max_lost_leases := t.max_lost_leases;
    v_row.backoff := t.backoff;
    v_row.timeout_seconds := t.timeout_seconds;
    v_row.schedule_timeout := t.schedule_timeout;
    v_row.schedule_deadline := v_now + make_interval(secs => t.schedule_timeout);
    v_row.created_at := v_now;
    v_row.durable := true;
    v_row.forked_from := p_task;
    v_row.forked_at_seq := p_at_seq;
    v_row.concurrency_key := t.concurrency_key;
    v_row.concurrency_key_limit := t.concurrency_key_limit;
    -- a fork runs the same work again: it stays in its origin's trace
    v_row.trace_context := t.trace_context;
    perform durable._create_tasks(v_queue, array[v_row]);
    insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
    select v_new, 1, e.seq, e.kind, e.name, e.outcome, e.result, e.input_hash, 0, e.recorded_at
    from durable.events e
    where e.task_id = p_task and e.generation = t.generation and e.seq < p_at_seq;
    return v_new;
end;
$$;

comment on function durable.fork(uuid, integer) is
'Creates a new durable task with the same queue, name, input, options and trace context (not its idempotency key, nor its parent) whose history is the events of the given task before p_at_seq (1 forks an empty history; last seq + 1 copies it all), linked to its origin (forked_from, forked_at_seq). The new task re-executes from event p_at_seq on. The original is not changed, whatever its state. Returns the new task id. Errors: DU001 (fork point out of range), DU004, DU012 (not a durable task), 42501.';

grant execute on function durable.retry(uuid) to durable_operator;
grant execute on function durable.replay(uuid) to durable_operator;
grant execute on function durable.fork(uuid, integer) to durable_operator;

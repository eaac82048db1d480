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
-- a terminal state: a finished task lies in the archive (durable.finished_tasks, whose rows
-- are never updated: finish.sql), and only they move it back into durable.tasks, counting
-- a restart (restarts + 1). Each refuses, with
-- DU012, a task in a state where it makes no sense.

-- A finished task, locked (FOR UPDATE: its archive row; a restart moves it), or DU004; a
-- live task is returned as it is (locked), for the verbs to refuse with DU012.
create or replace function durable._locked_finished(p_task uuid)
returns durable.tasks
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_custom_plan
as $$
declare
    t durable.tasks;
    v_key record;
begin
    -- a task that holds an idempotency key: the key's lock first (the lock order, 2: keys
    -- before tasks), so that no enqueue of the key looks for its holder while a restart
    -- moves it from the archive back to durable.tasks (queue.sql, _lock_idempotency_keys)
    select k.queue, k.idempotency_key into v_key from durable.tasks k where k.task_id = p_task;
    if not found then
        select f.queue, f.idempotency_key into v_key from durable.finished_tasks f where f.task_id = p_task;
    end if;
    if v_key.idempotency_key is not null then
        perform durable._lock_idempotency_keys(v_key.queue, array[v_key.idempotency_key]);
    end if;
    select * into t from durable.tasks k where k.task_id = p_task for update;
    if found then
        return t;
    end if;
    select f.* into t from durable.finished_tasks f where f.task_id = p_task for update;
    if found then
        return t;
    end if;
    -- not in the archive any more: a restart that committed while this one waited for the
    -- archive row moved it back (the verbs then refuse a live task, DU012)
    select * into t from durable.tasks k where k.task_id = p_task for update;
    if not found then
        raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
    end if;
    return t;
end;
$$;

comment on function durable._locked_finished(uuid) is
'Internal: locks and returns the task p_task: its row of durable.tasks when it is live, else of durable.finished_tasks; DU004 when there is none. The restart verbs start with it.';

-- Moves a finished task (locked, in the archive) back to durable.tasks as pending, with
-- fresh attempt budgets: the archive row goes, the live row comes (one statement), keeping
-- its place in the FIFO order (seq) and counting the restart.
create or replace function durable._restart(t durable.tasks, p_new_generation boolean)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
begin
    with gone as (
        delete from durable.finished_tasks f
        where f.task_id = t.task_id
        returning f.*
    )
    insert into durable.tasks (
        task_id, seq, queue, task_name, input, status, priority, run_at, attempt, failures,
        lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds, schedule_deadline,
        idempotency_key, worker, lease_token, lease_seconds, lease_expires_at, attempt_deadline,
        started_at, output, error, created_at, finished_at, durable, generation, forked_from,
        forked_at_seq, wake_at, wait_kind, wait_key, wait_seq, wait_children, parent_id, parent_seq,
        concurrency_key, concurrency_key_limit, fair_tag, restarts, schedule_timeout, replayed_to,
        trace_context, debounce_key, debounce_deadline
    )
    overriding system value
    select
           f.task_id, f.seq, f.queue, f.task_name, f.input, 'pending', f.priority, v_now, f.attempt,
           0, 0, f.max_attempts, f.max_lost_leases, f.backoff, f.timeout_seconds,
           f.schedule_deadline, f.idempotency_key, f.worker, null, f.lease_seconds, null, null,
           f.started_at, null, null, f.created_at, null, f.durable,
           f.generation + case when p_new_generation then 1 else 0 end, f.forked_from,
           f.forked_at_seq, f.wake_at, f.wait_kind, f.wait_key, f.wait_seq, f.wait_children,
           f.parent_id, f.parent_seq, f.concurrency_key, f.concurrency_key_limit, f.fair_tag,
           f.restarts + 1, f.schedule_timeout, f.replayed_to, f.trace_context, null,
           f.debounce_deadline
    from gone f;
    perform durable._notify(t.queue);
end;
$$;

comment on function durable._restart(durable.tasks, boolean) is
'Internal: moves a finished task from durable.finished_tasks back to durable.tasks as pending (new history generation when asked), counting the restart and resetting its failure and lost-lease counts, output, error and debounce key.';

create or replace function durable.retry(p_task uuid)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._locked_finished(p_task);
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
    t durable.tasks := durable._locked_finished(p_task);
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
    -- live or finished: the original is not changed
    t := durable._any_task(p_task);
    if t.task_id is null then
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

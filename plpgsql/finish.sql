-- finish.sql: how an attempt ends (complete, fail, cancel) and the state machine that
-- every status change must obey.
--
--     pending  -> running | cancelled
--     running  -> pending (retry, lost lease, release) | completed | failed | cancelled
--                 | sleeping | waiting (a durable task that waits: see suspend.sql)
--     sleeping, waiting -> pending | cancelled
--     completed, failed, cancelled: terminal
--
-- A trigger enforces it, so no function (and no hand-written UPDATE) can move a task
-- out of a terminal state, except an UPDATE that also counts a restart
-- (restarts = restarts + 1), which only the restart verbs write (restart.sql). No
-- setting opens that door: callers can set settings, but cannot write the table.

create or replace function durable._check_transition()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if (old.status = 'pending' and new.status in ('running', 'cancelled'))
        or (old.status = 'running'
            and new.status in ('pending', 'completed', 'failed', 'cancelled', 'sleeping', 'waiting'))
        or (old.status in ('sleeping', 'waiting') and new.status in ('pending', 'cancelled'))
        or (old.status in ('completed', 'failed', 'cancelled') and new.status = 'pending'
            and new.restarts = old.restarts + 1)
    then
        return new;
    end if;
    raise exception 'durable: task % cannot go from % to %', old.task_id, old.status, new.status
        using errcode = 'DU012';
end;
$$;

comment on function durable._check_transition() is
'Trigger: rejects (DU012) any status change of a task outside the state machine pending -> running -> pending/completed/failed/cancelled/sleeping/waiting, sleeping/waiting -> pending/cancelled; terminal tasks only move back to pending in an update that counts a restart (restarts + 1: durable.retry, durable.replay).';

drop trigger if exists tasks_transition on durable.tasks;
create trigger tasks_transition
before update of status on durable.tasks
for each row
when (old.status is distinct from new.status)
execute function durable._check_transition();

-- (force_generic_plan: see "Plans" at the top of common.sql)
create or replace function durable.complete_many(
    p_tasks uuid[], p_lease_tokens uuid[], p_outputs jsonb[] default null, p_consumed integer[] default null
)
returns table (task_id uuid, ok boolean, reason text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
declare
    v_now timestamptz := durable.current_time();
    -- queue permissions (security.sql): nothing to check while no grant exists
    v_restricted boolean := exists (select 1 from durable.queue_grants);
begin
    if p_tasks is null or p_lease_tokens is null
        or cardinality(p_tasks) <> cardinality(p_lease_tokens)
        or (p_outputs is not null and cardinality(p_outputs) <> cardinality(p_tasks))
        or (p_consumed is not null and cardinality(p_consumed) <> cardinality(p_tasks)) then
        raise exception 'durable: complete_many takes arrays of equal length (tasks, lease tokens, outputs)'
            using errcode = 'DU001';
    end if;
    perform durable._check_payload(o, 'task output') from unnest(p_outputs) as o where o is not null;

    return query
    with batch as (
        select u.task_id, u.token, u.output, u.consumed, u.ord
        from unnest(
            p_tasks, p_lease_tokens,
            coalesce(p_outputs, array_fill(null::jsonb, array[cardinality(p_tasks)])),
            coalesce(p_consumed, array_fill(null::integer, array[cardinality(p_tasks)]))
        ) with ordinality as u (task_id, token, output, consumed, ord)
    ),
    done as (
        update durable.tasks t
        set status = 'completed',
            output = b.output,
            error = null,
            finished_at = v_now,
            lease_expires_at = null,
            attempt_deadline = null
        from batch b
        where t.task_id = b.task_id
          and t.lease_token = b.token
          and t.status = 'running'
          and t.lease_expires_at > v_now
          and (not v_restricted or durable._allowed(t.queue, array['worker']))
          -- a durable task must have consumed its whole recorded history
          and (not t.durable or coalesce(b.consumed, 0) >= coalesce((
              select e.seq from durable.events e
              where e.task_id = t.task_id and e.generation = t.generation
              order by e.seq desc
              limit 1
          ), 0))
        returning t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at
    ),
    recorded as (
        insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome)
        select d.task_id, d.attempt, d.queue, d.worker, d.lease_token, d.started_at, v_now, 'completed'
        from done d
        returning attempts.task_id, attempts.lease_token
    )
    select b.task_id,
           r.task_id is not null,
           case
               when r.task_id is not null then 'completed'
               when k.task_id is null then 'unknown_task'
               when v_restricted and not durable._allowed(k.queue, array['worker']) then 'permission_denied'
               when k.status = 'cancelled' and k.lease_token = b.token then 'cancelled'
               when k.status = 'running' and k.lease_token = b.token and k.lease_expires_at > v_now
                   and k.durable then 'history_not_consumed'
               else 'lease_lost'
           end
    from batch b
    -- by token too: the same task twice in a batch, once with a dead token, is rejected there
    left join recorded r on r.task_id = b.task_id and r.lease_token = b.token
    left join durable.tasks k on r.task_id is null and k.task_id = b.task_id
    order by b.ord;
end;
$$;

comment on function durable.complete_many(uuid[], uuid[], jsonb[], integer[]) is
'Completes a batch of attempts in one statement: element i of each array is a task, its lease token and its output. Element i of p_consumed is, for a durable task, how many recorded events its code went through: a durable task that completes with recorded events left unconsumed is a non-determinism. Returns, in order, whether each was accepted and why not (lease_lost, cancelled, unknown_task, history_not_consumed, permission_denied: the caller may not work on the task''s queue); a rejected element changes nothing and does not stop the others. Errors: DU001, DU003.';

create or replace function durable.complete(
    p_task uuid, p_lease_token uuid, p_output jsonb default null, p_consumed integer default null
)
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_reason text;
    e durable.events;
begin
    if p_task is null or p_lease_token is null then
        raise exception 'durable: task id and lease token are required' using errcode = 'DU001';
    end if;
    select c.reason into v_reason
    from durable.complete_many(array[p_task], array[p_lease_token], array[p_output], array[p_consumed]) as c;
    if v_reason = 'completed' then
        return;
    end if;
    -- not accepted: the fence says why, with the same errors as every other worker verb
    perform durable._fenced(p_task, p_lease_token);
    if v_reason = 'history_not_consumed' then
        select ev.* into e
        from durable.events ev
        join durable.tasks t on t.task_id = ev.task_id and t.generation = ev.generation
        where ev.task_id = p_task and ev.seq > coalesce(p_consumed, 0)
        order by ev.seq
        limit 1;
        perform durable._nondeterminism(
            p_task, e.seq, jsonb_build_object('kind', e.kind, 'name', e.name, 'input_hash', e.input_hash), null
        );
    end if;
    raise exception 'durable: task % was not completed (%)', p_task, v_reason using errcode = 'DU010';
end;
$$;

comment on function durable.complete(uuid, uuid, jsonb, integer) is
'Ends the live attempt of a task as completed with p_output. For a durable task, p_consumed is how many recorded events the code went through: completing with recorded events left over raises DU020 (non-determinism). Errors: DU010 the lease is not live (expired, reclaimed, ended), DU011 the task was cancelled, DU020, DU004 unknown task, DU003 output too large, 42501; none of them changes anything.';

create or replace function durable.fail(
    p_task uuid, p_lease_token uuid, p_error jsonb, p_retryable boolean default true
)
returns table (status text, run_at timestamptz)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
begin
    if p_error is null or jsonb_typeof(p_error) <> 'object' then
        raise exception 'durable: error must be a JSON object such as {"type": ..., "message": ...}, got %',
            coalesce(jsonb_typeof(p_error), 'null')
            using errcode = 'DU001';
    end if;
    perform durable._check_payload(p_error, 'task error');
    t := durable._end_attempt_unsuccessfully(
        t, durable.current_time(), 'failed', p_error, coalesce(p_retryable, true)
    );
    return query select t.status, case when t.status = 'pending' then t.run_at end;
end;
$$;

comment on function durable.fail(uuid, uuid, jsonb, boolean) is
'Ends the live attempt of a task as failed with p_error (a JSON object, e.g. {"type","message","traceback"}). The task is retried after its backoff while failures < max_attempts and p_retryable; otherwise it ends failed. Returns the new status and, when retried, when. Errors: DU001, DU003, DU004, DU010, DU011, 42501.';

create or replace function durable._cancel(p_task uuid, p_reason text)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_now timestamptz := durable.current_time();
    v_error jsonb;
begin
    v_error := jsonb_build_object('type', 'Cancelled', 'message', coalesce(p_reason, 'cancelled'));
    -- lock the unfinished descendants first, deepest first, and the task last: a child
    -- that ends locks its own row, then its parent's (durable._child_ended), so taking
    -- the locks in that same order cannot deadlock with it
    perform 1
    from durable.tasks k
    join (
        with recursive tree (task_id, depth) as (
            select c.task_id, 1 from durable.tasks c
            where c.parent_id = p_task and c.status not in ('completed', 'failed', 'cancelled')
            union all
            select c.task_id, tree.depth + 1 from durable.tasks c join tree on c.parent_id = tree.task_id
            where c.status not in ('completed', 'failed', 'cancelled')
        )
        select tree.task_id, tree.depth from tree
    ) as d on d.task_id = k.task_id
    order by d.depth desc, k.task_id
    for update of k;
    t := durable._locked_task(p_task);
    if t.status = 'cancelled' then
        return false;
    end if;
    if t.status in ('completed', 'failed') then
        raise exception 'durable: task % is already %; only an unfinished task can be cancelled', p_task, t.status
            using errcode = 'DU012';
    end if;
    if t.status = 'running' then
        insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
        values (t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at, v_now, 'cancelled', v_error);
    end if;
    update durable.tasks k
    set status = 'cancelled', error = v_error, finished_at = v_now,
        lease_expires_at = null, attempt_deadline = null,
        wake_at = null, wait_kind = null, wait_key = null, wait_seq = null, wait_children = null
    where k.task_id = p_task;
    -- cascade to the unfinished children (and theirs)
    perform durable._cancel(c.task_id, format('parent task %s was cancelled', p_task))
    from durable.tasks c
    where c.parent_id = p_task and c.status not in ('completed', 'failed', 'cancelled');
    return true;
end;
$$;

comment on function durable._cancel(uuid, text) is
'Internal: durable.cancel without the caller''s checks (the cascade to children and the cancel strategies of limits.sql call it).';

create or replace function durable.cancel(p_task uuid, p_reason text default null)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue text;
begin
    perform durable._check_reason(p_reason);
    select k.queue into v_queue from durable.tasks k where k.task_id = p_task;
    if not found then
        raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
    end if;
    perform durable._require(v_queue, array['operator'], 'cancel tasks');
    -- the cancel cascades to the unfinished descendants: every one of their queues must be
    -- the caller's to cancel in too (nothing to check while no queue grant exists)
    if exists (select 1 from durable.queue_grants) then
        select d.queue into v_queue
        from (
            with recursive tree (task_id, queue) as (
                select c.task_id, c.queue from durable.tasks c
                where c.parent_id = p_task and c.status not in ('completed', 'failed', 'cancelled')
                union all
                select c.task_id, c.queue from durable.tasks c join tree on c.parent_id = tree.task_id
                where c.status not in ('completed', 'failed', 'cancelled')
            )
            select distinct tree.queue from tree
        ) as d
        where not durable._allowed(d.queue, array['operator'])
        limit 1;
        if found then
            raise exception 'durable: permission denied: task % has unfinished descendants in queue %, where role % may not cancel',
                p_task, durable._quote(v_queue), durable._caller()
                using errcode = '42501';
        end if;
    end if;
    return durable._cancel(p_task, p_reason);
end;
$$;

comment on function durable.cancel(uuid, text) is
'Cancels an unfinished task (pending, running, sleeping or waiting) and, recursively, its unfinished children. A pending task will never run; the worker of a running one learns it at its next call (heartbeat, checkpoint, complete, fail: SQLSTATE DU011). Returns false when the task was already cancelled. p_reason (at most 2,000 characters) goes into the task''s error. The caller needs operator on the queue of the task and of every unfinished descendant. Errors: DU003, DU004 unknown task, DU012 the task already completed or failed, 42501.';

grant execute on function durable.complete_many(uuid[], uuid[], jsonb[], integer[]) to durable_worker;
grant execute on function durable.complete(uuid, uuid, jsonb, integer) to durable_worker;
grant execute on function durable.fail(uuid, uuid, jsonb, boolean) to durable_worker;
grant execute on function durable.cancel(uuid, text) to durable_operator;

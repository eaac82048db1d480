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

-- (force_generic_plan and enable_seqscan: see "Plans" at the top of common.sql)
create or replace function durable.complete_many(
    p_tasks uuid[], p_lease_tokens uuid[], p_outputs jsonb[] default null
)
returns table (task_id uuid, ok boolean, reason text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
declare
    v_now timestamptz := durable.current_time();
    -- queue permissions (security.sql): nothing to check while no grant exists
    v_restricted boolean := exists (select 1 from durable.queue_grants);
    v_ids uuid[];
    v_oks boolean[];
    v_reasons text[];
    v_task durable.tasks;
    v_event durable.events;
    -- a parameter, not a literal: see "Pinned" below
    v_running text := 'running';
begin
    if p_tasks is null or p_lease_tokens is null
        or cardinality(p_tasks) <> cardinality(p_lease_tokens)
        or (p_outputs is not null and cardinality(p_outputs) <> cardinality(p_tasks)) then
        raise exception 'durable: complete_many takes arrays of equal length (tasks, lease tokens, outputs)'
            using errcode = 'DU001';
    end if;
    perform durable._check_payload(o, 'task output') from unnest(p_outputs) as o where o is not null;
    -- lock the tasks first, oldest first (the lock order, plpgsql/README.md), so that
    -- batches in other orders, cancels and the cancel strategies wait for each other
    -- instead of deadlocking; and so that the update below sees each task as it is once
    -- locked
    perform 1 from durable.tasks k
    where k.task_id = any(p_tasks)
    order by k.task_id
    for update;

    with given as (
        select u.task_id, u.token, u.output, u.ord,
               -- a task given twice with its token is completed by its first element only
               row_number() over (partition by u.task_id, u.token order by u.ord) as nth
        from unnest(
            p_tasks, p_lease_tokens, coalesce(p_outputs, array_fill(null::jsonb, array[cardinality(p_tasks)]))
        ) with ordinality as u (task_id, token, output, ord)
    ),
    batch as (
        select g.task_id, g.token, g.output, g.ord from given g where g.nth = 1
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
        -- Pinned: the status is compared with a variable, so that no partial index on
        -- status = 'running' (tasks_lease_idx, tasks_worker_idx) matches: each task is
        -- found by its key. A scan of such an index walks the entry of every task that
        -- ran since the xmin horizon was pinned (a transaction left open elsewhere), dead
        -- but not removable: 2,800 buffers a batch after 20,000 tasks.
        where t.task_id = b.task_id
          and t.lease_token = b.token
          and t.status = v_running
          and t.lease_expires_at > v_now
          and (not v_restricted or durable._allowed(t.queue, array['worker']))
          -- a durable task's code went through its whole history: every event recorded by
          -- this attempt, or checked by its re-run
          and (not t.durable or coalesce((
              select l.attempt = t.attempt or t.replayed_to >= l.seq from durable.events l
              where l.task_id = t.task_id and l.generation = t.generation
              order by l.seq desc
              limit 1
          ), true))
        returning t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at
    ),
    recorded as (
        insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome)
        select d.task_id, d.attempt, d.queue, d.worker, d.lease_token, d.started_at, v_now, 'completed'
        from done d
        returning attempts.task_id, attempts.lease_token
    )
    select array_agg(b.task_id order by b.ord),
           array_agg(b.nth = 1 and r.task_id is not null order by b.ord),
           array_agg(
               case
                   when b.nth > 1 then 'duplicate'
                   when r.task_id is not null then 'completed'
                   when k.task_id is null then 'unknown_task'
                   when v_restricted and not durable._allowed(k.queue, array['worker']) then 'permission_denied'
                   when k.status = 'cancelled' and k.lease_token = b.token then 'cancelled'
                   when k.status = 'running' and k.lease_token = b.token and k.lease_expires_at > v_now
                       and k.durable then 'nondeterminism'
                   else 'lease_lost'
               end
               order by b.ord)
    into v_ids, v_oks, v_reasons
    from given b
    -- by token too: the same task twice in a batch, once with a dead token, is rejected there
    left join recorded r on b.nth = 1 and r.task_id = b.task_id and r.lease_token = b.token
    left join durable.tasks k on r.task_id is null and k.task_id = b.task_id;

    -- a durable task that completes without having gone through its history: the code no
    -- longer matches it; the task is failed (not retryable) here, so that no client retries
    -- (nothing to look up in the usual batch, which has none)
    if 'nondeterminism' = any(v_reasons) then
        for v_task in
            select k.* from durable.tasks k
            where k.task_id in (select u.id from unnest(v_ids, v_reasons) as u (id, reason) where u.reason = 'nondeterminism')
              and k.status = v_running
            order by k.task_id
        loop
            select * into v_event from durable.events l
            where l.task_id = v_task.task_id and l.generation = v_task.generation and l.seq = v_task.replayed_to + 1;
            perform durable._nondeterminism(
                v_task, v_task.replayed_to + 1,
                jsonb_build_object('kind', v_event.kind, 'name', v_event.name, 'input_hash', v_event.input_hash), null
            );
        end loop;
    end if;
    return query select u.id, u.ok, u.reason from unnest(v_ids, v_oks, v_reasons) as u (id, ok, reason);
end;
$$;

comment on function durable.complete_many(uuid[], uuid[], jsonb[]) is
'Completes a batch of attempts in one statement: element i of each array is a task, its lease token and its output. Returns, in order, whether each was accepted and why not (lease_lost, cancelled, unknown_task, permission_denied: the caller may not work on the task''s queue, duplicate: the task was given earlier in the batch with the same token, and that element alone counts, nondeterminism: a durable task whose code finished without going through its whole history, i.e. its recorded events were not all recorded or checked (durable.replay_check) in this attempt: the task has been failed, not retryable); a rejected element changes nothing else and does not stop the others. Errors: DU001, DU003.';

create or replace function durable.complete(p_task uuid, p_lease_token uuid, p_output jsonb default null)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_reason text;
    t durable.tasks;
begin
    if p_task is null or p_lease_token is null then
        raise exception 'durable: task id and lease token are required' using errcode = 'DU001';
    end if;
    select c.reason into v_reason
    from durable.complete_many(array[p_task], array[p_lease_token], array[p_output]) as c;
    if v_reason = 'completed' then
        return jsonb_build_object('completed', true);
    end if;
    if v_reason = 'nondeterminism' then
        select * into t from durable.tasks k where k.task_id = p_task;
        return jsonb_build_object('nondeterminism', jsonb_build_object(
            'task_id', p_task, 'seq', t.error -> 'seq', 'recorded', t.error -> 'recorded',
            'presented', t.error -> 'presented', 'message', t.error -> 'message'));
    end if;
    -- not accepted: the fence says why, with the same errors as every other worker verb
    perform durable._fenced(p_task, p_lease_token);
    raise exception 'durable: task % was not completed (%)', p_task, v_reason using errcode = 'DU010';
end;
$$;

comment on function durable.complete(uuid, uuid, jsonb) is
'Ends the live attempt of a task as completed with p_output; returns {"completed": true}. A durable task must have gone through its whole history: every recorded event recorded by this attempt or checked by its re-run (durable.replay_check); otherwise the code no longer matches it, the task is failed (not retryable) and {"nondeterminism": {task_id, seq, recorded, presented, message}} is returned. Errors: DU010 the lease is not live (expired, reclaimed, ended), DU011 the task was cancelled, DU020 the attempt''s task was failed on a non-determinism, DU004 unknown task, DU003 output too large, 42501; none of them changes anything.';

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
    return query
    select e.status, case when e.status = 'pending' then e.run_at end
    from durable._end_attempts(array[t.task_id], array['failed'], array[p_error], array[coalesce(p_retryable, true)]) as e;
end;
$$;

comment on function durable.fail(uuid, uuid, jsonb, boolean) is
'Ends the live attempt of a task as failed with p_error (a JSON object, e.g. {"type","message","traceback"}). The task is retried after its backoff while failures < max_attempts and p_retryable; otherwise it ends failed. Returns the new status and, when retried, when. Errors: DU001, DU003, DU004, DU010, DU011, DU020, 42501.';

-- Locks trees of tasks for a cancel: the roots and their unfinished descendants, and the
-- tasks p_also, oldest first (the lock order, plpgsql/README.md: parents before their
-- children). A child spawned meanwhile by a task of the tree (it held its row, so the
-- lock waited for it) is found by the next pass; it is newer than everything locked, so
-- the order holds. Returns the tasks locked.
create or replace function durable._lock_trees(p_roots uuid[], p_also uuid[] default '{}'::uuid[])
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_locked uuid[] := '{}'::uuid[];
    v_tree uuid[];
begin
    loop
        with recursive tree (task_id) as (
            select r.id from unnest(p_roots) as r (id)
            union
            select c.task_id from durable.tasks c
            join tree on c.parent_id = tree.task_id
            where c.status not in ('completed', 'failed', 'cancelled')
        )
        select coalesce(array_agg(x.task_id), '{}'::uuid[]) into v_tree
        from (
            select tree.task_id from tree
            union
            select a.id from unnest(p_also) as a (id)
        ) as x
        where x.task_id <> all(v_locked);
        exit when cardinality(v_tree) = 0;
        perform 1 from durable.tasks k where k.task_id = any(v_tree) order by k.task_id for update;
        v_locked := v_locked || v_tree;
    end loop;
    return v_locked;
end;
$$;

comment on function durable._lock_trees(uuid[], uuid[]) is
'Internal: locks, oldest first, the given tasks and their unfinished descendants (and the tasks p_also, without their descendants), again until no new descendant shows up; returns what it locked.';

-- Cancels trees of tasks in one pass: each unfinished root with p_reasons[i], and every
-- unfinished descendant ("parent task ... was cancelled"). Finished roots are left as
-- they are. Returns the roots it cancelled.
create or replace function durable._cancel_trees(p_roots uuid[], p_reasons text[])
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_tasks uuid[];
    v_errors jsonb[];
    v_cancelled uuid[];
begin
    perform durable._lock_trees(p_roots);
    -- what to cancel, as it is now that it is locked: the unfinished roots and their
    -- unfinished descendants, each with its error
    with recursive tree (task_id, error, is_root) as (
        select k.task_id,
               jsonb_build_object('type', 'Cancelled', 'message', coalesce(r.reason, 'cancelled')),
               true
        from unnest(p_roots, p_reasons) as r (id, reason)
        join durable.tasks k on k.task_id = r.id
        where k.status not in ('completed', 'failed', 'cancelled')
        union
        select c.task_id,
               jsonb_build_object('type', 'Cancelled', 'message', format('parent task %s was cancelled', c.parent_id)),
               false
        from durable.tasks c
        join tree on c.parent_id = tree.task_id
        where c.status not in ('completed', 'failed', 'cancelled')
    )
    select array_agg(d.task_id order by d.task_id),
           array_agg(d.error order by d.task_id),
           array_agg(d.task_id) filter (where d.is_root)
    into v_tasks, v_errors, v_cancelled
    from (
        select distinct on (tree.task_id) tree.task_id, tree.error, tree.is_root
        from tree
        order by tree.task_id, tree.is_root desc
    ) as d;
    if v_tasks is null then
        return '{}'::uuid[];
    end if;
    insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
    select k.task_id, k.attempt, k.queue, k.worker, k.lease_token, k.started_at, v_now, 'cancelled', c.error
    from unnest(v_tasks, v_errors) as c (task_id, error)
    join durable.tasks k on k.task_id = c.task_id
    where k.status = 'running';
    delete from durable.child_waits w where w.parent_id = any(v_tasks);
    delete from durable.wait_counts w where w.parent_id = any(v_tasks);
    update durable.tasks k
    set status = 'cancelled', error = c.error, finished_at = v_now,
        lease_expires_at = null, attempt_deadline = null,
        wake_at = null, wait_kind = null, wait_key = null, wait_seq = null, wait_children = null
    from unnest(v_tasks, v_errors) as c (task_id, error)
    where k.task_id = c.task_id;
    return coalesce(v_cancelled, '{}'::uuid[]);
end;
$$;

comment on function durable._cancel_trees(uuid[], text[]) is
'Internal: cancels, in one pass, the unfinished tasks among p_roots (with p_reasons) and all their unfinished descendants, after locking them oldest first; finished roots are left alone. Running ones get an attempt row (their workers learn it at their next call: DU011). Returns the roots it cancelled.';

create or replace function durable.cancel(p_task uuid, p_reason text default null)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue text;
    v_status text;
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
    perform durable._lock_trees(array[p_task]);
    select k.status into v_status from durable.tasks k where k.task_id = p_task;
    if v_status = 'cancelled' then
        return false;
    end if;
    if v_status in ('completed', 'failed') then
        raise exception 'durable: task % is already %; only an unfinished task can be cancelled', p_task, v_status
            using errcode = 'DU012';
    end if;
    perform durable._cancel_trees(array[p_task], array[p_reason]);
    return true;
end;
$$;

comment on function durable.cancel(uuid, text) is
'Cancels an unfinished task (pending, running, sleeping or waiting) and, recursively, its unfinished children. A pending task will never run; the worker of a running one learns it at its next call (heartbeat, checkpoint, complete, fail: SQLSTATE DU011). Returns false when the task was already cancelled. p_reason (at most 2,000 characters) goes into the task''s error. The caller needs operator on the queue of the task and of every unfinished descendant. Errors: DU003, DU004 unknown task, DU012 the task already completed or failed, 42501.';

grant execute on function durable.complete_many(uuid[], uuid[], jsonb[]) to durable_worker;
grant execute on function durable.complete(uuid, uuid, jsonb) to durable_worker;
grant execute on function durable.fail(uuid, uuid, jsonb, boolean) to durable_worker;
grant execute on function durable.cancel(uuid, text) to durable_operator;

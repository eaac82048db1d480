-- finish.sql: how an attempt ends (complete, fail, cancel) and the state machine that
-- every status change must obey.
--
--     pending  -> running | cancelled
--     running  -> pending (retry, lost lease, release) | completed | failed | cancelled
--                 | sleeping | waiting (a durable task that waits: see suspend.sql)
--     sleeping, waiting -> pending | cancelled
--     completed, failed, cancelled: terminal
--
-- ## The archive
-- durable.tasks holds the live tasks only (its status check says so). A task that reaches a
-- final status leaves it: durable._finish_tasks, the one place where tasks finish (complete,
-- complete_many, a final failure, a cancel and its tree, a schedule timeout, a
-- non-determinism, the cancel strategies), moves its row into durable.finished_tasks (one
-- DELETE ... RETURNING into one INSERT), partitioned by day like the history
-- (migrations/0020_finished_tasks.sql), so that retention drops a day of finished tasks
-- with its attempts and events (retention.sql). Only the restart verbs bring a finished
-- task back (restart.sql: retry and replay move it back, counting a restart); the archive's
-- rows are never updated (a trigger refuses it, DU012). The live paths (claim, heartbeat,
-- checkpoint, complete) never read the archive but on their error paths: their plans do
-- not grow with the number of days.
--
-- A trigger enforces the state machine on durable.tasks: a status change outside it, or an
-- UPDATE to a final status (which must go through durable._finish_tasks), raises DU012.

create or replace function durable._check_transition()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if (old.status = 'pending' and new.status = 'running')
        or (old.status = 'running' and new.status in ('pending', 'sleeping', 'waiting'))
        or (old.status in ('sleeping', 'waiting') and new.status = 'pending')
    then
        return new;
    end if;
    raise exception 'durable: task % cannot go from % to %', old.task_id, old.status, new.status
        using errcode = 'DU012',
              hint = case when new.status in ('completed', 'failed', 'cancelled')
                          then 'a task finishes by moving to durable.finished_tasks (durable._finish_tasks)'
                          else '' end;
end;
$$;

comment on function durable._check_transition() is
'Trigger: rejects (DU012) any status change of a live task outside the state machine pending -> running -> pending/sleeping/waiting, sleeping/waiting -> pending; a task reaches a final status only by moving to durable.finished_tasks (durable._finish_tasks), and leaves it only by durable.retry and durable.replay.';

drop trigger if exists tasks_transition on durable.tasks;
create trigger tasks_transition
before update of status on durable.tasks
for each row
when (old.status is distinct from new.status)
execute function durable._check_transition();

-- The one place where tasks finish: moves the given tasks (locked by the caller) out of
-- durable.tasks into the archive, durable.finished_tasks, with status p_statuses[i]
-- (completed: output p_outputs[i]; failed, cancelled: error p_errors[i]), in one DELETE ...
-- RETURNING into one INSERT. A task still running gets its attempt row (outcome
-- p_outcomes[i], none when null). completed and failed end only a running task; cancelled
-- any live one; the others are left as they are. The triggers of the archive see each
-- task arrive (a child that ends counts its parent's wait down: suspend.sql). Returns how
-- many tasks it moved.
create or replace function durable._finish_tasks(
    p_tasks uuid[], p_statuses text[], p_outputs jsonb[], p_errors jsonb[], p_outcomes text[], p_now timestamptz,
    p_attempt_errors jsonb[] default null
)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_n integer := cardinality(p_tasks);
    v_moved integer;
begin
    with given as (
        select u.task_id, u.status, u.output, u.error, u.outcome, coalesce(u.attempt_error, u.error) as attempt_error
        from unnest(
            p_tasks, p_statuses,
            coalesce(p_outputs, array_fill(null::jsonb, array[v_n])),
            coalesce(p_errors, array_fill(null::jsonb, array[v_n])),
            coalesce(p_outcomes, array_fill(null::text, array[v_n])),
            coalesce(p_attempt_errors, array_fill(null::jsonb, array[v_n]))
        ) as u (task_id, status, output, error, outcome, attempt_error)
    ),
    gone as (
        delete from durable.tasks t
        using given g
        where t.task_id = g.task_id
          and (g.status = 'cancelled' or (g.status in ('completed', 'failed') and t.status = 'running'))
        returning
            t.task_id, t.seq, t.queue, t.task_name, t.input, t.status, t.priority, t.run_at,
            t.attempt, t.failures, t.lost_leases, t.max_attempts, t.max_lost_leases, t.backoff,
            t.timeout_seconds, t.schedule_deadline, t.idempotency_key, t.worker, t.lease_token,
            t.lease_seconds, t.lease_expires_at, t.attempt_deadline, t.started_at, t.output,
            t.error, t.created_at, t.finished_at, t.durable, t.generation, t.forked_from,
            t.forked_at_seq, t.wake_at, t.wait_kind, t.wait_key, t.wait_seq, t.wait_children,
            t.parent_id, t.parent_seq, t.concurrency_key, t.concurrency_key_limit, t.fair_tag,
            t.restarts, t.schedule_timeout, t.replayed_to, t.trace_context, t.debounce_key,
            t.debounce_deadline,
            g.status as new_status, g.output as new_output, g.error as new_error, g.outcome as new_outcome,
            g.attempt_error as new_attempt_error
    ),
    recorded as (
        insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
        select d.task_id, d.attempt, d.queue, d.worker, d.lease_token, d.started_at, p_now, d.new_outcome,
               case when d.new_status = 'completed' then null else d.new_attempt_error end
        from gone d
        where d.status = 'running' and d.new_outcome is not null
    )
    insert into durable.finished_tasks (
        task_id, seq, queue, task_name, input, status, priority, run_at, attempt, failures,
        lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds, schedule_deadline,
        idempotency_key, worker, lease_token, lease_seconds, lease_expires_at, attempt_deadline,
        started_at, output, error, created_at, finished_at, durable, generation, forked_from,
        forked_at_seq, wake_at, wait_kind, wait_key, wait_seq, wait_children, parent_id, parent_seq,
        concurrency_key, concurrency_key_limit, fair_tag, restarts, schedule_timeout, replayed_to,
        trace_context, debounce_key, debounce_deadline
    )
    select
           d.task_id, d.seq, d.queue, d.task_name, d.input, d.new_status, d.priority, d.run_at,
           d.attempt,
           d.failures + case when d.new_outcome in ('failed', 'timed_out') then 1 else 0 end,
           d.lost_leases + case when d.new_outcome = 'lease_expired' then 1 else 0 end,
           d.max_attempts, d.max_lost_leases, d.backoff,
           d.timeout_seconds, d.schedule_deadline, d.idempotency_key, d.worker, d.lease_token,
           d.lease_seconds, null, null, d.started_at,
           case when d.new_status = 'completed' then d.new_output else d.output end,
           case when d.new_status = 'completed' then null else d.new_error end, d.created_at, p_now,
           d.durable, d.generation, d.forked_from, d.forked_at_seq, null, null, null, null, null,
           d.parent_id, d.parent_seq, d.concurrency_key, d.concurrency_key_limit, d.fair_tag,
           d.restarts, d.schedule_timeout, d.replayed_to, d.trace_context, d.debounce_key,
           d.debounce_deadline
    from gone d;
    get diagnostics v_moved = row_count;
    return v_moved;
end;
$$;

comment on function durable._finish_tasks(uuid[], text[], jsonb[], jsonb[], text[], timestamptz, jsonb[]) is
'Internal: the one place where tasks finish. Moves the given (locked) tasks from durable.tasks into durable.finished_tasks with the final status p_statuses[i] (completed with output p_outputs[i]; failed or cancelled with error p_errors[i]) and end time p_now, recording the attempt of a running one (outcome p_outcomes[i], none when null; its error p_attempt_errors[i], default the task''s), counted as a failure (outcomes failed, timed_out) or a lost lease (lease_expired); completed and failed apply only to a running task, cancelled to any live one. Returns how many it moved.';

-- The archive's rows are never updated: a finished task leaves it only by a restart (a
-- move back, restart.sql) or retention.
create or replace function durable._reject_finished_change()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    raise exception 'durable: task % is %; a finished task is not changed', old.task_id, old.status
        using errcode = 'DU012', hint = 'durable.retry() or durable.replay() run it again';
end;
$$;

comment on function durable._reject_finished_change() is
'Trigger: the rows of durable.finished_tasks are never updated (DU012); retry and replay move a task back to durable.tasks.';

drop trigger if exists finished_tasks_immutable on durable.finished_tasks;
create trigger finished_tasks_immutable
before update on durable.finished_tasks
for each row
execute function durable._reject_finished_change();

-- A task by id wherever it is: durable.tasks (live), else the archive. The archive's look-up
-- is planned with its id (force_custom_plan), so that it reads and locks one day's partition.
create or replace function durable._archived_task(p_task uuid)
returns durable.tasks
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_custom_plan
as $$
declare
    t durable.tasks;
begin
    select f.* into t from durable.finished_tasks f where f.task_id = p_task;
    return t;
end;
$$;

comment on function durable._archived_task(uuid) is
'Internal: the finished task p_task from durable.finished_tasks (a row of nulls when there is none), read from its day''s partition only.';

create or replace function durable._any_task(p_task uuid)
returns durable.tasks
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
begin
    select * into t from durable.tasks k where k.task_id = p_task;
    if not found then
        t := durable._archived_task(p_task);
    end if;
    return t;
end;
$$;

comment on function durable._any_task(uuid) is
'Internal: the task p_task, live (durable.tasks) or finished (durable.finished_tasks); a row of nulls when there is none. Takes no lock.';

-- Whether a durable task's code went through its whole history: its last event of the
-- generation recorded by this attempt, or checked by its re-run (durable.replay_check); no
-- event: yes. By the task's id as a parameter: the plan sets up the scan of its day's
-- partition of durable.events alone, whatever the number of days.
create or replace function durable._history_gone_through(
    p_task uuid, p_generation integer, p_attempt integer, p_replayed_to integer
)
returns boolean
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
begin
    return coalesce((
        select l.attempt = p_attempt or p_replayed_to >= l.seq from durable.events l
        where l.task_id = p_task and l.generation = p_generation
        order by l.seq desc
        limit 1
    ), true);
end;
$$;

comment on function durable._history_gone_through(uuid, integer, integer, integer) is
'Internal: true when the last event of generation p_generation of task p_task was recorded by attempt p_attempt or checked by its re-run (seq <= p_replayed_to), or when there is none: a durable task may then complete (durable.complete_many).';

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
    v_done uuid[];
    v_done_tokens uuid[];
    v_done_outputs jsonb[];
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

    -- the accepted elements: the first of each (task, token) whose token is the task's live
    -- lease, and whose durable code went through its whole history
    with given as (
        select u.task_id, u.token, u.output, u.ord,
               -- a task given twice with its token is completed by its first element only
               row_number() over (partition by u.task_id, u.token order by u.ord) as nth
        from unnest(
            p_tasks, p_lease_tokens, coalesce(p_outputs, array_fill(null::jsonb, array[cardinality(p_tasks)]))
        ) with ordinality as u (task_id, token, output, ord)
    )
    select array_agg(b.task_id order by b.task_id), array_agg(b.token order by b.task_id),
           array_agg(b.output order by b.task_id)
    into v_done, v_done_tokens, v_done_outputs
    from given b
    join durable.tasks t on t.task_id = b.task_id
    -- Pinned: the status is compared with a variable, so that no partial index on
    -- status = 'running' (tasks_lease_idx, tasks_worker_idx) matches: each task is
    -- found by its key. A scan of such an index walks the entry of every task that
    -- ran since the xmin horizon was pinned (a transaction left open elsewhere), dead
    -- but not removable: 2,800 buffers a batch after 20,000 tasks.
    where b.nth = 1
      and t.lease_token = b.token
      and t.status = v_running
      and t.lease_expires_at > v_now
      and (not v_restricted or durable._allowed(t.queue, array['worker']))
      -- a durable task's code went through its whole history (durable._history_gone_through:
      -- a function, so that this statement's plan holds no scan of durable.events, whose
      -- every day's partition it would set up at each call)
      and case when t.durable then durable._history_gone_through(t.task_id, t.generation, t.attempt, t.replayed_to)
               else true end;
    if v_done is not null then
        -- into the archive, with their attempts (the one way a task finishes)
        perform durable._finish_tasks(
            v_done, array_fill('completed'::text, array[cardinality(v_done)]), v_done_outputs, null,
            array_fill('completed'::text, array[cardinality(v_done)]), v_now
        );
    end if;

    select array_agg(b.task_id order by b.ord),
           array_agg(b.nth = 1 and b.done order by b.ord),
           array_agg(
               case
                   when b.nth > 1 then 'duplicate'
                   when b.done then 'completed'
                   when (b.k).task_id is null then 'unknown_task'
                   when v_restricted and not durable._allowed((b.k).queue, array['worker']) then 'permission_denied'
                   when (b.k).status = 'cancelled' and (b.k).lease_token = b.token then 'cancelled'
                   when (b.k).status = 'running' and (b.k).lease_token = b.token and (b.k).lease_expires_at > v_now
                       and (b.k).durable then 'nondeterminism'
                   else 'lease_lost'
               end
               order by b.ord)
    into v_ids, v_oks, v_reasons
    from (
        select g.task_id, g.token, g.ord, g.nth, r.task_id is not null as done,
               -- a rejected element's task, live or finished (only for those: the archive is
               -- read on this path alone)
               case when r.task_id is null then durable._any_task(g.task_id) end as k
        from (
            select u.task_id, u.token, u.ord,
                   row_number() over (partition by u.task_id, u.token order by u.ord) as nth
            from unnest(p_tasks, p_lease_tokens) with ordinality as u (task_id, token, ord)
        ) as g
        -- by token too: the same task twice in a batch, once with a dead token, is rejected there
        left join unnest(v_done, v_done_tokens) as r (task_id, token)
            on g.nth = 1 and r.task_id = g.task_id and r.token = g.token
        -- (offset 0: each row's function is called once, not once per field read above)
        offset 0
    ) as b;

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
        t := durable._any_task(p_task);
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
    delete from durable.child_waits w where w.parent_id = any(v_tasks);
    delete from durable.wait_counts w where w.parent_id = any(v_tasks);
    -- into the archive; the running ones get their attempt row
    perform durable._finish_tasks(
        v_tasks, array_fill('cancelled'::text, array[cardinality(v_tasks)]), null, v_errors,
        array_fill('cancelled'::text, array[cardinality(v_tasks)]), v_now
    );
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
    t durable.tasks;
begin
    perform durable._check_reason(p_reason);
    -- live, or finished (then nothing to cancel: said below, once the caller may know it)
    t := durable._any_task(p_task);
    if t.task_id is null then
        raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
    end if;
    v_queue := t.queue;
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
    -- as it is now that it is locked (it may have finished meanwhile: then it is archived)
    select k.status into v_status from durable.tasks k where k.task_id = p_task;
    if not found then
        v_status := (durable._archived_task(p_task)).status;
    end if;
    if v_status is null then
        -- gone meanwhile (retention deleted it)
        raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
    end if;
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

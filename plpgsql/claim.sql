-- claim.sql: claiming tasks, leases, and reclaiming the leases that ran out.
--
-- The claim picks from durable.ready, the claimable set (one narrow row per pending task,
-- kept by the triggers of ready.sql), in claim order (priority desc, fair_tag, run_at,
-- enqueue order; fair_tag is 0 outside round_robin queues): the first due rows of the
-- queue from its floor (ready_claim_idx), or, for a claim of some task names, each name's
-- first due rows from that name's floor (ready_name_idx), of which it keeps the best, so
-- another name's backlog is never read. It locks the rows it picks, then their tasks,
-- both without waiting (FOR UPDATE SKIP LOCKED: two claimers never take the same task,
-- and a task held by another verb, a cancel say, is left for a later claim), starts the
-- tasks and deletes their rows. A queue with concurrency or rate limits has its tasks
-- picked by durable._claim_admit instead, under the queue's lock (see limits.sql).
--
-- Pinned: while a transaction elsewhere holds the xmin horizon, no row version can be
-- removed or marked dead in an index, so the entries of every task claimed since the pin
-- stay in the indexes. A claim starts its scan at its queue's floor (ready.sql), which the
-- maintenance raises once a second past the rows claimed meanwhile, and a claim that takes
-- a full batch (of more than one task) every 100 ms: it steps over the entries of at most
-- about a tenth of a second of claims under a backlog, whatever the pin's age. The other
-- reads of the claim's path that such entries slow (the scan for expired leases) run at
-- most once a second per queue (durable._claim_sweep).
--
-- There is no reaper daemon: each claim first reclaims up to 100 expired leases of its
-- queue (at most once a second per queue: a lease goes back within a second of its end)
-- (and cancels tasks whose schedule_timeout passed), so a queue that has workers
-- heals itself. An expired lease is counted in lost_leases, not in failures: a crashed
-- worker does not spend the task's retry budget. An attempt that outlived its timeout is
-- a failure (outcome timed_out) and follows the backoff.

-- Locks a task and returns it when p_token is its live lease; raises otherwise.
create or replace function durable._fenced(p_task uuid, p_token uuid)
returns durable.tasks
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
begin
    if p_task is null or p_token is null then
        raise exception 'durable: task id and lease token are required' using errcode = 'DU001';
    end if;
    select * into t from durable.tasks k where k.task_id = p_task for update;
    if not found then
        -- finished (the archive's rows never change: no lock needed), or unknown
        t := durable._archived_task(p_task);
        if t.task_id is null then
            raise exception 'durable: unknown task %', p_task using errcode = 'DU004';
        end if;
    end if;
    perform durable._require(t.queue, array['worker'], 'work on a task');
    if t.lease_token is distinct from p_token then
        raise exception 'durable: lease % is not the live lease of task %', p_token, p_task
            using errcode = 'DU010',
                  detail = format('the task is %s on attempt %s; the lease was reclaimed or the attempt ended',
                                  t.status, t.attempt);
    end if;
    if t.status = 'cancelled' then
        raise exception 'durable: task % was cancelled', p_task
            using errcode = 'DU011', detail = coalesce(t.error ->> 'message', '');
    end if;
    if t.status = 'failed' and t.error ->> 'type' = 'NonDeterminismError' then
        -- this attempt's own call found the code no longer matches the history, and failed it
        raise exception 'durable: %', t.error ->> 'message'
            using errcode = 'DU020',
                  detail = jsonb_build_object('task_id', t.task_id, 'seq', t.error -> 'seq',
                                              'recorded', t.error -> 'recorded', 'presented', t.error -> 'presented')::text,
                  hint = coalesce(t.error ->> 'hint', '');
    end if;
    if t.status <> 'running' then
        raise exception 'durable: lease % of task % has ended (the task is %)', p_token, p_task, t.status
            using errcode = 'DU010';
    end if;
    if t.lease_expires_at <= durable.current_time() then
        raise exception 'durable: lease % of task % expired at %', p_token, p_task, t.lease_expires_at
            using errcode = 'DU010';
    end if;
    return t;
end;
$$;

comment on function durable._fenced(uuid, uuid) is
'Internal: locks the task and returns its row when p_token is its live lease (status running, token current, not expired). Raises DU004 for an unknown task, 42501 when the caller may not work on the task''s queue, DU011 when that attempt''s task was cancelled, DU020 when a call of that attempt failed it on a non-determinism, DU010 otherwise. Every worker verb starts with it.';

-- Ends live attempts of (locked) tasks after a failure, a timeout or a lost lease, in one
-- pass: records each attempt, then schedules the next one or ends the task failed.
create or replace function durable._end_attempts(
    p_tasks uuid[], p_outcomes text[], p_errors jsonb[], p_retryable boolean[]
)
returns table (task_id uuid, status text, run_at timestamptz)
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_failed uuid[];
    v_failed_outcomes text[];
    v_failed_errors jsonb[];
    v_attempt_errors jsonb[];
    v_failed_run_at timestamptz[];
begin
    -- the tasks that end failed: a lost lease is not a failure of the task (it counts in
    -- lost_leases, and the task is claimable again at once, in its old place) unless it
    -- was the last one allowed; failures and timeouts count against max_attempts
    select array_agg(k.task_id order by k.task_id),
           array_agg(e.outcome order by k.task_id),
           array_agg(
               case
                   when e.outcome <> 'lease_expired' then e.error
                   else jsonb_build_object(
                       'type', 'LeaseLost',
                       'message', format('the lease was lost %s times (max_lost_leases is %s)',
                                         k.lost_leases + 1, k.max_lost_leases))
               end
               order by k.task_id),
           array_agg(e.error order by k.task_id),
           array_agg(k.run_at order by k.task_id)
    into v_failed, v_failed_outcomes, v_failed_errors, v_attempt_errors, v_failed_run_at
    from unnest(p_tasks, p_outcomes, p_errors, p_retryable) as e (task_id, outcome, error, retryable)
    join durable.tasks k on k.task_id = e.task_id
    where case when e.outcome = 'lease_expired' then k.lost_leases + 1 > k.max_lost_leases
               else not coalesce(e.retryable, true) or k.failures + 1 >= k.max_attempts end;
    if v_failed is not null then
        -- into the archive, with their attempts (durable._finish_tasks counts the failure or
        -- the lost lease of the outcome)
        perform durable._finish_tasks(
            v_failed, array_fill('failed'::text, array[cardinality(v_failed)]), null, v_failed_errors,
            v_failed_outcomes, v_now, v_attempt_errors
        );
    end if;
    return query
    with ending as (
        select u.task_id, u.outcome, u.error
        from unnest(p_tasks, p_outcomes, p_errors) as u (task_id, outcome, error)
        where u.task_id <> all(coalesce(v_failed, '{}'::uuid[]))
    ),
    recorded as (
        insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
        select k.task_id, k.attempt, k.queue, k.worker, k.lease_token, k.started_at, v_now, e.outcome, e.error
        from ending e
        join durable.tasks k on k.task_id = e.task_id
    ),
    retried as (
        update durable.tasks k
        set status = 'pending',
            run_at = case
                when e.outcome <> 'lease_expired'
                    then v_now + make_interval(secs => durable.backoff_delay(k.backoff, k.failures + 1))
                else k.run_at
            end,
            failures = k.failures + case when e.outcome = 'lease_expired' then 0 else 1 end,
            lost_leases = k.lost_leases + case when e.outcome = 'lease_expired' then 1 else 0 end,
            error = case when e.outcome <> 'lease_expired' then e.error else k.error end,
            finished_at = null,
            lease_expires_at = null,
            attempt_deadline = null
        from ending e
        where k.task_id = e.task_id
        returning k.task_id, k.status, k.run_at
    )
    select r.task_id, r.status, r.run_at from retried r
    union all
    select f.id, 'failed'::text, f.run_at from unnest(v_failed, v_failed_run_at) as f (id, run_at);
end;
$$;

comment on function durable._end_attempts(uuid[], text[], jsonb[], boolean[]) is
'Internal: ends the running attempts of locked tasks as failed, timed_out or lease_expired, in one pass. Failures and timeouts count against max_attempts and wait out the backoff (retryable false: failed at once); lost leases count against max_lost_leases and are claimable again at once, in their old place in the claim order. Returns each task''s new status and run time.';

-- Of the given tasks, those it could lock without waiting (SKIP LOCKED), oldest first:
-- the maintenance path (reclaims, schedule timeouts) never waits for a task.
create or replace function durable._lock_skipping(p_tasks uuid[])
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_locked uuid[] := '{}'::uuid[];
    v_id uuid;
begin
    for v_id in
        select k.task_id from durable.tasks k
        where k.task_id = any(p_tasks)
        order by k.task_id
        for update skip locked
    loop
        v_locked := v_locked || v_id;
    end loop;
    return v_locked;
end;
$$;

comment on function durable._lock_skipping(uuid[]) is
'Internal: locks, oldest first and with SKIP LOCKED, the given tasks; returns those it holds.';

-- Reclaims up to p_limit expired leases of a queue and cancels tasks past their
-- schedule deadline. Returns how many tasks it touched.
-- (force_generic_plan: see "Plans" at the top of common.sql)
create or replace function durable._reclaim(p_queue text, p_limit integer, p_leases boolean default true)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
declare
    v_now timestamptz := durable.current_time();
    v_ids uuid[];
    v_dead text[];
    v_ended integer := 0;
    v_cancelled integer := 0;
    v_ticked integer := 0;
    v_running text := 'running';
    v_ticks_due boolean;
    v_wakes_due boolean;
    v_late_due boolean;
begin
    if p_leases then
        -- the history's day partitions, made ahead and dropped (retention.sql): at most once
        -- a minute, on the queue's turn
        perform durable._history_partitions();
    end if;
    -- what is due, in one statement of index probes (the usual answer, nothing, costs a
    -- claim no more than that): schedules, wake-ups, tasks past their schedule deadline
    select exists (select 1 from durable.schedules x
                   where x.queue = p_queue and not x.paused and x.next_run_at <= v_now),
           exists (select 1 from durable.tasks k
                   where k.queue = p_queue and k.status in ('sleeping', 'waiting') and k.wake_at <= v_now)
           or exists (select 1 from durable.wait_counts w where w.remaining = 0),
           exists (select 1 from durable.tasks d
                   where d.queue = p_queue and d.status = 'pending' and d.schedule_deadline is not null
                     and d.schedule_deadline <= v_now and d.attempt = 0)
    into v_ticks_due, v_wakes_due, v_late_due;
    -- the queue's due schedules first, before any task is locked (the lock order,
    -- plpgsql/README.md: schedule rows, then the keys and tasks their enqueues take)
    if v_ticks_due then
        v_ticked := durable._tick_schedules(p_queue, p_limit);
    end if;
    -- registered workers that stopped heartbeating (plpgsql/workers.sql): their running
    -- tasks of this queue are taken back, as if their leases had expired, on the queue's
    -- turn (p_leases), like expired leases: a dead worker stays registered for an hour, and
    -- looking for its tasks at every claim made every claim of that hour pay for the look
    v_dead := case when p_leases then durable._dead_workers(v_now) else '{}'::text[] end;
    if cardinality(v_dead) > 0 then
        delete from durable.workers w
        where w.name in (
            select d.name from durable.workers d
            where d.name = any(v_dead) and d.last_seen_at < v_now - interval '1 hour'
            for update skip locked
        );
    end if;
    -- expired leases and the tasks of dead workers: those taken without waiting, as they are
    -- now (the lock is asked only when there are some: on an idle queue, the common case on
    -- the wake-up path, the candidates' index probes are all this piece costs)
    -- (p_leases false: the claim's turn to look for expired leases and dead workers has not
    -- come, see durable._claim_sweep). A dead worker's tasks are found by worker name
    -- (tasks_worker_idx), one name at a time: never by a walk over the queue's running tasks
    -- (an IF, not a CASE: a statement holding the scans is set up, its indexes opened, even
    -- when a CASE skips them, about 40 us of every claim between two turns)
    v_ids := '{}';
    if p_leases then
        v_ids := array(
            (select k.task_id from durable.tasks k
             where k.queue = p_queue and k.status = 'running' and k.lease_expires_at <= v_now
             order by k.lease_expires_at
             limit p_limit)
            union
            (select w.task_id
             from unnest(v_dead) as d (name)
             cross join lateral (
                 select k.task_id from durable.tasks k
                 where k.worker = d.name and k.status = 'running' and k.queue = p_queue
                 limit p_limit
             ) as w
             limit p_limit)
        );
    end if;
    if cardinality(v_ids) > 0 then
        v_ids := durable._lock_skipping(v_ids);
    end if;
    if cardinality(v_ids) > 0 then
        with lost as (
            select k.task_id,
                   case when k.attempt_deadline is not null and k.attempt_deadline <= v_now
                        then 'timed_out' else 'lease_expired' end as outcome,
                   case when k.attempt_deadline is not null and k.attempt_deadline <= v_now
                        then jsonb_build_object(
                            'type', 'Timeout',
                            'message', format('attempt %s ran longer than its timeout of %s s',
                                              k.attempt, k.timeout_seconds))
                        when k.lease_expires_at <= v_now
                        then jsonb_build_object(
                            'type', 'LeaseExpired',
                            'message', format('worker %s did not renew its lease by %s',
                                              k.worker, k.lease_expires_at))
                        else jsonb_build_object(
                            'type', 'WorkerLost',
                            'message', format('worker %s stopped heartbeating (last seen %s)',
                                              k.worker, (select w.last_seen_at from durable.workers w
                                                         where w.name = k.worker)))
                   end as error
            from durable.tasks k
            -- (the status through a variable: no partial index on status = 'running' matches,
            -- so the tasks are found by key; a generic plan walked tasks_lease_idx, every
            -- running task of every queue)
            where k.task_id = any(v_ids) and k.status = v_running
              and (k.lease_expires_at <= v_now or k.worker = any(v_dead))
        )
        select count(*)::integer into v_ended
        from durable._end_attempts(
            array(select l.task_id from lost l order by l.task_id),
            array(select l.outcome from lost l order by l.task_id),
            array(select l.error from lost l order by l.task_id),
            null
        );
    end if;

    -- pending tasks past their schedule deadline (only a task that never started: a retry
    -- of one that started in time is not late), taken without waiting
    v_ids := '{}';
    if v_late_due then
        v_ids := array(
            select d.task_id from durable.tasks d
            where d.queue = p_queue and d.status = 'pending' and d.schedule_deadline is not null
              and d.schedule_deadline <= v_now and d.attempt = 0
            limit p_limit
        );
    end if;
    if cardinality(v_ids) > 0 then
        v_ids := durable._lock_skipping(v_ids);
    end if;
    if cardinality(v_ids) > 0 then
        with late as (
            select k.task_id,
                   jsonb_build_object(
                       'type', 'ScheduleTimeout',
                       'message', format('not started by its schedule deadline %s', k.schedule_deadline)
                   ) as error
            from durable.tasks k
            where k.task_id = any(v_ids) and k.status = 'pending' and k.schedule_deadline <= v_now and k.attempt = 0
        )
        select durable._finish_tasks(
            array_agg(l.task_id order by l.task_id), array_agg('cancelled'::text order by l.task_id), null,
            array_agg(l.error order by l.task_id), null, v_now
        )
        into v_cancelled
        from late l
        having count(*) > 0;
        v_cancelled := coalesce(v_cancelled, 0);
    end if;
    return v_ticked + v_ended + v_cancelled
           + case when v_wakes_due then durable._wake_due(p_queue, p_limit) else 0 end;
end;
$$;

comment on function durable._reclaim(text, integer, boolean) is
'Internal: durable.reclaim without the caller''s checks (the claim''s maintenance path calls it; p_leases false leaves out the scan for expired leases, not the tasks of dead workers).';

-- Whether this claim takes its queue's turn for the once-a-second work: the scan for expired
-- leases, and raising the queue's floors (ready.sql). Both read index entries that a
-- transaction pinning the xmin horizon keeps from being removed (the leases of every task
-- run since the pin), so they run at most once a second per queue: the claim that finds
-- the last turn (durable.queues.swept_at) a second old (or in the future: a clock set
-- back) and can take the queue's row without waiting (FOR NO KEY UPDATE SKIP LOCKED:
-- the queue lock of the lock order, 1, taken before anything else; a limited queue's
-- claim already holds it). A lease thus goes back at most about a second after it
-- expired (durable.reclaim, an operator's call, always looks).
create or replace function durable._claim_sweep(p_queue durable.queues)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
begin
    if p_queue.swept_at > v_now - interval '1 second' and p_queue.swept_at <= v_now then
        return false;
    end if;
    update durable.queues q
    set swept_at = v_now
    where q.queue = (
        select c.queue from durable.queues c
        where c.queue = p_queue.queue
          and (c.swept_at is null or c.swept_at <= v_now - interval '1 second' or c.swept_at > v_now)
        for no key update skip locked
    );
    return found;
end;
$$;

comment on function durable._claim_sweep(durable.queues) is
'Internal: true when this claim takes its queue''s once-a-second turn (expired leases, the floors of ready.sql): the queue''s swept_at is a second old or more, and its row could be taken without waiting.';

-- Of the given pending tasks, in the given order, those it could lock without waiting.
create or replace function durable._lock_ready(p_tasks uuid[])
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_locked uuid[] := '{}'::uuid[];
    v_id uuid;
    -- a variable, not a literal: a generic plan would read a partial index on the status
    -- (all the queue's pending tasks) instead of the primary key (finish.sql, "Pinned")
    v_pending text := 'pending';
begin
    for v_id in
        select k.task_id from durable.tasks k
        where k.task_id = any(p_tasks) and k.status = v_pending
        order by array_position(p_tasks, k.task_id)
        for update skip locked
    loop
        v_locked := v_locked || v_id;
    end loop;
    if cardinality(v_locked) < cardinality(p_tasks) then
        -- rows of tasks gone or not pending, which only a hand-written change, a trigger
        -- switched off or a crash of the triggers' rules could leave: the claim holds their
        -- rows, and they go, so that they cannot stay at the head of every claim (a task
        -- another transaction holds is left alone)
        delete from durable.ready r
        where r.task_id = any(p_tasks) and r.task_id <> all(v_locked)
          and not exists (select 1 from durable.tasks k where k.task_id = r.task_id and k.status = v_pending);
    end if;
    return v_locked;
end;
$$;

comment on function durable._lock_ready(uuid[]) is
'Internal: locks, without waiting, the given tasks that are pending; returns those it holds, in the given order (the claim''s). The rows of durable.ready (which the claim holds) of the given tasks that are gone or not pending are deleted.';

create or replace function durable.reclaim(p_queue text, p_limit integer default 100)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set jit = off
as $$
begin
    perform durable._require(p_queue, array['operator'], 'reclaim leases');
    if p_limit is null or p_limit < 1 or p_limit > 10000 then
        raise exception 'durable: limit must be between 1 and 10000, got %', p_limit using errcode = 'DU001';
    end if;
    return durable._reclaim(p_queue, p_limit);
end;
$$;

comment on function durable.reclaim(text, integer) is
'Enqueues the due ticks of the queue''s schedules (durable.create_schedule), reclaims up to p_limit (1 to 10,000) expired leases of the queue (a lost lease goes back to pending at once and counts in lost_leases; an attempt past its timeout is failed as timed_out and retried per backoff) cancels pending tasks past their schedule_timeout, and wakes sleeping tasks whose time came and waits whose timeout passed. durable.claim calls it on every claim; call it yourself only to heal a queue nobody claims from. Returns the number of tasks changed. Errors: DU001, 42501.';

-- (force_generic_plan, enable_seqscan and enable_bitmapscan off: see "Plans" at the top of
-- common.sql; a generic plan of the pick made while durable.ready looked empty sorted the
-- queue's whole claimable set at every claim, 6.5 ms at 10,000 tasks. jit off: on a big table the
-- generic plans' estimates pass jit_above_cost, and compiling their expressions cost each
-- statement 7-9 ms, most of a claim's time at 5,000,000 ready tasks (bench/scale_bench.py),
-- where the statements themselves read a few index pages. It holds for the reclaim it calls.)
create or replace function durable.claim(
    p_queue text,
    p_worker text,
    p_max_tasks integer default 1,
    p_lease_seconds integer default 30,
    p_task_names text[] default null
)
returns table (
    task_id uuid,
    task_name text,
    input jsonb,
    attempt integer,
    lease_token uuid,
    lease_expires_at timestamptz,
    durable boolean,
    history jsonb,
    trace_context jsonb
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
set jit = off
set enable_seqscan = off
set enable_bitmapscan = off
as $$
declare
    v_now timestamptz;
    v_queue durable.queues;
    -- the tasks this claim starts, locked (by the admission of a limited queue, or below)
    v_chosen uuid[];
    -- this claim's turn for the queue's once-a-second work (durable._claim_sweep)
    v_sweep boolean;
    v_floor record;
begin
    v_queue := durable._queue(p_queue);
    perform durable._require(p_queue, array['worker'], 'claim tasks');
    perform durable._check_name(p_worker, 'worker');
    if p_max_tasks is null or p_max_tasks < 1 or p_max_tasks > 1000 then
        raise exception 'durable: max_tasks must be between 1 and 1000, got %', p_max_tasks
            using errcode = 'DU001';
    end if;
    if p_lease_seconds is null or p_lease_seconds < 1 or p_lease_seconds > 86400 then
        raise exception 'durable: lease_seconds must be between 1 and 86400, got %', p_lease_seconds
            using errcode = 'DU001';
    end if;
    -- The claim commits without waiting for its WAL flush (this transaction only; set here,
    -- whatever the caller's setting). Nothing durable rests on a claim alone: every later
    -- write of the attempt (a checkpoint, a completion, a failure) waits for its own flush,
    -- which covers the claim's earlier commit. A server crash before that forgets the claim:
    -- the task is pending again and the attempt's next call gets DU010, as after a lost
    -- lease (and the maintenance it ran is redone by the next claim). It takes one flush off
    -- the time from an enqueue to the start of its task, and keeps a limited queue's lock,
    -- held to the commit, short. Call claim in a transaction of its own, as workers do.
    perform pg_catalog.set_config('synchronous_commit', 'off', true);

    if durable._has_limits(v_queue.options) then
        -- concurrency or rate limits: the queue lock (its row) first, before the reclaim
        -- locks any task (the lock order, plpgsql/README.md). When another claim holds
        -- it and the committed tasks already fill the queue, waiting could only end in
        -- starting nothing: return at once (a slot freed meanwhile goes to a later claim).
        perform durable._require_read_committed('a claim on a queue with concurrency or rate limits');
        perform 1 from durable.queues q where q.queue = p_queue for update skip locked;
        if not found then
            if v_queue.options ? 'concurrency_limit'
                and not coalesce((v_queue.options ->> 'hold_slots_while_suspended')::boolean, false)
                and (select count(*) from durable.tasks k where k.queue = p_queue and k.status = 'running')
                    >= (v_queue.options ->> 'concurrency_limit')::integer then
                return;
            end if;
            perform 1 from durable.queues q where q.queue = p_queue for update;
        end if;
    end if;
    -- the queue's maintenance: schedule ticks, expired leases (at most once a second, with
    -- the floors' raise below), schedule timeouts, due sleepers, retention
    v_sweep := durable._claim_sweep(v_queue);
    perform durable._reclaim(p_queue, 100, v_sweep);
    if v_queue.options ? 'retention'
        and (v_queue.purged_at is null
             or v_queue.purged_at <= durable.current_time()
                - make_interval(secs => least(60, (v_queue.options ->> 'retention')::double precision))) then
        perform durable._retention(p_queue);
    end if;
    if durable._has_limits(v_queue.options) then
        -- concurrency or rate limits: the admission picks and locks, under the queue's lock
        select a.task_ids, a.claimed_at into v_chosen, v_now
        from durable._claim_admit(v_queue, p_max_tasks, p_task_names) as a;
    else
        v_now := durable.current_time();
    end if;

    if v_chosen is null and p_task_names is null then
        -- the first ready rows from the queue's floor (ready.sql), locked without waiting,
        -- then their tasks, locked without waiting (a task held elsewhere, a cancel's, stays)
        select coalesce(min(x.neg_priority), -2147483648) as neg_priority,
               coalesce(min(x.fair_tag), -9223372036854775808) as fair_tag,
               coalesce(min(x.run_at), '-infinity'::timestamptz) as run_at,
               coalesce(min(x.seq), -9223372036854775808) as seq
        into v_floor
        from (
            select f.neg_priority, f.fair_tag, f.run_at, f.seq
            from durable.ready_floors f
            where f.queue = p_queue and f.task_name = ''
            order by f.neg_priority, f.fair_tag, f.run_at, f.seq
            limit 1
        ) x;
        v_chosen := durable._lock_ready(array(
            select r.task_id
            from durable.ready r
            where r.queue = p_queue
              and (r.neg_priority, r.fair_tag, r.run_at, r.seq)
                  >= (v_floor.neg_priority, v_floor.fair_tag, v_floor.run_at, v_floor.seq)
              and r.run_at <= v_now
              and (r.deadline is null or r.deadline > v_now)
            order by r.neg_priority, r.fair_tag, r.run_at, r.seq
            limit p_max_tasks
            for update skip locked
        ));
    elsif v_chosen is null then
        -- only some names: the first ready rows of each name from its floor
        -- (ready_name_idx), locked without waiting, then the best of them in claim order.
        -- Other names' backlogs are never read. A name's rows locked but not among the best
        -- stay; they are released at commit (meanwhile other claims skip them).
        v_chosen := durable._lock_ready(array(
            select c.task_id
            from (select distinct n.name from unnest(p_task_names) as n (name)) as names
            cross join lateral (
                select coalesce(min(x.neg_priority), -2147483648) as neg_priority,
                       coalesce(min(x.fair_tag), -9223372036854775808) as fair_tag,
                       coalesce(min(x.run_at), '-infinity'::timestamptz) as run_at,
                       coalesce(min(x.seq), -9223372036854775808) as seq
                from (
                    select fl.neg_priority, fl.fair_tag, fl.run_at, fl.seq
                    from durable.ready_floors fl
                    where fl.queue = p_queue and fl.task_name = names.name
                    order by fl.neg_priority, fl.fair_tag, fl.run_at, fl.seq
                    limit 1
                ) x
            ) as f
            cross join lateral (
                select r.task_id, r.neg_priority, r.fair_tag, r.run_at, r.seq
                from durable.ready r
                where r.queue = p_queue
                  -- the name's rows from its floor: the name leads the row comparison, which
                  -- only ready_name_idx can take (a generic plan never walks ready_claim_idx
                  -- filtering by name, which with statistics of one name looked as cheap:
                  -- 9,980 rows read for a name without any, 2 ms a claim in a drain), and
                  -- starts the scan there; no equality on the name, which the index would
                  -- take to start at the name's first entry instead, walking every entry
                  -- below the floor (those of the tasks claimed since an xmin pin); the
                  -- scan ends past the name (<=)
                  and (r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq)
                      >= (names.name, f.neg_priority, f.fair_tag, f.run_at, f.seq)
                  and r.task_name <= names.name
                  and r.run_at <= v_now
                  and (r.deadline is null or r.deadline > v_now)
                -- (the one name first: the index's order, no sort)
                order by r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq
                limit p_max_tasks
                for update of r skip locked
            ) as c
            order by c.neg_priority, c.fair_tag, c.run_at, c.seq
            limit p_max_tasks
        ));
    end if;
    -- what this claim starts leaves the claimable set (the only way out of pending into
    -- running; the triggers of ready.sql do the others)
    delete from durable.ready r where r.task_id = any(v_chosen);

    -- the chosen tasks, locked, found by primary key (a generic plan of a join with them
    -- could scan the table), returned in claim order
    return query
    with started as (
        update durable.tasks t
        set status = 'running',
            attempt = t.attempt + 1,
            replayed_to = 0,
            worker = p_worker,
            lease_token = gen_random_uuid(),
            lease_seconds = p_lease_seconds,
            started_at = v_now,
            attempt_deadline = v_now + make_interval(secs => t.timeout_seconds),
            lease_expires_at = least(
                v_now + make_interval(secs => p_lease_seconds),
                v_now + make_interval(secs => t.timeout_seconds)
            )
        where t.task_id = any(v_chosen)
        returning t.task_id, t.task_name, t.input, t.attempt, t.lease_token, t.lease_expires_at, t.durable,
            case when t.durable then durable._history(t.task_id, t.generation) end as history,
            t.trace_context
    )
    select s.task_id, s.task_name, s.input, s.attempt, s.lease_token, s.lease_expires_at, s.durable,
           s.history, s.trace_context
    from started s
    join unnest(v_chosen) with ordinality as o (task_id, ord) on o.task_id = s.task_id
    order by o.ord;
    -- last, so that the queue's ready lock it may hold blocks the queue's writers only for
    -- the claim's commit: the floors' raise (ready.sql)
    if v_sweep then
        perform durable._ready_raise(p_queue, v_now);
    elsif p_max_tasks > 1 and cardinality(v_chosen) = p_max_tasks then
        -- a full batch: a backlog, whose claims step over the entries of every task claimed
        -- since the last raise while an xmin pin holds them: the floors again, 100 ms on,
        -- if no writer is in flight (durable._ready_raise_early). (Not on every claim: an
        -- idle queue's claims take less than they ask for, and a claim of one task, which
        -- an idle one-slot worker makes, is not a sign of a backlog: they stay as cheap.)
        perform durable._ready_raise_early(p_queue, v_now);
    end if;
end;
$$;

comment on function durable.claim(text, text, integer, integer, text[]) is
'Commits without waiting for the WAL flush (synchronous_commit off for its transaction; call it in a transaction of its own): a crash may forget the last claims, whose tasks are then pending again. Claims up to p_max_tasks ready tasks of the queue for worker p_worker (priority desc, then run_at, then enqueue order; only tasks whose run_at has come; only names in p_task_names when given) and returns each, in that order, with its attempt number and a fresh lease token valid for p_lease_seconds (never past the task''s timeout); a durable task comes with its recorded history (a JSON array of events, see durable.checkpoint); trace_context is the W3C trace context stored by its enqueue or spawn (null when none). Reclaims expired leases of the queue first (one claim a second per queue looks for them), and applies its retention (durable.purge) at most once a minute, or once per retention period when that is shorter. On a queue with concurrency or rate limits (see limits.sql) only what they admit is claimed, possibly nothing. Errors: DU001, DU002, 42501.';

create or replace function durable.heartbeat(p_task uuid, p_lease_token uuid, p_lease_seconds integer default null)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v_now timestamptz := durable.current_time();
    v_expires timestamptz;
begin
    if p_lease_seconds is not null and (p_lease_seconds < 1 or p_lease_seconds > 86400) then
        raise exception 'durable: lease_seconds must be between 1 and 86400, got %', p_lease_seconds
            using errcode = 'DU001';
    end if;
    v_expires := v_now + make_interval(secs => coalesce(p_lease_seconds, t.lease_seconds));
    if t.attempt_deadline is not null then
        v_expires := least(v_expires, t.attempt_deadline);
    end if;
    update durable.tasks k
    set lease_expires_at = v_expires,
        lease_seconds = coalesce(p_lease_seconds, t.lease_seconds)
    where k.task_id = p_task;
    return v_expires;
end;
$$;

comment on function durable.heartbeat(uuid, uuid, integer) is
'Extends the live lease of a running task by p_lease_seconds from now (default: the length it was claimed with), never past the attempt''s timeout. Returns the new expiry. Errors: DU001, DU010 lease lost, DU011 task cancelled, DU020 the attempt''s task was failed on a non-determinism, DU004 unknown task, 42501.';

create or replace function durable.release(
    p_task uuid, p_lease_token uuid, p_delay_seconds double precision default 60, p_reason text default null
)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v_now timestamptz := durable.current_time();
    v_run_at timestamptz;
begin
    perform durable._check_reason(p_reason);
    if p_delay_seconds is null or p_delay_seconds < 0 or p_delay_seconds > 31536000 then
        raise exception 'durable: delay_seconds must be between 0 and 31536000, got %', p_delay_seconds
            using errcode = 'DU001';
    end if;
    v_run_at := v_now + make_interval(secs => p_delay_seconds);
    insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
    values (t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at, v_now, 'released',
            jsonb_build_object('type', 'Released', 'message', coalesce(p_reason, 'released by the worker')));
    update durable.tasks k
    set status = 'pending', run_at = v_run_at, lease_expires_at = null, attempt_deadline = null
    where k.task_id = p_task;
    return v_run_at;
end;
$$;

comment on function durable.release(uuid, uuid, double precision, text) is
'Hands a claimed task back without spending an attempt: it becomes pending again after p_delay_seconds (a worker that cannot run a task name uses it); p_reason, at most 2,000 characters, is kept in the attempt''s row. Errors: DU001, DU003, DU004, DU010, DU011, DU020, 42501.';

grant execute on function durable.reclaim(text, integer) to durable_operator;
grant execute on function durable.claim(text, text, integer, integer, text[]) to durable_worker;
grant execute on function durable.heartbeat(uuid, uuid, integer) to durable_worker;
grant execute on function durable.release(uuid, uuid, double precision, text) to durable_worker;

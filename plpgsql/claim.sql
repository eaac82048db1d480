-- claim.sql: claiming tasks, leases, and reclaiming the leases that ran out.
--
-- The claim is one UPDATE over a SELECT ... FOR UPDATE SKIP LOCKED of the queue's ready
-- tasks in claim order (priority desc, fair_tag, run_at, enqueue order; fair_tag is 0
-- outside round_robin queues), served by the partial index tasks_claim_idx. A queue with
-- concurrency or rate limits has its tasks picked by durable._claim_admit instead, under
-- the queue's lock (see limits.sql). Two claimers never take the same task: each skips
-- the rows the other has locked, and a row it does lock is re-checked (still pending)
-- before update.
--
-- There is no reaper daemon: each claim first reclaims up to 100 expired leases of its
-- queue (and cancels tasks whose schedule_timeout passed), so a queue that has workers
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
    t := durable._locked_task(p_task);
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
'Internal: locks the task and returns its row when p_token is its live lease (status running, token current, not expired). Raises DU004 for an unknown task, 42501 when the caller may not work on the task''s queue, DU011 when that attempt''s task was cancelled, DU010 otherwise. Every worker verb starts with it.';

-- Ends the live attempt of a (locked) task after a failure, a timeout or a lost lease:
-- records the attempt, then schedules the next one or ends the task failed.
create or replace function durable._end_attempt_unsuccessfully(
    t durable.tasks, p_now timestamptz, p_outcome text, p_error jsonb, p_retryable boolean default true
)
returns durable.tasks
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome, error)
    values (t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at, p_now, p_outcome, p_error);

    if p_outcome = 'lease_expired' then
        t.lost_leases := t.lost_leases + 1;
        if t.lost_leases > t.max_lost_leases then
            t.status := 'failed';
            t.error := jsonb_build_object(
                'type', 'LeaseLost',
                'message', format('the lease was lost %s times (max_lost_leases is %s)',
                                  t.lost_leases, t.max_lost_leases)
            );
        else
            t.status := 'pending';
            t.run_at := p_now;
        end if;
    else
        t.failures := t.failures + 1;
        t.error := p_error;
        if not p_retryable or t.failures >= t.max_attempts then
            t.status := 'failed';
        else
            t.status := 'pending';
            t.run_at := p_now + make_interval(secs => durable.backoff_delay(t.backoff, t.failures));
        end if;
    end if;
    if t.status = 'failed' then
        t.finished_at := p_now;
    end if;

    update durable.tasks k
    set status = t.status,
        run_at = t.run_at,
        failures = t.failures,
        lost_leases = t.lost_leases,
        error = t.error,
        finished_at = t.finished_at,
        lease_expires_at = null,
        attempt_deadline = null
    where k.task_id = t.task_id;
    return t;
end;
$$;

comment on function durable._end_attempt_unsuccessfully(durable.tasks, timestamptz, text, jsonb, boolean) is
'Internal: ends the running attempt of a locked task as failed, timed_out or lease_expired. Failures and timeouts count against max_attempts and wait out the backoff; lost leases count against max_lost_leases and are claimable again at once.';

-- Reclaims up to p_limit expired leases of a queue and cancels tasks past their
-- schedule deadline. Returns how many tasks it touched.
-- (force_generic_plan: see "Plans" at the top of common.sql)
create or replace function durable._reclaim(p_queue text, p_limit integer)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
declare
    v_now timestamptz := durable.current_time();
    t durable.tasks;
    v_count integer := 0;
    v_cancelled integer;
begin
    for t in
        select * from durable.tasks k
        where k.queue = p_queue and k.status = 'running' and k.lease_expires_at <= v_now
        order by k.lease_expires_at
        limit p_limit
        for update skip locked
    loop
        if t.attempt_deadline is not null and t.attempt_deadline <= v_now then
            perform durable._end_attempt_unsuccessfully(
                t, v_now, 'timed_out',
                jsonb_build_object(
                    'type', 'Timeout',
                    'message', format('attempt %s ran longer than its timeout of %s s',
                                      t.attempt, t.timeout_seconds)
                )
            );
        else
            perform durable._end_attempt_unsuccessfully(
                t, v_now, 'lease_expired',
                jsonb_build_object(
                    'type', 'LeaseExpired',
                    'message', format('worker %s did not renew its lease by %s', t.worker, t.lease_expires_at)
                )
            );
        end if;
        v_count := v_count + 1;
    end loop;

    update durable.tasks k
    set status = 'cancelled',
        finished_at = v_now,
        error = jsonb_build_object(
            'type', 'ScheduleTimeout',
            'message', format('not started by its schedule deadline %s', k.schedule_deadline)
        )
    where k.task_id in (
        select d.task_id from durable.tasks d
        where d.queue = p_queue and d.status = 'pending' and d.schedule_deadline is not null
          and d.schedule_deadline <= v_now
          -- only a task that never started: a retry of one that started in time is not late
          and d.attempt = 0
        limit p_limit
        for update skip locked
    );
    get diagnostics v_cancelled = row_count;
    return v_count + v_cancelled + durable._wake_due(p_queue, p_limit);
end;
$$;

comment on function durable._reclaim(text, integer) is
'Internal: durable.reclaim without the caller''s checks (the claim''s maintenance path calls it).';

create or replace function durable.reclaim(p_queue text, p_limit integer default 100)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
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
'Reclaims up to p_limit (1 to 10,000) expired leases of the queue (a lost lease goes back to pending at once and counts in lost_leases; an attempt past its timeout is failed as timed_out and retried per backoff) cancels pending tasks past their schedule_timeout, and wakes sleeping tasks whose time came and waits whose timeout passed. durable.claim calls it on every claim; call it yourself only to heal a queue nobody claims from. Returns the number of tasks changed. Errors: DU001, 42501.';

-- (force_generic_plan: see "Plans" at the top of common.sql)
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
    history jsonb
)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
declare
    v_now timestamptz;
    v_queue durable.queues;
    v_admitted uuid[];
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

    -- the queue's maintenance: expired leases, schedule timeouts, due sleepers, retention
    perform durable._reclaim(p_queue, 100);
    if v_queue.options ? 'retention'
        and (v_queue.purged_at is null
             or v_queue.purged_at <= durable.current_time()
                - make_interval(secs => least(60, (v_queue.options ->> 'retention')::double precision))) then
        perform durable._retention(p_queue);
    end if;
    if durable._has_limits(v_queue.options) then
        -- concurrency or rate limits: the admission picks and locks, under the queue's lock
        select a.task_ids, a.claimed_at into v_admitted, v_now
        from durable._claim_admit(v_queue, p_max_tasks, p_task_names) as a;
    else
        v_now := durable.current_time();
    end if;

    return query
    with picked as (
        select k.task_id
        from durable.tasks k
        where v_admitted is null
          and k.queue = p_queue
          and k.status = 'pending'
          and k.run_at <= v_now
          and (p_task_names is null or k.task_name = any(p_task_names))
          and (k.schedule_deadline is null or k.attempt > 0 or k.schedule_deadline > v_now)
        order by k.priority desc, k.fair_tag, k.run_at, k.seq
        limit p_max_tasks
        for update skip locked
    ),
    chosen as (
        select picked.task_id from picked
        union all
        select a.task_id from unnest(v_admitted) as a (task_id)
    )
    update durable.tasks t
    set status = 'running',
        attempt = t.attempt + 1,
        worker = p_worker,
        lease_token = gen_random_uuid(),
        lease_seconds = p_lease_seconds,
        started_at = v_now,
        attempt_deadline = v_now + make_interval(secs => t.timeout_seconds),
        lease_expires_at = least(
            v_now + make_interval(secs => p_lease_seconds),
            v_now + make_interval(secs => t.timeout_seconds)
        )
    from chosen
    where t.task_id = chosen.task_id
    returning t.task_id, t.task_name, t.input, t.attempt, t.lease_token, t.lease_expires_at, t.durable,
        case when t.durable then durable._history(t.task_id, t.generation) end;
end;
$$;

comment on function durable.claim(text, text, integer, integer, text[]) is
'Claims up to p_max_tasks ready tasks of the queue for worker p_worker (priority desc, then run_at, then enqueue order; only tasks whose run_at has come; only names in p_task_names when given) and returns each with its attempt number and a fresh lease token valid for p_lease_seconds (never past the task''s timeout); a durable task comes with its recorded history (a JSON array of events, see durable.checkpoint). Reclaims expired leases of the queue first, and applies its retention (durable.purge) at most once a minute, or once per retention period when that is shorter. On a queue with concurrency or rate limits (see limits.sql) only what they admit is claimed, possibly nothing. Errors: DU001, DU002, 42501.';

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
'Extends the live lease of a running task by p_lease_seconds from now (default: the length it was claimed with), never past the attempt''s timeout. Returns the new expiry. Errors: DU001, DU010 lease lost, DU011 task cancelled, DU004 unknown task, 42501.';

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
'Hands a claimed task back without spending an attempt: it becomes pending again after p_delay_seconds (a worker that cannot run a task name uses it); p_reason, at most 2,000 characters, is kept in the attempt''s row. Errors: DU001, DU003, DU004, DU010, DU011, 42501.';

grant execute on function durable.reclaim(text, integer) to durable_operator;
grant execute on function durable.claim(text, text, integer, integer, text[]) to durable_worker;
grant execute on function durable.heartbeat(uuid, uuid, integer) to durable_worker;
grant execute on function durable.release(uuid, uuid, double precision, text) to durable_worker;

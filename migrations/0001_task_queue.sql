-- 0001: the task queue.
--
-- Tables only (and their indexes); every function and trigger lives in plpgsql/ and is
-- re-applied on each migrate. The migration runner creates the schema `durable` and its
-- own bookkeeping table before it runs this file.

-- A queue is a name plus defaults for the tasks enqueued on it (see durable.create_queue).
create table durable.queues (
    queue text primary key,
    options jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);

-- One row per task: its current state only. The row is rewritten on every transition
-- (claim, heartbeat, complete, fail), so the table keeps free space on each page
-- (fillfactor) and history goes to the append-only table durable.attempts.
create table durable.tasks (
    task_id uuid primary key,
    -- enqueue order, the FIFO tie-breaker of the claim
    seq bigint generated always as identity,
    queue text not null,
    task_name text not null,
    input jsonb not null,
    status text not null default 'pending'
        check (status in ('pending', 'running', 'completed', 'failed', 'cancelled')),
    priority integer not null default 0,
    -- when the task may next be claimed
    run_at timestamptz not null,
    -- attempts started (claims), failures counted against max_attempts, leases lost
    attempt integer not null default 0,
    failures integer not null default 0,
    lost_leases integer not null default 0,
    max_attempts integer not null,
    max_lost_leases integer not null,
    backoff jsonb not null,
    timeout_seconds double precision,
    schedule_deadline timestamptz,
    idempotency_key text,
    -- the live attempt
    worker text,
    lease_token uuid,
    lease_seconds integer,
    lease_expires_at timestamptz,
    attempt_deadline timestamptz,
    started_at timestamptz,
    -- the outcome
    output jsonb,
    error jsonb,
    created_at timestamptz not null,
    finished_at timestamptz
) with (fillfactor = 80);

-- The claim: ready tasks of one queue in priority, then run_at, then enqueue order.
create index tasks_claim_idx on durable.tasks (queue, priority desc, run_at, seq)
where status = 'pending';

-- Lease reclaim: running tasks of one queue by lease expiry.
create index tasks_lease_idx on durable.tasks (queue, lease_expires_at)
where status = 'running';

-- schedule_timeout: pending tasks that must start before a deadline.
create index tasks_schedule_deadline_idx on durable.tasks (queue, schedule_deadline)
where status = 'pending' and schedule_deadline is not null;

-- Idempotent enqueue: one task per (queue, key).
create unique index tasks_idempotency_idx on durable.tasks (queue, idempotency_key)
where idempotency_key is not null;

-- Retention: finished tasks of one queue by end time.
create index tasks_finished_idx on durable.tasks (queue, finished_at)
where status in ('completed', 'failed', 'cancelled');

-- One row per ended attempt, written once when the attempt ends (never updated).
create table durable.attempts (
    task_id uuid not null,
    attempt integer not null,
    queue text not null,
    worker text,
    lease_token uuid,
    started_at timestamptz,
    ended_at timestamptz not null,
    outcome text not null
        check (outcome in (
            'completed', 'failed', 'timed_out', 'lease_expired', 'cancelled', 'released'
        )),
    error jsonb,
    primary key (task_id, attempt)
);

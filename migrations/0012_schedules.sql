-- 0012: schedules (cron), materialized by the claims of their queue (plpgsql/schedules.sql).
--
-- A schedule belongs to one queue, the unit of placement and of grants, and is named
-- within it. next_run_at is its next tick (an instant); the claim's maintenance takes the
-- due rows of its queue (the partial index below: one probe when none is due), enqueues
-- each tick once (idempotency key schedule:<name>:<tick>) and moves next_run_at on.
create table durable.schedules (
    queue text not null references durable.queues (queue) on delete cascade,
    name text not null,
    task_name text not null,
    cron text not null,
    tz text not null default 'UTC',
    input jsonb not null default '{}'::jsonb,
    enqueue_options jsonb not null default '{}'::jsonb,
    catch_up text not null default 'once' check (catch_up in ('skip', 'once', 'all')),
    catch_up_max integer not null default 10 check (catch_up_max between 1 and 1000),
    catch_up_grace double precision not null default 60 check (catch_up_grace > 0),
    paused boolean not null default false,
    next_run_at timestamptz not null,
    last_tick_at timestamptz,
    last_task_id uuid,
    last_error jsonb,
    ticks bigint not null default 0,
    created_at timestamptz not null,
    updated_at timestamptz not null,
    primary key (queue, name)
);

create index schedules_due_idx on durable.schedules (queue, next_run_at) where not paused;

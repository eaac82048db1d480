-- 0008: the worker registry (plpgsql/workers.sql).
--
-- A worker that registers gets a row here and a secret token; it heartbeats the row every
-- heartbeat_seconds. Once its last heartbeat is older than dead_after_seconds, the next
-- claim of a queue where it runs tasks takes them back at once, as lost leases (not
-- failures), without waiting for their leases to expire. Tasks name the worker that runs
-- them (durable.tasks.worker): for a registered worker, its row's name.
create table durable.workers (
    name text primary key,
    token uuid not null,
    login_role name not null,
    host text,
    pid integer,
    queues text[] not null,
    task_names text[],
    slots integer not null,
    heartbeat_seconds double precision not null,
    dead_after_seconds double precision not null,
    started_at timestamptz not null,
    last_seen_at timestamptz not null
);

-- a dead worker's running tasks, found by name
create index tasks_worker_idx on durable.tasks (worker) where status = 'running';

-- 0003: waiting without holding a worker: durable sleep, events, child tasks.
--
-- A durable task that sleeps or waits ends its attempt and leaves `running` for
-- `sleeping` or `waiting`: it holds no lease and no worker slot, and it is not in the
-- claim index. The claim's sweep (or an emit, or a child's end) moves it back to pending.

alter table durable.tasks drop constraint tasks_status_check;
alter table durable.tasks add constraint tasks_status_check check (
    status in ('pending', 'running', 'sleeping', 'waiting', 'completed', 'failed', 'cancelled')
);

alter table durable.tasks
    -- when a sleep ends, or a wait times out (null: waits for ever)
    add column wake_at timestamptz,
    -- what a waiting task waits for: 'event' (wait_key is the event key) or 'children'
    -- (wait_children), and the seq of the event its log will record when it is woken
    add column wait_kind text check (wait_kind in ('event', 'children')),
    add column wait_key text,
    add column wait_seq integer,
    add column wait_children uuid[],
    -- the durable task that spawned this one, and at which event
    add column parent_id uuid,
    add column parent_seq integer;

-- The sweep: sleeping and waiting tasks of a queue by wake time.
create index tasks_wake_idx on durable.tasks (queue, wake_at)
where status in ('sleeping', 'waiting') and wake_at is not null;

-- An emit finds the tasks waiting for its key.
create index tasks_wait_key_idx on durable.tasks (wait_key)
where status = 'waiting' and wait_kind = 'event';

-- Children of a task (cascading cancel, waits).
create index tasks_parent_idx on durable.tasks (parent_id)
where parent_id is not null;

alter table durable.attempts drop constraint attempts_outcome_check;
alter table durable.attempts add constraint attempts_outcome_check check (
    outcome in ('completed', 'failed', 'timed_out', 'lease_expired', 'cancelled', 'released', 'suspended')
);

-- Emitted events: a latch per key (see plpgsql/suspend.sql). A wait that finds no row
-- creates one with emitted_at null, so that emit and wait always lock the same row.
create table durable.event_values (
    key text primary key,
    payload jsonb,
    emitted_at timestamptz
);

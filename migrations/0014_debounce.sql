-- 0014: debounced enqueue (the enqueue option "debounce"; plpgsql/queue.sql).
--
-- A task enqueued with a debounce key holds that key while it is pending and has never
-- started (attempt = 0): a later enqueue with the same key on the same queue pushes its
-- run_at forward (never past debounce_deadline, its first enqueue + max_delay) and
-- replaces its input instead of creating a task. Once it starts (or is cancelled) the key
-- is free again: the next enqueue with it creates a new task.
alter table durable.tasks
add column debounce_key text,
add column debounce_deadline timestamptz;

-- At most one holder per (queue, key). Enqueues of one key serialise on a lock of the key
-- (the lock order, plpgsql/README.md, 2.); this index is the guarantee behind it, and the
-- look-up of the holder.
create unique index tasks_debounce_idx on durable.tasks (queue, debounce_key)
where debounce_key is not null and status = 'pending' and attempt = 0;

-- durable._lock_for_new_tasks takes the debounce keys too: its old signature goes, and
-- plpgsql/queue.sql creates the new one.
drop function if exists durable._lock_for_new_tasks(durable.queues, text[], text[], uuid[]);

-- 0021: when a queue's floors were last raised (plpgsql/ready.sql), on the queue's own slot
-- 0 (task_name ''; null on the names' slots). A claim of more than one task that takes all
-- it asked for raises its queue's floors again when the last raise is 100 ms old
-- (durable._ready_raise_early), not only on the queue's once-a-second turn: under a backlog
-- and an xmin pin, the entries a claim steps over are those of the tasks claimed since the
-- last raise.
alter table durable.ready_floors add column raised_at timestamptz;

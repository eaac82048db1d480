-- 0006: correct under contention, linear fan-in.
--
-- The lock order these tables serve is written once, in plpgsql/README.md.

-- The schedule_timeout a task was enqueued with (schedule_deadline is run_at plus it), so
-- that a fork of the task gets one of its own. Existing tasks: derived where the task has
-- not started yet (its run_at is still the one the deadline was counted from).
alter table durable.tasks add column schedule_timeout double precision;
update durable.tasks
set schedule_timeout = extract(epoch from schedule_deadline - run_at)
where schedule_deadline is not null and attempt = 0;

-- Fan-in in constant time per child, without a child ever locking its parent: each
-- awaited unfinished child of a waiting parent has a row in durable.child_waits, and the
-- wait has a count in durable.wait_counts. A child that ends deletes its row and counts
-- the wait down; the last one wakes the parent when it can take the parent's row without
-- waiting, else the claim's sweep of the parent's queue wakes it (remaining = 0). No step
-- looks at the siblings, and parents stay before children in the lock order.
create table durable.child_waits (
    child_id uuid primary key,
    parent_id uuid not null,
    -- the seq of the parent's wait (its event)
    wait_seq integer not null
);

create index child_waits_parent_idx on durable.child_waits (parent_id);

create table durable.wait_counts (
    parent_id uuid primary key,
    wait_seq integer not null,
    remaining integer not null
);

-- the waits whose children all ended, for the sweep
create index wait_counts_done_idx on durable.wait_counts (parent_id)
where remaining = 0;

-- Parents waiting right now for children of their own: their unfinished children.
insert into durable.child_waits (child_id, parent_id, wait_seq)
select
    c.task_id as child_id,
    p.task_id as parent_id,
    p.wait_seq
from durable.tasks as p
cross join lateral unnest(p.wait_children) as w (child_id)
inner join durable.tasks as c on w.child_id = c.task_id
where
    p.status = 'waiting' and p.wait_kind = 'children' and p.wake_at is null
    and c.parent_id = p.task_id and c.status not in ('completed', 'failed', 'cancelled')
on conflict (child_id) do nothing;

insert into durable.wait_counts (parent_id, wait_seq, remaining)
select
    p.task_id as parent_id,
    p.wait_seq,
    (
        select count(*) from durable.child_waits as w
        where w.parent_id = p.task_id
    ) as remaining
from durable.tasks as p
where p.status = 'waiting' and p.wait_kind = 'children' and p.wake_at is null;

revoke all on durable.child_waits from public;
revoke all on durable.wait_counts from public;

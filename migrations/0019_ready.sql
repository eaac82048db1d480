-- 0019: the claimable set in a narrow table of its own (plpgsql/ready.sql; issue 16).
--
-- durable.ready holds one row per pending task (status 'pending', due or not), written
-- only by the triggers of durable.tasks: inserted when a task becomes pending, deleted
-- when it stops being pending, updated when its place in the claim order changes. Claims
-- read it instead of durable.tasks: a narrow row, two indexes, and no update of a wide
-- row's many indexes to step over.
--
-- The claim order, all ascending: neg_priority (minus the priority), fair_tag, run_at,
-- seq. Ascending in every column, a row comparison can start an index scan at a floor.
create table durable.ready (
    task_id uuid primary key,
    queue text not null,
    task_name text not null,
    neg_priority integer not null,
    fair_tag bigint not null,
    run_at timestamptz not null,
    seq bigint not null,
    -- the task's schedule_deadline while it has never started (attempt 0), else null
    deadline timestamptz
);

create index ready_claim_idx on durable.ready (queue, neg_priority, fair_tag, run_at, seq);
create index ready_name_idx on durable.ready (queue, task_name, neg_priority, fair_tag, run_at, seq);

-- The floors: for a queue (task_name '') or one task name of it, a key at or below the
-- first row of durable.ready of that queue (and name), in claim order. A claim's index
-- scan starts there, so it never walks the entries of the rows claimed before the floor
-- was last set, which a transaction pinning the xmin horizon keeps from being removed.
-- The claim's maintenance raises them (at most once a second per queue); a row written below
-- one lowers it with a slot of its own. No row: no floor (the scan starts at the head).
create table durable.ready_floors (
    queue text not null,
    task_name text not null,
    -- 0: the floor the sweep set; others: a writer's row below it
    slot bigint not null,
    neg_priority integer not null,
    fair_tag bigint not null,
    run_at timestamptz not null,
    seq bigint not null,
    primary key (queue, task_name, slot)
);

create sequence durable.ready_floor_slots;

-- When the claim's maintenance last raised a queue's floors and looked for expired
-- leases (both at most once a second per queue).
alter table durable.queues add column swept_at timestamptz;

insert into durable.ready (task_id, queue, task_name, neg_priority, fair_tag, run_at, seq, deadline)
select
    k.task_id,
    k.queue,
    k.task_name,
    -k.priority as neg_priority,
    k.fair_tag,
    k.run_at,
    k.seq,
    case when k.attempt = 0 then k.schedule_deadline end as deadline
from durable.tasks as k
where k.status = 'pending';

-- tasks_claim_name_idx served the claims for some task names: durable.ready_name_idx
-- does now. tasks_claim_idx stays: the admission of a queue with limits reads it.
drop index durable.tasks_claim_name_idx;

revoke all on durable.ready, durable.ready_floors, durable.ready_floor_slots from public;

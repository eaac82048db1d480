-- 0020: finished tasks in an archive of their own, partitioned by day (issue 16).
--
-- durable.finished_tasks holds the tasks that reached a final status (completed, failed,
-- cancelled): same columns, same order as durable.tasks (LIKE), partitioned BY RANGE
-- (task_id) on the day boundaries of durable.attempts and durable.events (migration
-- 0018), so that a day's archived tasks, attempts and events are made ahead together and
-- dropped together (plpgsql/retention.sql, "History partitions"). durable.tasks keeps the
-- live tasks only (pending, running, sleeping, waiting): a task leaves it when it finishes
-- (durable._finish_tasks, finish.sql) and comes back when it is retried or replayed.
--
-- The conversion keeps every row: the finished tasks of today move into the archive, in
-- the partition of their day, or *_legacy (every id below the bound of attempts_legacy),
-- or *_default (a day without partitions). Functions and triggers come back from
-- plpgsql/ right after the migrations.

create table durable.finished_tasks (
    like durable.tasks including defaults,
    primary key (task_id),
    constraint finished_tasks_status_check check (status in ('completed', 'failed', 'cancelled'))
) partition by range (task_id);

-- When a past day's partitions can go, as the maintenance last found it (retention.sql): the
-- latest end + retention of its archived tasks; infinity: a task of a queue without
-- retention (looked at again hourly, drop_checked_at); null: not known yet, or a live task of
-- the day is left. The claim's row-wise retention leaves a day whose drop is near to it.
alter table durable.history_partitions add column drop_at timestamptz;
alter table durable.history_partitions add column drop_checked_at timestamptz;

-- No writer of durable.tasks from here to the commit, and none of the history either: a
-- claim of the code before this migration may be making the days ahead (retention.sql),
-- whose partitions of the archive this migration must make too. The tasks first, as every
-- verb locks a task before it writes its history (plpgsql/README.md).
lock table durable.tasks in access exclusive mode;
lock table durable.attempts, durable.events in share mode;

-- the day partitions of attempts and events that exist, and the legacy bound of 0018
do $$
declare
    v_bound text := substring(
        pg_catalog.pg_get_expr(
            (select c.relpartbound from pg_catalog.pg_class as c
             where c.oid = 'durable.attempts_legacy'::regclass),
            'durable.attempts_legacy'::regclass
        )
        from 'TO \(''([0-9a-f-]+)''\)'
    );
    d durable.history_partitions;
begin
    execute format('create table durable.finished_tasks_legacy partition of durable.finished_tasks
                    for values from (minvalue) to (%L)', v_bound);
    for d in select p.* from durable.history_partitions as p order by p.day loop
        execute format('create table durable.%I partition of durable.finished_tasks for values from (%L) to (%L)',
                       'finished_tasks_p' || to_char(d.day, 'YYYYMMDD'), d.lo, d.hi);
    end loop;
end;
$$;
create table durable.finished_tasks_default partition of durable.finished_tasks default;

-- the readers of the archive: a key's holder, a queue's or a status's pages, a parent's
-- children, the finished tasks of a window (metrics, retention)
create index finished_tasks_idempotency_idx on durable.finished_tasks (queue, idempotency_key)
where idempotency_key is not null;
create index finished_tasks_list_queue_idx on durable.finished_tasks (queue, task_id);
create index finished_tasks_list_queue_status_idx on durable.finished_tasks (queue, status, task_id);
create index finished_tasks_list_status_idx on durable.finished_tasks (status, task_id);
create index finished_tasks_finished_idx on durable.finished_tasks (queue, finished_at);
create index finished_tasks_children_idx on durable.finished_tasks (parent_id, task_id)
where parent_id is not null;

-- every column, in the same order (LIKE)
insert into durable.finished_tasks
select * from durable.tasks  -- noqa: AM04
where status in ('completed', 'failed', 'cancelled');

delete from durable.tasks
where status in ('completed', 'failed', 'cancelled');

-- durable.tasks holds live tasks only: a finish that forgot to move its task fails here
alter table durable.tasks drop constraint tasks_status_check;
alter table durable.tasks add constraint tasks_status_check
check (status in ('pending', 'running', 'sleeping', 'waiting'));

-- the indexes of finished tasks in durable.tasks: the archive's do their work now
drop index durable.tasks_finished_idx;
drop index durable.tasks_list_queue_status_idx;
drop index durable.tasks_list_status_idx;

revoke all on durable.finished_tasks, durable.finished_tasks_legacy, durable.finished_tasks_default from public;

-- every task, live or finished, for the owner's own looks (tests, psql): no verb reads it
create view durable.all_tasks as
select * from durable.tasks  -- noqa: AM04
union all
select * from durable.finished_tasks;  -- noqa: AM04

revoke all on durable.all_tasks from public;

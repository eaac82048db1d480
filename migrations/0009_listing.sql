-- 0009: listing tasks (durable.list_tasks, durable.list_queues, get_task's children; see
-- plpgsql/read.sql).
--
-- A page is the newest p_limit tasks (task_id descending: ids are uuidv7, time ordered)
-- that match the filters, from a keyset bound on (task_id < p_before). Each index below
-- hands out the tasks of one filter already in that order, so a page is a backward index
-- scan that stops after p_limit rows, however many tasks there are. list_tasks orders by
-- the index's leading column too, so that the planner cannot walk the primary key instead
-- (see the comment above durable.list_tasks).
--
-- Measured on PostgreSQL 15 with 1,050,000 tasks (21 queues, one of them of 50,000 tasks
-- all a month old; 7 statuses; 3,000 children of one task), EXPLAIN ANALYZE of the
-- listing statement inside the function, a page of 50:
--   queue (the old one, or the one of 500,000 tasks)  Index Scan Backward tasks_list_queue_idx,
--                                                     50 rows read, 0.1 ms (walking the primary
--                                                     key and filtering by queue, which the
--                                                     planner chose before the ORDER BY trick:
--                                                     1,003,000 rows read, 465 ms)
--   queue + status                                    tasks_list_queue_status_idx, 50 rows, 0.1-3 ms
--   status (every queue)                              tasks_list_status_idx, 50 rows, 0.3 ms
--   parent                                            tasks_children_idx, 50 rows, 0.1 ms
--   idempotency key (every queue)                     tasks_idempotency_idx, one probe a queue, 0.2 ms
--   p_before (a page deep in a queue)                 tasks_list_queue_idx from the bound, 0.1 ms
--   created_since (no other filter)                   tasks_pkey from the id of that time, 0.1 ms
--   no filter                                         tasks_pkey, 50 rows, 0.1 ms
-- Not served by an index of its own (a filter on the rows of the scans above): task name,
-- finished_since; a rare value of either reads the queue (or the table) back to its match.
-- list_queues counts from tasks_list_queue_status_idx (index only): 0.3 s for them all.
--
-- The price: a task's row is rewritten (never HOT: its status is in index predicates) at
-- each transition and heartbeat, and each new row version gets an entry in each of the
-- three new indexes. 3,000 enqueue + claim + heartbeat + complete cycles in one
-- transaction took 8 to 23% longer with them (noisy, shared machine); end to end through
-- pgbench with commits the difference was within the noise.

-- A queue's tasks, newest first (list_tasks(p_queue), a restricted caller's queues).
create index tasks_list_queue_idx on durable.tasks (queue, task_id);

-- The tasks of a queue in one status; list_queues counts from it.
create index tasks_list_queue_status_idx on durable.tasks (queue, status, task_id);

-- The tasks in one status across queues (the failed tasks of every queue).
create index tasks_list_status_idx on durable.tasks (status, task_id);

-- The children of a task in id order (list_tasks(p_parent), get_task's "children"). It
-- serves every look-up of tasks_parent_idx (parent_id = ...), which it replaces.
create index tasks_children_idx on durable.tasks (parent_id, task_id)
where parent_id is not null;
drop index durable.tasks_parent_idx;

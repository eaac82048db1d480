-- 0016: the claim of a worker that names its tasks, at any depth (issue 16).
--
-- A worker claims with the list of task names it can run. Over tasks_claim_idx (queue,
-- priority desc, fair_tag, run_at, seq) such a claim reads the queue's ready tasks in
-- claim order and filters them by name: behind 100,000 ready tasks of another name it
-- read 200,001 rows (56.7 ms, against 5.7 ms with none ahead). This index holds the same
-- tasks in the same order within each name: the claim reads, for each of its names, the
-- first rows of that name and merges them (durable.claim in plpgsql/claim.sql), so what it
-- reads no longer grows with other names' backlogs. bench/scale_bench.py measures it.
create index tasks_claim_name_idx on durable.tasks (queue, task_name, priority desc, fair_tag, run_at, seq)
where status = 'pending';

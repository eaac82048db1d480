-- Helpers for the files on durable.ready and its floors (plpgsql/ready.sql), included with
-- `\ir helpers/ready.sql`.

-- durable.ready as it should be: the pending tasks, with their keys
create function pg_temp.ready_mismatch() returns bigint language sql as $$
    select count(*) from (
        (select k.task_id, k.queue, k.task_name, -k.priority, k.fair_tag, k.run_at, k.seq,
                case when k.attempt = 0 then k.schedule_deadline end
         from durable.all_tasks k where k.status = 'pending'
         except all
         select r.task_id, r.queue, r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq, r.deadline
         from durable.ready r)
        union all
        (select r.task_id, r.queue, r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq, r.deadline
         from durable.ready r
         except all
         select k.task_id, k.queue, k.task_name, -k.priority, k.fair_tag, k.run_at, k.seq,
                case when k.attempt = 0 then k.schedule_deadline end
         from durable.all_tasks k where k.status = 'pending')
    ) x
$$;
-- rows of durable.ready below their floors (queue, and name): must be none
create function pg_temp.below_floor() returns bigint language sql as $$
    select count(*) from durable.ready r
    cross join lateral durable._ready_floor(r.queue, '') q
    cross join lateral durable._ready_floor(r.queue, r.task_name) n
    where (r.neg_priority, r.fair_tag, r.run_at, r.seq) < (q.neg_priority, q.fair_tag, q.run_at, q.seq)
       or (r.neg_priority, r.fair_tag, r.run_at, r.seq) < (n.neg_priority, n.fair_tag, n.run_at, n.seq)
$$;
create function pg_temp.floor_of(p_queue text, p_name text default '') returns text language sql as $$
    select format('%s/%s/%s/%s', f.neg_priority, f.fair_tag, f.run_at, f.seq) from durable._ready_floor(p_queue, p_name) f
$$;
create function pg_temp.slots(p_queue text, p_name text default '') returns integer language sql as $$
    select count(*)::integer from durable.ready_floors f where f.queue = p_queue and f.task_name = p_name
$$;
-- the floors' raise a claim makes once a second in a transaction of its own (a test file
-- runs in one transaction, where claims never raise: see ready.sql), at the test clock
create function pg_temp.raise(p_queue text) returns boolean language sql as $$
    select durable._ready_raise(p_queue, durable.current_time(), true)
$$;

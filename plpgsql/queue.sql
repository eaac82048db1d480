-- queue.sql: queues and enqueueing.
--
-- A queue carries defaults for its tasks (max_attempts, max_lost_leases, backoff,
-- timeout) and a retention period for finished tasks. Enqueue resolves every option of
-- a task once, against those defaults, and stores the result on the task row, so the
-- hot paths (claim, complete, fail) never read the queue's options again.
--
-- Enqueue announces ready work with one NOTIFY on channel `durable` (payload: the queue
-- name) per call, not per task; workers also poll, so a lost notification only costs
-- latency. NOTIFY takes a database-wide lock at commit, which serialises the commits of
-- notifying transactions: with many concurrent single enqueues that lock, not the insert,
-- is the ceiling (measured: 16 clients of single enqueues ran ~2.6x faster without it).
-- A queue with {"notify": false} never notifies; its workers find work by polling.

-- Keys accepted in a queue's options.
create or replace function durable._queue_option_keys()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array[
        'max_attempts', 'max_lost_leases', 'backoff', 'timeout', 'retention', 'notify',
        -- checkpoints committed without waiting for the disk flush: see log.sql
        'async_checkpoints',
        -- concurrency and rate limits: see limits.sql
        'concurrency_limit', 'concurrency_key_limit', 'concurrency_strategy', 'rate_limit',
        'hold_slots_while_suspended'
    ];
end;
$$;

comment on function durable._queue_option_keys() is
'Internal: the keys a queue''s options may hold.';

-- Keys accepted in the options of one enqueue.
create or replace function durable._enqueue_option_keys()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array[
        'priority', 'run_at', 'delay', 'max_attempts', 'max_lost_leases', 'backoff',
        'timeout', 'schedule_timeout', 'idempotency_key', 'durable',
        'concurrency_key', 'concurrency_key_limit', 'trace_context'
    ];
end;
$$;

comment on function durable._enqueue_option_keys() is
'Internal: the keys the options of durable.enqueue may hold.';

-- Checks queue options and returns them normalised.
create or replace function durable._queue_options(p_options jsonb)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_result jsonb := '{}'::jsonb;
begin
    perform durable._check_keys(p_options, durable._queue_option_keys(), 'queue options');
    if p_options ? 'max_attempts' then
        v_result := v_result || jsonb_build_object(
            'max_attempts', durable._opt_number(p_options, 'max_attempts', 1, 1000, true)::integer);
    end if;
    if p_options ? 'max_lost_leases' then
        v_result := v_result || jsonb_build_object(
            'max_lost_leases', durable._opt_number(p_options, 'max_lost_leases', 0, 1000, true)::integer);
    end if;
    -- (a JSON null backoff, like any other option, removes the setting)
    if jsonb_typeof(p_options -> 'backoff') <> 'null' then
        v_result := v_result || jsonb_build_object('backoff', durable._backoff_policy(p_options -> 'backoff'));
    end if;
    if p_options ? 'timeout' then
        v_result := v_result || jsonb_build_object(
            'timeout', durable._opt_number(p_options, 'timeout', 0.001, 31536000));
    end if;
    if p_options ? 'retention' then
        v_result := v_result || jsonb_build_object(
            'retention', durable._opt_number(p_options, 'retention', 0, 315360000));
    end if;
    if p_options ? 'notify' then
        v_result := v_result || jsonb_build_object('notify', durable._opt_bool(p_options, 'notify'));
    end if;
    if p_options ? 'async_checkpoints' then
        v_result := v_result
            || jsonb_build_object('async_checkpoints', durable._opt_bool(p_options, 'async_checkpoints'));
    end if;
    v_result := v_result || durable._limit_options(p_options);
    -- a JSON null removes the setting
    return jsonb_strip_nulls(v_result);
end;
$$;

comment on function durable._queue_options(jsonb) is
'Internal: checks the options of a queue (DU001 on an unknown key or a bad value) and returns them normalised.';

create or replace function durable.create_queue(p_queue text, p_options jsonb default '{}'::jsonb)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_options jsonb;
begin
    perform durable._check_name(p_queue, 'queue');
    perform durable._require(p_queue, array['operator'], 'configure queues');
    v_options := durable._queue_options(p_options);
    insert into durable.queues as q (queue, options)
    values (p_queue, v_options)
    on conflict (queue) do update
        set options = jsonb_strip_nulls(
            (q.options - array(select jsonb_object_keys(p_options))) || excluded.options
        )
    returning q.options into v_options;
    perform durable._limits_changed(p_queue, v_options);
    return v_options;
end;
$$;

comment on function durable.create_queue(text, jsonb) is
'Creates a queue, or, when it exists, merges the given options into its own (a key given as JSON null is removed). Idempotent. Options: max_attempts (default 5), max_lost_leases (default 10), backoff (default exponential 1 s x2 up to 300 s with jitter), timeout (seconds per attempt), retention (seconds finished tasks are kept; see durable.purge), notify (default true: enqueue sends NOTIFY durable; false: workers only poll); async_checkpoints (default false; true: the step records of its durable tasks, durable.checkpoint and checkpoint_many, commit without waiting for the disk flush: a server crash may lose the last ones, whose steps then run again; the log stays a prefix); concurrency_limit, concurrency_key_limit, concurrency_strategy (queue, round_robin, cancel_in_progress, cancel_newest), rate_limit ({"limit": n, "period": seconds, "per": "key" or "queue"}, a sliding window) and hold_slots_while_suspended (see limits.sql). Returns the queue''s options. Errors: DU001, 42501.';

create or replace function durable.ensure_queue(p_queue text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_created boolean;
begin
    perform durable._check_name(p_queue, 'queue');
    perform durable._require(p_queue, durable._capabilities(), 'use queues');
    insert into durable.queues (queue, options) values (p_queue, '{}'::jsonb)
    on conflict (queue) do nothing
    returning true into v_created;
    return coalesce(v_created, false);
end;
$$;

comment on function durable.ensure_queue(text) is
'Creates the queue with default options when it does not exist (returns true); otherwise does nothing (false). It never changes a queue''s options (durable.create_queue does): workers and producers call it at start. Errors: DU001, 42501.';

-- Builds the row of a new task, every option resolved and checked.
create or replace function durable._task_row(
    p_queue durable.queues, p_task_name text, p_input jsonb, p_options jsonb, p_now timestamptz
)
returns durable.tasks
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_delay double precision;
    v_schedule_timeout double precision;
begin
    perform durable._check_name(p_task_name, 'task_name');
    if p_input is null or jsonb_typeof(p_input) <> 'object' then
        raise exception 'durable: task input must be a JSON object, got %', coalesce(jsonb_typeof(p_input), 'null')
            using errcode = 'DU001';
    end if;
    perform durable._check_payload(p_input, 'task input');
    perform durable._check_keys(p_options, durable._enqueue_option_keys(), 'enqueue options');

    t.task_id := durable.uuidv7();
    t.queue := p_queue.queue;
    t.task_name := p_task_name;
    t.input := p_input;
    t.status := 'pending';
    t.priority := coalesce(durable._opt_number(p_options, 'priority', -1000000, 1000000, true), 0)::integer;

    v_delay := durable._opt_number(p_options, 'delay', 0, 315360000);
    if p_options ? 'run_at' and jsonb_typeof(p_options -> 'run_at') <> 'null' then
        if v_delay is not null then
            raise exception 'durable: give run_at or delay, not both' using errcode = 'DU001';
        end if;
        if jsonb_typeof(p_options -> 'run_at') <> 'string' then
            raise exception 'durable: option "run_at" must be a timestamp string, got %', durable._quote((p_options -> 'run_at')::text)
                using errcode = 'DU001';
        end if;
        begin
            t.run_at := (p_options ->> 'run_at')::timestamptz;
        exception when others then
            raise exception 'durable: option "run_at" is not a timestamp: %', durable._quote(p_options ->> 'run_at')
                using errcode = 'DU001';
        end;
    else
        t.run_at := p_now + make_interval(secs => coalesce(v_delay, 0));
    end if;

    t.max_attempts := coalesce(
        durable._opt_number(p_options, 'max_attempts', 1, 1000, true),
        (p_queue.options ->> 'max_attempts')::integer,
        5
    )::integer;
    t.max_lost_leases := coalesce(
        durable._opt_number(p_options, 'max_lost_leases', 0, 1000, true),
        (p_queue.options ->> 'max_lost_leases')::integer,
        10
    )::integer;
    if jsonb_typeof(p_options -> 'backoff') <> 'null' then
        t.backoff := durable._backoff_policy(p_options -> 'backoff');
    else
        t.backoff := coalesce(p_queue.options -> 'backoff', durable._backoff_policy('{}'::jsonb));
    end if;
    t.timeout_seconds := coalesce(
        durable._opt_number(p_options, 'timeout', 0.001, 31536000),
        (p_queue.options ->> 'timeout')::double precision
    );
    v_schedule_timeout := durable._opt_number(p_options, 'schedule_timeout', 0.001, 31536000);
    if v_schedule_timeout is not null then
        -- the clock starts when the task becomes due
        t.schedule_deadline := t.run_at + make_interval(secs => v_schedule_timeout);
    end if;
    t.schedule_timeout := v_schedule_timeout;
    t.idempotency_key := durable._opt_text(p_options, 'idempotency_key', 255);
    t.durable := coalesce(durable._opt_bool(p_options, 'durable'), false);
    -- concurrency limits (limits.sql): the key and this task's own key limit (its round_robin
    -- tag is given when it is inserted: durable._create_tasks)
    t.concurrency_key := durable._opt_text(p_options, 'concurrency_key', 255);
    t.concurrency_key_limit := durable._opt_number(p_options, 'concurrency_key_limit', 1, 100000, true)::integer;
    if t.concurrency_key_limit is not null
        and (t.concurrency_key is null or not durable._has_limits(p_queue.options)) then
        raise exception 'durable: option "concurrency_key_limit" needs a concurrency_key and a queue with concurrency options'
            using errcode = 'DU001',
                  hint = 'set concurrency_key_limit or concurrency_strategy on the queue with durable.create_queue()';
    end if;
    -- the W3C trace context of the enqueue (or spawn), handed back by the claim
    t.trace_context := durable._opt_carrier(p_options, 'trace_context');
    t.fair_tag := 0;
    t.generation := 1;
    t.attempt := 0;
    t.failures := 0;
    t.lost_leases := 0;
    t.created_at := p_now;
    return t;
end;
$$;

comment on function durable._task_row(durable.queues, text, jsonb, jsonb, timestamptz) is
'Internal: checks the task name, input and enqueue options (DU001, DU003) and returns the new task''s row with every option resolved against the queue''s defaults.';

-- The locks that creating tasks on a queue takes, taken before anything is inserted (an
-- insert may wait for another transaction's idempotency key, which must not hold a lock
-- this one needs), and by spawn before its own row (p_also), in the lock order
-- (plpgsql/README.md): first the concurrency keys p_keys, in key order (the rows of
-- durable.fair_keys of a round_robin queue, or the advisory locks of a cancel strategy);
-- then, oldest first, the tasks the new ones may cancel (cancel_in_progress: every
-- unfinished task of the keys, with their trees), the tasks that already hold one of the
-- idempotency keys p_idempotency_keys (an insert that meets one while another transaction
-- updates it waits for that transaction: it must hold it already) and p_also.
create or replace function durable._lock_for_new_tasks(
    p_queue durable.queues, p_keys text[], p_idempotency_keys text[], p_also uuid[]
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_strategy text := p_queue.options ->> 'concurrency_strategy';
    v_keys text[] := array(select distinct k from unnest(p_keys) as k where k is not null order by k);
    v_tasks uuid[] := '{}'::uuid[];
begin
    if v_strategy = 'round_robin' then
        -- each key's row, inserted (the first task of a new key gets the queue's clock, as
        -- when there is no row: a task without a key counts under the key '') or locked, in
        -- one statement: a row deleted between a look and a lock (retention, create_queue)
        -- would leave its key unlocked until the tags are written, after the insert
        insert into durable.fair_keys as f (queue, concurrency_key, last_tag)
        select p_queue.queue, u.k, -1
        from (select distinct coalesce(k, '') as k from unnest(p_keys) as k) as u
        order by u.k
        on conflict (queue, concurrency_key) do update set last_tag = f.last_tag;
    elsif v_strategy in ('cancel_in_progress', 'cancel_newest') and cardinality(v_keys) > 0 then
        perform durable._require_read_committed(
            format('an enqueue on queue %s (strategy %s)', p_queue.queue, v_strategy));
        perform pg_advisory_xact_lock(1685418498, hashtext(p_queue.queue || E'\x1f' || k))
        from unnest(v_keys) as k
        order by k;
        if v_strategy = 'cancel_in_progress' then
            -- every unfinished task of the keys, suspended ones included (one that wakes up
            -- meanwhile may be a victim by the time the new tasks are in)
            v_tasks := array(
                select k.task_id from durable.tasks k
                where k.queue = p_queue.queue and k.concurrency_key = any(v_keys)
                  and k.status in ('pending', 'running', 'sleeping', 'waiting')
            );
        end if;
    end if;
    if cardinality(p_idempotency_keys) > 0 then
        p_also := p_also || array(
            select k.task_id from durable.tasks k
            where k.queue = p_queue.queue and k.idempotency_key = any(p_idempotency_keys)
        );
    end if;
    if cardinality(v_tasks) > 0 or cardinality(p_also) > 0 then
        perform durable._lock_trees(v_tasks, p_also);
    end if;
end;
$$;

comment on function durable._lock_for_new_tasks(durable.queues, text[], text[], uuid[]) is
'Internal: takes, in the lock order, what creating tasks of concurrency keys p_keys and idempotency keys p_idempotency_keys on the queue will lock or wait for (the round_robin keys'' rows, or the cancel strategy''s key locks; the tasks it may cancel, with their trees; the tasks holding the idempotency keys), then the tasks p_also: durable._create_tasks calls it before inserting, spawn before it locks its own task.';

-- Looks a queue up, raising DU002 when it does not exist.
create or replace function durable._queue(p_queue text)
returns durable.queues
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue durable.queues;
begin
    select * into v_queue from durable.queues q where q.queue = p_queue;
    if not found then
        raise exception 'durable: unknown queue %', durable._quote(p_queue)
            using errcode = 'DU002', hint = 'create it first with durable.create_queue()';
    end if;
    return v_queue;
end;
$$;

comment on function durable._queue(text) is
'Internal: the queue''s row, or DU002 when there is no such queue.';

-- The one place that sends NOTIFY durable: a queue whose options say {"notify": false}
-- never notifies (its workers poll), whatever made one of its tasks ready.
create or replace function durable._notify(p_queue text, p_options jsonb default null)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if coalesce((coalesce(p_options, (select q.options from durable.queues q where q.queue = p_queue))
                 ->> 'notify')::boolean, true) then
        perform pg_notify('durable', p_queue);
    end if;
end;
$$;

comment on function durable._notify(text, jsonb) is
'Internal: NOTIFY durable with the queue''s name, unless the queue''s options (p_options, else read) set notify to false.';

create or replace function durable.enqueue_many(p_queue text, p_tasks jsonb)
returns table (task_id uuid)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue durable.queues := durable._queue(p_queue);
    v_now timestamptz := durable.current_time();
    v_rows durable.tasks[];
    v_ids uuid[];
begin
    perform durable._require(p_queue, array['producer'], 'enqueue');
    if p_tasks is null or jsonb_typeof(p_tasks) <> 'array' then
        raise exception 'durable: enqueue_many takes a JSON array of task specs, got %',
            coalesce(jsonb_typeof(p_tasks), 'null')
            using errcode = 'DU001';
    end if;
    if exists (
        select 1 from jsonb_array_elements(p_tasks) as e (spec)
        where jsonb_typeof(e.spec) <> 'object'
    ) then
        raise exception 'durable: each task spec must be a JSON object {"task_name", "input", "options"}'
            using errcode = 'DU001';
    end if;
    perform durable._check_keys(e.spec, array['task_name', 'input', 'options'], 'task spec')
    from jsonb_array_elements(p_tasks) as e (spec);

    select array_agg(
               durable._task_row(
                   -- a task_name that is not a JSON string is no name (DU001), not its JSON text
                   v_queue, case when jsonb_typeof(e.spec -> 'task_name') = 'string' then e.spec ->> 'task_name' end,
                   coalesce(e.spec -> 'input', '{}'::jsonb),
                   coalesce(e.spec -> 'options', '{}'::jsonb), v_now
               ) order by e.ord)
    into v_rows
    from jsonb_array_elements(p_tasks) with ordinality as e (spec, ord);
    v_ids := coalesce(durable._create_tasks(v_queue, v_rows), '{}'::uuid[]);
    return query select u.id from unnest(v_ids) with ordinality as u (id, ord) order by u.ord;
end;
$$;

comment on function durable.enqueue_many(text, jsonb) is
'Enqueues a batch of tasks in one call: p_tasks is a JSON array of {"task_name": text, "input": object, "options": object} (options as for durable.enqueue). Returns one task id per spec, in order; a spec whose idempotency key is already taken gets the existing task''s id and writes nothing. Errors: DU001, DU002, DU003, 42501; on any error nothing of the batch is written.';

-- The one way a task is created (enqueue, enqueue_many, spawn, fork): rows built by
-- durable._task_row (or from the task a fork copies) go in with one INSERT, in
-- idempotency-key order (two batches sharing keys wait for each other's keys in one
-- order, never in a cycle), numbered (seq, the FIFO order) in the order given. Then, for
-- the rows really inserted: their round_robin tags, the cancel strategies, one NOTIFY.
-- Returns the id of each row in order: its new task, or the task that already held its
-- idempotency key.
create or replace function durable._create_tasks(p_queue durable.queues, p_rows durable.tasks[])
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_ids uuid[];
    v_new uuid[];
    v_ready boolean;
    t durable.tasks;
begin
    if p_queue.options ? 'concurrency_strategy'
        or exists (select 1 from unnest(p_rows) as r where r.idempotency_key is not null) then
        perform durable._lock_for_new_tasks(
            p_queue,
            array(select r.concurrency_key from unnest(p_rows) as r),
            array(select r.idempotency_key from unnest(p_rows) as r where r.idempotency_key is not null),
            '{}'
        );
    end if;
    if cardinality(p_rows) = 1 then
        -- one task (enqueue, spawn, fork): the same insert, without the batch's machinery
        -- (about a third of a single enqueue's time)
        t := p_rows[1];
        insert into durable.tasks (
            task_id, queue, task_name, input, status, priority, run_at, attempt, failures,
            lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds,
            schedule_timeout, schedule_deadline, idempotency_key, created_at, durable, generation,
            forked_from, forked_at_seq, parent_id, parent_seq,
            concurrency_key, concurrency_key_limit, fair_tag, trace_context
        )
        values (
            t.task_id, p_queue.queue, t.task_name, t.input, 'pending', t.priority, t.run_at, 0, 0,
            0, t.max_attempts, t.max_lost_leases, t.backoff, t.timeout_seconds,
            t.schedule_timeout, t.schedule_deadline, t.idempotency_key, t.created_at, t.durable, 1,
            t.forked_from, t.forked_at_seq, t.parent_id, t.parent_seq,
            t.concurrency_key, t.concurrency_key_limit, 0, t.trace_context
        )
        on conflict (queue, idempotency_key) where idempotency_key is not null do nothing;
        if not found then
            return array(
                select k.task_id from durable.tasks k
                where k.queue = p_queue.queue and k.idempotency_key = t.idempotency_key
            );
        end if;
        v_ids := array[t.task_id];
        v_new := v_ids;
        v_ready := t.run_at <= v_now;
    else
        with given as materialized (
            select r.*, r.ordinality as ord, nextval('durable.tasks_seq_seq') as next_seq
            from unnest(p_rows) with ordinality as r
            order by r.ordinality
        ),
        inserted as (
            insert into durable.tasks (
                task_id, seq, queue, task_name, input, status, priority, run_at, attempt, failures,
                lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds,
                schedule_timeout, schedule_deadline, idempotency_key, created_at, durable, generation,
                forked_from, forked_at_seq, parent_id, parent_seq,
                concurrency_key, concurrency_key_limit, fair_tag, trace_context
            )
            overriding system value
            select g.task_id, g.next_seq, p_queue.queue, g.task_name, g.input, 'pending', g.priority, g.run_at,
                   0, 0, 0, g.max_attempts, g.max_lost_leases, g.backoff, g.timeout_seconds,
                   g.schedule_timeout, g.schedule_deadline, g.idempotency_key, g.created_at, g.durable, 1,
                   g.forked_from, g.forked_at_seq, g.parent_id, g.parent_seq,
                   g.concurrency_key, g.concurrency_key_limit, 0, g.trace_context
            from given g
            order by g.idempotency_key, g.ord
            on conflict (queue, idempotency_key) where idempotency_key is not null do nothing
            returning tasks.task_id, tasks.run_at, tasks.idempotency_key
        )
        -- each row's id: its new task, or the task that holds its idempotency key (an earlier
        -- row of this batch, or a task that existed before this statement)
        select array_agg(coalesce(i.task_id, ik.task_id, k.task_id) order by g.ord),
               coalesce(bool_or(i.run_at <= v_now), false),
               array_agg(i.task_id order by g.ord) filter (where i.task_id is not null)
        into v_ids, v_ready, v_new
        from given g
        left join inserted i on i.task_id = g.task_id
        left join inserted ik on i.task_id is null and ik.idempotency_key = g.idempotency_key
        left join durable.tasks k
            on i.task_id is null and ik.task_id is null
            and k.queue = p_queue.queue and k.idempotency_key = g.idempotency_key;
        -- a key committed by another transaction while the insert waited for it is not in that
        -- statement's snapshot: look it up again, in a statement (and snapshot) of its own
        if array_position(v_ids, null) is not null then
            select array_agg(coalesce(u.id, k.task_id) order by u.ord) into v_ids
            from unnest(v_ids) with ordinality as u (id, ord)
            join unnest(p_rows) with ordinality as r on r.ordinality = u.ord
            left join durable.tasks k
                on u.id is null and k.queue = p_queue.queue and k.idempotency_key = r.idempotency_key;
        end if;
    end if;
    if v_new is not null then
        if p_queue.options ->> 'concurrency_strategy' = 'round_robin' then
            perform durable._assign_fair_tags(p_queue.queue, v_new);
        end if;
        if p_queue.options ? 'concurrency_strategy' then
            perform durable._enqueued_under_limits(p_queue, v_new);
        end if;
    end if;
    if v_ready then
        perform durable._notify(p_queue.queue, p_queue.options);
    end if;
    return v_ids;
end;
$$;

comment on function durable._create_tasks(durable.queues, durable.tasks[]) is
'Internal: the one way a task is created. Inserts the rows (from durable._task_row, or a fork''s copy) in idempotency-key order, numbered in the order given; a row whose idempotency key is taken writes nothing. For the new tasks: round_robin tags, cancel strategies, one NOTIFY. Returns each row''s task id, in order.';

create or replace function durable._enqueue(p_queue text, p_task_name text, p_input jsonb, p_options jsonb)
returns uuid
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue durable.queues := durable._queue(p_queue);
begin
    return (durable._create_tasks(
        v_queue, array[durable._task_row(v_queue, p_task_name, p_input, p_options, durable.current_time())]
    ))[1];
end;
$$;

comment on function durable._enqueue(text, text, jsonb, jsonb) is
'Internal: durable.enqueue without the caller''s permission check.';

create or replace function durable.enqueue(
    p_queue text, p_task_name text, p_input jsonb default '{}'::jsonb, p_options jsonb default '{}'::jsonb
)
returns uuid
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._require(p_queue, array['producer'], 'enqueue');
    return durable._enqueue(p_queue, p_task_name, p_input, p_options);
end;
$$;

comment on function durable.enqueue(text, text, jsonb, jsonb) is
'Enqueues one task and returns its id. p_input must be a JSON object. Options: priority (integer, higher first), run_at (timestamp) or delay (seconds), max_attempts, max_lost_leases, backoff, timeout (seconds an attempt may run), schedule_timeout (seconds after run_at the task may wait to start before it is cancelled), idempotency_key (a second enqueue with the same key on the same queue returns the first task''s id and writes nothing), durable (true: a durable task with an event log; see durable.checkpoint), concurrency_key (the key per-key limits, rate limits and round_robin count it under), concurrency_key_limit (this task''s own per-key limit; see limits.sql) and trace_context (the W3C trace context of the caller, {"traceparent": ..., "tracestate": ...}, at most 512 bytes, handed back by durable.claim). Errors: DU001 bad argument, DU002 unknown queue, DU003 input too large, 42501.';

grant execute on function durable.create_queue(text, jsonb) to durable_operator;
grant execute on function durable.ensure_queue(text) to durable_worker, durable_producer, durable_operator;
grant execute on function durable.enqueue_many(text, jsonb) to durable_producer;
grant execute on function durable.enqueue(text, text, jsonb, jsonb) to durable_producer;

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
--
-- Debounce (the enqueue option {"debounce": {"key", "delay", "max_delay"}}): the pending,
-- never started (attempt = 0) task of a queue with a debounce key holds it (at most one:
-- tasks_debounce_idx, migration 0014). An enqueue with a held key changes the holder (its
-- input; its run_at, now + delay capped at debounce_deadline, its first enqueue +
-- max_delay) and returns its id; otherwise it creates the task. Enqueues of one key
-- serialise on an advisory lock of the key (the lock order's keys, plpgsql/README.md).
-- Not with an idempotency key (a debounced enqueue already returns the task of its key)
-- nor in a spawn (a child that merged into another task would not be the parent's child).

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
        'concurrency_key', 'concurrency_key_limit', 'trace_context', 'debounce'
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
    v_debounce jsonb := p_options -> 'debounce';
    v_max_delay double precision;
begin
    -- (each check a plain expression first, which PL/pgSQL evaluates without a query, as a
    -- PERFORM is: the checker, which raises the error, runs only for a bad value)
    if not durable._name_ok(p_task_name) then
        perform durable._check_name(p_task_name, 'task_name');
    end if;
    if p_input is null or jsonb_typeof(p_input) <> 'object' then
        raise exception 'durable: task input must be a JSON object, got %', coalesce(jsonb_typeof(p_input), 'null')
            using errcode = 'DU001';
    end if;
    if pg_column_size(p_input) > durable.max_payload_bytes() then
        perform durable._check_payload(p_input, 'task input');
    end if;
    if p_options is null or jsonb_typeof(p_options) <> 'object' or p_options - durable._enqueue_option_keys() <> '{}'::jsonb then
        perform durable._check_keys(p_options, durable._enqueue_option_keys(), 'enqueue options');
    end if;

    t.task_id := durable.uuidv7();
    t.queue := p_queue.queue;
    t.task_name := p_task_name;
    t.input := p_input;
    t.status := 'pending';
    -- (each option is read only when given: a call costs a few microseconds, per task of a batch)
    t.priority := 0;
    if p_options ? 'priority' then
        t.priority := coalesce(durable._opt_number(p_options, 'priority', -1000000, 1000000, true), 0)::integer;
    end if;

    if p_options ? 'delay' then
        v_delay := durable._opt_number(p_options, 'delay', 0, 315360000);
    end if;
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
    if jsonb_typeof(v_debounce) <> 'null' then
        -- {"key", "delay", "max_delay"}: the run time and the deadline of a new task; what an
        -- enqueue with a key held by a pending task does instead: durable._create_tasks
        if jsonb_typeof(v_debounce) <> 'object' then
            raise exception 'durable: option "debounce" must be an object {"key", "delay", "max_delay"}, got %',
                durable._quote(v_debounce::text)
                using errcode = 'DU001';
        end if;
        perform durable._check_keys(v_debounce, array['key', 'delay', 'max_delay'], 'debounce options');
        t.debounce_key := durable._opt_text(v_debounce, 'key', 255);
        v_delay := durable._opt_number(v_debounce, 'delay', 0, 315360000);
        v_max_delay := durable._opt_number(v_debounce, 'max_delay', 0, 315360000);
        if t.debounce_key is null or v_delay is null then
            raise exception 'durable: option "debounce" needs a key and a delay (seconds)' using errcode = 'DU001';
        end if;
        if v_max_delay < v_delay then
            raise exception 'durable: debounce max_delay (%) must be at least its delay (%)', v_max_delay, v_delay
                using errcode = 'DU001';
        end if;
        if jsonb_typeof(p_options -> 'run_at') <> 'null' or jsonb_typeof(p_options -> 'delay') <> 'null' then
            raise exception 'durable: a debounced enqueue takes its run time from "debounce"; give no run_at or delay'
                using errcode = 'DU001';
        end if;
        if jsonb_typeof(p_options -> 'idempotency_key') <> 'null' then
            raise exception 'durable: give debounce or idempotency_key, not both'
                using errcode = 'DU001',
                      hint = 'a debounced enqueue already returns the pending task of its key';
        end if;
        t.run_at := p_now + make_interval(secs => v_delay);
        t.debounce_deadline := p_now + make_interval(secs => v_max_delay);
    end if;

    t.max_attempts := coalesce(
        case when p_options ? 'max_attempts' then durable._opt_number(p_options, 'max_attempts', 1, 1000, true) end,
        (p_queue.options ->> 'max_attempts')::integer,
        5
    )::integer;
    t.max_lost_leases := coalesce(
        case when p_options ? 'max_lost_leases' then durable._opt_number(p_options, 'max_lost_leases', 0, 1000, true) end,
        (p_queue.options ->> 'max_lost_leases')::integer,
        10
    )::integer;
    if jsonb_typeof(p_options -> 'backoff') <> 'null' then
        t.backoff := durable._backoff_policy(p_options -> 'backoff');
    else
        t.backoff := coalesce(p_queue.options -> 'backoff', durable._backoff_policy('{}'::jsonb));
    end if;
    t.timeout_seconds := coalesce(
        case when p_options ? 'timeout' then durable._opt_number(p_options, 'timeout', 0.001, 31536000) end,
        (p_queue.options ->> 'timeout')::double precision
    );
    if p_options ? 'schedule_timeout' then
        v_schedule_timeout := durable._opt_number(p_options, 'schedule_timeout', 0.001, 31536000);
    end if;
    if v_schedule_timeout is not null then
        -- the clock starts when the task becomes due
        t.schedule_deadline := t.run_at + make_interval(secs => v_schedule_timeout);
    end if;
    t.schedule_timeout := v_schedule_timeout;
    if p_options ? 'idempotency_key' then
        t.idempotency_key := durable._opt_text(p_options, 'idempotency_key', 255);
    end if;
    t.durable := false;
    if p_options ? 'durable' then
        t.durable := coalesce(durable._opt_bool(p_options, 'durable'), false);
    end if;
    -- concurrency limits (limits.sql): the key and this task's own key limit (its round_robin
    -- tag is given when it is inserted: durable._create_tasks)
    if p_options ? 'concurrency_key' then
        t.concurrency_key := durable._opt_text(p_options, 'concurrency_key', 255);
    end if;
    if p_options ? 'concurrency_key_limit' then
        t.concurrency_key_limit := durable._opt_number(p_options, 'concurrency_key_limit', 1, 100000, true)::integer;
    end if;
    if t.concurrency_key_limit is not null
        and (t.concurrency_key is null or not durable._has_limits(p_queue.options)) then
        raise exception 'durable: option "concurrency_key_limit" needs a concurrency_key and a queue with concurrency options'
            using errcode = 'DU001',
                  hint = 'set concurrency_key_limit or concurrency_strategy on the queue with durable.create_queue()';
    end if;
    -- the W3C trace context of the enqueue (or spawn), handed back by the claim
    if p_options ? 'trace_context' then
        t.trace_context := durable._opt_carrier(p_options, 'trace_context');
    end if;
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

-- The idempotency keys' locks: the advisory lock of each (queue, key), in key order. An
-- enqueue with keys takes them before it looks for the tasks holding them, and a restart of
-- a task holding a key (restart.sql) before it moves the task back from the archive: the
-- holder of a key is in one of two tables, with no unique index across both, so whoever
-- looks for it, or moves it, holds its key.
create or replace function durable._lock_idempotency_keys(p_queue text, p_keys text[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform pg_advisory_xact_lock(1685418502, hashtext(p_queue || E'\x1f' || u.k))
    from (select distinct k from unnest(p_keys) as k where k is not null) as u
    order by u.k;
end;
$$;

comment on function durable._lock_idempotency_keys(text, text[]) is
'Internal: takes the transaction-level advisory lock of each (queue, idempotency key), in key order: held by an enqueue with keys from before it looks for their holders to its commit, and by a restart of a task holding a key before it moves the task back (the lock order, plpgsql/README.md, 2).';

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
    p_queue durable.queues, p_keys text[], p_idempotency_keys text[], p_also uuid[],
    p_debounce_keys text[] default '{}'::text[]
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
    if cardinality(p_debounce_keys) > 0 then
        -- the debounce keys, after the concurrency keys, in key order; then (with the tasks
        -- below) the pending tasks holding them, whose run time and input the enqueue replaces.
        -- Whoever held a key before committed before this lock was granted: the next
        -- statement's snapshot sees its task
        perform durable._require_read_committed(format('a debounced enqueue on queue %s', p_queue.queue));
        perform pg_advisory_xact_lock(1685418500, hashtext(p_queue.queue || E'\x1f' || u.k))
        from (select distinct k from unnest(p_debounce_keys) as k where k is not null) as u
        order by u.k;
        p_also := p_also || array(
            select k.task_id from durable.tasks k
            where k.queue = p_queue.queue and k.debounce_key = any(p_debounce_keys)
              and k.status = 'pending' and k.attempt = 0
        );
    end if;
    if cardinality(p_idempotency_keys) > 0 then
        -- the idempotency keys, after the debounce keys, in key order; then (with the tasks
        -- below) the live tasks holding them (an archived holder is found by
        -- durable._create_tasks, under these locks)
        perform durable._lock_idempotency_keys(p_queue.queue, p_idempotency_keys);
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

comment on function durable._lock_for_new_tasks(durable.queues, text[], text[], uuid[], text[]) is
'Internal: takes, in the lock order, what creating tasks of concurrency keys p_keys, idempotency keys p_idempotency_keys and debounce keys p_debounce_keys on the queue will lock or wait for (the round_robin keys'' rows, or the cancel strategy''s key locks; the debounce keys'' locks; the tasks it may cancel, with their trees; the tasks holding the idempotency or debounce keys), then the tasks p_also: durable._create_tasks calls it before inserting, spawn before it locks its own task.';

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
declare
    v_options jsonb := p_options;
begin
    if v_options is null then
        select q.options into v_options from durable.queues q where q.queue = p_queue;
    end if;
    if coalesce((v_options ->> 'notify')::boolean, true) then
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
    -- Each distinct options object is checked and resolved once (durable._task_row of a
    -- stand-in task: the options and the time decide every column but the id, the name and
    -- the input), and each spec gets its id, name and input (measured, server CPU for a
    -- batch of 500 no-op specs: 9 ms, against 35 ms with a durable._task_row per task;
    -- the INSERT alone is 5 ms of it). The checks of the specs, names and inputs
    -- are plain SQL; a spec that fails one goes through durable._task_row, which raises
    -- its error
    if exists (
        select 1 from jsonb_array_elements(p_tasks) as e (spec)
        where e.spec - array['task_name', 'input', 'options'] <> '{}'::jsonb
           or jsonb_typeof(e.spec -> 'task_name') is distinct from 'string'
           or jsonb_typeof(coalesce(e.spec -> 'input', '{}'::jsonb)) <> 'object'
           or pg_column_size(e.spec -> 'input') > durable.max_payload_bytes()
    ) or exists (
        -- (each name once: offset 0 keeps the test above the distinct)
        select 1 from (select distinct e.spec ->> 'task_name' as n from jsonb_array_elements(p_tasks) as e (spec)
                       offset 0) as u
        where not durable._name_ok(u.n)
    ) then
        perform durable._check_keys(e.spec, array['task_name', 'input', 'options'], 'task spec')
        from jsonb_array_elements(p_tasks) as e (spec);
        perform durable._task_row(
            -- a task_name that is not a JSON string is no name (DU001), not its JSON text
            v_queue, case when jsonb_typeof(e.spec -> 'task_name') = 'string' then e.spec ->> 'task_name' end,
            coalesce(e.spec -> 'input', '{}'::jsonb), coalesce(e.spec -> 'options', '{}'::jsonb), v_now
        )
        from jsonb_array_elements(p_tasks) with ordinality as e (spec, ord)
        order by e.ord;
    end if;
    v_ids := durable._uuidv7s(jsonb_array_length(p_tasks));
    with templates as (
        select o.options, durable._task_row(v_queue, 'template', '{}'::jsonb, o.options, v_now) as t
        from (select distinct coalesce(e.spec -> 'options', '{}'::jsonb) as options
              from jsonb_array_elements(p_tasks) as e (spec)) as o
    )
    select array_agg(
               jsonb_populate_record(
                   m.t, jsonb_build_object('task_id', v_ids[e.ord], 'task_name', e.spec -> 'task_name',
                                           'input', coalesce(e.spec -> 'input', '{}'::jsonb))
               ) order by e.ord)
    into v_rows
    from jsonb_array_elements(p_tasks) with ordinality as e (spec, ord)
    join templates as m on m.options = coalesce(e.spec -> 'options', '{}'::jsonb);
    v_ids := coalesce(durable._create_tasks(v_queue, v_rows), '{}'::uuid[]);
    return query select u.id from unnest(v_ids) with ordinality as u (id, ord) order by u.ord;
end;
$$;

comment on function durable.enqueue_many(text, jsonb) is
'Enqueues a batch of tasks in one call: p_tasks is a JSON array of {"task_name": text, "input": object, "options": object} (options as for durable.enqueue). Returns one task id per spec, in order; a spec whose idempotency key is already taken gets the existing task''s id and writes nothing; the specs of one debounce key make one task (the last spec''s input and delay). Errors: DU001, DU002, DU003, DU040, 42501; on any error nothing of the batch is written.';

-- The finished tasks of a queue (durable.finished_tasks) that hold some of the idempotency
-- keys p_keys, as {key: task_id}: a finished task keeps its key until retention removes it.
-- The archive has no unique index across its day partitions (it is partitioned by task id):
-- this reads each partition's index of keys. Only enqueues with keys call it, after their
-- keys' live holders are locked (so a holder that finished meanwhile is seen here).
create or replace function durable._archived_keys(p_queue text, p_keys text[])
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return (
        select coalesce(jsonb_object_agg(f.idempotency_key, f.task_id), '{}'::jsonb)
        from durable.finished_tasks f
        where f.queue = p_queue and f.idempotency_key = any(p_keys)
    );
end;
$$;

comment on function durable._archived_keys(text, text[]) is
'Internal: the finished tasks of the queue holding some of the idempotency keys p_keys, as a JSON object {key: task_id}.';

-- The one way a task is created (enqueue, enqueue_many, spawn, fork): rows built by
-- durable._task_row (or from the task a fork copies) go in with one INSERT: a plain one
-- when no row has an idempotency key, else one in idempotency-key order (two batches
-- sharing keys wait for each other's keys in one order, never in a cycle) that skips the
-- keys already taken; numbered (seq, the FIFO order) in the order given. Rows with a
-- debounce key first update the task holding it, or become one row per key. Then, for
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
    -- (one row: plain expressions, which PL/pgSQL evaluates without a query)
    v_one boolean := cardinality(p_rows) = 1;
    v_first durable.tasks := p_rows[1];
    v_debounced boolean := v_first.debounce_key is not null;
    v_keyed boolean := v_first.idempotency_key is not null;
    v_rows durable.tasks[] := p_rows;
    v_held jsonb;
    v_held_ready boolean := false;
    v_archived jsonb;
    v_bad record;
begin
    if not v_one then
        v_debounced := exists (select 1 from unnest(p_rows) as r where r.debounce_key is not null);
        v_keyed := exists (select 1 from unnest(p_rows) as r where r.idempotency_key is not null);
    end if;
    if v_debounced then
        if exists (select 1 from unnest(p_rows) as r where r.debounce_key is not null and r.parent_id is not null) then
            -- (before any lock: the spawn holds its own task's row)
            raise exception 'durable: spawn does not debounce (option "debounce")' using errcode = 'DU001';
        end if;
    end if;
    if p_queue.options ? 'concurrency_strategy' or v_debounced or v_keyed then
        perform durable._lock_for_new_tasks(
            p_queue,
            array(select r.concurrency_key from unnest(p_rows) as r),
            array(select r.idempotency_key from unnest(p_rows) as r where r.idempotency_key is not null),
            '{}',
            array(select r.debounce_key from unnest(p_rows) as r where r.debounce_key is not null)
        );
    end if;
    if v_debounced then
        -- debounce (the option: durable._task_row). The rows of one key become one task: the
        -- pending, never started task holding the key (locked above; this statement's fresh
        -- snapshot says whether a claim started it meanwhile), or else the key's first row.
        -- The key's last row gives the input and the run time, capped at the task's deadline
        -- (its first enqueue + max_delay); the task's other options stay as they are
        select r.debounce_key, r.task_name, coalesce(k.task_name, f.task_name) as holder_name
        into v_bad
        from unnest(p_rows) as r
        left join durable.tasks k
            on k.queue = p_queue.queue and k.debounce_key = r.debounce_key
            and k.status = 'pending' and k.attempt = 0
        left join lateral (
            select f.task_name from unnest(p_rows) with ordinality as f
            where f.debounce_key = r.debounce_key order by f.ordinality limit 1
        ) as f on true
        where r.debounce_key is not null and r.task_name <> coalesce(k.task_name, f.task_name)
        limit 1;
        if found then
            raise exception 'durable: debounce key % of queue % is held by a pending task named %, not %',
                durable._quote(v_bad.debounce_key), durable._quote(p_queue.queue),
                durable._quote(v_bad.holder_name), durable._quote(v_bad.task_name)
                using errcode = 'DU040',
                      hint = 'a debounced enqueue replaces the input of the task holding its key: use a key per task name';
        end if;
        with last as (
            select distinct on (r.debounce_key) r.debounce_key, r.input, r.run_at
            from unnest(p_rows) with ordinality as r
            where r.debounce_key is not null
            order by r.debounce_key, r.ordinality desc
        ),
        held as (
            update durable.tasks k
            set input = l.input,
                run_at = least(l.run_at, k.debounce_deadline),
                schedule_deadline = least(l.run_at, k.debounce_deadline) + make_interval(secs => k.schedule_timeout)
            from last l
            where k.queue = p_queue.queue and k.debounce_key = l.debounce_key
              and k.status = 'pending' and k.attempt = 0
            returning k.debounce_key, k.task_id, k.run_at
        )
        select coalesce(jsonb_object_agg(h.debounce_key, h.task_id), '{}'::jsonb),
               coalesce(bool_or(h.run_at <= v_now), false)
        into v_held, v_held_ready
        from held h;
        -- the rows that create tasks: those without a key, and the first row of each key
        -- that no task holds, with its key's last input and run time
        v_rows := array(
            select case
                       when (p_rows[i]).debounce_key is null then p_rows[i]
                       else jsonb_populate_record(p_rows[i], jsonb_build_object(
                           'input', l.input,
                           'run_at', least(l.run_at, (p_rows[i]).debounce_deadline),
                           'schedule_deadline', least(l.run_at, (p_rows[i]).debounce_deadline)
                                                + make_interval(secs => (p_rows[i]).schedule_timeout)))
                   end
            from generate_subscripts(p_rows, 1) as i
            left join lateral (
                select l.input, l.run_at from unnest(p_rows) with ordinality as l
                where l.debounce_key = (p_rows[i]).debounce_key order by l.ordinality desc limit 1
            ) as l on true
            where (p_rows[i]).debounce_key is null
               or (not v_held ? (p_rows[i]).debounce_key
                   and not exists (select 1 from unnest(p_rows) with ordinality as e
                                   where e.debounce_key = (p_rows[i]).debounce_key and e.ordinality < i))
            order by i
        );
    end if;
    if cardinality(v_rows) = 0 then
        v_ids := '{}'::uuid[];
    elsif not v_keyed then
        -- rows without idempotency keys (enqueue, spawn, fork, most batches): every row is a
        -- new task, so a plain INSERT (no speculative insertion) and no look-up of the ids;
        -- numbered (seq) in the order given
        insert into durable.tasks (
            task_id, queue, task_name, input, status, priority, run_at, attempt, failures,
            lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds,
            schedule_timeout, schedule_deadline, idempotency_key, created_at, durable, generation,
            forked_from, forked_at_seq, parent_id, parent_seq,
            concurrency_key, concurrency_key_limit, fair_tag, trace_context, debounce_key, debounce_deadline
        )
        select r.task_id, p_queue.queue, r.task_name, r.input, 'pending', r.priority, r.run_at,
               0, 0, 0, r.max_attempts, r.max_lost_leases, r.backoff, r.timeout_seconds,
               r.schedule_timeout, r.schedule_deadline, null, r.created_at, r.durable, 1,
               r.forked_from, r.forked_at_seq, r.parent_id, r.parent_seq,
               r.concurrency_key, r.concurrency_key_limit, 0, r.trace_context, r.debounce_key, r.debounce_deadline
        from unnest(v_rows) with ordinality as r
        order by r.ordinality;
        if cardinality(v_rows) = 1 then
            t := v_rows[1];
            v_ids := array[t.task_id];
            v_ready := t.run_at <= v_now;
        else
            select array_agg(r.task_id order by r.ordinality), coalesce(bool_or(r.run_at <= v_now), false)
            into v_ids, v_ready
            from unnest(v_rows) with ordinality as r;
        end if;
        v_new := v_ids;
    else
        -- the keys that finished tasks hold (their live holders are locked by now: one that
        -- finished meanwhile is in the archive, and this statement sees it)
        v_archived := durable._archived_keys(
            p_queue.queue, array(select r.idempotency_key from unnest(v_rows) as r where r.idempotency_key is not null)
        );
        with given as materialized (
            select r.*, r.ordinality as ord, nextval('durable.tasks_seq_seq') as next_seq
            from unnest(v_rows) with ordinality as r
            where r.idempotency_key is null or not v_archived ? r.idempotency_key
            order by r.ordinality
        ),
        inserted as (
            insert into durable.tasks (
                task_id, seq, queue, task_name, input, status, priority, run_at, attempt, failures,
                lost_leases, max_attempts, max_lost_leases, backoff, timeout_seconds,
                schedule_timeout, schedule_deadline, idempotency_key, created_at, durable, generation,
                forked_from, forked_at_seq, parent_id, parent_seq,
                concurrency_key, concurrency_key_limit, fair_tag, trace_context, debounce_key, debounce_deadline
            )
            overriding system value
            select g.task_id, g.next_seq, p_queue.queue, g.task_name, g.input, 'pending', g.priority, g.run_at,
                   0, 0, 0, g.max_attempts, g.max_lost_leases, g.backoff, g.timeout_seconds,
                   g.schedule_timeout, g.schedule_deadline, g.idempotency_key, g.created_at, g.durable, 1,
                   g.forked_from, g.forked_at_seq, g.parent_id, g.parent_seq,
                   g.concurrency_key, g.concurrency_key_limit, 0, g.trace_context, g.debounce_key, g.debounce_deadline
            from given g
            order by g.idempotency_key, g.ord
            on conflict (queue, idempotency_key) where idempotency_key is not null do nothing
            returning tasks.task_id, tasks.run_at, tasks.idempotency_key
        )
        -- each row's id: its new task, or the task that holds its idempotency key (an earlier
        -- row of this batch, or a task that existed before this statement)
        select array_agg(
                   coalesce(i.task_id, ik.task_id, k.task_id, (v_archived ->> g.idempotency_key)::uuid)
                   order by g.ord),
               coalesce(bool_or(i.run_at <= v_now), false),
               array_agg(i.task_id order by g.ord) filter (where i.task_id is not null)
        into v_ids, v_ready, v_new
        from (select r.task_id, r.idempotency_key, r.ordinality as ord from unnest(v_rows) with ordinality as r) as g
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
            join unnest(v_rows) with ordinality as r on r.ordinality = u.ord
            left join durable.tasks k
                on u.id is null and k.queue = p_queue.queue and k.idempotency_key = r.idempotency_key;
            -- (and one that finished since: in the archive)
            if array_position(v_ids, null) is not null then
                v_archived := durable._archived_keys(
                    p_queue.queue, array(select r.idempotency_key from unnest(v_rows) as r
                                         where r.idempotency_key is not null)
                );
                select array_agg(coalesce(u.id, (v_archived ->> r.idempotency_key)::uuid) order by u.ord) into v_ids
                from unnest(v_ids) with ordinality as u (id, ord)
                join unnest(v_rows) with ordinality as r on r.ordinality = u.ord;
            end if;
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
    if v_debounced then
        -- each given row's id: its own row's, or its key's task (the holder, or the key's
        -- first row, inserted above)
        select array_agg(
                   coalesce((v_held ->> (p_rows[i]).debounce_key)::uuid, v.id, f.task_id) order by i)
        into v_ids
        from generate_subscripts(p_rows, 1) as i
        left join (
            select (v_rows[j]).task_id as task_id, v_ids[j] as id from generate_subscripts(v_rows, 1) as j
        ) as v on v.task_id = (p_rows[i]).task_id
        left join lateral (
            select f.task_id from unnest(p_rows) with ordinality as f
            where f.debounce_key = (p_rows[i]).debounce_key order by f.ordinality limit 1
        ) as f on true;
    end if;
    if v_ready or v_held_ready then
        perform durable._notify(p_queue.queue, p_queue.options);
    end if;
    return v_ids;
end;
$$;

comment on function durable._create_tasks(durable.queues, durable.tasks[]) is
'Internal: the one way a task is created. Inserts the rows (from durable._task_row, or a fork''s copy) in idempotency-key order, numbered in the order given; a row whose idempotency key is taken writes nothing; the rows of one debounce key update the pending task holding it, or make one task (DU040 on a task name that differs). For the new tasks: round_robin tags, cancel strategies, one NOTIFY. Returns each row''s task id, in order.';

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
    -- (a plain expression first, evaluated without a query, as a PERFORM is)
    if not durable._allowed(p_queue, array['producer']) then
        perform durable._require(p_queue, array['producer'], 'enqueue');
    end if;
    return durable._enqueue(p_queue, p_task_name, p_input, p_options);
end;
$$;

comment on function durable.enqueue(text, text, jsonb, jsonb) is
'Enqueues one task and returns its id. p_input must be a JSON object. Options: priority (integer, higher first), run_at (timestamp) or delay (seconds), max_attempts, max_lost_leases, backoff, timeout (seconds an attempt may run), schedule_timeout (seconds after run_at the task may wait to start before it is cancelled), idempotency_key (a second enqueue with the same key on the same queue returns the first task''s id and writes nothing), durable (true: a durable task with an event log; see durable.checkpoint), concurrency_key (the key per-key limits, rate limits and round_robin count it under), concurrency_key_limit (this task''s own per-key limit; see limits.sql) and trace_context (the W3C trace context of the caller, {"traceparent": ..., "tracestate": ...}, at most 512 bytes, handed back by durable.claim) and debounce ({"key": name, "delay": seconds, "max_delay": seconds or absent}: while a task of the queue holding that key is pending and has never started, the enqueue returns that task, replaces its input and sets its run_at to now + delay, never past its first enqueue + max_delay; otherwise it creates a task due in delay seconds that holds the key; not with run_at, delay or idempotency_key). Errors: DU001 bad argument, DU002 unknown queue, DU003 input too large, DU040 the debounce key is held by a task of another name, 42501.';

grant execute on function durable.create_queue(text, jsonb) to durable_operator;
grant execute on function durable.ensure_queue(text) to durable_worker, durable_producer, durable_operator;
grant execute on function durable.enqueue_many(text, jsonb) to durable_producer;
grant execute on function durable.enqueue(text, text, jsonb, jsonb) to durable_producer;

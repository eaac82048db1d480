-- suspend.sql: waiting without holding a worker: durable sleep, events, child tasks.
--
-- A durable task that must wait ends its attempt instead of blocking a worker: the verb
-- records what it can, moves the task from `running` to `sleeping` or `waiting` (no
-- lease, no slot, not in the claim index) and tells the worker to unwind the code. When
-- the wait is over the task goes back to `pending`; the next worker re-runs the code,
-- whose recorded events (the sleep, the wait with its outcome) replay without waiting.
--
-- Sleep. durable.sleep records the wake time, computed on the database clock, as an
-- event. If the time has not come, the task sleeps until it; the claim's sweep wakes it.
-- A re-run that reaches the recorded sleep sleeps only what remains, if anything.
--
-- Events are latches, one per key within a queue's scope. durable.emit_event(queue,
-- key, payload) sets the key's payload (a later emit replaces it) and wakes every task of
-- that queue waiting for the key, recording the payload in each waiter's log; a task
-- waits for keys in its own queue's scope (see security.sql). A wait for a key that was already emitted gets the
-- payload at once; a wait with a timeout that passes records {"timed_out": true}. For a
-- message meant for one task, use a key of its own (for example 'approval:<order id>').
-- No lost wakeup: wait and emit both lock the key's row (queue, key) in
-- durable.event_values first (a wait creates the row when there is none), so whichever
-- comes second sees the other.
--
-- Children. durable.spawn creates a child task exactly once: the spawn is an event whose
-- result is the child's id, written in the same transaction as the child. Waiting for
-- children (one or a set) suspends the parent until all have ended; the child that ends
-- last wakes it (a trigger, which locks the parent row, so two children ending at once
-- cannot both miss it). Each child's status, output or error is recorded in the
-- parent's log, so a re-run sees the same outcome: a failed child stays failed.
--
-- Cancellation cascades: durable.cancel cancels a task and, recursively, its unfinished
-- children.

-- Ends the attempt of a locked, running task that now sleeps or waits.
create or replace function durable._suspend(
    t durable.tasks, p_status text, p_wake_at timestamptz,
    p_wait_kind text default null, p_wait_key text default null, p_wait_seq integer default null,
    p_wait_children uuid[] default null
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
begin
    insert into durable.attempts (task_id, attempt, queue, worker, lease_token, started_at, ended_at, outcome)
    values (t.task_id, t.attempt, t.queue, t.worker, t.lease_token, t.started_at, v_now, 'suspended');
    update durable.tasks k
    set status = p_status,
        wake_at = p_wake_at,
        wait_kind = p_wait_kind,
        wait_key = p_wait_key,
        wait_seq = p_wait_seq,
        wait_children = p_wait_children,
        lease_expires_at = null,
        attempt_deadline = null
    where k.task_id = t.task_id;
end;
$$;

comment on function durable._suspend(durable.tasks, text, timestamptz, text, text, integer, uuid[]) is
'Internal: ends the running attempt of a locked task (outcome suspended) and parks the task as sleeping or waiting, with what it waits for.';

-- Moves parked tasks back to pending, in one pass, after recording the outcome of each
-- waiting one's wait (p_results[i], with p_hashes[i], at the seq it waits at).
create or replace function durable._resume_many(p_tasks uuid[], p_results jsonb[], p_hashes text[] default null)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
begin
    insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
    select k.task_id, k.generation, k.wait_seq, case when k.wait_kind = 'event' then 'wait' else 'children' end,
           k.wait_key, 'ok', r.result, r.input_hash, k.attempt, v_now
    from unnest(p_tasks, p_results, coalesce(p_hashes, array_fill(null::text, array[cardinality(p_tasks)])))
        as r (task_id, result, input_hash)
    join durable.tasks k on k.task_id = r.task_id
    where k.status = 'waiting';
    update durable.tasks k
    set status = 'pending',
        run_at = v_now,
        wake_at = null,
        wait_kind = null,
        wait_key = null,
        wait_seq = null,
        wait_children = null
    where k.task_id = any(p_tasks) and k.status in ('sleeping', 'waiting');
    delete from durable.wait_counts w where w.parent_id = any(p_tasks);
    delete from durable.child_waits w where w.parent_id = any(p_tasks);
    perform durable._notify(q.queue)
    from (select distinct k.queue from durable.tasks k where k.task_id = any(p_tasks)) as q;
end;
$$;

comment on function durable._resume_many(uuid[], jsonb[], text[]) is
'Internal: wakes locked sleeping or waiting tasks in one pass: each waiting one first gets the outcome of its wait recorded at the seq it waits at; then they are pending again and their queues are notified (once each).';

-- Moves one parked task back to pending (see durable._resume_many).
create or replace function durable._resume(t durable.tasks, p_result jsonb, p_input_hash text default null)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._resume_many(array[t.task_id], array[p_result], array[p_input_hash]);
end;
$$;

comment on function durable._resume(durable.tasks, jsonb, text) is
'Internal: wakes one locked sleeping or waiting task (durable._resume_many of one).';

create or replace function durable.sleep(
    p_task uuid, p_lease_token uuid, p_seq integer, p_name text default 'sleep',
    p_seconds double precision default null, p_until timestamptz default null
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v jsonb;
    v_until timestamptz;
begin
    perform durable._check_name(p_name, 'sleep name');
    v := durable._event_at(t, p_seq, 'sleep', p_name);
    if v ? 'nondeterminism' then
        return v;
    end if;
    if v is not null then
        v_until := (v -> 'result' ->> 'until')::timestamptz;
    else
        if (p_seconds is null) = (p_until is null) then
            raise exception 'durable: sleep takes seconds or until, exactly one of them' using errcode = 'DU001';
        end if;
        if p_seconds < 0 or p_seconds > 315360000 then
            raise exception 'durable: sleep seconds must be between 0 and 315360000, got %', p_seconds
                using errcode = 'DU001';
        end if;
        v_until := coalesce(p_until, durable.current_time() + make_interval(secs => p_seconds));
        v := durable._append_event(t, p_seq, 'sleep', p_name, 'ok', jsonb_build_object('until', v_until));
    end if;
    if v_until > durable.current_time() then
        perform durable._suspend(t, 'sleeping', v_until);
        return jsonb_build_object('seq', p_seq, 'kind', 'sleep', 'name', p_name, 'suspended', true);
    end if;
    return v;
end;
$$;

comment on function durable.sleep(uuid, uuid, integer, text, double precision, timestamptz) is
'Durable sleep at event p_seq: records the wake time (now + p_seconds on the database clock, or p_until) and, if it is still ahead, ends the attempt and parks the task as sleeping until then (no lease, no slot). A re-run reaching the recorded sleep sleeps only what remains. Returns the event {"seq", "kind": "sleep", "name", "outcome", "result": {"until"}} once the time has come, or {"seq", "kind", "name", "suspended": true}: the attempt is over, the worker must stop running the code (or {"nondeterminism": ...}: the task has been failed). Errors: DU001, DU010, DU011, DU020, DU021, 42501.';

create or replace function durable.wait_event(
    p_task uuid, p_lease_token uuid, p_seq integer, p_key text, p_timeout_seconds double precision default null
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_queue text;
    v_recorded jsonb;
    v durable.event_values;
begin
    perform durable._check_name(p_key, 'event key');
    if p_timeout_seconds is not null and (p_timeout_seconds < 0 or p_timeout_seconds > 315360000) then
        raise exception 'durable: timeout_seconds must be between 0 and 315360000, got %', p_timeout_seconds
            using errcode = 'DU001';
    end if;
    -- Lock the key's row first (creating it when nobody emitted yet), then the task: the
    -- lock order puts event latches before tasks (plpgsql/README.md). An emit racing this
    -- wait locks the same row, so one of the two sees the other. Until the lock is held,
    -- the row may go (retention deletes a never-emitted key nobody waits for): then create
    -- it again, until this transaction holds it. (The task's queue never changes: read
    -- without a lock; an unknown task is the fence's DU004.)
    select k.queue into v_queue from durable.tasks k where k.task_id = p_task;
    if found then
        loop
            select * into v from durable.event_values ev where ev.queue = v_queue and ev.key = p_key for update;
            exit when found;
            insert into durable.event_values (queue, key) values (v_queue, p_key) on conflict (queue, key) do nothing;
        end loop;
    end if;
    t := durable._fenced(p_task, p_lease_token);
    v_recorded := durable._event_at(t, p_seq, 'wait', p_key);
    if v_recorded is not null then
        return v_recorded;
    end if;
    if v.emitted_at is not null then
        return durable._append_event(
            t, p_seq, 'wait', p_key, 'ok', jsonb_build_object('payload', v.payload, 'timed_out', false)
        );
    end if;
    perform durable._suspend(
        t, 'waiting', durable.current_time() + make_interval(secs => p_timeout_seconds), 'event', p_key, p_seq
    );
    return jsonb_build_object('seq', p_seq, 'kind', 'wait', 'name', p_key, 'suspended', true);
end;
$$;

comment on function durable.wait_event(uuid, uuid, integer, text, double precision) is
'Waits at event p_seq for the event key p_key in the scope of the task''s queue: if it was emitted, its payload is recorded at once and the event returned ({"seq", "kind": "wait", "name": key, "outcome", "result": {"payload", "timed_out": false}}); otherwise the attempt ends and the task waits, without lease or slot, until an emit wakes it or p_timeout_seconds pass (then {"payload": null, "timed_out": true} is recorded), and {"seq", "kind", "name", "suspended": true} is returned: the worker must stop running the code. A key stays emitted: a later wait, in any history generation, gets its payload at once. Errors: DU001, DU010, DU011, DU020, DU021, DU022, 42501.';

create or replace function durable.emit_event(p_queue text, p_key text, p_payload jsonb default null)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_waiters uuid[];
    v_result jsonb := jsonb_build_object('payload', p_payload, 'timed_out', false);
begin
    perform durable._queue(p_queue);
    perform durable._require(p_queue, array['producer', 'operator'], 'emit events');
    perform durable._check_name(p_key, 'event key');
    perform durable._check_payload(p_payload, 'event payload');
    insert into durable.event_values as ev (queue, key, payload, emitted_at)
    values (p_queue, p_key, p_payload, durable.current_time())
    on conflict (queue, key) do update set payload = excluded.payload, emitted_at = excluded.emitted_at;
    -- its waiters, oldest first (the lock order, plpgsql/README.md), woken in one pass
    select coalesce(array_agg(w.task_id), '{}'::uuid[]) into v_waiters
    from (
        select k.task_id from durable.tasks k
        where k.queue = p_queue and k.status = 'waiting' and k.wait_kind = 'event' and k.wait_key = p_key
        order by k.task_id
        for update
    ) as w;
    if cardinality(v_waiters) > 0 then
        perform durable._resume_many(v_waiters, array_fill(v_result, array[cardinality(v_waiters)]));
    end if;
    return cardinality(v_waiters);
end;
$$;

comment on function durable.emit_event(text, text, jsonb) is
'Emits the event p_key in the scope of queue p_queue with p_payload: the key''s latch is set (a later emit replaces the payload) and every task of the queue waiting for the key is woken with the payload recorded in its log. Waits that come later get the payload at once. Tasks of other queues waiting for the same key are not concerned. Returns the number of tasks woken. Errors: DU001, DU002, DU003, 42501.';

create or replace function durable.spawn(
    p_task uuid, p_lease_token uuid, p_seq integer, p_queue text, p_task_name text,
    p_input jsonb default '{}'::jsonb, p_options jsonb default '{}'::jsonb
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_hash text := durable.input_hash(jsonb_build_object('queue', p_queue, 'input', p_input));
    v_recorded jsonb;
    v_queue durable.queues;
    v_row durable.tasks;
    v_child uuid;
begin
    perform durable._check_name(p_task_name, 'task_name');
    -- a spawn that will create its child takes the locks of a new task of the target queue
    -- (its key, the tasks it may cancel, the task holding its idempotency key) before its
    -- own task's row, as the lock order
    -- wants (plpgsql/README.md); a spawn that a re-run passes through creates nothing
    if not exists (
        select 1 from durable.tasks k
        join durable.events r on r.task_id = k.task_id and r.generation = k.generation and r.seq = p_seq
        where k.task_id = p_task
    ) then
        v_queue := durable._queue(p_queue);
        perform durable._require(p_queue, array['worker', 'producer'], 'spawn tasks');
        perform durable._lock_for_new_tasks(
            v_queue,
            array[case when jsonb_typeof(p_options -> 'concurrency_key') = 'string' then p_options ->> 'concurrency_key' end],
            array(select p_options ->> 'idempotency_key' where jsonb_typeof(p_options -> 'idempotency_key') = 'string'),
            array[p_task]
        );
    end if;
    t := durable._fenced(p_task, p_lease_token);
    v_recorded := durable._event_at(t, p_seq, 'spawn', p_task_name, v_hash);
    if v_recorded is not null then
        return v_recorded;
    end if;
    if v_queue is null then
        -- (the look before the fence found the event recorded; it is not, after all: the
        -- keys are then taken by durable._create_tasks, after this task's row)
        v_queue := durable._queue(p_queue);
        perform durable._require(p_queue, array['worker', 'producer'], 'spawn tasks');
    end if;
    -- the queue as read before the locks were taken: its options decided which were
    v_row := durable._task_row(v_queue, p_task_name, p_input, p_options, durable.current_time());
    -- a child, newer than its parent (the lock order relies on it); a task that already
    -- holds the idempotency key is returned as it is, never adopted as a child
    v_row.task_id := durable._uuidv7_after(t.task_id);
    v_row.parent_id := t.task_id;
    v_row.parent_seq := p_seq;
    v_child := (durable._create_tasks(v_queue, array[v_row]))[1];
    return durable._append_event(
        t, p_seq, 'spawn', p_task_name, 'ok', jsonb_build_object('task_id', v_child, 'queue', p_queue), v_hash
    );
end;
$$;

comment on function durable.spawn(uuid, uuid, integer, text, text, jsonb, jsonb) is
'Spawns a child task at event p_seq, exactly once: the child (enqueued on p_queue with p_input and p_options, as durable.enqueue) and the event recording its id are written together, and the event is returned ({"seq", "kind": "spawn", "name": task_name, "outcome", "result": {"task_id", "queue"}}); a re-run gets the same event from the log. An idempotency_key already held by another task returns that task''s id, which does not become a child (a cancel does not cascade to it; waiting for it polls). The queue and input are hashed into the event, so a re-run that spawns something else is a non-determinism (DU020). The caller needs worker on the task''s queue and worker or producer on p_queue. Errors: those of durable.enqueue, DU010, DU011, DU020, DU021, 42501.';

-- The outcome of a set of children, in the order given.
create or replace function durable._children_outcome(p_children uuid[])
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
-- planned with the children's ids: the archive is read in their days' partitions only
set plan_cache_mode = force_custom_plan
as $$
begin
    return (
        select coalesce(jsonb_agg(
            case when k.task_id is not null
                 then jsonb_build_object('task_id', c.id, 'status', k.status, 'output', k.output, 'error', k.error)
                 else jsonb_build_object('task_id', c.id, 'status', f.status, 'output', f.output, 'error', f.error)
            end
            order by c.ord
        ), '[]'::jsonb)
        from unnest(p_children) with ordinality as c (id, ord)
        left join durable.tasks k on k.task_id = c.id
        -- the finished ones are in the archive
        left join (
            select a.task_id, a.status, a.output, a.error from durable.finished_tasks a
            where a.task_id = any(p_children)
        ) as f on k.task_id is null and f.task_id = c.id
    );
end;
$$;

comment on function durable._children_outcome(uuid[]) is
'Internal: [{task_id, status, output, error}] of the given tasks, in order.';

create or replace function durable.wait_children(
    p_task uuid, p_lease_token uuid, p_seq integer, p_children uuid[], p_name text default 'children'
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v_hash text := durable.input_hash(to_jsonb(p_children));
    v_recorded jsonb;
    v_stranger uuid;
    v_inherited boolean;
    v_unfinished uuid[];
begin
    perform durable._check_name(p_name, 'wait name');
    if p_children is null or cardinality(p_children) = 0 then
        raise exception 'durable: wait_children needs at least one child id' using errcode = 'DU001';
    end if;
    v_recorded := durable._event_at(t, p_seq, 'children', p_name, v_hash);
    if v_recorded is not null then
        return v_recorded;
    end if;
    -- a child is a task this task's log records spawning (a fork inherits the spawns
    -- before its fork point, and so the children of its origin): one hashed set
    -- difference, not a look-up per child
    select x.id into v_stranger
    from (
        select c.id from unnest(p_children) as c (id)
        except
        select (s.result ->> 'task_id')::uuid from durable.events s
        where s.task_id = p_task and s.generation = t.generation and s.kind = 'spawn'
    ) as x
    limit 1;
    if found then
        raise exception 'durable: task % is not a child of task %', v_stranger, p_task
            using errcode = 'DU001', hint = 'wait only for tasks this task spawned with durable.spawn()';
    end if;
    -- The unfinished children, locked (FOR SHARE) after this task's own row: parents come
    -- before children in the lock order. A child ending right now holds its row until it
    -- commits; this waits for it, then sees it ended and leaves it out. A child that ends
    -- later finds its row in durable.child_waits.
    select coalesce(array_agg(u.task_id), '{}'::uuid[]), coalesce(bool_or(u.parent_id is distinct from p_task), false)
    into v_unfinished, v_inherited
    from (
        select k.task_id, k.parent_id from durable.tasks k
        where k.task_id in (select c.id from unnest(p_children) as c (id))
          and k.status not in ('completed', 'failed', 'cancelled')
        order by k.task_id
        for share
    ) as u;
    if cardinality(v_unfinished) = 0 then
        return durable._append_event(t, p_seq, 'children', p_name, 'ok', durable._children_outcome(p_children), v_hash);
    end if;
    if v_inherited then
        -- children of its origin do not count a fork down when they end (their rows are
        -- their own parent's): the sweep looks again every second instead
        perform durable._suspend(
            t, 'waiting', durable.current_time() + interval '1 second', 'children', p_name, p_seq, p_children
        );
    else
        -- each unfinished child counts the wait down when it ends (durable._child_ended)
        insert into durable.child_waits (child_id, parent_id, wait_seq)
        select u.id, p_task, p_seq from unnest(v_unfinished) as u (id)
        on conflict (child_id) do update set parent_id = excluded.parent_id, wait_seq = excluded.wait_seq;
        insert into durable.wait_counts (parent_id, wait_seq, remaining)
        values (p_task, p_seq, cardinality(v_unfinished))
        on conflict (parent_id) do update set wait_seq = excluded.wait_seq, remaining = excluded.remaining;
        perform durable._suspend(t, 'waiting', null, 'children', p_name, p_seq, p_children);
    end if;
    return jsonb_build_object('seq', p_seq, 'kind', 'children', 'name', p_name, 'suspended', true);
end;
$$;

comment on function durable.wait_children(uuid, uuid, integer, uuid[], text) is
'Waits at event p_seq until every task in p_children (children of this task) has ended. If they all have, their outcomes ([{task_id, status, output, error}], in order) are recorded and the event returned ({"seq", "kind": "children", "name", "outcome", "result": [...]}); otherwise the attempt ends and the task waits, without lease or slot, until the last of them ends, and {"seq", "kind", "name", "suspended": true} is returned: the worker must stop running the code. Errors: DU001, DU010, DU011, DU020, DU021, DU022, 42501.';

-- Trigger: a child that ends may be the last one its parent waits for.
create or replace function durable._child_ended()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_parent uuid;
    v_seq integer;
    v_left integer;
    p durable.tasks;
begin
    -- is a wait of the parent counting on this child? (the parent, starting its wait,
    -- locked the unfinished children first: it saw this one ended, or wrote the row)
    delete from durable.child_waits w where w.child_id = new.task_id
    returning w.parent_id, w.wait_seq into v_parent, v_seq;
    if not found then
        return null;
    end if;
    update durable.wait_counts c set remaining = c.remaining - 1
    where c.parent_id = v_parent and c.wait_seq = v_seq
    returning c.remaining into v_left;
    if not found or v_left > 0 then
        return null;
    end if;
    -- the last one: wake the parent now if its row can be had without waiting (a child
    -- never waits for its parent: parents come first in the lock order); otherwise the
    -- claim's sweep of the parent's queue wakes it (durable._wake_due), told by NOTIFY
    select * into p from durable.tasks k where k.task_id = v_parent for update skip locked;
    if found then
        if p.status = 'waiting' and p.wait_kind = 'children' and p.wait_seq = v_seq then
            perform durable._resume(
                p, durable._children_outcome(p.wait_children), durable.input_hash(to_jsonb(p.wait_children))
            );
        end if;
    else
        perform durable._notify(k.queue) from durable.tasks k where k.task_id = v_parent;
    end if;
    return null;
end;
$$;

comment on function durable._child_ended() is
'Trigger: a child task that ends and that its parent waits for (durable.child_waits) counts the wait down (durable.wait_counts); the last one records the children''s outcomes in the parent''s log and wakes the parent, or, when the parent''s row is locked, leaves that to the sweep. Constant work per child; a child never waits for its parent.';

-- A task ends when it arrives in the archive (durable._finish_tasks)
drop trigger if exists tasks_child_ended on durable.tasks;
drop trigger if exists finished_tasks_child_ended on durable.finished_tasks;
create trigger finished_tasks_child_ended
after insert on durable.finished_tasks
for each row
when (new.parent_id is not null)
execute function durable._child_ended();

-- Wakes the sleeping tasks of a queue whose time came, and times out its waits, in one
-- pass over the due tasks it can take without waiting.
create or replace function durable._wake_due(p_queue text, p_limit integer)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_due uuid[];
    v_later uuid[];
    v_wake uuid[];
    v_results jsonb[];
    v_hashes text[];
begin
    select coalesce(array_agg(d.task_id), '{}'::uuid[]) into v_due
    from (
        select k.task_id from durable.tasks k
        where k.queue = p_queue and k.status in ('sleeping', 'waiting') and k.wake_at <= v_now
        order by k.wake_at
        limit p_limit
        for update skip locked
    ) as d;
    -- and the parents whose last child found them locked (durable._child_ended)
    v_due := v_due || array(
        select k.task_id from durable.tasks k
        where k.task_id in (select w.parent_id from durable.wait_counts w where w.remaining = 0)
          and k.queue = p_queue and k.status = 'waiting' and k.wait_kind = 'children'
        limit p_limit
        for update skip locked
    );
    if cardinality(v_due) = 0 then
        return 0;
    end if;
    -- a fork waiting for children of its origin (they do not wake it): while one has not
    -- ended, look again in a second
    select coalesce(array_agg(k.task_id), '{}'::uuid[]) into v_later
    from durable.tasks k
    where k.task_id = any(v_due) and k.wait_kind = 'children' and k.wake_at is not null
      and exists (select 1 from durable.tasks c
                  where c.task_id = any(k.wait_children) and c.status not in ('completed', 'failed', 'cancelled'));
    if cardinality(v_later) > 0 then
        update durable.tasks k set wake_at = v_now + interval '1 second' where k.task_id = any(v_later);
    end if;
    -- the others wake: a sleep ends, an event wait times out, a children wait is over
    select array_agg(k.task_id),
           array_agg(case when k.wait_kind = 'children' then durable._children_outcome(k.wait_children)
                          when k.status = 'waiting' then jsonb_build_object('payload', null, 'timed_out', true) end),
           array_agg(case when k.wait_kind = 'children' then durable.input_hash(to_jsonb(k.wait_children)) end)
    into v_wake, v_results, v_hashes
    from durable.tasks k
    where k.task_id = any(v_due) and k.task_id <> all(v_later);
    if v_wake is not null then
        perform durable._resume_many(v_wake, v_results, v_hashes);
    end if;
    return coalesce(cardinality(v_wake), 0);
end;
$$;

comment on function durable._wake_due(text, integer) is
'Internal: moves up to p_limit sleeping tasks of the queue whose wake time came back to pending, and ends the waits whose timeout passed (recording {"timed_out": true}). Called by durable.reclaim, so by every claim.';

create or replace function durable.next_wake(p_queue text)
returns timestamptz
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._require(p_queue, array['worker'], 'watch queues');
    return least(
        (select min(k.wake_at)
         from durable.tasks k
         where k.queue = p_queue and k.status in ('sleeping', 'waiting') and k.wake_at is not null),
        -- and the queue's next schedule tick (plpgsql/schedules.sql)
        (select min(s.next_run_at) from durable.schedules s where s.queue = p_queue and not s.paused)
    );
end;
$$;

comment on function durable.next_wake(text) is
'When the next sleeping or timed waiting task or the next schedule tick of the queue is due (null when none): idle workers poll then instead of waiting out their poll interval.';

grant execute on function durable.sleep(uuid, uuid, integer, text, double precision, timestamptz) to durable_worker;
grant execute on function durable.wait_event(uuid, uuid, integer, text, double precision) to durable_worker;
grant execute on function durable.emit_event(text, text, jsonb) to durable_producer, durable_operator;
grant execute on function durable.spawn(uuid, uuid, integer, text, text, jsonb, jsonb) to durable_worker;
grant execute on function durable.wait_children(uuid, uuid, integer, uuid[], text) to durable_worker;
grant execute on function durable.next_wake(text) to durable_worker;

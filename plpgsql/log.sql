-- log.sql: the event log of durable tasks, and the determinism check.
--
-- A durable task is enqueued with {"durable": true}. Each durable call its code makes
-- (a step, a recorded clock read or random value, later a sleep, a wait, a spawn) is
-- event number seq = 1, 2, 3, ... of the task's current history generation. The claim
-- hands the worker the recorded events; the worker re-runs the code from the top, and
-- every durable call whose seq is already recorded gets the recorded result instead of
-- running again.
--
-- Determinism is checked here, in SQL, from each call's own arguments (the server hashes
-- what must be compared: a spawn's queue and input, a wait's children; no client hashes
-- anything): every durable call presents (seq, kind, name, arguments) and it must equal
-- what is recorded at that seq. A replayed prefix is presented in one call
-- (durable.replay_check) when the code makes its first new call, so the check happens
-- before any new side effect and costs one round trip per attempt, not one per replayed
-- event. The server holds the client to it: a new event is recorded only once every
-- earlier event was checked in the running attempt (recorded by it, or presented again:
-- tasks.replayed_to), else DU022; and a completion needs the whole history checked the
-- same way, so a client cannot complete past a renamed last step.
--
-- A mismatch is decided here too: the call that finds it fails the task at once, not
-- retryable, with the mismatch in its error ({"type": "NonDeterminismError", "seq",
-- "recorded", "presented", "message"}), and returns {"nondeterminism": ...}; whatever the
-- client does next, the task stays failed, and its next call on that lease raises DU020.
--
-- Every durable verb returns the event it recorded or found recorded in one shape, the
-- shape of an element of the claim's history: {"seq", "kind", "name", "outcome",
-- "result"}; or {"seq", "kind", "name", "suspended": true} when the task now waits.
-- durable.event_kinds() lists the kinds, their names, arguments and results. The values
-- of now, random and uuid events come from the server.

-- Events are immutable: triggers reject UPDATE and TRUNCATE (DU013), and a DELETE of
-- events whose task still exists; retention deletes a task first, then its events. A
-- replay does not delete: it starts a new generation.
--
-- Asynchronous checkpoints: a queue created with {"async_checkpoints": true} has the step
-- records of its tasks (durable.checkpoint, durable.checkpoint_many: only a new event
-- written by the one-statement path) committed with synchronous_commit off, set by the
-- verb for its own transaction from the queue's option, never from a caller's setting. A
-- step then costs no disk flush. The failure mode: a server crash (not a worker's) may
-- lose the records of the last steps (those of roughly the last wal_writer_delay x 3),
-- which then run again on the next attempt. The log stays a prefix: the WAL is written in
-- order, so a lost record loses every later one of its task too; and every other verb
-- (complete, fail, sleep, spawn, ...) still waits for its flush, which covers the step
-- records before it: a completed or suspended task never loses one. A batch with an
-- element of another queue, or one that failed a task, commits synchronously.
--
-- SQLSTATEs raised here (see README.md, "Errors"): DU020 a call on a lease whose task a
-- non-determinism failed, DU021 an event out of order, DU022 a new event before the
-- recorded ones were checked, DU013 the log is immutable.

-- The event kinds durable calls may record.
create or replace function durable._event_kinds()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['step', 'now', 'random', 'uuid', 'patch'];
end;
$$;

comment on function durable._event_kinds() is
'Internal: the kinds of event the log accepts.';

-- The kinds of event: the verb that records each, what its name is, what it is given and
-- what it records (docs/protocol.md).
create or replace function durable.event_kinds()
returns table (kind text, verb text, name text, arguments text, result text)
language plpgsql
immutable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return query values
        ('step', 'checkpoint', 'the step''s name', 'result (or error, an object: the step failed)',
         'the step''s value; outcome error: the error object'),
        ('now', 'checkpoint', 'a label', 'none: the server supplies the value',
         'the database clock, a timestamp string'),
        ('random', 'checkpoint', 'a label', 'none: the server supplies the value', 'a number in [0, 1)'),
        ('uuid', 'checkpoint', 'a label', 'none: the server supplies the value', 'a uuid string'),
        ('sleep', 'sleep', 'the sleep''s name', 'seconds or until', '{"until": timestamp}'),
        ('wait', 'wait_event', 'the event key', 'timeout_seconds', '{"payload": value, "timed_out": boolean}'),
        ('spawn', 'spawn', 'the child''s task name', 'queue, input (compared on re-runs), options',
         '{"task_id": uuid, "queue": text}'),
        ('children', 'wait_children', 'the wait''s name', 'children: task ids (compared on re-runs)',
         '[{"task_id", "status", "output", "error"}] in the order given'),
        ('patch', 'checkpoint', 'the patch id', 'none: a marker (the code took the patched branch here)', 'null');
end;
$$;

comment on function durable.event_kinds() is
'The kinds of event a durable task''s log records: for each, the verb that records it, what its name is, its arguments (those compared on a re-run: spawn''s queue and input, the children of a wait) and the result it records. Every durable verb returns the event it recorded (or found recorded) in the shape of durable.claim''s history: {"seq", "kind", "name", "outcome", "result"}.';

grant execute on function durable.event_kinds() to durable_worker, durable_reader;

-- An event as every durable verb returns it and as the claim's history lists it.
create or replace function durable._event_json(e durable.events)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return jsonb_build_object('seq', e.seq, 'kind', e.kind, 'name', e.name, 'outcome', e.outcome, 'result', e.result);
end;
$$;

comment on function durable._event_json(durable.events) is
'Internal: an event as the verbs return it and the claim''s history lists it: {"seq", "kind", "name", "outcome", "result"}.';

create or replace function durable._reject_event_change()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    raise exception 'durable: events are immutable (% on durable.events)', tg_op
        using errcode = 'DU013',
              hint = 'use durable.replay() to start a new history, or durable.fork() to branch from an event';
end;
$$;

comment on function durable._reject_event_change() is
'Trigger: the event log is append-only; UPDATE and TRUNCATE raise DU013 (deletes: see durable._reject_event_delete).';

-- Deletes: only the events of tasks that are gone (retention deletes the task first).
-- Checked once per statement over the deleted rows, with no setting anyone could set.
create or replace function durable._reject_event_delete()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_task uuid;
begin
    select g.task_id into v_task
    from gone g
    where exists (select 1 from durable.tasks t where t.task_id = g.task_id)
       or exists (select 1 from durable.finished_tasks f where f.task_id = g.task_id)
    limit 1;
    if found then
        raise exception 'durable: events are immutable (DELETE on durable.events of task %, which exists)', v_task
            using errcode = 'DU013',
                  hint = 'events go only with their task, by retention (durable.purge)';
    end if;
    return null;
end;
$$;

comment on function durable._reject_event_delete() is
'Trigger: a DELETE on durable.events raises DU013 when one of the deleted events belongs to a task that still exists: only retention, which deletes the task first, removes events.';

drop trigger if exists events_immutable on durable.events;
create trigger events_immutable
before update on durable.events
for each row
execute function durable._reject_event_change();

drop trigger if exists events_delete on durable.events;
create trigger events_delete
after delete on durable.events
referencing old table as gone
for each statement
execute function durable._reject_event_delete();

drop trigger if exists events_no_truncate on durable.events;
create trigger events_no_truncate
before truncate on durable.events
for each statement
execute function durable._reject_event_change();

-- durable.events is partitioned (retention.sql, "History partitions"): a statement naming
-- one partition fires that partition's statement triggers, not the table's (row triggers,
-- such as events_immutable, are the partitions' own already), so each partition gets the
-- two above: a DELETE or TRUNCATE of a partition keeps to the same rule. The maintenance
-- calls this for each partition it makes.
create or replace function durable._guard_event_partition(p_partition regclass)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    execute format('drop trigger if exists events_delete on %s', p_partition);
    execute format('create trigger events_delete after delete on %s referencing old table as gone '
                   'for each statement execute function durable._reject_event_delete()', p_partition);
    execute format('drop trigger if exists events_no_truncate on %s', p_partition);
    execute format('create trigger events_no_truncate before truncate on %s '
                   'for each statement execute function durable._reject_event_change()', p_partition);
end;
$$;

comment on function durable._guard_event_partition(regclass) is
'Internal: gives a partition of durable.events the statement triggers of the table (DELETE only of the events of tasks that are gone, no TRUNCATE), which a statement on the partition alone would not fire.';

select durable._guard_event_partition(i.inhrelid::regclass)
from pg_catalog.pg_inherits as i
where i.inhparent = 'durable.events'::regclass;

-- The recorded events of a task's current generation, as the claim hands them over.
-- (force_generic_plan and enable_seqscan: see "Plans" at the top of common.sql)
create or replace function durable._history(p_task uuid, p_generation integer)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
begin
    return (
        select coalesce(jsonb_agg(
            jsonb_build_object(
                'seq', e.seq, 'kind', e.kind, 'name', e.name, 'outcome', e.outcome, 'result', e.result
            ) order by e.seq
        ), '[]'::jsonb)
        from durable.events e
        where e.task_id = p_task and e.generation = p_generation
    );
end;
$$;

comment on function durable._history(uuid, integer) is
'Internal: the events of one history generation of a task, in order, as a JSON array of {seq, kind, name, outcome, result} (durable._event_json).';

create or replace function durable.history(p_task uuid, p_all_generations boolean default false)
returns table (
    generation integer, seq integer, kind text, name text, outcome text, result jsonb,
    input_hash text, attempt integer, recorded_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    -- live or finished
    t durable.tasks := durable._any_task(p_task);
begin
    if t.task_id is null then
        return;
    end if;
    perform durable._require(t.queue, durable._readers(), 'read tasks');
    return query
    select e.generation, e.seq, e.kind, e.name, e.outcome, e.result, e.input_hash, e.attempt, e.recorded_at
    from durable.events e
    where e.task_id = p_task and (p_all_generations or e.generation = t.generation)
    order by e.generation, e.seq;
end;
$$;

comment on function durable.history(uuid, boolean) is
'The event log of a task: its current generation, or every generation (earlier ones were set aside by durable.replay) when p_all_generations. No rows for an unknown task. Errors: 42501.';

-- What a mismatch between the history and the code is, and the message that says it:
-- {"task_id", "seq", "recorded", "presented", "message"} (recorded null: the code made a
-- call past the history's end; presented null: the code finished before it). Written once,
-- for the real replay (durable._nondeterminism) and the dry one (durable.check_replay).
create or replace function durable._mismatch(
    p_task uuid, p_seq integer, p_recorded jsonb, p_presented jsonb
)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_recorded text := case
        when p_recorded is null then 'nothing'
        else format('%s "%s"', p_recorded ->> 'kind', p_recorded ->> 'name')
    end;
    v_presented text;
begin
    -- what the caller presented is kept cut to a bounded length
    if p_presented is not null then
        p_presented := jsonb_build_object(
            'kind', left(p_presented ->> 'kind', 100), 'name', left(p_presented ->> 'name', 100),
            'input_hash', left(p_presented ->> 'input_hash', 100)
        );
    end if;
    v_presented := case
        when p_presented is null then 'nothing (it finished)'
        else format('%s "%s"', p_presented ->> 'kind', p_presented ->> 'name')
    end;
    if p_recorded is not null and p_presented is not null
        and p_recorded ->> 'kind' = p_presented ->> 'kind'
        and p_recorded ->> 'name' = p_presented ->> 'name' then
        v_recorded := v_recorded || ' with other arguments';
        v_presented := v_presented || ' with other arguments';
    end if;
    return jsonb_build_object(
        'task_id', p_task, 'seq', p_seq, 'recorded', p_recorded, 'presented', p_presented,
        'message', format('non-determinism in task %s at event %s: recorded %s, the code did %s',
                          p_task, p_seq, v_recorded, v_presented)
    );
end;
$$;

comment on function durable._mismatch(uuid, integer, jsonb, jsonb) is
'Internal: a mismatch between a task''s history and its code at event p_seq, as {"task_id", "seq", "recorded", "presented", "message"} (recorded and presented: {"kind", "name", "input_hash"}, or null: nothing recorded there, the code finished there).';

-- A non-determinism: the code no longer matches the history. The task (locked, running)
-- is failed at once, without retry, with the mismatch in its error, so that no client can
-- retry into it; the verb returns {"nondeterminism": ...} and the worker's next call on
-- that lease raises DU020 (durable._fenced).
create or replace function durable._nondeterminism(
    t durable.tasks, p_seq integer, p_recorded jsonb, p_presented jsonb
)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_mismatch jsonb := durable._mismatch(t.task_id, p_seq, p_recorded, p_presented);
begin
    perform 1 from durable._end_attempts(
        array[t.task_id], array['failed'],
        array[jsonb_build_object(
            'type', 'NonDeterminismError',
            'hint', 'the code no longer matches the recorded history: restore the old code, '
                || 'replay the task from scratch (durable.replay), or fork it before this event (durable.fork)'
        ) || v_mismatch],
        array[false]
    );
    return jsonb_build_object('nondeterminism', v_mismatch);
end;
$$;

comment on function durable._nondeterminism(durable.tasks, integer, jsonb, jsonb) is
'Internal: the code no longer matches the history at p_seq: fails the (locked, running) task at once, not retryable, with {"type": "NonDeterminismError", "message", "seq", "recorded", "presented"} as its error, and returns {"nondeterminism": {task_id, seq, recorded, presented, message}} for the verb to return.';

-- The hash that stands for what a call was given (a spawn's queue and input, the
-- children a wait is for), compared on re-runs.
create or replace function durable.input_hash(p_value jsonb)
returns text
language plpgsql
immutable
parallel safe
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return md5(p_value::text);
end;
$$;

comment on function durable.input_hash(jsonb) is
'The hash recorded with an event for what the call was given (md5 of the canonical jsonb text; null for null). A re-run that presents a different input at the same event is a non-determinism.';

-- Does a presented call match a recorded event? (kind, name, and the input hash when
-- either side has one)
create or replace function durable._same_event(
    p_kind text, p_name text, p_input_hash text, e durable.events
)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    -- never null: a call without a kind or name does not match (it would pass otherwise)
    return (e.kind, e.name, e.input_hash) is not distinct from (p_kind, p_name, p_input_hash);
end;
$$;

comment on function durable._same_event(text, text, text, durable.events) is
'Internal: whether a durable call (kind, name, input hash) is the one recorded in event e.';

-- The first presented call that does not match the recorded history (of p_generation),
-- as {"seq", "recorded", "presented"} ({"kind", "name", "input_hash"} each; recorded null
-- past the history's end), or null when they all match. p_presented as durable.replay_check
-- takes it (DU001, DU021 otherwise). The one rule of the real replay check and the dry one
-- (durable.check_replay); it writes nothing.
create or replace function durable._first_mismatch(p_task uuid, p_generation integer, p_presented jsonb)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_bad record;
    v_gap record;
begin
    if p_presented is null or jsonb_typeof(p_presented) <> 'array'
        or exists (select 1 from jsonb_array_elements(p_presented) as x (value) where jsonb_typeof(x.value) <> 'object') then
        raise exception 'durable: presented events must be a JSON array of {"seq", "kind", "name", ...}'
            using errcode = 'DU001';
    end if;
    -- a children wait presents task ids
    if exists (
        select 1 from jsonb_array_elements(p_presented) as x (value)
        cross join lateral jsonb_array_elements(
            case when jsonb_typeof(x.value -> 'children') = 'array' then x.value -> 'children' else '[]'::jsonb end
        ) as c (id)
        where x.value ->> 'kind' = 'children'
          and (jsonb_typeof(c.id) <> 'string'
               or c.id #>> '{}' !~* '^\{?[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}\}?$')
    ) then
        raise exception 'durable: the children of a presented children wait must be task ids (uuid strings)'
            using errcode = 'DU001';
    end if;
    -- a prefix: element i is event i, or events would pass unchecked (a gap, a repeat)
    select x.ord, x.value -> 'seq' as seq into v_gap
    from jsonb_array_elements(p_presented) with ordinality as x (value, ord)
    where (x.value ->> 'seq') is distinct from x.ord::text
    order by x.ord
    limit 1;
    if found then
        raise exception 'durable: task % presents % as event %; a replayed prefix is numbered 1, 2, 3, ... without gaps',
            p_task, coalesce(durable._quote(v_gap.seq::text), 'no seq'), v_gap.ord
            using errcode = 'DU021';
    end if;
    -- the hash of what each call was given, computed here from its own arguments
    select p.seq, p.call, p.input_hash, to_jsonb(e) as recorded
    into v_bad
    from (
        select (x.value ->> 'seq')::integer as seq, x.value as call,
               case x.value ->> 'kind'
                   when 'spawn' then durable.input_hash(
                       jsonb_build_object('queue', x.value -> 'queue', 'input', x.value -> 'input'))
                   when 'children' then durable.input_hash(to_jsonb(array(
                       select c.id::uuid from jsonb_array_elements_text(
                           case when jsonb_typeof(x.value -> 'children') = 'array' then x.value -> 'children'
                                else '[]'::jsonb end) as c (id))))
               end as input_hash
        from jsonb_array_elements(p_presented) as x (value)
    ) as p
    left join durable.events e
        on e.task_id = p_task and e.generation = p_generation and e.seq = p.seq
    -- durable._same_event's rule, written as a row comparison: no function call per event
    -- (a 10,000-event replay spent more time in those calls than in the join)
    where e.seq is null
       or (e.kind, e.name, e.input_hash) is distinct from (p.call ->> 'kind', p.call ->> 'name', p.input_hash)
    order by p.seq
    limit 1;
    if not found then
        return null;
    end if;
    return jsonb_build_object(
        'seq', v_bad.seq,
        'recorded', case when v_bad.recorded is null then null
                         else jsonb_build_object('kind', v_bad.recorded ->> 'kind', 'name', v_bad.recorded ->> 'name',
                                                 'input_hash', v_bad.recorded ->> 'input_hash') end,
        'presented', jsonb_build_object('kind', v_bad.call ->> 'kind', 'name', v_bad.call ->> 'name',
                                        'input_hash', v_bad.input_hash)
    );
end;
$$;

comment on function durable._first_mismatch(uuid, integer, jsonb) is
'Internal: the first of the presented calls (a prefix from seq 1, as durable.replay_check takes it: DU001, DU021) that is not the event recorded at its seq in generation p_generation, as {"seq", "recorded", "presented"}, or null. Shared by durable.replay_check and durable.check_replay; writes nothing.';

create or replace function durable.replay_check(p_task uuid, p_lease_token uuid, p_presented jsonb)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v_bad jsonb;
    v_checked integer;
begin
    if not t.durable then
        raise exception 'durable: task % is not a durable task', p_task using errcode = 'DU012';
    end if;
    v_bad := durable._first_mismatch(p_task, t.generation, p_presented);
    if v_bad is not null then
        return durable._nondeterminism(
            t, (v_bad ->> 'seq')::integer, nullif(v_bad -> 'recorded', 'null'::jsonb), v_bad -> 'presented'
        );
    end if;
    v_checked := jsonb_array_length(p_presented);
    if v_checked > t.replayed_to then
        update durable.tasks k set replayed_to = v_checked where k.task_id = p_task;
    end if;
    return jsonb_build_object('checked', v_checked);
end;
$$;

comment on function durable.replay_check(uuid, uuid, jsonb) is
'Checks in one call the durable calls a re-run made at recorded seqs: p_presented is a JSON array of {"seq", "kind", "name"} numbered 1, 2, 3, ... (DU021 otherwise), with, for a spawn, its "queue" and "input", and for a children wait, its "children" (ids); the server compares them with the recorded events (hashing the arguments itself). A client calls it when its code makes its first new call (before any new side effect), or when the code finishes, with every replayed call it has not presented: a new event, or a completion, needs every earlier event checked in the attempt (DU022, or non-determinism at completion). Returns {"checked": n}, or, on a mismatch, {"nondeterminism": {task_id, seq, recorded, presented, message}}: the task has been failed (not retryable) and the code must stop. Fenced (DU010, DU011; DU020 on a lease whose task a non-determinism failed).';

-- The event already recorded at p_seq, after a determinism check (as the verbs return it;
-- {"nondeterminism": ...} when it differs: the task has been failed), or null when p_seq
-- is the next free number and every earlier event was checked in this attempt (DU021 on
-- a gap, DU022 when the re-run has not presented the recorded events). Every verb that
-- records an event starts with it.
create or replace function durable._event_at(
    t durable.tasks, p_seq integer, p_kind text, p_name text, p_input_hash text default null
)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    e durable.events;
    v_last integer;
begin
    if not t.durable then
        raise exception 'durable: task % is not a durable task (enqueue it with {"durable": true})', t.task_id
            using errcode = 'DU012';
    end if;
    -- the last event first: one step down the primary key, whatever the log's length (the
    -- common case is p_seq = last + 1, a new event)
    select * into e from durable.events k
    where k.task_id = t.task_id and k.generation = t.generation
    order by k.seq desc
    limit 1;
    v_last := coalesce(e.seq, 0);
    if p_seq >= 1 and p_seq <= v_last then
        if p_seq < v_last then
            select * into e from durable.events k
            where k.task_id = t.task_id and k.generation = t.generation and k.seq = p_seq;
        end if;
        -- already recorded (a re-run passing through, or the same attempt writing again)
        if not durable._same_event(p_kind, p_name, p_input_hash, e) then
            return durable._nondeterminism(
                t, p_seq,
                jsonb_build_object('kind', e.kind, 'name', e.name, 'input_hash', e.input_hash),
                jsonb_build_object('kind', p_kind, 'name', p_name, 'input_hash', p_input_hash)
            );
        end if;
        -- a re-run presenting its calls one by one checks the history as it goes
        if p_seq = t.replayed_to + 1 then
            update durable.tasks k set replayed_to = p_seq where k.task_id = t.task_id;
        end if;
        return durable._event_json(e);
    end if;
    if p_seq is null or p_seq <> v_last + 1 then
        raise exception 'durable: task % records event % but its log ends at %; events are numbered without gaps',
            t.task_id, coalesce(p_seq::text, 'null'), v_last
            using errcode = 'DU021';
    end if;
    -- a new event: the code's re-run must have gone through every recorded one first
    if v_last > 0 and e.attempt <> t.attempt and t.replayed_to < v_last then
        raise exception 'durable: task % records event % before the re-run checked the recorded events % to %',
            t.task_id, p_seq, t.replayed_to + 1, v_last
            using errcode = 'DU022',
                  hint = 'present the calls the re-run made at the recorded seqs with durable.replay_check first';
    end if;
    return null;
end;
$$;

comment on function durable._event_at(durable.tasks, integer, text, text, text) is
'Internal: the event already recorded at p_seq as a verb returns it, after checking it is the same call ({"nondeterminism": ...} otherwise: the task has been failed), or null when p_seq is the next number of the log and the recorded events were all checked in this attempt (DU021 on a gap, DU022 when they were not; DU012 for a task that is not durable).';

-- Appends an event to a task's current generation; returns it as the verbs do.
create or replace function durable._append_event(
    t durable.tasks, p_seq integer, p_kind text, p_name text, p_outcome text, p_result jsonb,
    p_input_hash text default null
)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
    values (t.task_id, t.generation, p_seq, p_kind, p_name, p_outcome, p_result, p_input_hash, t.attempt,
            durable.current_time());
    return jsonb_build_object('seq', p_seq, 'kind', p_kind, 'name', p_name, 'outcome', p_outcome, 'result', p_result);
end;
$$;

comment on function durable._append_event(durable.tasks, integer, text, text, text, jsonb, text) is
'Internal: appends one event (outcome ok or error) to the current history generation of a task, and returns it as the verbs return events.';

-- The value a checkpoint records: a step's result (a patch marker: none), or the server's
-- clock, random number or uuid for the kinds whose value the server supplies.
create or replace function durable._event_value(p_kind text, p_result jsonb, p_now timestamptz)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return case p_kind when 'now' then to_jsonb(p_now)
                       when 'random' then to_jsonb(random())
                       when 'uuid' then to_jsonb(gen_random_uuid())
                       else p_result end;
end;
$$;

comment on function durable._event_value(text, jsonb, timestamptz) is
'Internal: what a checkpoint of kind p_kind records: p_result for a step (null for a patch marker), the clock p_now, a number in [0, 1) or a new uuid for now, random and uuid.';

-- A checkpoint the long way: every argument checked, the lease fenced, then the event
-- already recorded at p_seq (a re-run passing through, or a mismatch) or a new one. The
-- path of every checkpoint the one-statement path of durable.checkpoint (or
-- durable.checkpoint_many) did not take; it raises the error that says why.
create or replace function durable._checkpoint_checked(
    p_task uuid,
    p_lease_token uuid,
    p_seq integer,
    p_kind text,
    p_name text,
    p_result jsonb,
    p_error jsonb,
    p_now timestamptz
)
returns jsonb
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v jsonb;
begin
    if p_kind is null or p_kind <> all(durable._event_kinds()) then
        raise exception 'durable: checkpoint records events of kind %, got % (sleeps, waits and spawns have verbs of their own)',
            array_to_string(durable._event_kinds(), ', '), durable._quote(p_kind)
            using errcode = 'DU001';
    end if;
    if p_kind in ('now', 'random', 'uuid', 'patch') and (p_result is not null or p_error is not null) then
        raise exception 'durable: the server supplies the value of a % event; give no result', p_kind
            using errcode = 'DU001';
    end if;
    perform durable._check_name(p_name, 'event name');
    if p_error is not null then
        if jsonb_typeof(p_error) <> 'object' then
            raise exception 'durable: an event error must be a JSON object' using errcode = 'DU001';
        end if;
        perform durable._check_payload(p_error, 'event error');
    end if;
    if p_result is not null then
        perform durable._check_payload(p_result, 'event result');
    end if;
    t := durable._fenced(p_task, p_lease_token);
    v := durable._event_at(t, p_seq, p_kind, p_name, null);
    if v is not null then
        return v;
    end if;
    return durable._append_event(
        t, p_seq, p_kind, p_name, case when p_error is null then 'ok' else 'error' end,
        coalesce(p_error, durable._event_value(p_kind, p_result, p_now))
    );
end;
$$;

comment on function durable._checkpoint_checked(uuid, uuid, integer, text, text, jsonb, jsonb, timestamptz) is
'Internal: durable.checkpoint''s checked path: checks the arguments (DU001, DU003), fences the lease (DU004, DU010, DU011, DU020, 42501), returns the event recorded at p_seq (or {"nondeterminism": ...}: the task has been failed) or appends the new one (DU012, DU021, DU022 when it may not).';

create or replace function durable.checkpoint(
    p_task uuid,
    p_lease_token uuid,
    p_seq integer,
    p_kind text,
    p_name text,
    p_result jsonb default null,
    p_error jsonb default null
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
declare
    v_now timestamptz := durable.current_time();
    -- a parameter, not a literal: see "Pinned" in durable.complete_many
    v_running text := 'running';
    v_result jsonb := p_result;
    v_written boolean;
    v_async boolean;
begin
    -- the values of the clock, random and uuid events come from the server, never from a
    -- client (a client cannot forge them); a replay gets the recorded one
    if p_kind in ('now', 'random', 'uuid', 'patch') then
        if p_result is not null or p_error is not null then
            raise exception 'durable: the server supplies the value of a % event; give no result', p_kind
                using errcode = 'DU001';
        end if;
        v_result := durable._event_value(p_kind, null, v_now);
    end if;

    -- The common case in one statement: a valid new event right after the last one, on
    -- the live lease (the task row locked, so a reclaim waits for it or it sees the
    -- reclaim), the history before it checked in this attempt. The argument conditions
    -- here only pick this path: anything else (a bad argument, a replay passing through, a
    -- gap, a mismatch, a dead lease) falls through to the checks below, which decide and
    -- say why. Checking the arguments inside the statement instead of calling the checks
    -- first saves about 6% of a checkpoint. The task row is read once (target), for the
    -- insert and for its queue's option. (force_generic_plan and enable_seqscan: see
    -- "Plans" at the top of common.sql.)
    with target as (
        select k.task_id, k.generation, k.attempt, k.queue
        from durable.tasks k
        left join lateral (
            -- by p_task, not k.task_id: the one partition of the task's events is known
            -- when the statement starts, the others are not even opened
            select l.seq, l.attempt from durable.events l
            where l.task_id = p_task and l.generation = k.generation
            order by l.seq desc
            limit 1
        ) as last on true
        where k.task_id = p_task
          and k.lease_token = p_lease_token
          and k.status = v_running
          and k.lease_expires_at > v_now
          and k.durable
          and p_kind = any(durable._event_kinds())
          and durable._name_ok(p_name)
          -- queue permissions (security.sql): nothing to check while no grant exists
          and (not exists (select 1 from durable.queue_grants) or durable._allowed(k.queue, array['worker']))
          and (p_result is null or pg_column_size(p_result) <= durable.max_payload_bytes())
          and (p_error is null
               or (jsonb_typeof(p_error) = 'object' and pg_column_size(p_error) <= durable.max_payload_bytes()))
          and p_seq = coalesce(last.seq, 0) + 1
          -- the events before it: recorded by this attempt, or checked by its re-run
          and (last.seq is null or last.attempt = k.attempt or k.replayed_to >= last.seq)
        for update of k
    ),
    written as (
        insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
        select t.task_id, t.generation, p_seq, p_kind, p_name,
               case when p_error is null then 'ok' else 'error' end,
               coalesce(p_error, v_result), null, t.attempt, v_now
        from target t
        returning events.task_id
    )
    select count(*) > 0, coalesce(bool_and(q.options @> '{"async_checkpoints": true}'), false)
    into v_written, v_async
    from written w
    join target t on t.task_id = w.task_id
    join durable.queues q on q.queue = t.queue;
    if v_written then
        if v_async then
            -- the queue's opt-in (never the caller's): see "Asynchronous checkpoints" above
            perform pg_catalog.set_config('synchronous_commit', 'off', true);
        end if;
        return jsonb_build_object('seq', p_seq, 'kind', p_kind, 'name', p_name,
                                  'outcome', case when p_error is null then 'ok' else 'error' end,
                                  'result', coalesce(p_error, v_result));
    end if;

    return durable._checkpoint_checked(p_task, p_lease_token, p_seq, p_kind, p_name, p_result, p_error, v_now);
end;
$$;

comment on function durable.checkpoint(uuid, uuid, integer, text, text, jsonb, jsonb) is
'Records event p_seq of a durable task''s log: kind step (p_result, or p_error, an object, for a step that failed after its retries: a re-run re-raises it instead of running the step again), or now, random, uuid (no result: the server supplies the clock, a number in [0, 1), a uuid). p_seq must be the next number (DU021 otherwise), and every earlier event must have been checked in this attempt (recorded by it, or presented by durable.replay_check: DU022 otherwise). When event p_seq is already recorded, nothing is written and the recorded event is returned, provided kind and name match; otherwise the task is failed (non-determinism) and {"nondeterminism": ...} returned. Returns the event {"seq", "kind", "name", "outcome", "result"}, as durable.claim''s history lists it. Fenced by the lease (DU010, DU011; DU020 on a lease whose task a non-determinism failed). Errors: DU001, DU003, DU010, DU011, DU020, DU021, DU022, 42501.';

-- Checkpoints of many tasks in one call, one transaction, one commit: a worker running
-- several durable tasks at once sends the checkpoints that came in while its previous
-- batch was on its way together (group commit). Each element is one durable.checkpoint,
-- fenced by its own lease token, with the same answer or the same error, reported in its
-- row instead of raised: an element that fails changes nothing and does not stop the
-- others. The tasks are locked oldest first (the lock order); the common case, a new
-- event right after the last one on a live lease, is one INSERT for the whole batch
-- (durable.checkpoint's conditions); the other elements go one by one through
-- durable._checkpoint_checked, in task order, each in a subtransaction of its own.
-- (force_generic_plan and enable_seqscan: see "Plans" at the top of common.sql)
create or replace function durable.checkpoint_many(
    p_tasks uuid[],
    p_lease_tokens uuid[],
    p_seqs integer[],
    p_kinds text[],
    p_names text[],
    p_results jsonb[] default null,
    p_errors jsonb[] default null
)
returns table (ord integer, event jsonb, error_code text, error_message text, error_detail text, error_hint text)
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
as $$
declare
    v_now timestamptz := durable.current_time();
    -- a parameter, not a literal: see "Pinned" in durable.complete_many
    v_running text := 'running';
    v_n integer := coalesce(cardinality(p_tasks), 0);
    v_nulls jsonb[];
    v_async boolean;
    v_ords integer[];
    v_events jsonb[];
    v_states text[] := '{}'::text[];
    v_messages text[] := '{}'::text[];
    v_details text[] := '{}'::text[];
    v_hints text[] := '{}'::text[];
    r record;
    v_event jsonb;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
begin
    if p_tasks is null or p_lease_tokens is null or p_seqs is null or p_kinds is null or p_names is null
        or cardinality(p_lease_tokens) <> v_n or cardinality(p_seqs) <> v_n
        or cardinality(p_kinds) <> v_n or cardinality(p_names) <> v_n
        or (p_results is not null and cardinality(p_results) <> v_n)
        or (p_errors is not null and cardinality(p_errors) <> v_n) then
        raise exception 'durable: checkpoint_many takes arrays of equal length (tasks, lease tokens, seqs, kinds, names, results, errors)'
            using errcode = 'DU001';
    end if;
    if v_n > 1000 then
        raise exception 'durable: checkpoint_many takes at most 1000 checkpoints, got %', v_n using errcode = 'DU001';
    end if;
    v_nulls := array_fill(null::jsonb, array[v_n]);
    -- the tasks first, oldest first (the lock order, plpgsql/README.md)
    perform 1 from durable.tasks k
    where k.task_id = any(p_tasks)
    order by k.task_id
    for update;

    -- the common case of every element at once: durable.checkpoint's one-statement path
    -- (the first element of each task only: a task's later elements follow its first)
    with given as (
        select u.task_id, u.token, u.seq, u.kind, u.name, u.result, u.error, u.ord::integer as ord,
               row_number() over (partition by u.task_id order by u.ord) as nth
        from unnest(p_tasks, p_lease_tokens, p_seqs, p_kinds, p_names,
                    coalesce(p_results, v_nulls), coalesce(p_errors, v_nulls))
             with ordinality as u (task_id, token, seq, kind, name, result, error, ord)
    ),
    written as (
        insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
        select k.task_id, k.generation, g.seq, g.kind, g.name,
               case when g.error is null then 'ok' else 'error' end,
               coalesce(g.error, durable._event_value(g.kind, g.result, v_now)), null, k.attempt, v_now
        from given g
        join durable.tasks k on k.task_id = g.task_id
        left join lateral (
            select l.seq, l.attempt from durable.events l
            where l.task_id = k.task_id and l.generation = k.generation
            order by l.seq desc
            limit 1
        ) as last on true
        where g.nth = 1
          and k.lease_token = g.token
          and k.status = v_running
          and k.lease_expires_at > v_now
          and k.durable
          and g.kind = any(durable._event_kinds())
          and (g.kind not in ('now', 'random', 'uuid', 'patch') or (g.result is null and g.error is null))
          and durable._name_ok(g.name)
          -- queue permissions (security.sql): nothing to check while no grant exists
          and (not exists (select 1 from durable.queue_grants) or durable._allowed(k.queue, array['worker']))
          and (g.result is null or pg_column_size(g.result) <= durable.max_payload_bytes())
          and (g.error is null
               or (jsonb_typeof(g.error) = 'object' and pg_column_size(g.error) <= durable.max_payload_bytes()))
          and g.seq = coalesce(last.seq, 0) + 1
          -- the events before it: recorded by this attempt, or checked by its re-run
          and (last.seq is null or last.attempt = k.attempt or k.replayed_to >= last.seq)
        returning events.task_id, events.seq, events.kind, events.name, events.outcome, events.result
    )
    select coalesce(array_agg(g.ord), '{}'),
           coalesce(array_agg(jsonb_build_object('seq', w.seq, 'kind', w.kind, 'name', w.name,
                                                 'outcome', w.outcome, 'result', w.result)), '{}'),
           coalesce(bool_and(q.options @> '{"async_checkpoints": true}'), false)
    into v_ords, v_events, v_async
    from written w
    join given g on g.task_id = w.task_id and g.nth = 1
    join durable.tasks k on k.task_id = w.task_id
    join durable.queues q on q.queue = k.queue;
    -- every element recorded by that statement, all of queues that opted in: the commit
    -- need not wait for the flush (any other element may have written more: a failure)
    if v_async and cardinality(v_ords) = v_n then
        perform pg_catalog.set_config('synchronous_commit', 'off', true);
    end if;
    v_states := array_fill(null::text, array[cardinality(v_ords)]);
    v_messages := v_states;
    v_details := v_states;
    v_hints := v_states;

    -- the others one by one, in task order: the checked path, its error kept in the row
    for r in
        select u.task_id, u.token, u.seq, u.kind, u.name, u.result, u.error, u.ord::integer as ord
        from unnest(p_tasks, p_lease_tokens, p_seqs, p_kinds, p_names,
                    coalesce(p_results, v_nulls), coalesce(p_errors, v_nulls))
             with ordinality as u (task_id, token, seq, kind, name, result, error, ord)
        where u.ord <> all(v_ords)
        order by u.task_id, u.ord
    loop
        v_event := null;
        v_state := null;
        v_message := null;
        v_detail := null;
        v_hint := null;
        begin
            v_event := durable._checkpoint_checked(r.task_id, r.token, r.seq, r.kind, r.name, r.result, r.error, v_now);
        exception
            when sqlstate 'DU001' or sqlstate 'DU003' or sqlstate 'DU004' or sqlstate 'DU010'
                or sqlstate 'DU011' or sqlstate 'DU012' or sqlstate 'DU020' or sqlstate 'DU021'
                or sqlstate 'DU022' or sqlstate '42501' then
                get stacked diagnostics v_state = returned_sqlstate, v_message = message_text,
                                        v_detail = pg_exception_detail, v_hint = pg_exception_hint;
        end;
        v_ords := v_ords || r.ord;
        v_events := v_events || v_event;
        v_states := v_states || v_state;
        v_messages := v_messages || v_message;
        v_details := v_details || nullif(v_detail, '');
        v_hints := v_hints || nullif(v_hint, '');
    end loop;

    return query
    select u.i, u.answer, u.code, u.msg, u.det, u.hnt
    from unnest(v_ords, v_events, v_states, v_messages, v_details, v_hints) as u (i, answer, code, msg, det, hnt)
    order by u.i;
end;
$$;

comment on function durable.checkpoint_many(uuid[], uuid[], integer[], text[], text[], jsonb[], jsonb[]) is
'Records the checkpoints of many durable tasks in one transaction (one commit for all): element i of the arrays is one durable.checkpoint(p_tasks[i], p_lease_tokens[i], p_seqs[i], p_kinds[i], p_names[i], p_results[i], p_errors[i]) (p_results and p_errors may be null: no results, no errors). At most 1000 elements. Returns one row per element, ord 1 to n in the order given: event, the answer durable.checkpoint would give ({"seq", "kind", "name", "outcome", "result"}, or {"nondeterminism": ...}: the task has been failed), or, when that checkpoint would raise, error_code (its SQLSTATE), error_message, error_detail and error_hint (event null): DU001, DU003, DU004, DU010, DU011, DU012, DU020, DU021, DU022 or 42501; such an element changes nothing and does not stop the others. Each element is fenced by its own lease token. Elements of one task are taken in the order given. Errors (of the whole call): DU001 arrays of different lengths, more than 1000 elements.';

grant execute on function durable.history(uuid, boolean) to durable_reader;
grant execute on function durable.input_hash(jsonb) to durable_worker, durable_reader;
grant execute on function durable.replay_check(uuid, uuid, jsonb) to durable_worker;
grant execute on function durable.checkpoint(uuid, uuid, integer, text, text, jsonb, jsonb) to durable_worker;
grant execute on function durable.checkpoint_many(uuid[], uuid[], integer[], text[], text[], jsonb[], jsonb[])
    to durable_worker;

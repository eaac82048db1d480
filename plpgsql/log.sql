-- log.sql: the event log of durable tasks, and the determinism check.
--
-- A durable task is enqueued with {"durable": true}. Each durable call its code makes
-- (a step, a recorded clock read or random value, later a sleep, a wait, a spawn) is
-- event number seq = 1, 2, 3, ... of the task's current history generation. The claim
-- hands the worker the recorded events; the worker re-runs the code from the top, and
-- every durable call whose seq is already recorded gets the recorded result instead of
-- running again.
--
-- Determinism is checked here, in SQL: every durable call presents (seq, kind, name,
-- and for spawns a hash of its input) and it must equal what is recorded at that seq.
-- A replayed prefix is presented in one call (durable.replay_check) before the code
-- runs its first new event, so the check happens before any new side effect and costs
-- one round trip per attempt, not one per replayed event. durable.checkpoint checks
-- the event it records the same way (seq must be the next one, or an identical event
-- already recorded). Completing while recorded events remain unconsumed is also a
-- mismatch. A mismatch raises DU020 with the seq, what was recorded and what the code
-- did, and writes nothing; the worker then fails the task without retry.
--
-- Events are immutable: triggers reject UPDATE and TRUNCATE (DU013), and a DELETE of
-- events whose task still exists; retention deletes a task first, then its events. A
-- replay does not delete: it starts a new generation.
--
-- SQLSTATEs raised here (see README.md, "Errors"): DU020 non-determinism, DU021 an event
-- out of order, DU013 the log is immutable.

-- The event kinds durable calls may record.
create or replace function durable._event_kinds()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['step', 'now', 'random', 'uuid'];
end;
$$;

comment on function durable._event_kinds() is
'Internal: the kinds of event the log accepts.';

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
    join durable.tasks t on t.task_id = g.task_id
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

-- The recorded events of a task's current generation, as the claim hands them over.
-- (force_generic_plan: see "Plans" at the top of common.sql)
create or replace function durable._history(p_task uuid, p_generation integer)
returns jsonb
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
begin
    return (
        select coalesce(jsonb_agg(
            jsonb_build_object(
                'seq', e.seq, 'kind', e.kind, 'name', e.name, 'outcome', e.outcome,
                'result', e.result, 'input_hash', e.input_hash
            ) order by e.seq
        ), '[]'::jsonb)
        from durable.events e
        where e.task_id = p_task and e.generation = p_generation
    );
end;
$$;

comment on function durable._history(uuid, integer) is
'Internal: the events of one history generation of a task, in order, as a JSON array of {seq, kind, name, outcome, result, input_hash}.';

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
    t durable.tasks;
begin
    select * into t from durable.tasks k where k.task_id = p_task;
    if not found then
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

-- Raises DU020 naming the event, what was recorded and what the code did.
create or replace function durable._nondeterminism(
    p_task uuid, p_seq integer, p_recorded jsonb, p_presented jsonb
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_recorded text := case
        when p_recorded is null then 'nothing'
        else format('%s "%s"', p_recorded ->> 'kind', p_recorded ->> 'name')
    end;
    v_presented text;
begin
    -- what the caller presented is shown cut to a bounded length
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
        v_recorded := v_recorded || format(' with input hash %s', coalesce(p_recorded ->> 'input_hash', 'none'));
        v_presented := v_presented || format(' with input hash %s', coalesce(p_presented ->> 'input_hash', 'none'));
    end if;
    raise exception 'durable: non-determinism in task % at event %: recorded %, the code did %',
        p_task, p_seq, v_recorded, v_presented
        using errcode = 'DU020',
              detail = jsonb_build_object(
                  'task_id', p_task, 'seq', p_seq, 'recorded', p_recorded, 'presented', p_presented
              )::text,
              hint = 'the code no longer matches the recorded history: restore the old code, '
                  || 'replay the task from scratch (durable.replay), or fork it before this event (durable.fork)';
end;
$$;

comment on function durable._nondeterminism(uuid, integer, jsonb, jsonb) is
'Internal: raises DU020; the message names the seq, the recorded event and what the code did; DETAIL holds the same as JSON {task_id, seq, recorded, presented}.';

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

create or replace function durable.replay_check(p_task uuid, p_lease_token uuid, p_presented jsonb)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks := durable._fenced(p_task, p_lease_token);
    v_bad record;
    v_gap record;
    v_checked integer;
begin
    if not t.durable then
        raise exception 'durable: task % is not a durable task', p_task using errcode = 'DU012';
    end if;
    if p_presented is null or jsonb_typeof(p_presented) <> 'array' then
        raise exception 'durable: presented events must be a JSON array of {"seq", "kind", "name"}'
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
    select p.seq, p.call, p.input_hash, to_jsonb(e) as recorded
    into v_bad
    from (
        select (x.value ->> 'seq')::integer as seq, x.value as call,
               coalesce(x.value ->> 'input_hash',
                        case when x.value ? 'input' then durable.input_hash(x.value -> 'input') end) as input_hash
        from jsonb_array_elements(p_presented) as x (value)
    ) as p
    left join durable.events e
        on e.task_id = p_task and e.generation = t.generation and e.seq = p.seq
    -- durable._same_event's rule, written as a row comparison: no function call per event
    -- (a 10,000-event replay spent more time in those calls than in the join)
    where e.seq is null
       or (e.kind, e.name, e.input_hash) is distinct from (p.call ->> 'kind', p.call ->> 'name', p.input_hash)
    order by p.seq
    limit 1;
    if found then
        perform durable._nondeterminism(
            p_task, v_bad.seq,
            case when v_bad.recorded is null then null
                 else jsonb_build_object('kind', v_bad.recorded ->> 'kind', 'name', v_bad.recorded ->> 'name',
                                         'input_hash', v_bad.recorded ->> 'input_hash') end,
            jsonb_build_object('kind', v_bad.call ->> 'kind', 'name', v_bad.call ->> 'name',
                               'input_hash', v_bad.input_hash)
        );
    end if;
    v_checked := jsonb_array_length(p_presented);
    return v_checked;
end;
$$;

comment on function durable.replay_check(uuid, uuid, jsonb) is
'Checks in one call the durable calls a re-run made against recorded events: p_presented is a JSON array of {"seq", "kind", "name"} with, for spawns and child waits, "input" (hashed here with durable.input_hash) or "input_hash". Raises DU020 (naming the first mismatching seq, what was recorded and what the code did) and writes nothing on a mismatch; DU021 unless the array is numbered 1, 2, 3, ... in order. Workers call it before the code runs its first new event. Returns the number of events checked. Fenced (DU010, DU011).';

-- The event recorded at p_seq after a determinism check, or null when p_seq is the next
-- free number (DU020 when the recorded event differs, DU021 on a gap). Every verb that
-- records an event starts with it.
create or replace function durable._event_at(
    t durable.tasks, p_seq integer, p_kind text, p_name text, p_input_hash text default null
)
returns durable.events
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
            perform durable._nondeterminism(
                t.task_id, p_seq,
                jsonb_build_object('kind', e.kind, 'name', e.name, 'input_hash', e.input_hash),
                jsonb_build_object('kind', p_kind, 'name', p_name, 'input_hash', p_input_hash)
            );
        end if;
        return e;
    end if;
    if p_seq is null or p_seq <> v_last + 1 then
        raise exception 'durable: task % records event % but its log ends at %; events are numbered without gaps',
            t.task_id, coalesce(p_seq::text, 'null'), v_last
            using errcode = 'DU021';
    end if;
    return null;
end;
$$;

comment on function durable._event_at(durable.tasks, integer, text, text, text) is
'Internal: the event already recorded at p_seq (after checking it is the same call: DU020 otherwise), or null when p_seq is the next number of the log (DU021 on a gap; DU012 for a task that is not durable).';

-- Appends an event to a task's current generation.
create or replace function durable._append_event(
    t durable.tasks, p_seq integer, p_kind text, p_name text, p_outcome text, p_result jsonb,
    p_input_hash text default null
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
    values (t.task_id, t.generation, p_seq, p_kind, p_name, p_outcome, p_result, p_input_hash, t.attempt,
            durable.current_time());
end;
$$;

comment on function durable._append_event(durable.tasks, integer, text, text, text, jsonb, text) is
'Internal: appends one event (outcome ok or error) to the current history generation of a task.';

create or replace function durable.checkpoint(
    p_task uuid,
    p_lease_token uuid,
    p_seq integer,
    p_kind text,
    p_name text,
    p_result jsonb default null,
    p_error jsonb default null,
    p_input_hash text default null
)
returns jsonb
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    e durable.events;
    v_now timestamptz := durable.current_time();
    v_result jsonb := p_result;
begin
    if p_kind = 'now' and v_result is null then
        -- the clock read is the database's, like every other time in durable
        v_result := to_jsonb(v_now);
    end if;

    -- The common case in one statement: a valid new event right after the last one, on
    -- the live lease (the task row locked, so a reclaim waits for it or it sees the
    -- reclaim). The argument conditions here only pick this path: anything else (a bad
    -- argument, a replay passing through, a gap, a mismatch, a dead lease) falls through
    -- to the checks below, which decide and say why. Checking the arguments inside the
    -- statement instead of calling the checks first saves about 6% of a checkpoint.
    insert into durable.events (task_id, generation, seq, kind, name, outcome, result, input_hash, attempt, recorded_at)
    select k.task_id, k.generation, p_seq, p_kind, p_name,
           case when p_error is null then 'ok' else 'error' end,
           coalesce(p_error, v_result), p_input_hash, k.attempt, v_now
    from durable.tasks k
    where k.task_id = p_task
      and k.lease_token = p_lease_token
      and k.status = 'running'
      and k.lease_expires_at > v_now
      and k.durable
      and p_kind = any(durable._event_kinds())
      and durable._name_ok(p_name)
      and (p_input_hash is null or (length(p_input_hash) <= 128 and durable._name_ok(p_input_hash)))
      -- queue permissions (security.sql): nothing to check while no grant exists
      and (not exists (select 1 from durable.queue_grants) or durable._allowed(k.queue, array['worker']))
      and (p_result is null or pg_column_size(p_result) <= durable.max_payload_bytes())
      and (p_error is null
           or (jsonb_typeof(p_error) = 'object' and pg_column_size(p_error) <= durable.max_payload_bytes()))
      and p_seq = 1 + coalesce((
          select l.seq from durable.events l
          where l.task_id = k.task_id and l.generation = k.generation
          order by l.seq desc
          limit 1
      ), 0)
    for update of k;
    if found then
        return case when p_error is null then jsonb_build_object('result', v_result)
                    else jsonb_build_object('error', p_error) end;
    end if;

    if p_kind is null or p_kind <> all(durable._event_kinds()) then
        raise exception 'durable: checkpoint records events of kind %, got % (sleeps, waits and spawns have verbs of their own)',
            array_to_string(durable._event_kinds(), ', '), durable._quote(p_kind)
            using errcode = 'DU001';
    end if;
    perform durable._check_name(p_name, 'event name');
    if p_input_hash is not null and (length(p_input_hash) > 128 or not durable._name_ok(p_input_hash)) then
        raise exception 'durable: an input hash is at most 128 characters without control characters, got %',
            durable._quote(p_input_hash)
            using errcode = 'DU001';
    end if;
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
    e := durable._event_at(t, p_seq, p_kind, p_name, p_input_hash);
    if e.seq is not null then
        return case when e.outcome = 'error' then jsonb_build_object('error', e.result)
                    else jsonb_build_object('result', e.result) end;
    end if;
    perform durable._append_event(
        t, p_seq, p_kind, p_name, case when p_error is null then 'ok' else 'error' end,
        coalesce(p_error, v_result), p_input_hash
    );
    return case when p_error is null then jsonb_build_object('result', v_result)
                else jsonb_build_object('error', p_error) end;
end;
$$;

comment on function durable.checkpoint(uuid, uuid, integer, text, text, jsonb, jsonb, text) is
'Records event p_seq of a durable task''s log: kind (step, now, random, uuid), name, and its result, or p_error for a step that failed after its retries (a re-run re-raises it instead of running the step again). p_seq must be the next number (DU021 otherwise). When event p_seq is already recorded, nothing is written and the recorded outcome is returned, provided kind, name and input hash match (DU020 otherwise). A "now" event without a result records the database clock. p_input_hash is at most 128 characters. Returns {"result": ...} or {"error": ...}. Fenced by the lease (DU010, DU011). Errors: DU001, DU003, DU010, DU011, DU020, DU021, 42501.';

grant execute on function durable.history(uuid, boolean) to durable_reader;
grant execute on function durable.input_hash(jsonb) to durable_worker, durable_reader;
grant execute on function durable.replay_check(uuid, uuid, jsonb) to durable_worker;
grant execute on function durable.checkpoint(uuid, uuid, integer, text, text, jsonb, jsonb, text) to durable_worker;

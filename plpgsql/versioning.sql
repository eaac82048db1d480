-- versioning.sql: changing the code of durable tasks while histories are unfinished.
--
-- Patches. New code that takes another branch than the old one asks ctx.patched("id")
-- where the branches part. At that point of the history the client looks at the recorded
-- event (if any):
--   * none (a new run, or the history ends here): it records a 'patch' event named "id"
--     (durable.checkpoint, kind 'patch', no result) and takes the new branch;
--   * a 'patch' event: it presents the call {"kind": "patch", "name": "id"} like any
--     replayed call and takes the new branch; the server's one matching rule
--     (durable._first_mismatch, durable._event_at) finds a marker of another id a
--     non-determinism;
--   * any other event (a history the old code wrote): it takes the old branch, presenting
--     nothing and taking no seq, so the replay goes on matching the old code's events.
-- ctx.deprecate_patch("id") presents a recorded marker (consumes it) and records nothing;
-- the three deploys that retire a patch, and durable.patch_usage, which says when each
-- is safe, are in README.md ("Versioning and deploy checks").
--
-- Deploy checks. durable check MODULE:WORKER replays the histories of a queue's
-- unfinished durable tasks (durable.replay_histories) against new code without running
-- anything, and asks durable.check_replay whether the calls it made match: the rule of
-- durable.replay_check, for a reader, writing nothing, with no lease.
--
-- Everything here reads; errors: DU001 (bad argument), DU002 (no such queue), DU004 (no
-- such task), DU012 (not a durable task), 42501 (no reader rights on the queue).

-- The statuses of unfinished tasks: their histories may still be replayed.
create or replace function durable._unfinished_statuses()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['pending', 'running', 'sleeping', 'waiting'];
end;
$$;

comment on function durable._unfinished_statuses() is
'Internal: the statuses of tasks that have not finished (pending, running, sleeping, waiting).';

create or replace function durable.check_replay(
    p_task uuid, p_presented jsonb, p_finished boolean default false
)
returns jsonb
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    t durable.tasks;
    v_bad jsonb;
    v_checked integer;
    v_recorded integer;
    e durable.events;
begin
    t := durable._any_task(p_task);
    if t.task_id is null then
        raise exception 'durable: no task %', p_task using errcode = 'DU004';
    end if;
    perform durable._require(t.queue, durable._readers(), 'read tasks');
    if not t.durable then
        raise exception 'durable: task % is not a durable task', p_task using errcode = 'DU012';
    end if;
    if p_finished is null then
        raise exception 'durable: finished must be true or false' using errcode = 'DU001';
    end if;
    v_bad := durable._first_mismatch(p_task, t.generation, p_presented);
    if v_bad is not null then
        return jsonb_build_object('nondeterminism', durable._mismatch(
            p_task, (v_bad ->> 'seq')::integer, nullif(v_bad -> 'recorded', 'null'::jsonb), v_bad -> 'presented'
        ));
    end if;
    v_checked := jsonb_array_length(p_presented);
    select coalesce(max(k.seq), 0) into v_recorded
    from durable.events k
    where k.task_id = p_task and k.generation = t.generation;
    -- the code finished with events left: what a completion finds (finish.sql)
    if p_finished and v_checked < v_recorded then
        select * into e from durable.events k
        where k.task_id = p_task and k.generation = t.generation and k.seq = v_checked + 1;
        return jsonb_build_object('nondeterminism', durable._mismatch(
            p_task, v_checked + 1, jsonb_build_object('kind', e.kind, 'name', e.name, 'input_hash', e.input_hash),
            null
        ));
    end if;
    return jsonb_build_object('checked', v_checked, 'recorded', v_recorded);
end;
$$;

comment on function durable.check_replay(uuid, jsonb, boolean) is
'A dry determinism check for a reader: whether the calls new code made while replaying a task''s current history (p_presented, as durable.replay_check takes it: [{"seq", "kind", "name"}, ...] from seq 1, a spawn with its "queue" and "input", a children wait with its "children") match the recorded events, by the rule of the real replay; p_finished: the code returned after them (a match then also needs the whole history presented, as a completion does). Returns {"checked": n, "recorded": m}, or {"nondeterminism": {task_id, seq, recorded, presented, message}}. Writes nothing, takes no lease, fails nothing. Errors: DU001, DU004, DU012, DU021, 42501.';

create or replace function durable.replay_histories(
    p_queue text,
    p_finished_since timestamptz default null,
    p_after uuid default null,
    p_limit integer default 100
)
returns table (
    task_id uuid, task_name text, status text, generation integer, input jsonb, history jsonb
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if p_limit is null or p_limit < 1 or p_limit > 1000 then
        raise exception 'durable: limit must be between 1 and 1000, got %', coalesce(p_limit::text, 'null')
            using errcode = 'DU001';
    end if;
    perform durable._check_name(p_queue, 'queue name');
    if not exists (select 1 from durable.queues q where q.queue = p_queue) then
        raise exception 'durable: no queue %', durable._quote(p_queue) using errcode = 'DU002';
    end if;
    perform durable._require(p_queue, durable._readers(), 'read tasks');
    -- the live ones (durable.tasks), and the finished ones of the archive when asked
    return query
    select u.task_id, u.task_name, u.status, u.generation, u.input, durable._history(u.task_id, u.generation)
    from (
        (select t.task_id, t.task_name, t.status, t.generation, t.input
         from durable.tasks t
         where t.queue = p_queue
           and t.durable
           and (p_after is null or t.task_id > p_after)
         order by t.task_id
         limit p_limit)
        union all
        (select f.task_id, f.task_name, f.status, f.generation, f.input
         from durable.finished_tasks f
         where p_finished_since is not null
           and f.queue = p_queue
           and f.durable
           and f.finished_at >= p_finished_since
           and (p_after is null or f.task_id > p_after)
         order by f.task_id
         limit p_limit)
    ) as u
    order by u.task_id
    limit p_limit;
end;
$$;

comment on function durable.replay_histories(text, timestamptz, uuid, integer) is
'The durable tasks of a queue whose histories new code would replay: the unfinished ones, and those finished since p_finished_since; each with its input and its current history (as durable.claim hands it over), in task id order, at most p_limit (1-1000); next page: p_after = the last task_id. For a deploy check (durable check). Errors: DU001, DU002, 42501.';

create or replace function durable.patch_usage(
    p_patch text, p_queue text default null, p_deployed_at timestamptz default null
)
returns table (
    queue text, task_name text, first_marker_at timestamptz, with_marker bigint, old_histories bigint
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queues text[];
begin
    perform durable._check_name(p_patch, 'patch id');
    if p_queue is not null then
        perform durable._check_name(p_queue, 'queue name');
        perform durable._require(p_queue, durable._readers(), 'read tasks');
        v_queues := array[p_queue];
    else
        v_queues := array(
            select q.queue from durable.queues q
            where durable._allowed(q.queue, durable._readers())
            order by q.queue
        );
    end if;
    return query
    with marked as (
        -- the task names that recorded the marker, in any stored history, and when first
        select t.queue, t.task_name, min(e.recorded_at) as first_at
        from durable.events e
        join (select k.task_id, k.queue, k.task_name from durable.tasks k
              union all
              select f.task_id, f.queue, f.task_name from durable.finished_tasks f) as t
            on t.task_id = e.task_id
        where e.kind = 'patch' and e.name = p_patch and t.queue = any(v_queues)
        group by t.queue, t.task_name
    ),
    unfinished as (
        select t.queue, t.task_name,
               exists (
                   select 1 from durable.events e
                   where e.task_id = t.task_id and e.generation = t.generation
                     and e.kind = 'patch' and e.name = p_patch
               ) as has_marker,
               (select e.recorded_at from durable.events e
                where e.task_id = t.task_id and e.generation = t.generation
                order by e.seq
                limit 1) as began_at
        from durable.tasks t
        join marked m on m.queue = t.queue and m.task_name = t.task_name
        where t.durable and t.status = any(durable._unfinished_statuses())
    )
    select m.queue, m.task_name, m.first_at,
           count(*) filter (where u.has_marker),
           count(*) filter (where not u.has_marker and u.began_at < coalesce(p_deployed_at, m.first_at))
    from marked m
    left join unfinished u on u.queue = m.queue and u.task_name = m.task_name
    group by m.queue, m.task_name, m.first_at
    order by m.queue, m.task_name;
end;
$$;

comment on function durable.patch_usage(text, text, timestamptz) is
'Whether unfinished histories still depend on patch p_patch (ctx.patched), per queue and task name that recorded its marker (in the queue p_queue, or every queue the caller may read): first_marker_at, when the first marker was recorded; with_marker, unfinished durable tasks whose history holds the marker (while any is left, keep the patch call: patched or deprecate_patch); old_histories, unfinished durable tasks without it whose history began before p_deployed_at (when the last worker without the patch stopped; default first_marker_at): the old code wrote them, so they may still take the old branch (while any is left, keep the old branch). Errors: DU001, 42501.';

grant execute on function durable.check_replay(uuid, jsonb, boolean) to durable_reader;
grant execute on function durable.replay_histories(text, timestamptz, uuid, integer) to durable_reader;
grant execute on function durable.patch_usage(text, text, timestamptz) to durable_reader;

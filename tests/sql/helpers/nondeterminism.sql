-- Helper for the files that check a non-determinism, included with
-- `\ir helpers/nondeterminism.sql` after `\ir helpers/errors.sql`.
--
-- A durable call that finds the code no longer matching the history does not raise: it
-- fails the task (not retryable, error type NonDeterminismError) and returns
-- {"nondeterminism": {task_id, seq, recorded, presented, message}}; the next call with
-- that lease raises DU020.
--
-- pg_temp.nondeterminism_ok(sql, task, token, expected, description, undo) runs sql (one
-- verb call returning jsonb) on a running attempt (task, token) and is five assertions:
--   1. sql returned {"nondeterminism": expected} (expected: the whole inner object);
--   2. the task is failed with error {"type": "NonDeterminismError", "message", "hint",
--      "task_id", "seq", "recorded", "presented"}, although attempts were left (not retryable);
--   3. the attempt's row ended failed with that error;
--   4. the next call with the lease (a heartbeat) raises DU020 with the message, the
--      {task_id, seq, recorded, presented} DETAIL and the HINT;
--   5. the call recorded no event and created no task.
-- With undo (the default), everything the call and the heartbeat did is undone afterwards,
-- so that one attempt can be checked against several wrong re-runs; without it, the task
-- stays failed.
create function pg_temp.nondeterminism_hint() returns text language sql as $$
    select 'the code no longer matches the recorded history: restore the old code, '
        || 'replay the task from scratch (durable.replay), or fork it before this event (durable.fork)'
$$;

create function pg_temp.nondeterminism_run(p_sql text, p_task uuid, p_token uuid, p_undo boolean)
returns jsonb
language plpgsql as $$
declare
    v_before jsonb;
    v_returned jsonb;
    v_task jsonb;
    v_attempt jsonb;
    v_next jsonb;
    v_after jsonb;
begin
    v_before := jsonb_build_object(
        'events', (select coalesce(jsonb_agg(to_jsonb(e) order by e.task_id, e.generation, e.seq), '[]')
                   from durable.events e),
        'tasks', (select count(*) from durable.all_tasks));
    begin
        execute p_sql into v_returned;
        select jsonb_build_object(
            'status', k.status, 'error', k.error, 'retries_left', k.failures < k.max_attempts,
            'finished', k.finished_at is not null, 'lease_expires_at', k.lease_expires_at)
        into v_task
        from durable.all_tasks k where k.task_id = p_task;
        select jsonb_build_object('outcome', a.outcome, 'error', a.error, 'lease_token', a.lease_token = p_token)
        into v_attempt
        from durable.attempts a
        where a.task_id = p_task
        order by a.attempt desc
        limit 1;
        v_next := pg_temp.error_of(format('select durable.heartbeat(%L, %L)', p_task, p_token));
        v_after := jsonb_build_object(
            'events', (select coalesce(jsonb_agg(to_jsonb(e) order by e.task_id, e.generation, e.seq), '[]')
                       from durable.events e),
            'tasks', (select count(*) from durable.all_tasks));
        if p_undo then
            raise exception 'undo' using errcode = 'TU001';
        end if;
    exception when sqlstate 'TU001' then
        null;  -- every change is undone; the variables keep what was seen
    end;
    return jsonb_build_object('returned', v_returned, 'task', v_task, 'attempt', v_attempt, 'next', v_next,
                              'before', v_before, 'after', v_after);
end;
$$;

create function pg_temp.nondeterminism_ok(
    p_sql text, p_task uuid, p_token uuid, p_expected jsonb, p_description text, p_undo boolean default true
)
returns setof text
language plpgsql as $$
declare
    v jsonb := pg_temp.nondeterminism_run(p_sql, p_task, p_token, p_undo);
    v_error jsonb := jsonb_build_object('type', 'NonDeterminismError', 'hint', pg_temp.nondeterminism_hint())
        || p_expected;
begin
    return next is(v -> 'returned', jsonb_build_object('nondeterminism', p_expected),
                   p_description || ': returns {"nondeterminism": ...}');
    return next is(v -> 'task',
                   jsonb_build_object('status', 'failed', 'error', v_error, 'retries_left', true,
                                      'finished', true, 'lease_expires_at', null),
                   p_description || ': the task is failed (NonDeterminismError), not retried');
    return next is(v -> 'attempt',
                   jsonb_build_object('outcome', 'failed', 'error', v_error, 'lease_token', true),
                   p_description || ': the attempt ended failed');
    return next is(v -> 'next',
                   jsonb_build_object(
                       'sqlstate', 'DU020', 'message', 'durable: ' || (p_expected ->> 'message'),
                       'detail', (p_expected - 'message')::text, 'hint', pg_temp.nondeterminism_hint()),
                   p_description || ': the next call with the lease raises DU020');
    return next is(v -> 'after', v -> 'before', p_description || ': no event recorded, no task created');
end;
$$;

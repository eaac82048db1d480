-- 0002: durable tasks and their event log.
--
-- A durable task's progress is an append-only log of events (steps, recorded values,
-- later sleeps, waits and child spawns), numbered 1, 2, 3, ... per history generation.
-- A retry keeps the generation (recorded events are replayed, not re-executed); a replay
-- starts a new generation (the old events stay, for audit); a fork copies a prefix of
-- the log into a new task.

alter table durable.tasks
    add column durable boolean not null default false,
    add column generation integer not null default 1,
    add column forked_from uuid,
    add column forked_at_seq integer;

create table durable.events (
    task_id uuid not null,
    generation integer not null,
    seq integer not null check (seq >= 1),
    kind text not null,
    name text not null,
    -- 'ok': result holds the value; 'error': result holds the error the step ended with
    outcome text not null default 'ok' check (outcome in ('ok', 'error')),
    result jsonb,
    -- a hash of what the call was given (child spawns): part of the determinism check
    input_hash text,
    attempt integer not null,
    recorded_at timestamptz not null,
    primary key (task_id, generation, seq)
);

-- claim() and complete_many() change their result or arguments: dropped here, recreated
-- from plpgsql/ right after the migrations.
drop function if exists durable.claim(text, text, integer, integer, text[]);
drop function if exists durable.complete_many(uuid[], uuid[], jsonb[]);
drop function if exists durable.complete(uuid, uuid, jsonb);

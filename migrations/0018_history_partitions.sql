-- 0018: attempts and events partitioned by day of task creation (plpgsql/retention.sql).
--
-- Task ids are uuidv7: their first 48 bits are the creation time in milliseconds, so a
-- range of ids is a range of creation times. durable.attempts and durable.events become
-- partitioned BY RANGE (task_id): the rows that exist now go to one partition, *_legacy,
-- (every id created before this migration); the engine's maintenance (the claim's) then
-- creates one partition per UTC day ahead of time, from this migration's instant on, and
-- drops a day's partitions once no task of that day is left (durable._history_partitions).
-- Anything outside every partition (an id of a dropped day, a day not created in time)
-- lands in *_default. The legacy and default partitions are never dropped: retention
-- deletes their rows one by one, as before.
--
-- The conversion keeps every row: new tables, the rows copied in one statement each, the
-- old tables dropped, the new ones renamed. Triggers (events are append-only, log.sql) and
-- functions come back from plpgsql/ right after the migrations.

-- The day partitions that exist, by the range of task ids each holds (lo <= id < hi).
create table durable.history_partitions (
    day date primary key,
    lo uuid not null,
    hi uuid not null,
    created_at timestamptz not null default now()
);

-- The maintenance's own row (not durable.settings, whose row the test clock locks first):
-- made_until, the day partitions are made (or skipped, see retention.sql) up to this time;
-- checked_at, when the maintenance last looked (it looks at most once a minute).
create table durable.history_state (
    id boolean primary key default true check (id),
    made_until timestamptz not null,
    checked_at timestamptz
);
insert into durable.history_state (made_until) values (now());

-- functions whose signature names the old table's row type: created again from plpgsql/
drop function if exists durable._event_json(durable.events);
drop function if exists durable._same_event(text, text, text, durable.events);

-- the same columns, defaults, constraints and indexes as the tables of today (LIKE
-- INCLUDING ALL: also what a migration before this one added), partitioned
create table durable.attempts_new (like durable.attempts including all) partition by range (task_id);
create table durable.events_new (like durable.events including all) partition by range (task_id);

-- every id below the first millisecond of made_until: the rows of today's schema
do $$
declare
    v_bound uuid := encode(
        substring(int8send(floor(extract(epoch from (select s.made_until from durable.history_state as s)) * 1000)::bigint)
            from 3)
        || '\x00000000000000000000'::bytea,
        'hex'
    )::uuid;
begin
    execute format('create table durable.attempts_legacy partition of durable.attempts_new
                    for values from (minvalue) to (%L)', v_bound);
    execute format('create table durable.events_legacy partition of durable.events_new
                    for values from (minvalue) to (%L)', v_bound);
end;
$$;
create table durable.attempts_default partition of durable.attempts_new default;
create table durable.events_default partition of durable.events_new default;

-- every column, whatever an earlier migration added (same order: LIKE)
insert into durable.attempts_new
select * from durable.attempts;  -- noqa: AM04

insert into durable.events_new
select * from durable.events;  -- noqa: AM04

-- the indexes LIKE copied get names of their own: each takes back the name of the index
-- it copies (same columns and predicate), once the old table is gone
create temporary table index_names on commit drop as
select
    n.indexrelid::regclass::text as copy,
    o.indexrelid::regclass::text as original
from pg_catalog.pg_index as o
inner join pg_catalog.pg_index as n
    on
        n.indrelid = (o.indrelid::regclass::text || '_new')::regclass
        and n.indkey::text = o.indkey::text
        and coalesce(pg_catalog.pg_get_expr(n.indpred, n.indrelid), '')
        = coalesce(pg_catalog.pg_get_expr(o.indpred, o.indrelid), '')
where o.indrelid in ('durable.attempts'::regclass, 'durable.events'::regclass);

drop table durable.attempts;
drop table durable.events;
alter table durable.attempts_new rename to attempts;
alter table durable.events_new rename to events;
do $$
declare
    r record;
begin
    for r in select i.copy, i.original from index_names as i loop
        execute format('alter index %s rename to %I', r.copy, split_part(r.original, '.', 2));
    end loop;
end;
$$;

revoke all on durable.attempts, durable.events, durable.history_partitions, durable.history_state from public;
revoke all on durable.attempts_legacy, durable.attempts_default from public;
revoke all on durable.events_legacy, durable.events_default from public;

-- 0005: the security boundary (see plpgsql/security.sql for the model).
--
-- Runs as the owner role durable_owner, which the migration runner creates (or asks an
-- administrator to create) together with the group roles, and which owns the schema and
-- everything in it. Nobody else gets a right on a table: the public verbs are SECURITY
-- DEFINER functions and are the only way in.

-- Settings of this database that only the owner may change. test_clock: this database is
-- a test database, where durable.current_time() honours the setting durable.fake_now
-- (anywhere else a session's fake clock is ignored).
create table durable.settings (
    id boolean primary key default true check (id),
    test_clock boolean not null default false
);
insert into durable.settings default values;

-- Queue permissions (durable.grant_queue): the role a row restricts (it and its members),
-- a queue name or a prefix pattern ending in '*', and what the role may do there.
create table durable.queue_grants (
    role_oid oid not null,
    queue_pattern text not null,
    capabilities text[] not null,
    primary key (role_oid, queue_pattern)
);

-- A terminal task goes back to pending only in an UPDATE that counts a restart (retry,
-- replay): the state machine's trigger checks this column instead of a session setting.
alter table durable.tasks add column restarts integer not null default 0;

-- Event keys live in the scope of a queue (the queue of the waiting task, the queue an
-- emit names): no role reaches another queue's waiters, and the queue stays the unit of
-- placement. Latches that existed before are copied into every queue, so that a wait
-- started before this migration still sees them.
alter table durable.event_values drop constraint event_values_pkey;
alter table durable.event_values add column queue text;
insert into durable.event_values (queue, key, payload, emitted_at)
select
    q.queue,
    v.key,
    v.payload,
    v.emitted_at
from durable.event_values as v
cross join durable.queues as q
where v.queue is null;
delete from durable.event_values
where queue is null;
alter table durable.event_values alter column queue set not null;
alter table durable.event_values add primary key (queue, key);

drop index durable.tasks_wait_key_idx;
create index tasks_wait_key_idx on durable.tasks (queue, wait_key)
where status = 'waiting' and wait_kind = 'event';

-- Signatures that changed (the event scope): the old functions go, the new ones come
-- from plpgsql/.
drop function if exists durable.emit_event(text, jsonb);
drop function if exists durable.purge_event_keys(double precision, integer);

-- Retention runs in the claim's maintenance path: when each queue was last purged.
alter table durable.queues add column purged_at timestamptz;

-- No rights for anyone but the owner, on what exists and on what the owner creates later.
revoke all on schema durable from public;
revoke all on all tables in schema durable from public;
revoke all on all sequences in schema durable from public;
revoke all on all functions in schema durable from public;
-- and from whoever else was granted something here before (a deployment that gave its
-- worker role table rights, as the INVOKER verbs of 0001-0004 needed)
do $$
declare
    r record;
begin
    for r in
        select format('revoke all on table %s from %s', c.oid::regclass,
                      case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end) as stmt
        from pg_class c
        cross join lateral aclexplode(c.relacl) a
        where c.relnamespace = 'durable'::regnamespace and a.grantee <> c.relowner
        union
        select format('revoke all on function %s from %s', p.oid::regprocedure,
                      case when a.grantee = 0 then 'public' else quote_ident(pg_get_userbyid(a.grantee)) end)
        from pg_proc p
        cross join lateral aclexplode(p.proacl) a
        where p.pronamespace = 'durable'::regnamespace and a.grantee <> p.proowner
    loop
        execute r.stmt;
    end loop;
end;
$$;
alter default privileges revoke execute on functions from public;
grant usage on schema durable to durable_worker, durable_producer, durable_operator, durable_reader;

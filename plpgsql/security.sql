-- security.sql: who may call what, on which queue.
--
-- ## The boundary
-- The schema and everything in it belong to the NOLOGIN role durable_owner. No other role
-- has any right on a table, nor on an internal (underscore) function: every public verb
-- is SECURITY DEFINER, runs as the owner with search_path = pg_catalog, durable, pg_temp
-- (pg_temp last, so a caller's temporary objects can never stand in for ours), checks its
-- arguments, and is the only way in. What a caller can do is therefore exactly what the
-- verbs allow, whatever rights on tables it is given by mistake elsewhere (none are
-- needed). A superuser and the owner's members are not bound by any of this.
--
-- ## Roles (created by the migration runner; granted by a deployment to its login roles)
--   durable_worker    claim, every lease-token verb, next_wake, ensure_queue
--   durable_producer  enqueue, enqueue_many, emit_event, ensure_queue, and the reads
--   durable_operator  create_queue, ensure_queue, cancel, retry, replay, fork, purge,
--                     purge_event_keys, reclaim, emit_event, the queue grants, and the reads
--   durable_reader    get_task, history, queue_stats, limit_usage, list_tasks, list_queues,
--                     workers
-- (producer and operator are members of durable_reader). Each verb's GRANT follows it in
-- its file; PostgreSQL itself refuses the others (42501).
--
-- ## Queue permissions
-- A role may be restricted to some queues (durable.grant_queue): a row names a role, a
-- queue (or a prefix followed by '*') and the capabilities granted there (worker,
-- producer, operator, reader). The caller is the role in effect: the one chosen with SET
-- ROLE, else the login role) and the login role as well (unless it is a superuser or the
-- owner's member): SET ROLE can be used only towards roles one belongs to, so neither can
-- be forged, and a restricted login role cannot shed its grants by SET ROLE to a group
-- role it holds. A caller to whom no row applies (rows apply to their role and its
-- members) is unrestricted; one to whom rows apply reaches only the queues those rows
-- match, with the capabilities they list. Every verb checks, before it writes:
-- claim, next_wake and the token verbs need worker on the task's queue; enqueue needs
-- producer; a spawn worker on its own queue and worker or producer on the target; emit
-- producer or operator; the restarts, cancel, purges, reclaim and queue options
-- operator; reads reader, producer or operator. Refusals are SQLSTATE 42501.
--
-- Event keys live in the scope of a queue: an emit names its queue, a wait waits in its
-- task's queue. So a restriction to queues is a restriction to their events, and the
-- queue stays the one key by which a deployment may place data on nodes.
--
-- ## No doors
-- No setting a session can set relaxes a rule. The state machine lets a terminal task
-- go back to pending only in an UPDATE that counts a restart (tasks.restarts, written
-- by retry and replay); events are deleted only together with their task (retention).
-- The test clock (durable.fake_now) works only in a database whose owner marked it as a
-- test database (durable.settings.test_clock).

-- The roles a verb acts for: the one in effect (chosen with SET ROLE, else the login
-- role), and the login role too unless it is a superuser or a member of the owner. Both
-- count: a restricted login role must not shed its grants by SET ROLE to a group role it
-- holds, and a login role that sets a restricted role (PostgREST's pattern) is restricted.
create or replace function durable._callers()
returns name[]
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    -- inside a SECURITY DEFINER function current_user is the owner; the setting "role"
    -- still says what the session chose (it can only be set to a role one belongs to)
    v_effective name := coalesce(nullif(current_setting('role'), 'none'), session_user)::name;
begin
    if v_effective = session_user or pg_has_role(session_user, 'durable_owner', 'MEMBER') then
        return array[v_effective];
    end if;
    return array[v_effective, session_user];
end;
$$;

comment on function durable._callers() is
'Internal: the roles queue permissions are checked against: the role in effect (SET ROLE''s, else the login role), and the login role as well unless it is a superuser or a member of durable_owner.';

-- Whether any of the callers is bound by queue grants, and by which ones: the grants that
-- apply to one of them (to one of its roles), unless the role in effect is a superuser or
-- a member of the owner.
create or replace function durable._caller_grants()
returns table (queue_pattern text, capabilities text[])
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_callers name[] := durable._callers();
begin
    if pg_has_role(v_callers[1], 'durable_owner', 'MEMBER') then
        return;
    end if;
    return query
    select g.queue_pattern, g.capabilities
    from durable.queue_grants g
    join pg_roles r on r.oid = g.role_oid
    where exists (select 1 from unnest(v_callers) as c (role) where pg_has_role(c.role, g.role_oid, 'MEMBER'));
end;
$$;

comment on function durable._caller_grants() is
'Internal: the queue grants that bind the caller (see durable._callers): none for the owner''s members and superusers, else those of every role either caller belongs to.';

-- The role named in refusals.
create or replace function durable._caller()
returns name
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return (durable._callers())[1];
end;
$$;

comment on function durable._caller() is
'Internal: the role in effect for the session (SET ROLE''s, else the login role), as refusals name it.';

-- Whether the caller may act on a queue with one of the capabilities given.
create or replace function durable._allowed(p_queue text, p_capabilities text[])
returns boolean
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_bound boolean;
    v_allowed boolean;
begin
    if not exists (select 1 from durable.queue_grants) then
        return true;
    end if;
    select count(*) > 0,
           coalesce(bool_or(
               (g.queue_pattern = p_queue
                or (right(g.queue_pattern, 1) = '*' and starts_with(p_queue, left(g.queue_pattern, -1))))
               and g.capabilities && p_capabilities
           ), false)
    into v_bound, v_allowed
    from durable._caller_grants() as g;
    return not v_bound or v_allowed;
end;
$$;

comment on function durable._allowed(text, text[]) is
'Internal: whether the caller (durable._callers) may act on queue p_queue with one of p_capabilities: true when no queue grant binds it, else when one of the grants that bind it matches the queue and lists one of the capabilities.';

-- Raises 42501 unless the caller may act on the queue with one of the capabilities.
create or replace function durable._require(p_queue text, p_capabilities text[], p_what text)
returns void
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if not durable._allowed(p_queue, p_capabilities) then
        raise exception 'durable: permission denied: role % may not % on queue %',
            durable._caller(), p_what, durable._quote(p_queue)
            using errcode = '42501',
                  hint = format('it needs %s on that queue (durable.grant_queue)', array_to_string(p_capabilities, ' or '));
    end if;
end;
$$;

comment on function durable._require(text, text[], text) is
'Internal: raises 42501 (insufficient_privilege) unless durable._allowed(p_queue, p_capabilities); p_what names the action in the message.';

-- The capabilities a queue grant may list.
create or replace function durable._capabilities()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['worker', 'producer', 'operator', 'reader'];
end;
$$;

comment on function durable._capabilities() is
'Internal: the capabilities a queue grant may list: worker, producer, operator, reader.';

-- Raises 42501 when the caller is itself restricted to some queues: such a caller may not
-- change anyone's queue grants (it could lift its own restriction).
create or replace function durable._require_unrestricted(p_what text)
returns void
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if exists (select 1 from durable._caller_grants()) then
        raise exception 'durable: permission denied: role % is restricted to some queues and may not %',
            durable._caller(), p_what
            using errcode = '42501';
    end if;
end;
$$;

comment on function durable._require_unrestricted(text) is
'Internal: raises 42501 when a queue grant applies to the caller (a restricted role may not change queue grants).';

create or replace function durable.grant_queue(p_role text, p_queue_pattern text, p_capabilities text[])
returns void
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_role oid;
begin
    perform durable._require_unrestricted('change queue grants');
    select r.oid into v_role from pg_roles r where r.rolname = p_role;
    if not found then
        raise exception 'durable: no role named %', durable._quote(p_role) using errcode = 'DU001';
    end if;
    if pg_has_role(p_role::name, 'durable_owner', 'MEMBER') then
        raise exception 'durable: role % is a superuser or a member of durable_owner: it cannot be restricted', durable._quote(p_role)
            using errcode = 'DU001';
    end if;
    perform durable._check_name(p_queue_pattern, 'queue pattern');
    if position('*' in left(p_queue_pattern, -1)) > 0 then
        raise exception 'durable: a queue pattern is a queue name, or a prefix followed by a single * at its end; got %',
            durable._quote(p_queue_pattern)
            using errcode = 'DU001';
    end if;
    if p_capabilities is null or cardinality(p_capabilities) = 0 or array_position(p_capabilities, null) is not null
        or not p_capabilities <@ durable._capabilities() then
        raise exception 'durable: capabilities must be a non-empty list of worker, producer, operator, reader; got %',
            durable._quote(p_capabilities::text)
            using errcode = 'DU001';
    end if;
    insert into durable.queue_grants as g (role_oid, queue_pattern, capabilities)
    values (v_role, p_queue_pattern, array(select distinct c from unnest(p_capabilities) as c order by c))
    on conflict (role_oid, queue_pattern) do update set capabilities = excluded.capabilities;
end;
$$;

comment on function durable.grant_queue(text, text, text[]) is
'Restricts role p_role (and its members) to the queues its grants match: after the first grant, the role may act only on queues matching one of its patterns (a queue name, or a prefix followed by *), with the capabilities listed there (worker, producer, operator, reader). Granting a pattern again replaces its capabilities. Only an unrestricted caller may change grants (42501). Errors: DU001, 42501.';

create or replace function durable.revoke_queue(p_role text, p_queue_pattern text default null)
returns integer
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_count integer;
begin
    perform durable._require_unrestricted('change queue grants');
    delete from durable.queue_grants g
    where g.role_oid = (select r.oid from pg_roles r where r.rolname = p_role)
      and (p_queue_pattern is null or g.queue_pattern = p_queue_pattern);
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

comment on function durable.revoke_queue(text, text) is
'Removes a queue grant of role p_role (all of its grants when p_queue_pattern is null); a role left with no grant is unrestricted again. Returns how many grants it removed. Only an unrestricted caller may change grants. Errors: 42501.';

create or replace function durable.queue_grants()
returns table (role text, queue_pattern text, capabilities text[])
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return query
    select coalesce(r.rolname::text, format('(dropped role %s)', g.role_oid)), g.queue_pattern, g.capabilities
    from durable.queue_grants g
    left join pg_roles r on r.oid = g.role_oid
    order by 1, 2;
end;
$$;

comment on function durable.queue_grants() is
'Every queue grant: the role restricted, the queue pattern and the capabilities granted there.';

grant execute on function durable.grant_queue(text, text, text[]) to durable_operator;
grant execute on function durable.revoke_queue(text, text) to durable_operator;
grant execute on function durable.queue_grants() to durable_operator;

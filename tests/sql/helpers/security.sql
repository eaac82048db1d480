-- Helpers for the test_security_* files, included with `\ir helpers/security.sql`.
--
-- Roles are cluster-wide and test files may run at once against one server, so each file
-- makes its own throw-away roles with a random suffix (pg_temp.role('w') is this file's
-- 'sec_w_<suffix>'). pg_temp.login(kind, groups) creates a login role granted only the
-- given roles; pg_temp.drop_roles() drops every role this file made (call it last, after
-- closing any dblink session that logged in as one of them).
--
-- Acting as a role: pg_temp.state_as(role, sql) runs sql (one or more statements) after
-- SET ROLE and returns the SQLSTATE it failed with, or null when it succeeded (its
-- changes are then kept); pg_temp.value_as(role, sql) returns the last statement's first
-- column as text, or 'ERROR <sqlstate>: <message>'. Either way the session is back to its
-- own role afterwards, with the settings durable.fake_now, durable.restarting and
-- durable.purging as they were before. The assertions themselves run as the test's own role.
--
-- pg_temp.durable_state() is every row of every table of the schema durable, to check that
-- a rejected call changed nothing; pg_temp.conninfo_as(role) is a dblink connection string
-- that logs in as the role. pg_temp.error_as(role, sql) is what sql fails with (sqlstate,
-- message, detail, hint) as that role; pg_temp.remote(conn, sql) a dblink session's answer.
-- pg_temp.refused_as(role, sql, sqlstate, description) is two assertions: the SQLSTATE, and
-- that nothing stored changed.
create temp table sec_roles (kind text primary key, name text not null unique);
create temp table sec_suffix as select substr(md5(random()::text || clock_timestamp()::text), 1, 10) as suffix;

create function pg_temp.role(p_kind text) returns text language sql
    as $$ select 'sec_' || p_kind || '_' || (select s.suffix from sec_suffix s) $$;

-- a role of this file: login (or not), granted exactly p_groups
create function pg_temp.make_role(p_kind text, p_groups text[], p_login boolean) returns text
language plpgsql as $$
declare
    v_name text := pg_temp.role(p_kind);
    g text;
begin
    execute format('create role %I %s', v_name, case when p_login then 'login' else 'nologin' end);
    insert into sec_roles values (p_kind, v_name);
    foreach g in array coalesce(p_groups, '{}') loop
        execute format('grant %I to %I', g, v_name);
    end loop;
    return v_name;
end;
$$;

create function pg_temp.login(p_kind text, p_groups text[] default '{}') returns text language sql
    as $$ select pg_temp.make_role(p_kind, p_groups, true) $$;

create function pg_temp.drop_roles() returns integer
language plpgsql as $$
declare
    r record;
    n integer := 0;
begin
    -- members first: a group role of this file may have members of this file
    for r in select s.name from sec_roles s order by s.kind desc loop
        execute format('drop owned by %I', r.name);
    end loop;
    for r in select s.name from sec_roles s loop
        execute format('drop role %I', r.name);
        n := n + 1;
    end loop;
    delete from sec_roles;
    return n;
end;
$$;

-- the settings a test may set as a role; state_as and value_as put them back as they were
create function pg_temp.saved_settings() returns jsonb language sql as $$
    select jsonb_object_agg(s, current_setting(s, true))
    from unnest(array['durable.fake_now', 'durable.restarting', 'durable.purging']) as s
$$;
create function pg_temp.restore_settings(p_saved jsonb) returns void
language plpgsql as $$
begin
    reset role;
    perform set_config(k, coalesce(p_saved ->> k, ''), false) from jsonb_object_keys(p_saved) as k
    where current_setting(k, true) is distinct from p_saved ->> k;
end;
$$;

create function pg_temp.state_as(p_role text, p_sql text) returns text
language plpgsql as $$
declare
    v_saved jsonb := pg_temp.saved_settings();
    v_state text;
begin
    begin
        execute format('set role %I', p_role);
        execute p_sql;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate;
    end;
    perform pg_temp.restore_settings(v_saved);
    return v_state;
end;
$$;

create function pg_temp.value_as(p_role text, p_sql text) returns text
language plpgsql as $$
declare
    v_saved jsonb := pg_temp.saved_settings();
    v text;
begin
    begin
        execute format('set role %I', p_role);
        execute p_sql into v;
    exception when others then
        v := 'ERROR ' || sqlstate || ': ' || sqlerrm;
    end;
    perform pg_temp.restore_settings(v_saved);
    return v;
end;
$$;

-- what a SQLSTATE means for a permission test: 'allowed' (success or a durable error, DU...)
-- or the SQLSTATE itself (42501 when PostgreSQL or a verb refused the caller)
create function pg_temp.verdict(p_state text) returns text language sql
    as $$ select case when p_state is null or p_state like 'DU%' then 'allowed' else p_state end $$;

create function pg_temp.durable_state() returns jsonb
language plpgsql as $$
declare
    r record;
    v jsonb := '{}'::jsonb;
    v_rows jsonb;
begin
    for r in
        select c.oid::regclass as tbl, c.relname
        from pg_class c
        where c.relnamespace = 'durable'::regnamespace and c.relkind in ('r', 'p')
        order by c.relname
    loop
        execute format('select coalesce(jsonb_agg(to_jsonb(t) order by to_jsonb(t)::text), ''[]'') from %s t', r.tbl)
            into v_rows;
        v := v || jsonb_build_object(r.relname, v_rows);
    end loop;
    return v;
end;
$$;

create function pg_temp.conninfo_as(p_role text) returns text language sql
    as $$ select current_setting('durable_test.conninfo') || format(' user=%s', p_role) $$;

-- the SQLSTATE, message, DETAIL and HINT p_sql fails with as p_role (null when it succeeds)
create function pg_temp.error_as(p_role text, p_sql text) returns jsonb
language plpgsql as $$
declare
    v_saved jsonb := pg_temp.saved_settings();
    v jsonb;
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
begin
    begin
        execute format('set role %I', p_role);
        execute p_sql;
    exception when others then
        get stacked diagnostics v_state = returned_sqlstate, v_message = message_text,
                                v_detail = pg_exception_detail, v_hint = pg_exception_hint;
        v := jsonb_build_object('sqlstate', v_state, 'message', v_message, 'detail', v_detail, 'hint', v_hint);
    end;
    perform pg_temp.restore_settings(v_saved);
    return v;
end;
$$;

-- the first column of the first row p_sql returns in dblink session p_conn, as text, or
-- 'ERROR <sqlstate>: <message>' (dblink raises the remote SQLSTATE)
create function pg_temp.remote(p_conn text, p_sql text) returns text
language plpgsql as $$
declare
    v text;
begin
    select x.v into v from dblink(p_conn, p_sql) as x (v text);
    return v;
exception when others then
    return 'ERROR ' || sqlstate || ': ' || sqlerrm;
end;
$$;

-- two assertions: p_sql fails as p_role with SQLSTATE p_state, and nothing stored changed
create function pg_temp.refused_as(p_role text, p_sql text, p_state text, p_description text)
returns setof text
language plpgsql as $$
declare
    v_before jsonb := pg_temp.durable_state();
begin
    return next is(pg_temp.state_as(p_role, p_sql), p_state, p_description);
    return next is(pg_temp.durable_state(), v_before, p_description || ': nothing changed');
end;
$$;

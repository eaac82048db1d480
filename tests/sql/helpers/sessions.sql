-- Helpers for the files that race two more sessions, included with `\ir helpers/sessions.sql`
-- (dblink connections named a and b; the test setting durable_test.conninfo says where).

-- blocks until session p_conn (backend p_pid) waits for a lock, or its query ended;
-- returns the pids it waits for (empty when it did not block)
create function pg_temp.blockers(p_conn text, p_pid integer) returns integer[]
language plpgsql as $$
declare
    v_deadline timestamptz := clock_timestamp() + interval '60 seconds';
    v integer[];
begin
    loop
        v := pg_blocking_pids(p_pid);
        exit when cardinality(v) > 0 or dblink_is_busy(p_conn) = 0 or clock_timestamp() > v_deadline;
    end loop;
    return v;
end;
$$;

-- true when session p_conn (backend p_pid) comes to wait for backend p_holder before its
-- query ends; false when the query ends without ever waiting for it (a wait for another
-- session, which may end, is not one). Gives up after 60 s (true: it never ended).
create function pg_temp.waits_for(p_conn text, p_pid integer, p_holder integer) returns boolean
language plpgsql as $$
declare
    v_deadline timestamptz := clock_timestamp() + interval '60 seconds';
begin
    loop
        if p_holder = any(pg_blocking_pids(p_pid)) then
            return true;
        end if;
        if dblink_is_busy(p_conn) = 0 then
            return false;
        end if;
        if clock_timestamp() > v_deadline then
            return true;
        end if;
    end loop;
end;
$$;

-- connects sessions a and b, on this session's test clock; their backend pids go in the
-- temp table pids (a, b). Call it outside a transaction block's uncommitted work: the
-- other sessions see only what is committed.
create function pg_temp.connect_ab() returns void
language plpgsql as $$
begin
    perform dblink_connect(s, current_setting('durable_test.conninfo')) from unnest(array['a', 'b']) as s;
    perform dblink_exec(s, format('set durable.fake_now = %L', coalesce(current_setting('durable.fake_now', true), '')))
    from unnest(array['a', 'b']) as s;
    create temp table pids as
    select (select x.pid from dblink('a', 'select pg_backend_pid()') as x (pid integer)) as a,
           (select x.pid from dblink('b', 'select pg_backend_pid()') as x (pid integer)) as b;
end;
$$;

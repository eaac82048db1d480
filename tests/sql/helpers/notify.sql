-- Helper for the files that check NOTIFY durable, included with `\ir helpers/notify.sql`.
--
-- Notifications reach a listening session asynchronously. After a step, the test session
-- sends a sentinel (select pg_notify('durable', 'sentinel'); commit;); notifications are
-- delivered in commit order, so what the listener (a dblink connection that ran LISTEN
-- durable) received before the sentinel is exactly what the step sent: its payloads, in
-- order.
-- The notifications themselves (channel, sending backend, payload) are left in the
-- temp table notified, in order.
create temp table notified (ord serial, channel text, pid integer, payload text);
create function pg_temp.notified_before_sentinel(p_listener text) returns text[]
language plpgsql as $$
declare
    r record;
begin
    truncate notified;
    for i in 1..1000 loop
        for r in select n.notify_name, n.be_pid, n.extra from dblink_get_notify(p_listener) as n loop
            if r.extra = 'sentinel' then
                return coalesce((select array_agg(x.payload order by x.ord) from notified x), '{}');
            end if;
            insert into notified (channel, pid, payload) values (r.notify_name, r.be_pid, r.extra);
        end loop;
        perform pg_sleep(0.01);  -- waiting for a condition (the sentinel), at most 10 s
    end loop;
    raise exception 'the sentinel notification did not arrive within 10 s';
end;
$$;

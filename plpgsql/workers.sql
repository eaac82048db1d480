-- The worker registry: who runs tasks, and how fast a dead worker's tasks come back.
--
-- A worker registers (durable.register_worker: its name, host, pid, queues, task names,
-- slots, and how often it will heartbeat) and gets a secret token; it heartbeats with it
-- (durable.worker_heartbeat) and says goodbye when it stops (durable.unregister_worker).
-- It claims under the name it registered (durable.claim's p_worker), so durable.tasks.worker
-- names the registered worker that runs each task.
--
-- A worker is dead once its last heartbeat is older than dead_after_seconds (by default
-- three heartbeats): a claim of a queue where it runs tasks, on the queue's once-a-second
-- turn (its maintenance path, durable._reclaim, as for expired leases), takes its running
-- tasks of that queue back, as lost leases
-- (they count in lost_leases, not in failures), instead of waiting for the leases to run
-- out. A heartbeat older than the server's start counts as given at the start: after a
-- restart, workers get dead_after_seconds to reconnect. A dead worker that heartbeats
-- again is alive again (its reclaimed attempts are fenced: their calls fail with DU010).
-- Rows of workers dead for an hour are deleted by the same maintenance path.
--
-- Workers that do not register (any client of the SQL API may claim under any name) keep
-- the lease-expiry reclaim alone.
--
-- Locks: each verb locks its own worker's row only; the maintenance path deletes rows
-- with SKIP LOCKED (the lock order, plpgsql/README.md).

-- The names of the registered workers that are dead at p_now.
create or replace function durable._dead_workers(p_now timestamptz)
returns text[]
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array(
        select w.name from durable.workers w
        where greatest(w.last_seen_at, pg_postmaster_start_time())
              < p_now - make_interval(secs => w.dead_after_seconds)
    );
end;
$$;

comment on function durable._dead_workers(timestamptz) is
'Internal: the names of the registered workers whose last heartbeat (or the server''s start, when later) is older than their dead_after_seconds at p_now.';

create or replace function durable.register_worker(
    p_worker text,
    p_queues text[],
    p_task_names text[] default null,
    p_slots integer default 1,
    p_host text default null,
    p_pid integer default null,
    p_heartbeat_seconds double precision default 2,
    p_dead_after_seconds double precision default null
)
returns uuid
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_dead_after double precision := coalesce(p_dead_after_seconds, 3 * p_heartbeat_seconds);
    v_token uuid;
    v_queue text;
begin
    perform durable._check_name(p_worker, 'worker');
    if p_queues is null or cardinality(p_queues) = 0 or cardinality(p_queues) > 100 then
        raise exception 'durable: a worker serves 1 to 100 queues, got %', coalesce(cardinality(p_queues), 0)
            using errcode = 'DU001';
    end if;
    if p_task_names is not null and cardinality(p_task_names) > 10000 then
        raise exception 'durable: a worker registers at most 10000 task names, got %', cardinality(p_task_names)
            using errcode = 'DU001';
    end if;
    perform durable._check_name(n, 'task_name') from unnest(p_task_names) as n;
    if p_slots is null or p_slots < 1 or p_slots > 100000 then
        raise exception 'durable: slots must be between 1 and 100000, got %', p_slots using errcode = 'DU001';
    end if;
    if p_host is not null then
        perform durable._check_name(p_host, 'host');
    end if;
    if p_pid is not null and p_pid < 0 then
        raise exception 'durable: pid must not be negative, got %', p_pid using errcode = 'DU001';
    end if;
    if p_heartbeat_seconds is null or not p_heartbeat_seconds between 0.1 and 3600 then
        raise exception 'durable: heartbeat_seconds must be between 0.1 and 3600, got %', p_heartbeat_seconds
            using errcode = 'DU001';
    end if;
    if v_dead_after is null or v_dead_after < 2 * p_heartbeat_seconds or v_dead_after > 86400 then
        raise exception 'durable: dead_after_seconds must be at least twice heartbeat_seconds (%) and at most 86400, got %',
            p_heartbeat_seconds, v_dead_after
            using errcode = 'DU001';
    end if;
    foreach v_queue in array p_queues loop
        perform durable._check_name(v_queue, 'queue');
        perform durable._queue(v_queue);
        perform durable._require(v_queue, array['worker'], 'register a worker');
    end loop;
    -- a name is free when nobody has it or its worker is dead
    insert into durable.workers as w (
        name, token, login_role, host, pid, queues, task_names, slots,
        heartbeat_seconds, dead_after_seconds, started_at, last_seen_at
    )
    values (
        p_worker, gen_random_uuid(), session_user, p_host, p_pid,
        array(select distinct q from unnest(p_queues) as q order by q),
        array(select distinct n from unnest(p_task_names) as n order by n),
        p_slots, p_heartbeat_seconds, v_dead_after, v_now, v_now
    )
    on conflict (name) do update
        set token = excluded.token, login_role = excluded.login_role, host = excluded.host,
            pid = excluded.pid, queues = excluded.queues, task_names = excluded.task_names,
            slots = excluded.slots, heartbeat_seconds = excluded.heartbeat_seconds,
            dead_after_seconds = excluded.dead_after_seconds, started_at = excluded.started_at,
            last_seen_at = excluded.last_seen_at
        where greatest(w.last_seen_at, pg_postmaster_start_time())
              < v_now - make_interval(secs => w.dead_after_seconds)
    returning w.token into v_token;
    if v_token is null then
        raise exception 'durable: worker name % is in use by a live worker', durable._quote(p_worker)
            using errcode = 'DU023',
                  hint = 'give each worker a name of its own; a name is free again once its worker is dead';
    end if;
    return v_token;
end;
$$;

comment on function durable.register_worker(
    text, text[], text[], integer, text, integer, double precision, double precision
) is
'Registers the worker p_worker (the name it claims under) for the queues p_queues (worker rights on each), with the task names it runs (null: any), its slots, host and pid, and returns its secret token. The worker must call durable.worker_heartbeat every p_heartbeat_seconds (0.1 to 3600, default 2); once its last heartbeat is older than p_dead_after_seconds (default three heartbeats, at least two), it is dead: a claim of each queue where it runs tasks takes them back as lost leases within a second (the queue''s once-a-second turn, as for expired leases). A name held by a live worker is refused (DU023); a dead worker''s name is taken over. Errors: DU001, DU002, DU003, DU023, 42501.';

create or replace function durable.worker_heartbeat(p_worker text, p_token uuid)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._check_name(p_worker, 'worker');
    update durable.workers w set last_seen_at = durable.current_time()
    where w.name = p_worker and w.token = p_token;
    return found;
end;
$$;

comment on function durable.worker_heartbeat(text, uuid) is
'Records that the registered worker p_worker (with its token) is alive. Returns false when it is not registered under that token (its row was deleted an hour after it was found dead, or another worker took the name over once it was dead): it must register again. Errors: DU001, DU003.';

create or replace function durable.unregister_worker(p_worker text, p_token uuid)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._check_name(p_worker, 'worker');
    delete from durable.workers w where w.name = p_worker and w.token = p_token;
    return found;
end;
$$;

comment on function durable.unregister_worker(text, uuid) is
'Removes the registered worker p_worker (with its token) from the registry, as a worker that stops does once it released its tasks. Returns false when it was not registered under that token. Errors: DU001, DU003.';

create or replace function durable.workers(p_queue text default null)
returns table (
    name text,
    login_role name,
    host text,
    pid integer,
    queues text[],
    task_names text[],
    slots integer,
    running integer,
    started_at timestamptz,
    last_seen_at timestamptz,
    heartbeat_seconds double precision,
    dead_after_seconds double precision,
    alive boolean
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
begin
    if p_queue is not null then
        perform durable._require(p_queue, durable._readers(), 'read workers');
    end if;
    return query
    select w.name, w.login_role, w.host, w.pid, w.queues, w.task_names, w.slots,
           (select count(*)::integer from durable.tasks k where k.worker = w.name and k.status = 'running'),
           w.started_at, w.last_seen_at, w.heartbeat_seconds, w.dead_after_seconds,
           greatest(w.last_seen_at, pg_postmaster_start_time())
               >= v_now - make_interval(secs => w.dead_after_seconds)
    from durable.workers w
    where (p_queue is null or w.queues @> array[p_queue])
      and exists (select 1 from unnest(w.queues) as q where durable._allowed(q, durable._readers()))
    order by w.name;
end;
$$;

comment on function durable.workers(text) is
'The registered workers (of queue p_queue, or of every queue the caller may read): name, login role, host, pid, queues, task names, slots, running tasks, start, last heartbeat, heartbeat and dead-after seconds, and whether it is alive. Errors: 42501.';

grant execute on function durable.register_worker(
    text, text[], text[], integer, text, integer, double precision, double precision
) to durable_worker;
grant execute on function durable.worker_heartbeat(text, uuid) to durable_worker;
grant execute on function durable.unregister_worker(text, uuid) to durable_worker;
grant execute on function durable.workers(text) to durable_reader, durable_worker;

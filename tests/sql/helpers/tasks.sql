-- Helpers shared by the test_queue_* files, included with `\ir helpers/tasks.sql` (psql's
-- relative include; tests/conftest.py expands it the same way). They live in pg_temp:
-- each test file runs in a session and a database of its own.
--
-- helpers of this session (pg_temp): task ids and lease tokens by name, the test clock,
-- and a snapshot of everything the queue stores, to check that a rejected call changed nothing
create temp table ids (name text primary key, id uuid, token uuid);
create function pg_temp.id(p_name text) returns uuid language sql
    as $$ select i.id from ids i where i.name = p_name $$;
create function pg_temp.tok(p_name text) returns uuid language sql
    as $$ select i.token from ids i where i.name = p_name $$;
create function pg_temp.task(p_name text) returns durable.tasks language sql
    as $$ select t.* from durable.all_tasks t where t.task_id = pg_temp.id(p_name) $$;
-- T0 + p_seconds; pg_temp.clock(s) moves the test clock there
create function pg_temp.t(p_seconds double precision) returns timestamptz language sql
    as $$ select '2030-01-01 00:00:00+00'::timestamptz + make_interval(secs => p_seconds) $$;
create function pg_temp.clock(p_seconds double precision) returns timestamptz language sql
    as $$ select set_config('durable.fake_now', pg_temp.t(p_seconds)::text, false)::timestamptz $$;
create function pg_temp.enq(p_name text, p_queue text, p_options jsonb default '{}', p_input jsonb default '{}')
returns uuid language sql as $$
    insert into ids (name, id) values (p_name, durable.enqueue(p_queue, 'job', p_input, p_options))
    on conflict (name) do update set id = excluded.id, token = null
    returning id
$$;
-- claims one task of the queue and records it under p_name (null when nothing was claimed)
create function pg_temp.claim_as(p_name text, p_queue text, p_worker text default 'w1', p_lease integer default 30)
returns uuid language sql as $$
    insert into ids (name, id, token)
    select p_name, c.task_id, c.lease_token from durable.claim(p_queue, p_worker, 1, p_lease) c
    on conflict (name) do update set id = excluded.id, token = excluded.token
    returning id
$$;
create function pg_temp.everything() returns jsonb language sql as $$
    select jsonb_build_object(
        'queues', (select coalesce(jsonb_agg(to_jsonb(q) order by q.queue), '[]') from durable.queues q),
        'tasks', (select coalesce(jsonb_agg(to_jsonb(t) order by t.seq), '[]') from durable.all_tasks t),
        'attempts', (select coalesce(jsonb_agg(to_jsonb(a) order by a.task_id, a.attempt), '[]')
                     from durable.attempts a))
$$;
create temp table saved (label text primary key, state jsonb);
create function pg_temp.save(p_label text) returns boolean language sql as $$
    insert into saved values (p_label, pg_temp.everything())
    on conflict (label) do update set state = excluded.state
    returning true
$$;
create function pg_temp.saved(p_label text) returns jsonb language sql
    as $$ select s.state from saved s where s.label = p_label $$;
-- the row of one task and its attempt history
create function pg_temp.state(p_task uuid) returns jsonb language sql as $$
    select jsonb_build_object(
        'task', (select to_jsonb(t) from durable.all_tasks t where t.task_id = p_task),
        'attempts', (select coalesce(jsonb_agg(to_jsonb(a) order by a.attempt), '[]')
                     from durable.attempts a where a.task_id = p_task))
$$;
-- two assertions: p_sql raises p_errcode, and nothing stored changed
create function pg_temp.rejects(p_sql text, p_errcode text, p_description text)
returns setof text language plpgsql as $$
declare
    v_before jsonb := pg_temp.everything();
begin
    return next throws_ok(p_sql, p_errcode::char(5), null, p_description);
    return next is(pg_temp.everything(), v_before, p_description || ': nothing changed');
end;
$$;

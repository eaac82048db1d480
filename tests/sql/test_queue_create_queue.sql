-- durable.create_queue: idempotent, merges options into the stored ones (a JSON null
-- removes a key), normalises them, and rejects bad ones without changing the queue.
select plan(25);

-- helpers of this session (pg_temp): task ids and lease tokens by name, the test clock,
-- and a snapshot of everything the queue stores, to check that a rejected call changed nothing
create temp table ids (name text primary key, id uuid, token uuid);
create function pg_temp.id(p_name text) returns uuid language sql
    as $$ select i.id from ids i where i.name = p_name $$;
create function pg_temp.tok(p_name text) returns uuid language sql
    as $$ select i.token from ids i where i.name = p_name $$;
create function pg_temp.task(p_name text) returns durable.tasks language sql
    as $$ select t.* from durable.tasks t where t.task_id = pg_temp.id(p_name) $$;
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
        'tasks', (select coalesce(jsonb_agg(to_jsonb(t) order by t.seq), '[]') from durable.tasks t),
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
        'task', (select to_jsonb(t) from durable.tasks t where t.task_id = p_task),
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

select is(durable.create_queue('q'), '{}'::jsonb, 'a new queue without options has none');
select is((select count(*)::int from durable.queues where queue = 'q'), 1, 'the queue is stored');
select is(durable.create_queue('q'), '{}'::jsonb, 'creating it again returns its options');
select is((select count(*)::int from durable.queues), 1, 'and does not add a second queue');

select is(
    durable.create_queue('q', '{"max_attempts": 3, "timeout": 12.5}'),
    '{"max_attempts": 3, "timeout": 12.5}'::jsonb,
    'options given to an existing queue are merged in'
);
select is(
    durable.create_queue('q', '{"retention": 3600, "max_lost_leases": 0}'),
    '{"max_attempts": 3, "timeout": 12.5, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'a second merge keeps the keys it does not name'
);
select is(
    durable.create_queue('q', '{"max_attempts": 7}'),
    '{"max_attempts": 7, "timeout": 12.5, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'a key given again is replaced'
);
select is(
    durable.create_queue('q', '{"timeout": null}'),
    '{"max_attempts": 7, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'a key given as JSON null is removed'
);
select is(
    durable.create_queue('q', '{}'),
    '{"max_attempts": 7, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'empty options change nothing'
);
select is(
    durable.create_queue('q', '{"backoff": {"kind": "fixed", "delay": 5}}') -> 'backoff',
    '{"kind": "fixed", "delay": 5, "jitter": false}'::jsonb,
    'a fixed backoff is normalised (jitter off by default)'
);
select is(
    durable.create_queue('q', '{"backoff": {"factor": 3}}') -> 'backoff',
    '{"kind": "exponential", "base": 1, "factor": 3, "max": 300, "jitter": true}'::jsonb,
    'a backoff given again replaces the whole policy, normalised (exponential by default)'
);
select is(
    durable.create_queue('q', '{"backoff": {"kind": "none", "delay": 4}}') -> 'backoff',
    '{"kind": "none"}'::jsonb,
    'backoff none keeps only its kind'
);
select is(
    durable.create_queue('q', '{"backoff": null}'),
    '{"max_attempts": 7, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'a backoff given as JSON null is removed like any other key'
);
select is(
    (select options from durable.queues where queue = 'q'),
    '{"max_attempts": 7, "retention": 3600, "max_lost_leases": 0}'::jsonb,
    'the stored options are the ones returned'
);

select durable.create_queue('other', '{"max_attempts": 2}');
select is(
    (select jsonb_object_agg(queue, options) from durable.queues),
    '{"q": {"max_attempts": 7, "retention": 3600, "max_lost_leases": 0}, "other": {"max_attempts": 2}}'::jsonb,
    'queues keep options of their own'
);

-- a rejected merge leaves the queue as it was (two assertions each)
select pg_temp.rejects($$select durable.create_queue('q', '{"max_attempts": 2, "colour": "red"}')$$,
    'DU001', 'create_queue with an unknown option');
select pg_temp.rejects($$select durable.create_queue('q', '{"timeout": 5, "max_attempts": 0}')$$,
    'DU001', 'create_queue with max_attempts 0');
select pg_temp.rejects($$select durable.create_queue('q', '{"retention": -1}')$$,
    'DU001', 'create_queue with a negative retention');
select pg_temp.rejects($$select durable.create_queue('q', '{"backoff": {"kind": "linear"}}')$$,
    'DU001', 'create_queue with an unknown backoff kind');
select pg_temp.rejects($$select durable.create_queue('  ', '{"max_attempts": 2}')$$,
    'DU001', 'create_queue with a blank name');

select * from finish();

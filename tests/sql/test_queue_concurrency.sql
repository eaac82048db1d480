-- Concurrency, with real sessions (dblink) that hold row locks in open transactions:
-- two claimers never take the same task (SKIP LOCKED, no waiting), a rolled back claim
-- gives the task back, reclaim and purge skip locked rows, fenced verbs that wait for
-- another session's lock decide on what that session committed, and idempotent enqueues
-- racing on one key all return the one task. No sleeps: a session that must wait is
-- watched until PostgreSQL reports it blocked (pg_blocking_pids).
select plan(39);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

create temp table pids (name text primary key, pid integer);
create function pg_temp.connect(p_name text) returns integer language sql as $$
    select dblink_connect(p_name, current_setting('durable_test.conninfo'));
    select dblink_exec(p_name, format('set durable.fake_now = %L', current_setting('durable.fake_now')));
    insert into pids select p_name, r.pid from dblink(p_name, 'select pg_backend_pid()') as r (pid integer)
    returning pid
$$;
-- the remote session's test clock
create function pg_temp.remote_clock(p_name text, p_seconds double precision) returns text language sql as $$
    select dblink_exec(p_name, format('set durable.fake_now = %L', pg_temp.t(p_seconds)))
$$;
-- claims one task in a remote session; records it under p_as
create function pg_temp.remote_claim(p_name text, p_as text, p_queue text, p_max integer default 1)
returns setof uuid language sql as $$
    insert into ids (name, id, token)
    select p_as || case when p_max = 1 then '' else '_' || row_number() over () end, r.task_id, r.lease_token
    from dblink(p_name, format('select task_id, lease_token from durable.claim(%L, %L, %s, 30)', p_queue, p_name, p_max))
        as r (task_id uuid, lease_token uuid)
    returning id
$$;
-- evaluates an expression in a remote session, as text
create function pg_temp.remote(p_name text, p_expr text) returns text language sql as $$
    select r.x from dblink(p_name, format('select (%s)::text', p_expr)) as r (x text)
$$;
-- true once the session is waiting for a lock another session holds (false after 30 s)
create function pg_temp.blocked(p_name text) returns boolean language plpgsql as $$
declare
    v_pid integer := (select p.pid from pids p where p.name = p_name);
    v_until timestamptz := clock_timestamp() + interval '30 seconds';
begin
    loop
        if cardinality(pg_blocking_pids(v_pid)) > 0 then
            return true;
        end if;
        if clock_timestamp() > v_until then
            return false;
        end if;
    end loop;
end;
$$;

select pg_temp.clock(0);
select pg_temp.connect('a');
select pg_temp.connect('b');

-- two claimers ---------------------------------------------------------------------------
select durable.create_queue('c1');
select pg_temp.enq('t1', 'c1');
select pg_temp.enq('t2', 'c1');
commit;
select dblink_exec('a', 'begin');
select pg_temp.remote_claim('a', 'a1', 'c1');
select is(pg_temp.id('a1'), pg_temp.id('t1'), 'session a claims the first task and holds it in an open transaction');
select is(pg_temp.claim_as('m1', 'c1', 'main'), pg_temp.id('t2'),
          'a claim in another session skips the locked task and gets the next one');
select is((select count(*)::int from durable.claim('c1', 'main', 10)), 0,
          'with both tasks taken, a claim returns nothing rather than wait');
select dblink_exec('a', 'commit');
commit;
select is(
    (select jsonb_object_agg(task_name || ':' || (task_id = pg_temp.id('t1'))::text, worker)
     from durable.all_tasks where queue = 'c1'),
    '{"job:true": "a", "job:false": "main"}'::jsonb,
    'each task is running for the one session that claimed it'
);
select isnt(pg_temp.tok('a1'), pg_temp.tok('m1'), 'with different tokens');

-- a claim rolled back gives the task back
select durable.create_queue('c2');
select pg_temp.enq('r', 'c2');
commit;
select dblink_exec('a', 'begin');
select pg_temp.remote_claim('a', 'a2', 'c2');
select is(pg_temp.id('a2'), pg_temp.id('r'), 'session a claims the task');
select is(pg_temp.claim_as('m2', 'c2', 'main'), null, 'the main session finds nothing to claim');
select dblink_exec('a', 'rollback');
select is(pg_temp.claim_as('m2', 'c2', 'main'), pg_temp.id('r'), 'once a rolls back, the task can be claimed');
select is((pg_temp.task('r')).attempt, 1, 'as its first attempt: the rolled back claim left no trace');
commit;

-- three claimers, many tasks
select durable.create_queue('c3');
select count(*) from durable.enqueue_many('c3',
    (select jsonb_agg(jsonb_build_object('task_name', 'n', 'input', jsonb_build_object('i', i))) from generate_series(1, 30) as i));
commit;
select dblink_exec('a', 'begin');
select dblink_exec('b', 'begin');
select count(*) from pg_temp.remote_claim('a', 'a3', 'c3', 10);
select count(*) from pg_temp.remote_claim('b', 'b3', 'c3', 10);
insert into ids (name, id, token) select 'm3_' || row_number() over (), task_id, lease_token from durable.claim('c3', 'main', 10);
select is((select count(*)::int from ids where name ~ '^(a3|b3|m3)_'), 30, 'three sessions claimed ten tasks each');
select is((select count(distinct id)::int from ids where name ~ '^(a3|b3|m3)_'), 30, 'thirty different tasks');
select dblink_exec('a', 'commit');
select dblink_exec('b', 'commit');
commit;
select is(
    (select jsonb_object_agg(worker, n) from (select worker, count(*) as n from durable.all_tasks where queue = 'c3' group by worker) w),
    '{"a": 10, "b": 10, "main": 10}'::jsonb,
    'each task is running for the session that claimed it'
);

-- reclaim skips an expired lease another session holds ------------------------------------
select durable.create_queue('c4');
select pg_temp.enq('e', 'c4');
select pg_temp.claim_as('e', 'c4', 'main', 5);
commit;
select pg_temp.clock(10);
select dblink_exec('a', 'begin');
select * from dblink('a', format('select 1 from durable.tasks where task_id = %L for update', pg_temp.id('e'))) as r (x int);
select is(durable.reclaim('c4'), 0, 'reclaim skips the expired lease of a task another session has locked');
select is((select count(*)::int from durable.claim('c4', 'main')), 0, 'and so does claim, without waiting');
select dblink_exec('a', 'rollback');
select is(durable.reclaim('c4'), 1, 'once the lock is gone the lease is reclaimed');
commit;

-- fenced verbs that wait for another session's lock -----------------------------------------
select pg_temp.clock(100);
select pg_temp.remote_clock('a', 100);
select pg_temp.remote_clock('b', 100);
select durable.create_queue('c5');
select pg_temp.enq('f', 'c5');
select pg_temp.claim_as('f', 'c5', 'w', 60);
commit;
select dblink_exec('a', 'begin');
select pg_temp.remote('a', format('durable.cancel(%L)', pg_temp.id('f')));
select dblink_send_query('b', format('select durable.complete(%L, %L)', pg_temp.id('f'), pg_temp.tok('f')));
select ok(pg_temp.blocked('b'), 'complete waits for the session that is cancelling the task');
select dblink_exec('a', 'commit');
select throws_ok($$select * from dblink_get_result('b') as r (x text)$$, 'DU011', null,
                 'once the cancel commits, the waiting complete fails with DU011');
select count(*) from dblink_get_result('b') as r (x text);
select is(
    (select array[t.status, (select string_agg(outcome, ',') from durable.attempts a where a.task_id = t.task_id)]
     from durable.all_tasks t where t.task_id = pg_temp.id('f')),
    array['cancelled', 'cancelled'],
    'the task is cancelled, its attempt recorded once, as cancelled'
);

select durable.create_queue('c6');
select pg_temp.enq('g', 'c6');
select pg_temp.claim_as('g', 'c6', 'w', 60);
commit;
select dblink_exec('a', 'begin');
select pg_temp.remote('a', format('durable.complete(%L, %L, %L)', pg_temp.id('g'), pg_temp.tok('g'), '{"by": "a"}'));
select dblink_send_query('b', format('select durable.complete(%L, %L, %L)', pg_temp.id('g'), pg_temp.tok('g'), '{"by": "b"}'));
select ok(pg_temp.blocked('b'), 'a second complete with the same token waits for the first');
select dblink_exec('a', 'commit');
select throws_ok($$select * from dblink_get_result('b') as r (x text)$$, 'DU010', null,
                 'once the first commits, the second fails with DU010');
select count(*) from dblink_get_result('b') as r (x text);
select is(
    (select array[t.output ->> 'by', (select count(*)::text from durable.attempts a where a.task_id = t.task_id)]
     from durable.all_tasks t where t.task_id = pg_temp.id('g')),
    array['a', '1'],
    'the first completion stands, recorded once'
);

-- a zombie completes while another worker reclaims its lease
select durable.create_queue('c7');
select pg_temp.enq('h', 'c7');
select pg_temp.claim_as('h', 'c7', 'zombie', 5);
commit;
select pg_temp.remote_clock('a', 110);
select pg_temp.remote_clock('b', 103);  -- the zombie's clock says its lease still runs
select dblink_exec('a', 'begin');
select pg_temp.remote_claim('a', 'h2', 'c7');
select is(pg_temp.id('h2'), pg_temp.id('h'), 'session a reclaims the expired lease and claims the task');
select dblink_send_query('b', format('select durable.complete(%L, %L, %L)', pg_temp.id('h'), pg_temp.tok('h'), '{"by": "zombie"}'));
select ok(pg_temp.blocked('b'), 'the zombie''s complete waits for the reclaiming claim');
select dblink_exec('a', 'commit');
select throws_ok($$select * from dblink_get_result('b') as r (x text)$$, 'DU010', null,
                 'once the reclaim commits, the zombie''s complete fails with DU010');
select count(*) from dblink_get_result('b') as r (x text);
select is(
    (select jsonb_build_object('status', status, 'worker', worker, 'attempt', attempt, 'output', output,
                               'lost_leases', lost_leases)
     from durable.all_tasks where task_id = pg_temp.id('h')),
    '{"status": "running", "worker": "a", "attempt": 2, "output": null, "lost_leases": 1}'::jsonb,
    'the task runs for its new worker, untouched by the zombie'
);
select is((select array_agg(outcome order by attempt) from durable.attempts where task_id = pg_temp.id('h')),
          array['lease_expired'], 'the zombie''s attempt is recorded as lease_expired only');

-- idempotent enqueues racing on one key ----------------------------------------------------------
select durable.create_queue('c8');
commit;
select dblink_exec('a', 'begin');
insert into ids (name, id)
select 'k1_a', r.id from dblink('a', $$select durable.enqueue('c8', 'job', '{"by": "a"}', '{"idempotency_key": "k1"}')$$) as r (id uuid);
select dblink_send_query('b', $$select durable.enqueue('c8', 'job', '{"by": "b"}', '{"idempotency_key": "k1"}')$$);
select ok(pg_temp.blocked('b'), 'an enqueue with a key another session is inserting waits for it');
select dblink_exec('a', 'commit');
select is((select r.id from dblink_get_result('b') as r (id uuid)), pg_temp.id('k1_a'),
          'once that commits, the waiting enqueue returns the committed task''s id');
select count(*) from dblink_get_result('b') as r (id uuid);
select is((select array_agg(input ->> 'by') from durable.all_tasks where queue = 'c8' and idempotency_key = 'k1'), array['a'],
          'one task holds the key: the first one');

select dblink_exec('a', 'begin');
insert into ids (name, id)
select 'k2_a', r.id from dblink('a', $$select durable.enqueue('c8', 'job', '{"by": "a"}', '{"idempotency_key": "k2"}')$$) as r (id uuid);
select dblink_send_query('b', $$select task_id from durable.enqueue_many('c8', '[
    {"task_name": "job", "input": {"by": "b"}, "options": {"idempotency_key": "k2"}},
    {"task_name": "job", "input": {"by": "b2"}, "options": {"idempotency_key": "k3"}}]')$$);
select ok(pg_temp.blocked('b'), 'enqueue_many with a key another session is inserting waits for it');
select dblink_exec('a', 'commit');
insert into ids (name, id) select 'k2_b_' || row_number() over (), r.id from dblink_get_result('b') as r (id uuid);
select count(*) from dblink_get_result('b') as r (id uuid);
select is(pg_temp.id('k2_b_1'), pg_temp.id('k2_a'),
          'once that commits, enqueue_many returns the committed task''s id for that spec');
select is(
    pg_temp.id('k2_b_2'),
    (select task_id from durable.all_tasks where queue = 'c8' and idempotency_key = 'k3'),
    'and the new task''s id for the other spec'
);
select is((select count(*)::int from durable.all_tasks where queue = 'c8' and idempotency_key = 'k2'), 1, 'one task holds the key');

select dblink_exec('a', 'begin');
insert into ids (name, id)
select 'k4_a', r.id from dblink('a', $$select durable.enqueue('c8', 'job', '{"by": "a"}', '{"idempotency_key": "k4"}')$$) as r (id uuid);
select dblink_send_query('b', $$select durable.enqueue('c8', 'job', '{"by": "b"}', '{"idempotency_key": "k4"}')$$);
select ok(pg_temp.blocked('b'), 'an enqueue waits for a key another session is inserting');
select dblink_exec('a', 'rollback');
insert into ids (name, id) select 'k4_b', r.id from dblink_get_result('b') as r (id uuid);
select count(*) from dblink_get_result('b') as r (id uuid);
select isnt(pg_temp.id('k4_b'), pg_temp.id('k4_a'), 'when that session rolls back, the waiting enqueue writes its own task');
select is((select array_agg(input ->> 'by') from durable.all_tasks where task_id = pg_temp.id('k4_b')), array['b'],
          'which is stored');

-- purge skips a finished task that another session has locked
select durable.create_queue('c9');
select pg_temp.enq('p1', 'c9');
select pg_temp.enq('p2', 'c9');
select pg_temp.claim_as('p1', 'c9');
select pg_temp.claim_as('p2', 'c9');
select durable.complete(pg_temp.id('p1'), pg_temp.tok('p1'));
select durable.complete(pg_temp.id('p2'), pg_temp.tok('p2'));
commit;
select pg_temp.clock(1000);
select dblink_exec('a', 'begin');
select * from dblink('a', format('select 1 from durable.finished_tasks where task_id = %L for update', pg_temp.id('p1'))) as r (x int);
select is(durable.purge('c9', 0), 1, 'purge deletes the finished task nobody holds, without waiting for the other');
select is((select array_agg(task_id) from durable.all_tasks where queue = 'c9'), array[pg_temp.id('p1')], 'the locked one stays');
select dblink_exec('a', 'rollback');

-- a claim does not wait for a session that is completing another task of the queue
select durable.create_queue('c10');
select pg_temp.enq('x1', 'c10');
select pg_temp.enq('x2', 'c10', '{"delay": 1}');
select pg_temp.claim_as('x1', 'c10');
commit;
select pg_temp.remote_clock('a', 1000);
select dblink_exec('a', 'begin');
select pg_temp.remote('a', format('durable.complete(%L, %L)', pg_temp.id('x1'), pg_temp.tok('x1')));
select pg_temp.clock(1001);
select is(pg_temp.claim_as('x2', 'c10', 'main'), pg_temp.id('x2'), 'a claim goes on while another session completes');
select dblink_exec('a', 'commit');

select dblink_disconnect('a');
select dblink_disconnect('b');
select * from finish();

-- The worker registry (plpgsql/workers.sql): register, heartbeat, unregister; a worker
-- whose heartbeats stop is dead, and a claim of its queue on the queue's once-a-second
-- turn takes its running tasks back as lost leases (long before their leases run out), the
-- claims between two turns leave them alone (they do not look); its name is free
-- again; its row goes an hour later; bad input changes nothing.
select plan(37);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('other');

create temp table tokens (name text primary key, token uuid);
insert into tokens
values ('w1', durable.register_worker('w1', array['q'], array['job'], 4, 'host-a', 4242, 2));
select isnt((select token from tokens where name = 'w1'), null, 'register_worker returns a token');
select is((select to_jsonb(w) - 'login_role' from durable.workers() w),
          jsonb_build_object('name', 'w1', 'host', 'host-a', 'pid', 4242, 'queues', array['q'],
                             'task_names', array['job'], 'slots', 4, 'running', 0,
                             'started_at', pg_temp.t(0), 'last_seen_at', pg_temp.t(0),
                             'heartbeat_seconds', 2, 'dead_after_seconds', 6, 'alive', true),
          'durable.workers() shows it, alive, dead after three heartbeats by default');
select is((select login_role::text from durable.workers()), session_user::text, '... with the role it logged in as');
select throws_ok($$select durable.register_worker('w1', array['q'], null, 1, null, null, 2)$$,
                 'DU023', null, 'a live worker''s name is refused');
select is((select w.token from durable.workers w where w.name = 'w1'),
          (select token from tokens where name = 'w1'), '... and its entry is left as it was');

-- heartbeats
select pg_temp.clock(5);
select ok(durable.worker_heartbeat('w1', (select token from tokens where name = 'w1')), 'a heartbeat with the token');
select is((select last_seen_at from durable.workers where name = 'w1'), pg_temp.t(5), '... records the time');
select ok(not durable.worker_heartbeat('w1', gen_random_uuid()), 'a heartbeat with another token is refused (false)');
select ok(not durable.worker_heartbeat('nobody', gen_random_uuid()), 'so is one of an unknown worker');

-- w1 claims a task with a long lease, then stops heartbeating
select pg_temp.enq('a', 'q');
select pg_temp.enq('b', 'other');
select is(pg_temp.claim_as('a', 'q', 'w1', 600), pg_temp.id('a'), 'w1 claims a (a 600 s lease)');
select is(pg_temp.claim_as('b', 'other', 'w1', 600), pg_temp.id('b'),
          'and b of a queue it did not register for');
select is((select running from durable.workers() where name = 'w1'), 2, 'durable.workers() counts its running tasks');
select pg_temp.clock(10.9);
select count(*) from durable.claim('q', 'w2', 1, 30);
select is((pg_temp.task('a')).status, 'running', 'a claim before dead_after ran out leaves its task alone');
select ok((select alive from durable.workers() where name = 'w1'), 'w1 is still alive at 5.9 s without a heartbeat');
select pg_temp.clock(11.1);
select ok(not (select alive from durable.workers() where name = 'w1'), 'dead after 6 s without one');
select count(*) from durable.claim('q', 'w2', 1, 30);
select is((pg_temp.task('a')).status, 'running',
          'a claim 0.2 s after the queue''s last turn (at 10.9 s) does not look for dead workers');
select pg_temp.clock(11.95);
create temp table c2 as select * from durable.claim('q', 'w2', 1, 30);
select is((select task_id from c2), pg_temp.id('a'),
          'the claim that takes the next turn, a second later, takes a back and starts it again');
select is((select jsonb_build_object('attempt', t.attempt, 'failures', t.failures, 'lost_leases', t.lost_leases,
                                     'worker', t.worker)
           from durable.all_tasks t where t.task_id = pg_temp.id('a')),
          '{"attempt": 2, "failures": 0, "lost_leases": 1, "worker": "w2"}'::jsonb,
          '... as a lost lease, not a failure');
select is((select jsonb_build_object('outcome', a.outcome, 'type', a.error ->> 'type')
           from durable.attempts a where a.task_id = pg_temp.id('a') and a.attempt = 1),
          '{"outcome": "lease_expired", "type": "WorkerLost"}'::jsonb,
          'its first attempt ended lease_expired: the worker was lost');
select throws_ok(format('select durable.heartbeat(%L, %L)', pg_temp.id('a'), pg_temp.tok('a')),
                 'DU010', null, 'the dead worker''s lease is fenced');
select is((pg_temp.task('b')).status, 'running',
          'its task of queue other waits for a claim of other (claims of q touch only q)');
select count(*) from durable.claim('other', 'w2', 1, 30);
select is((pg_temp.task('b')).lost_leases, 1, 'which takes it back (a queue it did not register for)');

-- the name of a dead worker is free again; a dead worker that heartbeats is alive again
select ok(durable.worker_heartbeat('w1', (select token from tokens where name = 'w1')),
          'a dead worker that comes back heartbeats with its token');
select ok((select alive from durable.workers() where name = 'w1'), '... and is alive again');
select pg_temp.clock(30);
update tokens set token = durable.register_worker('w1', array['q', 'other'], null, 2, null, null, 1) where name = 'w1';
select is((select queues from durable.workers() where name = 'w1'), array['other', 'q'],
          'once it is dead, another worker may take its name');
select is((select dead_after_seconds from durable.workers() where name = 'w1'), 3::double precision,
          '... with its own settings');

-- unregister
select ok(durable.unregister_worker('w1', (select token from tokens where name = 'w1')), 'unregister_worker');
select is((select count(*) from durable.workers()), 0::bigint, '... removes the entry');
select ok(not durable.unregister_worker('w1', (select token from tokens where name = 'w1')), 'a second time: false');

-- the rows of workers dead for an hour are deleted by a claim of their queue
insert into tokens values ('w3', durable.register_worker('w3', array['q'], null, 1, null, null, 2));
select pg_temp.clock(30 + 3599);
select count(*) from durable.claim('q', 'w2', 1, 30);
select is((select count(*) from durable.workers where name = 'w3'), 1::bigint, 'a worker dead for less than an hour stays');
select pg_temp.clock(30 + 3601);
select count(*) from durable.claim('q', 'w2', 1, 30);
select is((select count(*) from durable.workers where name = 'w3'), 0::bigint, 'one dead for an hour is deleted');
select ok(not durable.worker_heartbeat('w3', (select token from tokens where name = 'w3')),
          '... and its heartbeat says it must register again');

-- bad input changes nothing
select throws_ok($$select durable.register_worker('w4', array['q'], null, 0, null, null, 2)$$, 'DU001', null,
                 'slots must be positive');
select throws_ok($$select durable.register_worker('w4', array['q'], null, 1, null, null, 2, 3)$$, 'DU001', null,
                 'dead_after must be at least two heartbeats');
select throws_ok($$select durable.register_worker('w4', array['q', 'nope'], null, 1, null, null, 2)$$, 'DU002', null,
                 'every queue must exist');
select throws_ok($$select durable.register_worker('w4', '{}', null, 1, null, null, 2)$$, 'DU001', null,
                 'a worker serves at least one queue');
select is((select count(*) from durable.workers), 0::bigint, 'no bad registration left a row');

select * from finish();

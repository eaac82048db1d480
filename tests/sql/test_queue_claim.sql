-- durable.claim: which tasks, in which order (priority desc, then run_at, then enqueue
-- order), only tasks whose run_at has come, max_tasks, task name filter, and what a
-- claim writes (lease token, expiry, attempt number, worker).
select plan(29);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('empty');

select is((select count(*)::int from durable.claim('q', 'w1')), 0, 'a claim on an empty queue returns nothing');

-- order -----------------------------------------------------------------------------------
select pg_temp.enq('p0a', 'q');
select pg_temp.enq('p5a', 'q', '{"priority": 5}');
select pg_temp.enq('p0b', 'q');
select pg_temp.enq('neg', 'q', '{"priority": -1}');
select pg_temp.enq('p5b', 'q', '{"priority": 5}');
select pg_temp.enq('p0c', 'q', '{"priority": 0}');
select pg_temp.enq('later', 'q', '{"priority": 100, "delay": 60}');
select pg_temp.enq('at120', 'q', '{"priority": 100, "run_at": "2030-01-01T00:02:00Z"}');

select is((select count(*)::int from durable.claim('empty', 'w1')), 0, 'a claim takes nothing from other queues');

select pg_temp.claim_as('c1', 'q', 'w1', 3600);
select pg_temp.claim_as('c2', 'q', 'w1', 3600);
select pg_temp.claim_as('c3', 'q', 'w1', 3600);
select pg_temp.claim_as('c4', 'q', 'w1', 3600);
select pg_temp.claim_as('c5', 'q', 'w1', 3600);
select pg_temp.claim_as('c6', 'q', 'w1', 3600);
select is(
    array[pg_temp.id('c1'), pg_temp.id('c2'), pg_temp.id('c3'), pg_temp.id('c4'), pg_temp.id('c5'), pg_temp.id('c6')],
    array[pg_temp.id('p5a'), pg_temp.id('p5b'), pg_temp.id('p0a'), pg_temp.id('p0b'), pg_temp.id('p0c'), pg_temp.id('neg')],
    'claims go by priority (higher first), then in enqueue order'
);
select is(pg_temp.claim_as('c7', 'q', 'w1', 3600), null, 'tasks whose run_at has not come are not claimed, whatever their priority');
select pg_temp.clock(59.999);
select is(pg_temp.claim_as('c7', 'q', 'w1', 3600), null, 'not a microsecond early');
select pg_temp.clock(60);
select is(pg_temp.claim_as('c7', 'q', 'w1', 3600), pg_temp.id('later'), 'a delayed task is claimable once now >= run_at');
select is(pg_temp.claim_as('c8', 'q', 'w1', 3600), null, 'the task with a later run_at waits');
select pg_temp.clock(120);
select is(pg_temp.claim_as('c8', 'q', 'w1', 3600), pg_temp.id('at120'), 'a task with run_at is claimable at run_at');

-- same priority: earlier run_at first, then enqueue order
select durable.create_queue('fifo');
select pg_temp.clock(1000);
select pg_temp.enq('f_delay30', 'fifo', '{"delay": 30}');
select pg_temp.enq('f_at1010', 'fifo', jsonb_build_object('run_at', pg_temp.t(1010)));
select pg_temp.enq('f_past', 'fifo', jsonb_build_object('run_at', pg_temp.t(995)));
select pg_temp.enq('f_now1', 'fifo');
select pg_temp.enq('f_now2', 'fifo');
select pg_temp.clock(1030);
select is(
    (select array_agg(pg_temp.claim_as('f' || n, 'fifo') order by n) from generate_series(1, 5) as n),
    array[pg_temp.id('f_past'), pg_temp.id('f_now1'), pg_temp.id('f_now2'), pg_temp.id('f_at1010'), pg_temp.id('f_delay30')],
    'at equal priority: earlier run_at first, equal run_at in enqueue order'
);

-- what a claim writes ----------------------------------------------------------------------
select durable.create_queue('one');
select pg_temp.clock(2000);
select pg_temp.enq('t', 'one', '{}', '{"x": [1, 2]}');
create temp table claimed as select * from durable.claim('one', 'worker-7', 1, 45);
select is((select count(*)::int from claimed), 1, 'the claim returns the task');
select is(
    (select jsonb_build_object('task_id', task_id, 'task_name', task_name, 'input', input, 'attempt', attempt,
                               'lease_expires_at', lease_expires_at) from claimed),
    jsonb_build_object('task_id', pg_temp.id('t'), 'task_name', 'job', 'input', '{"x": [1, 2]}'::jsonb, 'attempt', 1,
                       'lease_expires_at', pg_temp.t(2045)),
    'it returns the task''s id, name, input, attempt 1 and a lease of p_lease_seconds from now'
);
select is(
    (select jsonb_build_object('status', status, 'worker', worker, 'lease_token', lease_token,
                               'lease_seconds', lease_seconds, 'lease_expires_at', lease_expires_at,
                               'started_at', started_at, 'attempt', attempt, 'attempt_deadline', attempt_deadline,
                               'failures', failures)
     from durable.all_tasks where task_id = pg_temp.id('t')),
    jsonb_build_object('status', 'running', 'worker', 'worker-7', 'lease_token', (select lease_token from claimed),
                       'lease_seconds', 45, 'lease_expires_at', pg_temp.t(2045),
                       'started_at', pg_temp.t(2000), 'attempt', 1, 'attempt_deadline', null,
                       'failures', 0),
    'the task is running, leased to the worker with the returned token'
);
select isnt((select lease_token from claimed), null, 'the lease token is set');
select is((select count(*)::int from durable.claim('one', 'w2')), 0, 'a running task is not claimed again');

-- the next attempt gets a new token
select durable.release(pg_temp.id('t'), (select lease_token from claimed), 0);
create temp table claimed2 as select * from durable.claim('one', 'worker-8');
select is((select attempt from claimed2), 2, 'the next claim of the task is attempt 2');
select isnt((select lease_token from claimed2), (select lease_token from claimed), 'with a new lease token');
select is((select lease_expires_at from claimed2), pg_temp.t(2030), 'the default lease is 30 seconds');

-- max_tasks ---------------------------------------------------------------------------------
select durable.create_queue('batch');
select pg_temp.clock(3000);
select count(*) from durable.enqueue_many('batch',
    (select jsonb_agg(jsonb_build_object('task_name', 'b', 'input', jsonb_build_object('i', i))) from generate_series(1, 5) as i));
create temp table got as select * from durable.claim('batch', 'w', 3);
select is((select count(*)::int from got), 3, 'max_tasks 3 claims three tasks');
select is(
    (select array_agg((input ->> 'i')::int order by (input ->> 'i')::int) from got),
    array[1, 2, 3],
    'the first three in claim order'
);
select is((select count(distinct lease_token)::int from got), 3, 'each with a lease token of its own');
select is(
    (select count(*)::int from durable.all_tasks where queue = 'batch' and status = 'running' and worker = 'w'), 3,
    'all three are running'
);
select is((select count(*)::int from durable.claim('batch', 'w', 10)), 2, 'max_tasks larger than what is ready claims the rest');

-- task name filter --------------------------------------------------------------------------
select durable.create_queue('names');
insert into ids (name, id) values ('na1', durable.enqueue('names', 'a', '{}', '{"priority": 9}'));
insert into ids (name, id) values ('nb', durable.enqueue('names', 'b'));
insert into ids (name, id) values ('nc', durable.enqueue('names', 'c'));
select is((select count(*)::int from durable.claim('names', 'w', 10, 30, array['zzz'])), 0,
          'a name filter that matches nothing claims nothing');
select is(
    (select array_agg(task_id order by task_id) from durable.claim('names', 'w', 10, 30, array['b', 'c'])),
    (select array_agg(id order by id) from ids where name in ('nb', 'nc')),
    'only tasks with a listed name are claimed'
);
select is((pg_temp.task('na1')).status, 'pending', 'the task with another name stays pending');
select is((select array_agg(task_id) from durable.claim('names', 'w', 10, 30, null)), array[pg_temp.id('na1')],
          'no filter (null) claims any name');

-- a claim on the queue of a lease that ran out first reclaims it
select durable.create_queue('heal');
select pg_temp.clock(4000);
select pg_temp.enq('h', 'heal');
select pg_temp.claim_as('h1', 'heal', 'dead-worker', 5);
select pg_temp.clock(4005);
select is(pg_temp.claim_as('h2', 'heal', 'w2'), pg_temp.id('h'), 'a task whose lease expired is claimed again');
select is(
    (select array[attempt, lost_leases, failures] from durable.all_tasks where task_id = pg_temp.id('h')),
    array[2, 1, 0],
    'as attempt 2, the lost lease counted'
);

-- a claim commits without waiting for the disk flush, whatever the caller's setting: the
-- claim sets synchronous_commit off for its own transaction
select pg_temp.enq('sc', 'heal');
select set_config('synchronous_commit', 'on', true);
select is(
    (select current_setting('synchronous_commit') from (select * from durable.claim('heal', 'w3', 1, 30) offset 0) as c),
    'off',
    'claim sets synchronous_commit off for its transaction'
);

select * from finish();

-- Fencing: every worker verb (heartbeat, complete, fail, release) presents the lease
-- token of its attempt; a token that is not the task's live lease is rejected with the
-- right SQLSTATE (DU010 lease lost, DU011 cancelled, DU004 unknown task, DU001 missing)
-- and changes nothing: not the task row, not its attempt history, nothing else.
select plan(106);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

-- the four worker verbs with a task and a token: each must raise p_errcode and change
-- nothing (eight assertions)
create function pg_temp.fenced_out(p_task uuid, p_token uuid, p_errcode text, p_case text)
returns setof text language plpgsql as $$
begin
    return query select pg_temp.rejects(format('select durable.heartbeat(%L, %L, 60)', p_task, p_token),
                                        p_errcode, 'heartbeat ' || p_case);
    return query select pg_temp.rejects(format('select durable.complete(%L, %L, %L)', p_task, p_token, '{"r": 1}'),
                                        p_errcode, 'complete ' || p_case);
    return query select pg_temp.rejects(format('select * from durable.fail(%L, %L, %L)', p_task, p_token,
                                                '{"type": "E", "message": "boom"}'),
                                        p_errcode, 'fail ' || p_case);
    return query select pg_temp.rejects(format('select durable.release(%L, %L, 0)', p_task, p_token),
                                        p_errcode, 'release ' || p_case);
end;
$$;

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "none"}}');
select pg_temp.enq('a', 'q');
select pg_temp.enq('b', 'q');
select pg_temp.claim_as('a', 'q', 'w1', 30);
select pg_temp.claim_as('b', 'q', 'w1', 300);

-- a live lease is accepted
select pg_temp.clock(10);
select is(durable.heartbeat(pg_temp.id('a'), pg_temp.tok('a')), pg_temp.t(40),
          'the live token is accepted: heartbeat extends the lease by its length from now');

select pg_temp.fenced_out(pg_temp.id('a'), gen_random_uuid(), 'DU010', 'with a made-up token');
select pg_temp.fenced_out(pg_temp.id('a'), pg_temp.tok('b'), 'DU010', 'with the token of another task');
select pg_temp.fenced_out(gen_random_uuid(), pg_temp.tok('a'), 'DU004', 'of an unknown task');
select pg_temp.fenced_out(pg_temp.id('a'), null, 'DU001', 'without a token');

-- the lease ran out; nobody reclaimed it yet: the task is still running, the token dead
select pg_temp.clock(40);
select pg_temp.fenced_out(pg_temp.id('a'), pg_temp.tok('a'), 'DU010', 'at the instant the lease expires');
select is((pg_temp.task('a')).status, 'running', 'the expired task is still running until someone reclaims it');

-- another worker reclaims it: the old token stays dead, the new one lives
select pg_temp.clock(41);
insert into ids (name, id, token) values ('a_old', pg_temp.id('a'), pg_temp.tok('a'));
select is(pg_temp.claim_as('a', 'q', 'w2', 30), pg_temp.id('a'), 'a second worker claims the task whose lease ran out');
select isnt(pg_temp.tok('a'), pg_temp.tok('a_old'), 'with a new token');
select pg_temp.fenced_out(pg_temp.id('a'), pg_temp.tok('a_old'), 'DU010', 'with the token of a reclaimed lease');
select is(
    (select array[status, worker] from durable.all_tasks where task_id = pg_temp.id('a')),
    array['running', 'w2'],
    'the zombie worker did not disturb the new attempt'
);

-- after complete
select durable.complete(pg_temp.id('a'), pg_temp.tok('a'), '{"done": true}');
select is((select array[status, output::text] from durable.all_tasks where task_id = pg_temp.id('a')),
          array['completed', '{"done": true}'], 'the new worker completes the task');
select pg_temp.fenced_out(pg_temp.id('a'), pg_temp.tok('a'), 'DU010', 'after the task completed');

-- after cancel: the worker of the cancelled attempt learns it (DU011); a stranger does not
select is(durable.cancel(pg_temp.id('b'), 'no longer wanted'), true, 'cancel of a running task');
select pg_temp.fenced_out(pg_temp.id('b'), pg_temp.tok('b'), 'DU011', 'after the task was cancelled');
select pg_temp.fenced_out(pg_temp.id('b'), gen_random_uuid(), 'DU010', 'of a cancelled task with a made-up token');

-- after a failure (the task waits for its retry) and after a release
select pg_temp.enq('c', 'q', '{"backoff": {"kind": "fixed", "delay": 100}}');
select pg_temp.claim_as('c', 'q', 'w1', 30);
select is((select status from durable.fail(pg_temp.id('c'), pg_temp.tok('c'), '{"message": "x"}')), 'pending',
          'a failed attempt is retried later');
select pg_temp.fenced_out(pg_temp.id('c'), pg_temp.tok('c'), 'DU010', 'after the attempt failed');

select pg_temp.enq('d', 'q');
select pg_temp.claim_as('d', 'q', 'w1', 30);
select durable.release(pg_temp.id('d'), pg_temp.tok('d'), 100);
select is((pg_temp.task('d')).status, 'pending', 'a released task is pending');
select pg_temp.fenced_out(pg_temp.id('d'), pg_temp.tok('d'), 'DU010', 'after the attempt was released');

-- after the task failed for good
select pg_temp.enq('e', 'q');
select pg_temp.claim_as('e', 'q', 'w1', 30);
select is((select status from durable.fail(pg_temp.id('e'), pg_temp.tok('e'), '{"message": "x"}', false)), 'failed',
          'a non-retryable failure ends the task');
select pg_temp.fenced_out(pg_temp.id('e'), pg_temp.tok('e'), 'DU010', 'after the task failed');

select * from finish();

-- Timeouts: an attempt past its timeout is failed as timed_out by the next claim's
-- reclaim and retried per backoff; a lease never reaches past the attempt's deadline,
-- whatever the heartbeat asks; schedule_timeout cancels a task not started in time.
select plan(35);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "fixed", "delay": 5}}');

-- timeout ----------------------------------------------------------------------------------------
select pg_temp.enq('t', 'q', '{"timeout": 10, "max_attempts": 2}');
create temp table c1 as select * from durable.claim('q', 'w1', 1, 30);
update ids set token = (select lease_token from c1) where name = 't';
select is((select lease_expires_at from c1), pg_temp.t(10), 'the lease of an attempt with a timeout ends at its deadline');
select is((pg_temp.task('t')).attempt_deadline, pg_temp.t(10), 'the deadline is started_at + timeout');
select pg_temp.clock(5);
select is(durable.heartbeat(pg_temp.id('t'), pg_temp.tok('t'), 30), pg_temp.t(10),
          'a heartbeat cannot extend the lease past the deadline');
select is(durable.heartbeat(pg_temp.id('t'), pg_temp.tok('t')), pg_temp.t(10), 'nor can one with the default length');
select pg_temp.clock(8);
select is(durable.heartbeat(pg_temp.id('t'), pg_temp.tok('t'), 1), pg_temp.t(9), 'a shorter lease is allowed');
select pg_temp.clock(8.5);
select is(durable.heartbeat(pg_temp.id('t'), pg_temp.tok('t'), 60), pg_temp.t(10), 'capped again');
select pg_temp.clock(10);
select pg_temp.rejects(format('select durable.heartbeat(%L, %L, 60)', pg_temp.id('t'), pg_temp.tok('t')),
    'DU010', 'a heartbeat at the deadline');
select pg_temp.rejects(format('select durable.complete(%L, %L)', pg_temp.id('t'), pg_temp.tok('t')),
    'DU010', 'complete at the deadline');

select is((select count(*)::int from durable.claim('q', 'w2')), 0,
          'the next claim reclaims the attempt that ran out of time; its retry is not due yet');
select is(
    (select jsonb_build_object('status', status, 'failures', failures, 'lost_leases', lost_leases,
                               'run_at', run_at, 'error_type', error ->> 'type',
                               'lease_expires_at', lease_expires_at, 'attempt_deadline', attempt_deadline)
     from durable.all_tasks where task_id = pg_temp.id('t')),
    jsonb_build_object('status', 'pending', 'failures', 1, 'lost_leases', 0, 'run_at', pg_temp.t(15),
                       'error_type', 'Timeout', 'lease_expires_at', null, 'attempt_deadline', null),
    'timed out: counted as a failure, retried after the backoff (5 s)'
);
select is(
    (select jsonb_build_object('attempt', attempt, 'outcome', outcome, 'worker', worker, 'ended_at', ended_at,
                               'error_type', error ->> 'type')
     from durable.attempts where task_id = pg_temp.id('t')),
    '{"attempt": 1, "outcome": "timed_out", "worker": "w1", "ended_at": "2030-01-01T00:00:10+00:00", "error_type": "Timeout"}'::jsonb,
    'the attempt is recorded as timed_out'
);
select pg_temp.clock(15);
select is(pg_temp.claim_as('t', 'q', 'w3', 3), pg_temp.id('t'), 'the retry is claimed when due');
select is((pg_temp.task('t')).lease_expires_at, pg_temp.t(18), 'a lease shorter than the timeout is kept');
select is((pg_temp.task('t')).attempt_deadline, pg_temp.t(25), 'the new attempt has a deadline of its own');

-- a lease lost before the deadline is a lost lease, not a timeout
select pg_temp.clock(18);
select is(pg_temp.claim_as('t', 'q', 'w4', 30), pg_temp.id('t'),
          'a lease that ran out before the deadline: the task is claimable at once');
select is((select array[failures, lost_leases, attempt] from durable.all_tasks where task_id = pg_temp.id('t')),
          array[1, 1, 3], 'counted as a lost lease, not a failure');
select is((select outcome from durable.attempts where task_id = pg_temp.id('t') and attempt = 2), 'lease_expired',
          'and recorded as lease_expired');

-- the second timeout of max_attempts 2 ends the task
select pg_temp.clock(28);
select is(durable.reclaim('q'), 1, 'reclaim() fails the attempt past its deadline');
select is(
    (select jsonb_build_object('status', status, 'failures', failures, 'error_type', error ->> 'type',
                               'finished_at', finished_at)
     from durable.all_tasks where task_id = pg_temp.id('t')),
    jsonb_build_object('status', 'failed', 'failures', 2, 'error_type', 'Timeout', 'finished_at', pg_temp.t(28)),
    'a timeout on the last attempt fails the task'
);

-- the queue's timeout applies to its tasks
select durable.create_queue('qt', '{"timeout": 2.5}');
select pg_temp.clock(100);
select pg_temp.enq('qt', 'qt');
select pg_temp.claim_as('qt', 'qt', 'w1', 60);
select is((select array[lease_expires_at, attempt_deadline] from durable.all_tasks where task_id = pg_temp.id('qt')),
          array[pg_temp.t(102.5), pg_temp.t(102.5)], 'a queue''s timeout bounds its tasks'' attempts');

-- no timeout: heartbeats extend the lease for as long as they come
select durable.create_queue('qn');
select pg_temp.enq('free', 'qn');
select pg_temp.claim_as('free', 'qn', 'w1', 60);
select pg_temp.clock(150);
select is(durable.heartbeat(pg_temp.id('free'), pg_temp.tok('free'), 60), pg_temp.t(210), 'without a timeout, no deadline');
select pg_temp.clock(200);
select is(durable.heartbeat(pg_temp.id('free'), pg_temp.tok('free'), 3600), pg_temp.t(3800), 'the lease goes as far as asked');

-- schedule_timeout ---------------------------------------------------------------------------------
select durable.create_queue('qs');
select pg_temp.clock(1000);
select pg_temp.enq('late', 'qs', '{"schedule_timeout": 30}');
select pg_temp.enq('delayed', 'qs', '{"delay": 100, "schedule_timeout": 30}');
select pg_temp.clock(1029.999);
select is(durable.reclaim('qs'), 0, 'before its schedule deadline a task is left alone');
select pg_temp.clock(1030);
select is((select count(*)::int from durable.claim('qs', 'w1')), 0,
          'at its schedule deadline a task that has not started is not claimed');
select is(
    (select jsonb_build_object('status', status, 'error_type', error ->> 'type', 'finished_at', finished_at, 'attempt', attempt)
     from durable.all_tasks where task_id = pg_temp.id('late')),
    jsonb_build_object('status', 'cancelled', 'error_type', 'ScheduleTimeout', 'finished_at', pg_temp.t(1030), 'attempt', 0),
    'it is cancelled (ScheduleTimeout)'
);
select is((select count(*)::int from durable.attempts where task_id = pg_temp.id('late')), 0, 'no attempt is recorded');
select is((pg_temp.task('delayed')).status, 'pending', 'the schedule clock of a delayed task starts at its run_at');
select pg_temp.clock(1129);
select is(pg_temp.claim_as('delayed', 'qs', 'w1', 10), pg_temp.id('delayed'), 'and it is claimed before its deadline');

-- a task that started in time is not cancelled by its schedule deadline when it is retried
select pg_temp.clock(1140);
select is(pg_temp.claim_as('delayed2', 'qs', 'w2', 10), pg_temp.id('delayed'),
          'after a lost lease past the schedule deadline, the task that had started is claimed again');
select is((pg_temp.task('delayed')).status, 'running', 'not cancelled');
select is(
    (select f.status from durable.fail(pg_temp.id('delayed'), pg_temp.tok('delayed2'), '{"message": "x"}') f),
    'pending', 'a failure past the schedule deadline is retried'
);
select pg_temp.clock(1200);
select is(durable.reclaim('qs'), 0, 'reclaim leaves the retry alone');
select is(pg_temp.claim_as('delayed3', 'qs', 'w3', 10), pg_temp.id('delayed'), 'and the retry is claimed');

select * from finish();

-- Status transitions: retries until max_attempts, non-retryable failures, lost leases
-- counted apart from failures (max_lost_leases), release, cancel, and the trigger that
-- rejects every status change outside the state machine (DU012).
select plan(61);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
-- one queue per story, so that a claim takes the task the story is about
select durable.create_queue(q, '{"backoff": {"kind": "none"}}')
from unnest(array['q', 'q1', 'qnr', 'qrn', 'qrel', 'qhb', 'qcp', 'qcr', 'qcd', 'qp']) as q;

-- max_attempts ------------------------------------------------------------------------------
select pg_temp.enq('m3', 'q', '{"max_attempts": 3}');
select pg_temp.claim_as('m3', 'q');
select is(
    (select array[f.status, f.run_at::text] from durable.fail(pg_temp.id('m3'), pg_temp.tok('m3'), '{"message": "one"}') f),
    array['pending', pg_temp.t(0)::text],
    'failure 1 of 3: pending again, with its retry time'
);
select is((select array[failures, attempt] from durable.all_tasks where task_id = pg_temp.id('m3')), array[1, 1],
          'one failure counted');
select pg_temp.claim_as('m3', 'q');
select is((select f.status from durable.fail(pg_temp.id('m3'), pg_temp.tok('m3'), '{"message": "two"}') f), 'pending',
          'failure 2 of 3: pending again');
select pg_temp.claim_as('m3', 'q');
select pg_temp.clock(5);
select is(
    (select array[f.status, coalesce(f.run_at::text, 'NULL')] from durable.fail(pg_temp.id('m3'), pg_temp.tok('m3'),
        '{"type": "ValueError", "message": "three"}') f),
    array['failed', 'NULL'],
    'failure 3 of 3: the task failed, no retry time'
);
select is(
    (select jsonb_build_object('status', status, 'failures', failures, 'attempt', attempt, 'error', error,
                               'finished_at', finished_at, 'lease_expires_at', lease_expires_at)
     from durable.all_tasks where task_id = pg_temp.id('m3')),
    jsonb_build_object('status', 'failed', 'failures', 3, 'attempt', 3,
                       'error', '{"type": "ValueError", "message": "three"}'::jsonb,
                       'finished_at', pg_temp.t(5), 'lease_expires_at', null),
    'the failed task keeps the last error and when it ended'
);
select is(pg_temp.claim_as('m3_again', 'q'), null, 'a failed task is not claimed again');
select is(
    (select array_agg(outcome || ':' || (error ->> 'message') order by attempt) from durable.attempts
     where task_id = pg_temp.id('m3')),
    array['failed:one', 'failed:two', 'failed:three'],
    'three failed attempts recorded with their errors'
);

select pg_temp.enq('m1', 'q1', '{"max_attempts": 1}');
select pg_temp.claim_as('m1', 'q1');
select is((select f.status from durable.fail(pg_temp.id('m1'), pg_temp.tok('m1'), '{"message": "x"}') f), 'failed',
          'max_attempts 1: the first failure ends the task');

-- non-retryable --------------------------------------------------------------------------
select pg_temp.enq('nr', 'qnr', '{"max_attempts": 5}');
select pg_temp.claim_as('nr', 'qnr');
select is(
    (select f.status from durable.fail(pg_temp.id('nr'), pg_temp.tok('nr'), '{"message": "fatal"}', false) f),
    'failed', 'a non-retryable failure ends the task at once'
);
select is((select array[failures, max_attempts] from durable.all_tasks where task_id = pg_temp.id('nr')), array[1, 5],
          'with attempts to spare');
select pg_temp.enq('rnull', 'qrn', '{"max_attempts": 5}');
select pg_temp.claim_as('rnull', 'qrn');
select is((select f.status from durable.fail(pg_temp.id('rnull'), pg_temp.tok('rnull'), '{"message": "x"}', null) f),
          'pending', 'retryable null counts as retryable');

-- lost leases are not failures -----------------------------------------------------------
select durable.create_queue('ll', '{"backoff": {"kind": "fixed", "delay": 1000}}');
select pg_temp.clock(100);
select pg_temp.enq('lost', 'll', '{"max_attempts": 1, "max_lost_leases": 2}');
select pg_temp.claim_as('lost', 'll', 'w1', 10);
select pg_temp.clock(110);
select is(pg_temp.claim_as('lost', 'll', 'w2', 10), pg_temp.id('lost'),
          'lost lease 1: the task is claimable again at once, with no backoff');
select is(
    (select array[attempt, lost_leases, failures] from durable.all_tasks where task_id = pg_temp.id('lost')),
    array[2, 1, 0],
    'lost_leases 1, failures 0 (with max_attempts 1 a failure would have ended it)'
);
select pg_temp.clock(120);
select is(pg_temp.claim_as('lost', 'll', 'w3', 10), pg_temp.id('lost'), 'lost lease 2: claimed again');
select pg_temp.clock(130);
select is(pg_temp.claim_as('lost4', 'll', 'w4', 10), null, 'lost lease 3 of max 2: not claimed again');
select is(
    (select jsonb_build_object('status', status, 'lost_leases', lost_leases, 'failures', failures,
                               'error_type', error ->> 'type', 'finished_at', finished_at)
     from durable.all_tasks where task_id = pg_temp.id('lost')),
    jsonb_build_object('status', 'failed', 'lost_leases', 3, 'failures', 0, 'error_type', 'LeaseLost',
                       'finished_at', pg_temp.t(130)),
    'past max_lost_leases the task fails (LeaseLost), failures still 0'
);
select is(
    (select array_agg(outcome || '@' || worker order by attempt) from durable.attempts where task_id = pg_temp.id('lost')),
    array['lease_expired@w1', 'lease_expired@w2', 'lease_expired@w3'],
    'each lost lease is recorded as an attempt of its worker'
);

select pg_temp.enq('lost0', 'll', '{"max_lost_leases": 0}');
select pg_temp.claim_as('lost0', 'll', 'w1', 10);
select pg_temp.clock(140);
select is(durable.reclaim('ll'), 1, 'reclaim() reports the task it reclaimed');
select is((pg_temp.task('lost0')).status, 'failed', 'max_lost_leases 0: the first lost lease fails the task');
select is(durable.reclaim('ll'), 0, 'a second reclaim finds nothing');

-- a failure after lost leases still counts against max_attempts only
select pg_temp.enq('mixed', 'll', '{"max_attempts": 2, "max_lost_leases": 5}');
select pg_temp.claim_as('mixed', 'll', 'w1', 10);
select pg_temp.clock(150);
select pg_temp.claim_as('mixed', 'll', 'w2', 10);
select is(
    (select f.status from durable.fail(pg_temp.id('mixed'), pg_temp.tok('mixed'), '{"message": "x"}') f),
    'pending', 'one lost lease and one failure of max_attempts 2: still retried'
);
select is((select array[lost_leases, failures] from durable.all_tasks where task_id = pg_temp.id('mixed')), array[1, 1],
          'counted apart');

-- release -----------------------------------------------------------------------------------
select pg_temp.clock(200);
select pg_temp.enq('rel', 'qrel', '{"max_attempts": 1}');
select pg_temp.claim_as('rel', 'qrel', 'w1');
select pg_temp.clock(210);
select is(durable.release(pg_temp.id('rel'), pg_temp.tok('rel'), 15, 'not my kind of task'), pg_temp.t(225),
          'release returns when the task runs again');
select is(
    (select jsonb_build_object('status', status, 'run_at', run_at, 'failures', failures, 'lost_leases', lost_leases,
                               'attempt', attempt, 'lease_expires_at', lease_expires_at)
     from durable.all_tasks where task_id = pg_temp.id('rel')),
    jsonb_build_object('status', 'pending', 'run_at', pg_temp.t(225), 'failures', 0, 'lost_leases', 0, 'attempt', 1,
                       'lease_expires_at', null),
    'a released task is pending again, no failure or lost lease counted'
);
select is(
    (select jsonb_build_object('outcome', outcome, 'worker', worker, 'started_at', started_at, 'ended_at', ended_at,
                               'error', error)
     from durable.attempts where task_id = pg_temp.id('rel')),
    jsonb_build_object('outcome', 'released', 'worker', 'w1', 'started_at', pg_temp.t(200), 'ended_at', pg_temp.t(210),
                       'error', '{"type": "Released", "message": "not my kind of task"}'::jsonb),
    'the released attempt is recorded with the reason'
);
select pg_temp.clock(225);
select pg_temp.claim_as('rel', 'qrel', 'w2');
select is((pg_temp.task('rel')).attempt, 2, 'the next claim is attempt 2');
select is(durable.release(pg_temp.id('rel'), pg_temp.tok('rel')), pg_temp.t(285), 'release waits 60 s by default');
select is((select error ->> 'message' from durable.attempts where task_id = pg_temp.id('rel') and attempt = 2),
          'released by the worker', 'with a default reason');

-- heartbeat -----------------------------------------------------------------------------------
select pg_temp.clock(300);
select pg_temp.enq('hb', 'qhb');
select pg_temp.claim_as('hb', 'qhb', 'w1', 20);
select pg_temp.clock(315);
select is(durable.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb')), pg_temp.t(335), 'heartbeat: now + the claimed lease length');
select is(durable.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb'), 100), pg_temp.t(415), 'heartbeat with a new length');
select pg_temp.clock(400);
select is(durable.heartbeat(pg_temp.id('hb'), pg_temp.tok('hb')), pg_temp.t(500), 'which it keeps for later heartbeats');
select is((select array[lease_expires_at::text, lease_seconds::text] from durable.all_tasks where task_id = pg_temp.id('hb')),
          array[pg_temp.t(500)::text, '100'], 'the lease is stored');

-- cancel --------------------------------------------------------------------------------------
select pg_temp.clock(600);
select pg_temp.enq('cp', 'qcp', '{"delay": 100}');
select is(durable.cancel(pg_temp.id('cp'), 'changed my mind'), true, 'cancel of a pending task');
select is(
    (select jsonb_build_object('status', status, 'error', error, 'finished_at', finished_at)
     from durable.all_tasks where task_id = pg_temp.id('cp')),
    jsonb_build_object('status', 'cancelled', 'error', '{"type": "Cancelled", "message": "changed my mind"}'::jsonb,
                       'finished_at', pg_temp.t(600)),
    'a cancelled task keeps the reason and when'
);
select is((select count(*)::int from durable.attempts where task_id = pg_temp.id('cp')), 0,
          'a task that never ran has no attempt to end');
select pg_temp.clock(700);
select is(pg_temp.claim_as('cp_again', 'qcp'), null, 'a cancelled task is never claimed');
select pg_temp.save('cancelled');
select is(durable.cancel(pg_temp.id('cp'), 'again'), false, 'cancel of a cancelled task returns false');
select is(pg_temp.everything(), pg_temp.saved('cancelled'), 'and changes nothing');

select pg_temp.enq('cr', 'qcr');
select pg_temp.claim_as('cr', 'qcr', 'w9');
select pg_temp.clock(705);
select is(durable.cancel(pg_temp.id('cr')), true, 'cancel of a running task');
select is(
    (select jsonb_build_object('outcome', outcome, 'worker', worker, 'ended_at', ended_at, 'error', error)
     from durable.attempts where task_id = pg_temp.id('cr')),
    jsonb_build_object('outcome', 'cancelled', 'worker', 'w9', 'ended_at', pg_temp.t(705),
                       'error', '{"type": "Cancelled", "message": "cancelled"}'::jsonb),
    'the running attempt is recorded as cancelled (default reason)'
);
select is((select array[status, coalesce(lease_expires_at::text, 'NULL')] from durable.all_tasks where task_id = pg_temp.id('cr')),
          array['cancelled', 'NULL'], 'and its lease is gone');

select pg_temp.enq('cd', 'qcd');
select pg_temp.claim_as('cd', 'qcd');
select durable.complete(pg_temp.id('cd'), pg_temp.tok('cd'));
select pg_temp.rejects(format('select durable.cancel(%L)', pg_temp.id('cd')), 'DU012', 'cancel of a completed task');
select pg_temp.rejects(format('select durable.cancel(%L)', pg_temp.id('m3')), 'DU012', 'cancel of a failed task');
select pg_temp.rejects(format('select durable.cancel(%L)', gen_random_uuid()), 'DU004', 'cancel of an unknown task');

-- the triggers: of the live tasks (the state machine) and of the archive (never updated) ---------
select pg_temp.rejects(format($$update durable.finished_tasks set status = 'running' where task_id = %L$$, pg_temp.id('cd')),
    'DU012', 'UPDATE from completed to running');
select pg_temp.rejects(format($$update durable.finished_tasks set status = 'pending' where task_id = %L$$, pg_temp.id('cd')),
    'DU012', 'UPDATE from completed to pending outside a restart');
select pg_temp.rejects(format($$update durable.finished_tasks set status = 'running' where task_id = %L$$, pg_temp.id('m3')),
    'DU012', 'UPDATE from failed to running');
select pg_temp.rejects(format($$update durable.finished_tasks set status = 'pending' where task_id = %L$$, pg_temp.id('cp')),
    'DU012', 'UPDATE from cancelled to pending');
select pg_temp.enq('pend', 'qp', '{"delay": 1000}');
select pg_temp.rejects(format($$update durable.tasks set status = 'completed' where task_id = %L$$, pg_temp.id('pend')),
    'DU012', 'UPDATE from pending to completed');
select pg_temp.rejects(format($$update durable.tasks set status = 'failed' where task_id = %L$$, pg_temp.id('pend')),
    'DU012', 'UPDATE from pending to failed');
select pg_temp.enq('pend2', 'qp', '{"delay": 1000}');
select pg_temp.rejects(format($$update durable.tasks set status = case when task_id = %L then 'running' else 'sleeping' end
                                where task_id in (%L, %L)$$,
                              pg_temp.id('pend'), pg_temp.id('pend'), pg_temp.id('pend2')),
    'DU012', 'an UPDATE of several rows with one bad transition');

select * from finish();

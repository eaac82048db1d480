-- Bad input: every verb checks its arguments and fails with the right SQLSTATE (DU001
-- bad argument, DU002 unknown queue, DU003 payload too large, 22P02 a token that is not
-- a uuid), having written nothing and changed nothing already stored. Each
-- pg_temp.rejects() is two assertions: the SQLSTATE, then nothing changed.
select plan(177);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"max_attempts": 3}');
-- something stored, that a bad call must not change
select pg_temp.enq('stored', 'q', '{"idempotency_key": "k", "delay": 86400}', '{"v": 1}');
select pg_temp.enq('run', 'q');
select pg_temp.claim_as('run', 'q', 'w1', 3600);

-- unknown queue
select pg_temp.rejects($$select durable.enqueue('nope', 'job')$$, 'DU002', 'enqueue on an unknown queue');
select pg_temp.rejects($$select durable.enqueue(null, 'job')$$, 'DU002', 'enqueue on a null queue');
select pg_temp.rejects($$select * from durable.enqueue_many('nope', '[{"task_name": "job"}]')$$, 'DU002',
    'enqueue_many on an unknown queue');
select pg_temp.rejects($$select * from durable.claim('nope', 'w1')$$, 'DU002', 'claim on an unknown queue');

-- enqueue options
create function pg_temp.bad_option(p_options text, p_case text) returns setof text language sql as $$
    select pg_temp.rejects(format('select durable.enqueue(%L, %L, %L, %L)', 'q', 'job', '{}', p_options), 'DU001',
                           'enqueue with ' || p_case)
$$;
select pg_temp.bad_option('{"colour": "red"}', 'an unknown option');
select pg_temp.bad_option('{"Priority": 1}', 'an option in the wrong case');
select pg_temp.bad_option('{"priority": "1"}', 'priority as a string');
select pg_temp.bad_option('{"priority": 1.5}', 'a fractional priority');
select pg_temp.bad_option('{"priority": true}', 'priority as a boolean');
select pg_temp.bad_option('{"priority": 1000001}', 'priority out of range');
select pg_temp.bad_option('{"priority": 1e400}', 'a priority too large for any number type');
select pg_temp.bad_option('{"max_attempts": 0}', 'max_attempts 0');
select pg_temp.bad_option('{"max_attempts": 1001}', 'max_attempts 1001');
select pg_temp.bad_option('{"max_attempts": 2.5}', 'a fractional max_attempts');
select pg_temp.bad_option('{"max_lost_leases": -1}', 'a negative max_lost_leases');
select pg_temp.bad_option('{"delay": -1}', 'a negative delay');
select pg_temp.bad_option('{"delay": "10"}', 'delay as a string');
select pg_temp.bad_option('{"delay": 1e400}', 'a delay too large for any number type');
select pg_temp.bad_option('{"delay": 5, "run_at": "2030-01-02T00:00:00Z"}', 'both run_at and delay');
select pg_temp.bad_option('{"run_at": 1893456000}', 'run_at as a number');
select pg_temp.bad_option('{"run_at": "next tuesday"}', 'run_at that is not a timestamp');
select pg_temp.bad_option('{"timeout": 0}', 'timeout 0');
select pg_temp.bad_option('{"timeout": -5}', 'a negative timeout');
select pg_temp.bad_option('{"schedule_timeout": 0}', 'schedule_timeout 0');
select pg_temp.bad_option('{"idempotency_key": ""}', 'an empty idempotency key');
select pg_temp.bad_option('{"idempotency_key": 5}', 'an idempotency key that is a number');
select pg_temp.bad_option(jsonb_build_object('idempotency_key', repeat('k', 256))::text, 'an idempotency key of 256 characters');
select pg_temp.bad_option('{"backoff": "fast"}', 'a backoff that is not an object');
select pg_temp.bad_option('{"backoff": {"kind": "linear"}}', 'an unknown backoff kind');
select pg_temp.bad_option('{"backoff": {"kind": 2}}', 'a backoff kind that is not a string');
select pg_temp.bad_option('{"backoff": {"base": -1}}', 'a negative backoff base');
select pg_temp.bad_option('{"backoff": {"factor": 0.5}}', 'a backoff factor below 1');
select pg_temp.bad_option('{"backoff": {"jitter": "yes"}}', 'a backoff jitter that is not a boolean');
select pg_temp.bad_option('{"backoff": {"speed": 1}}', 'an unknown backoff key');
select pg_temp.bad_option('{"backoff": {"kind": "fixed", "delay": -1}}', 'a negative fixed delay');

-- options, input and name that are not what they must be
select pg_temp.rejects($$select durable.enqueue('q', 'job', '{}', '[]')$$, 'DU001', 'enqueue with options that are an array');
select pg_temp.rejects($$select durable.enqueue('q', 'job', '{}', 'null')$$, 'DU001', 'enqueue with options JSON null');
select pg_temp.rejects($$select durable.enqueue('q', 'job', '{}', null)$$, 'DU001', 'enqueue with options SQL null');
select pg_temp.rejects($$select durable.enqueue('q', 'job', '[1, 2]')$$, 'DU001', 'enqueue with an array input');
select pg_temp.rejects($$select durable.enqueue('q', 'job', '"text"')$$, 'DU001', 'enqueue with a string input');
select pg_temp.rejects($$select durable.enqueue('q', 'job', 'null')$$, 'DU001', 'enqueue with input JSON null');
select pg_temp.rejects($$select durable.enqueue('q', 'job', null)$$, 'DU001', 'enqueue with input SQL null');
select pg_temp.rejects($$select durable.enqueue('q', null)$$, 'DU001', 'enqueue with a null task name');
select pg_temp.rejects($$select durable.enqueue('q', '')$$, 'DU001', 'enqueue with an empty task name');
select pg_temp.rejects($$select durable.enqueue('q', '   ')$$, 'DU001', 'enqueue with a blank task name');
select pg_temp.rejects($$select durable.enqueue('q', repeat('n', 256))$$, 'DU001', 'enqueue with a task name of 256 characters');

-- payload size: the limit is inclusive
create temp table sizes as
select durable.max_payload_bytes() - (pg_column_size(jsonb_build_object('x', repeat('a', 100000))) - 100000) as fill;
select is(
    (select pg_column_size(jsonb_build_object('x', repeat('a', fill))) from sizes), durable.max_payload_bytes(),
    'an input of exactly max_payload_bytes can be built'
);
select lives_ok(
    format($$select durable.enqueue('q', 'job', jsonb_build_object('x', repeat('a', %s)))$$, (select fill from sizes)),
    'an input of exactly max_payload_bytes is accepted'
);
delete from durable.tasks where pg_column_size(input) > 1000000;
select pg_temp.rejects(
    format($$select durable.enqueue('q', 'job', jsonb_build_object('x', repeat('a', %s)))$$, (select fill + 1 from sizes)),
    'DU003', 'enqueue with an input one byte over max_payload_bytes');
select pg_temp.rejects(
    format($$select durable.complete(%L, %L, jsonb_build_object('x', repeat('a', %s)))$$,
           pg_temp.id('run'), pg_temp.tok('run'), (select fill + 1 from sizes)),
    'DU003', 'complete with an output over max_payload_bytes');
select pg_temp.rejects(
    format($$select * from durable.fail(%L, %L, jsonb_build_object('x', repeat('a', %s)))$$,
           pg_temp.id('run'), pg_temp.tok('run'), (select fill + 1 from sizes)),
    'DU003', 'fail with an error over max_payload_bytes');

-- enqueue_many specs
create function pg_temp.bad_batch(p_tasks text, p_case text) returns setof text language sql as $$
    select pg_temp.rejects(format('select * from durable.enqueue_many(%L, %L)', 'q', p_tasks), 'DU001',
                           'enqueue_many with ' || p_case)
$$;
select pg_temp.bad_batch('{"task_name": "job"}', 'an object instead of an array');
select pg_temp.bad_batch('"job"', 'a string instead of an array');
select pg_temp.bad_batch('null', 'JSON null');
select pg_temp.rejects($$select * from durable.enqueue_many('q', null)$$, 'DU001', 'enqueue_many with SQL null');
select pg_temp.bad_batch('[{"task_name": "job"}, "job"]', 'a spec that is a string');
select pg_temp.bad_batch('[{"task_name": "job"}, null]', 'a spec that is null');
select pg_temp.bad_batch('[{"task_name": "job", "priority": 1}]', 'an option outside "options"');
select pg_temp.bad_batch('[{"input": {}}]', 'a spec without task_name');
select pg_temp.bad_batch('[{"task_name": 7}]', 'a task_name that is a number');
select pg_temp.bad_batch('[{"task_name": {"n": "job"}}]', 'a task_name that is an object');
select pg_temp.bad_batch('[{"task_name": ""}]', 'an empty task_name');
select pg_temp.bad_batch('[{"task_name": "job", "input": [1]}]', 'an input that is an array');
select pg_temp.bad_batch('[{"task_name": "job", "input": null}]', 'an input that is JSON null');
select pg_temp.bad_batch('[{"task_name": "job", "options": []}]', 'options that are an array');
select pg_temp.bad_batch('[{"task_name": "job", "options": {"delay": -1}}]', 'a negative delay');

-- claim arguments
select pg_temp.rejects($$select * from durable.claim('q', null)$$, 'DU001', 'claim without a worker');
select pg_temp.rejects($$select * from durable.claim('q', '')$$, 'DU001', 'claim with an empty worker');
select pg_temp.rejects($$select * from durable.claim('q', repeat('w', 256))$$, 'DU001', 'claim with a worker name of 256 characters');
select pg_temp.rejects($$select * from durable.claim('q', 'w', 0)$$, 'DU001', 'claim of 0 tasks');
select pg_temp.rejects($$select * from durable.claim('q', 'w', 1001)$$, 'DU001', 'claim of 1001 tasks');
select pg_temp.rejects($$select * from durable.claim('q', 'w', null)$$, 'DU001', 'claim of null tasks');
select pg_temp.rejects($$select * from durable.claim('q', 'w', 1, 0)$$, 'DU001', 'claim with a lease of 0 s');
select pg_temp.rejects($$select * from durable.claim('q', 'w', 1, 86401)$$, 'DU001', 'claim with a lease of 86401 s');
select pg_temp.rejects($$select * from durable.claim('q', 'w', 1, null)$$, 'DU001', 'claim with a null lease');

-- worker verbs with a live token but bad arguments
select pg_temp.rejects(format('select durable.heartbeat(%L, %L, 0)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'heartbeat with a lease of 0 s');
select pg_temp.rejects(format('select durable.heartbeat(%L, %L, 86401)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'heartbeat with a lease of 86401 s');
select pg_temp.rejects(format('select durable.release(%L, %L, -1)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'release with a negative delay');
select pg_temp.rejects(format('select durable.release(%L, %L, null)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'release with a null delay');
select pg_temp.rejects(format('select durable.release(%L, %L, 31536001)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'release with a delay over a year');
select pg_temp.rejects(format('select * from durable.fail(%L, %L, null)', pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'fail without an error');
select pg_temp.rejects(format($$select * from durable.fail(%L, %L, '"boom"')$$, pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'fail with an error that is a string');
select pg_temp.rejects(format($$select * from durable.fail(%L, %L, '[1]')$$, pg_temp.id('run'), pg_temp.tok('run')),
    'DU001', 'fail with an error that is an array');
select pg_temp.rejects(format('select durable.complete(null, %L)', pg_temp.tok('run')), 'DU001', 'complete without a task id');

-- tokens and ids that are not uuids
select pg_temp.rejects(format($$select durable.complete(%L, 'not-a-uuid')$$, pg_temp.id('run')), '22P02',
    'complete with a lease token that is not a uuid');
select pg_temp.rejects(format($$select durable.heartbeat(%L, '1234')$$, pg_temp.id('run')), '22P02',
    'heartbeat with a lease token that is not a uuid');
select pg_temp.rejects(format($$select * from durable.fail(%L, 'xyz', '{}')$$, pg_temp.id('run')), '22P02',
    'fail with a lease token that is not a uuid');
select pg_temp.rejects(format($$select durable.release('task-1', %L)$$, pg_temp.tok('run')), '22P02',
    'release with a task id that is not a uuid');
select pg_temp.rejects($$select durable.cancel('task-1')$$, '22P02', 'cancel with a task id that is not a uuid');

-- the stored task is as it was
select is(
    (select jsonb_build_object('status', status, 'input', input, 'max_attempts', max_attempts) from durable.all_tasks
     where task_id = pg_temp.id('stored')),
    '{"status": "pending", "input": {"v": 1}, "max_attempts": 3}'::jsonb,
    'the stored task is untouched'
);

select * from finish();

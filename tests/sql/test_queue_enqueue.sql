-- durable.enqueue and durable.enqueue_many: option resolution against the queue's
-- defaults, run_at and delay, idempotency keys (per call, within a batch, per queue),
-- the order of the ids enqueue_many returns, atomicity of a batch, and the NOTIFY.
select plan(50);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql
\ir helpers/notify.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('qd', '{"max_attempts": 3, "max_lost_leases": 2,
    "backoff": {"kind": "fixed", "delay": 7}, "timeout": 20}');

-- defaults ---------------------------------------------------------------------------
select pg_temp.enq('plain', 'q', '{}', '{"n": 1}');
select is(
    (select jsonb_build_object(
        'queue', queue, 'task_name', task_name, 'input', input, 'status', status,
        'priority', priority, 'run_at', run_at, 'created_at', created_at,
        'attempt', attempt, 'failures', failures, 'lost_leases', lost_leases,
        'max_attempts', max_attempts, 'max_lost_leases', max_lost_leases,
        'backoff', backoff, 'timeout', timeout_seconds, 'schedule_deadline', schedule_deadline,
        'idempotency_key', idempotency_key, 'worker', worker, 'lease_token', lease_token,
        'started_at', started_at, 'output', output, 'error', error, 'finished_at', finished_at)
     from durable.all_tasks where task_id = pg_temp.id('plain')),
    jsonb_build_object(
        'queue', 'q', 'task_name', 'job', 'input', '{"n": 1}'::jsonb, 'status', 'pending',
        'priority', 0, 'run_at', pg_temp.t(0), 'created_at', pg_temp.t(0),
        'attempt', 0, 'failures', 0, 'lost_leases', 0,
        'max_attempts', 5, 'max_lost_leases', 10,
        'backoff', '{"kind": "exponential", "base": 1, "factor": 2, "max": 300, "jitter": true}'::jsonb,
        'timeout', null, 'schedule_deadline', null,
        'idempotency_key', null, 'worker', null, 'lease_token', null,
        'started_at', null, 'output', null, 'error', null, 'finished_at', null),
    'a plain task: pending now, built-in defaults (5 attempts, 10 lost leases, exponential backoff, no timeout)'
);
select is(
    (select count(*)::int from durable.all_tasks where task_id = pg_temp.id('plain')), 1,
    'enqueue returns the id of the row it wrote'
);
select is(substr(pg_temp.id('plain')::text, 15, 1), '7', 'task ids are version 7 uuids');

select pg_temp.enq('defaults', 'qd');
select is(
    (select jsonb_build_object('max_attempts', max_attempts, 'max_lost_leases', max_lost_leases,
                               'backoff', backoff, 'timeout', timeout_seconds)
     from durable.all_tasks where task_id = pg_temp.id('defaults')),
    '{"max_attempts": 3, "max_lost_leases": 2, "backoff": {"kind": "fixed", "delay": 7, "jitter": false},
      "timeout": 20}'::jsonb,
    'a task takes the defaults of its queue'
);

select pg_temp.enq('own', 'qd', '{"max_attempts": 9, "max_lost_leases": 0, "backoff": {"kind": "none"},
    "timeout": 1.5, "priority": -5}');
select is(
    (select jsonb_build_object('max_attempts', max_attempts, 'max_lost_leases', max_lost_leases,
                               'backoff', backoff, 'timeout', timeout_seconds, 'priority', priority)
     from durable.all_tasks where task_id = pg_temp.id('own')),
    '{"max_attempts": 9, "max_lost_leases": 0, "backoff": {"kind": "none"}, "timeout": 1.5, "priority": -5}'::jsonb,
    'the options of an enqueue override the queue''s defaults'
);

select pg_temp.enq('partial_backoff', 'q', '{"backoff": {"max": 60, "jitter": false}}');
select is(
    (pg_temp.task('partial_backoff')).backoff,
    '{"kind": "exponential", "base": 1, "factor": 2, "max": 60, "jitter": false}'::jsonb,
    'a partial backoff policy is completed with the defaults of its kind'
);
select pg_temp.enq('null_options', 'qd', '{"max_attempts": null, "timeout": null, "priority": null, "backoff": null}');
select is(
    (select jsonb_build_object('max_attempts', max_attempts, 'timeout', timeout_seconds,
                               'priority', priority, 'backoff', backoff)
     from durable.all_tasks where task_id = pg_temp.id('null_options')),
    '{"max_attempts": 3, "timeout": 20, "priority": 0, "backoff": {"kind": "fixed", "delay": 7, "jitter": false}}'::jsonb,
    'an option given as JSON null counts as absent: the queue''s default applies'
);

-- options are resolved at enqueue time: changing the queue later does not touch the task
select durable.create_queue('qd', '{"max_attempts": 8, "timeout": null}');
select is(
    (select array[max_attempts::float8, timeout_seconds] from durable.all_tasks where task_id = pg_temp.id('defaults')),
    array[3, 20]::float8[],
    'changing a queue''s options does not change tasks already enqueued'
);
select pg_temp.enq('defaults2', 'qd');
select is(
    (select array[max_attempts::float8, timeout_seconds] from durable.all_tasks where task_id = pg_temp.id('defaults2')),
    array[8, null]::float8[],
    'a task enqueued after the change gets the new defaults'
);

-- run_at and delay ------------------------------------------------------------------------
select pg_temp.enq('delay', 'q', '{"delay": 90}');
select is((pg_temp.task('delay')).run_at, pg_temp.t(90), 'delay: run_at is now + delay');
select pg_temp.enq('delay_frac', 'q', '{"delay": 1.25}');
select is((pg_temp.task('delay_frac')).run_at, pg_temp.t(1.25), 'a fractional delay is kept');
select pg_temp.enq('delay0', 'q', '{"delay": 0}');
select is((pg_temp.task('delay0')).run_at, pg_temp.t(0), 'delay 0 is now');
select pg_temp.enq('run_at', 'q', '{"run_at": "2030-06-01T12:00:00Z"}');
select is((pg_temp.task('run_at')).run_at, '2030-06-01 12:00:00+00'::timestamptz, 'run_at is taken as given');
select pg_temp.enq('run_at_past', 'q', '{"run_at": "2029-12-31T23:00:00+00:00"}');
select is((pg_temp.task('run_at_past')).run_at, pg_temp.t(-3600), 'run_at in the past is accepted as is');
select pg_temp.enq('run_at_null', 'q', '{"run_at": null, "delay": 5}');
select is((pg_temp.task('run_at_null')).run_at, pg_temp.t(5), 'run_at null counts as absent: delay applies');
select pg_temp.enq('sched', 'q', '{"delay": 10, "schedule_timeout": 30}');
select is((pg_temp.task('sched')).schedule_deadline, pg_temp.t(40),
          'schedule_deadline is run_at + schedule_timeout');
select pg_temp.clock(1000);
select pg_temp.enq('later', 'q', '{"delay": 5, "priority": 7}', '{"big": [1, 2, {"x": null}]}');
select is(
    (select array[created_at, run_at] from durable.all_tasks where task_id = pg_temp.id('later')),
    array[pg_temp.t(1000), pg_temp.t(1005)],
    'created_at and run_at follow the test clock'
);
select is(
    (select array[priority::text, input::text] from durable.all_tasks where task_id = pg_temp.id('later')),
    array['7', '{"big": [1, 2, {"x": null}]}'],
    'priority and input are stored as given'
);
select cmp_ok((pg_temp.task('later')).seq, '>', (pg_temp.task('plain')).seq, 'seq grows in enqueue order');

-- idempotency -------------------------------------------------------------------------------
select pg_temp.enq('k1', 'q', '{"idempotency_key": "order-1"}', '{"v": 1}');
select is((pg_temp.task('k1')).idempotency_key, 'order-1', 'the idempotency key is stored');
select pg_temp.save('before_dup');
select is(
    durable.enqueue('q', 'other_name', '{"v": 2}', '{"idempotency_key": "order-1", "priority": 9, "delay": 60}'),
    pg_temp.id('k1'),
    'a second enqueue with the same key returns the first task''s id'
);
select is(pg_temp.everything(), pg_temp.saved('before_dup'),
          'the second enqueue wrote nothing and changed nothing (first input, name and options kept)');

select durable.create_queue('q2');
select pg_temp.enq('k1_q2', 'q2', '{"idempotency_key": "order-1"}', '{"v": 3}');
select isnt(pg_temp.id('k1_q2'), pg_temp.id('k1'), 'the same key on another queue is another task');
select is(
    (select count(*)::int from durable.all_tasks where idempotency_key = 'order-1'), 2,
    'idempotency keys are per queue'
);

-- the key still holds once the first task has finished
select durable.create_queue('qk');
select pg_temp.enq('kdone', 'qk', '{"idempotency_key": "k"}');
select pg_temp.claim_as('kdone', 'qk');
select durable.complete(pg_temp.id('kdone'), pg_temp.tok('kdone'), '{"r": 1}');
select pg_temp.save('before_dup_done');
select is(durable.enqueue('qk', 'job', '{}', '{"idempotency_key": "k"}'), pg_temp.id('kdone'),
          'the key of a completed task still returns that task');
select is(pg_temp.everything(), pg_temp.saved('before_dup_done'), 'and writes nothing');

-- enqueue_many ------------------------------------------------------------------------------
select durable.create_queue('qm');
select pg_temp.clock(2000);
create temp table batch as
select r.ord, r.task_id
from durable.enqueue_many('qm', '[
    {"task_name": "n1", "input": {"i": 1}},
    {"task_name": "n2", "input": {"i": 2}, "options": {"priority": 3}},
    {"task_name": "n3"},
    {"task_name": "n4", "options": {"delay": 10, "max_attempts": 2}},
    {"task_name": "n5", "input": {"i": 5}, "options": {"backoff": {"kind": "none"}}}
]') with ordinality as r (task_id, ord);
select is(
    (select array_agg(t.task_name order by b.ord) from batch b join durable.all_tasks t using (task_id)),
    array['n1', 'n2', 'n3', 'n4', 'n5'],
    'enqueue_many returns one id per spec, in the order of the specs'
);
select is(
    (select array_agg(t.task_name order by t.seq) from durable.all_tasks t where t.queue = 'qm'),
    array['n1', 'n2', 'n3', 'n4', 'n5'],
    'the tasks of a batch are enqueued (seq, the FIFO order) in the order of the specs'
);
select is(
    (select jsonb_agg(jsonb_build_object('input', t.input, 'priority', t.priority, 'run_at', t.run_at,
                                         'max_attempts', t.max_attempts, 'backoff', t.backoff->>'kind')
                      order by b.ord)
     from batch b join durable.all_tasks t using (task_id)),
    jsonb_build_array(
        jsonb_build_object('input', '{"i": 1}'::jsonb, 'priority', 0, 'run_at', pg_temp.t(2000), 'max_attempts', 5, 'backoff', 'exponential'),
        jsonb_build_object('input', '{"i": 2}'::jsonb, 'priority', 3, 'run_at', pg_temp.t(2000), 'max_attempts', 5, 'backoff', 'exponential'),
        jsonb_build_object('input', '{}'::jsonb, 'priority', 0, 'run_at', pg_temp.t(2000), 'max_attempts', 5, 'backoff', 'exponential'),
        jsonb_build_object('input', '{}'::jsonb, 'priority', 0, 'run_at', pg_temp.t(2010), 'max_attempts', 2, 'backoff', 'exponential'),
        jsonb_build_object('input', '{"i": 5}'::jsonb, 'priority', 0, 'run_at', pg_temp.t(2000), 'max_attempts', 5, 'backoff', 'none')),
    'each spec of a batch gets its own input and options (input defaults to {})'
);

-- idempotency inside one batch and against stored tasks
select pg_temp.save('before_batch_keys');
create temp table batch2 as
select r.ord, r.task_id
from durable.enqueue_many('qm', '[
    {"task_name": "a", "input": {"v": "first"}, "options": {"idempotency_key": "b1"}},
    {"task_name": "b"},
    {"task_name": "c", "input": {"v": "second"}, "options": {"idempotency_key": "b1", "priority": 50}},
    {"task_name": "d", "options": {"idempotency_key": "k"}},
    {"task_name": "e", "options": {"idempotency_key": "b2"}}
]') with ordinality as r (task_id, ord);
select is(
    (select count(*)::int from batch2 where task_id is null), 0,
    'every spec of a batch gets an id'
);
select is(
    (select task_id from batch2 where ord = 3), (select task_id from batch2 where ord = 1),
    'a key repeated inside one batch: the later spec gets the earlier spec''s id'
);
select is(
    (select array[t.task_name, t.input::text, t.priority::text]
     from batch2 b join durable.all_tasks t using (task_id) where b.ord = 1),
    array['a', '{"v": "first"}', '0'],
    'the first spec with the key is the one written'
);
select isnt((select task_id from batch2 where ord = 4), null::uuid, 'a spec whose key is stored elsewhere on another queue is new');
select is(
    (select count(*)::int from durable.all_tasks t where t.queue = 'qm')
        - (select count(*)::int from durable.all_tasks t where t.queue = 'qm' and t.task_id in (select task_id from batch)),
    4,
    'the batch wrote one task per distinct key (and one without a key): a, b, d, e'
);
select is(
    (select count(distinct task_id)::int from batch2), 4,
    'four distinct ids for five specs'
);
select pg_temp.save('before_batch_again');
create temp table batch3 as
select r.ord, r.task_id
from durable.enqueue_many('qm', '[
    {"task_name": "x", "options": {"idempotency_key": "b2"}},
    {"task_name": "y", "options": {"idempotency_key": "b1"}}
]') with ordinality as r (task_id, ord);
select is(
    (select array_agg(task_id order by ord) from batch3),
    array[(select task_id from batch2 where ord = 5), (select task_id from batch2 where ord = 1)],
    'keys already stored: enqueue_many returns the stored tasks'' ids, in spec order'
);
select is(pg_temp.everything(), pg_temp.saved('before_batch_again'), 'and writes nothing');

select is(
    (select count(*)::int from durable.enqueue_many('qm', '[]')), 0,
    'an empty batch returns no ids'
);
select is(pg_temp.everything(), pg_temp.saved('before_batch_again'), 'an empty batch writes nothing');

-- atomicity: one bad spec and nothing of the batch is written
select pg_temp.rejects($$select * from durable.enqueue_many('qm', '[
    {"task_name": "ok1"}, {"task_name": "ok2", "options": {"idempotency_key": "fresh"}},
    {"task_name": "bad", "options": {"priority": "high"}}, {"task_name": "ok3"}]')$$,
    'DU001', 'a batch with a bad option in its third spec');
select pg_temp.rejects($$select * from durable.enqueue_many('qm', jsonb_build_array(
    jsonb_build_object('task_name', 'ok1'),
    jsonb_build_object('task_name', 'huge', 'input', jsonb_build_object('x', repeat('x', durable.max_payload_bytes()))),
    jsonb_build_object('task_name', 'ok2')))$$,
    'DU003', 'a batch with one input over the payload limit');
select pg_temp.rejects($$select * from durable.enqueue_many('qm', '[{"task_name": "ok1"}, 42]')$$,
    'DU001', 'a batch with a spec that is not an object');
select pg_temp.rejects($$select * from durable.enqueue_many('qm', '[{"task_name": "ok1"}, {"task_name": "x", "opts": {}}]')$$,
    'DU001', 'a batch with a spec holding an unknown key');
select pg_temp.rejects($$select * from durable.enqueue_many('qm', '[{"task_name": "ok1"}, {"input": {}}]')$$,
    'DU001', 'a batch with a spec without task_name');

-- NOTIFY durable, <queue>: one per call that enqueued a ready task --------------------------
commit;
select dblink_connect('l', current_setting('durable_test.conninfo'));
select dblink_exec('l', 'listen durable');
select durable.create_queue('n_ready');
select durable.create_queue('n_later');
select durable.create_queue('n_many');
select durable.create_queue('n_many_later');
commit;
select durable.enqueue('n_ready', 'job');
commit;
select durable.enqueue('n_later', 'job', '{}', '{"delay": 60}');
commit;
select count(*) from durable.enqueue_many('n_many', '[{"task_name": "a"}, {"task_name": "b", "options": {"delay": 60}}]');
commit;
select count(*) from durable.enqueue_many('n_many_later', '[{"task_name": "a", "options": {"delay": 60}}]');
commit;
select pg_notify('durable', 'sentinel');
commit;
select is(
    pg_temp.notified_before_sentinel('l'),
    array['n_ready', 'n_many'],
    'enqueue and enqueue_many notify channel durable with the queue name, only when a task is ready'
);

select * from finish();

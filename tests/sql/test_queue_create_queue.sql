-- durable.create_queue: idempotent, merges options into the stored ones (a JSON null
-- removes a key), normalises them, and rejects bad ones without changing the queue.
select plan(25);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

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

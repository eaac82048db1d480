-- Concurrency options of queues and enqueues: what is accepted, normalised, rejected
-- (DU001), removed with JSON null; which queues take the limited claim; the enqueue
-- options concurrency_key and concurrency_key_limit as stored on the task.
select plan(30);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);

select is(
    durable.create_queue('q', '{"concurrency_limit": 5, "concurrency_key_limit": 2}'),
    '{"concurrency_limit": 5, "concurrency_key_limit": 2}'::jsonb,
    'concurrency_limit and concurrency_key_limit are stored as given'
);
select is(
    durable.create_queue('q', '{"concurrency_strategy": "round_robin"}'),
    '{"concurrency_limit": 5, "concurrency_key_limit": 2, "concurrency_strategy": "round_robin"}'::jsonb,
    'a strategy merges into the existing options'
);
select is(
    durable.create_queue('q', '{"rate_limit": {"limit": 10, "period": 60}}'),
    '{"concurrency_limit": 5, "concurrency_key_limit": 2, "concurrency_strategy": "round_robin",
      "rate_limit": {"limit": 10, "period": 60, "per": "key"}}'::jsonb,
    'rate_limit is normalised: "per" defaults to key'
);
select is(
    durable.create_queue('q', '{"rate_limit": null, "concurrency_strategy": null, "hold_slots_while_suspended": true}'),
    '{"concurrency_limit": 5, "concurrency_key_limit": 2, "hold_slots_while_suspended": true}'::jsonb,
    'JSON null removes rate_limit and the strategy; hold_slots_while_suspended is a boolean'
);
select is(
    durable.create_queue('q', '{"rate_limit": {"limit": 3, "period": 0.5, "per": "queue"}}') -> 'rate_limit',
    '{"limit": 3, "period": 0.5, "per": "queue"}'::jsonb,
    'a queue-wide rate limit with a fractional period'
);
select ok(durable._has_limits((select options from durable.queues where queue = 'q')),
          'a queue with limits takes the limited claim');
select ok(not durable._has_limits('{"max_attempts": 3}'), 'a queue without them does not');
select ok(durable._has_limits('{"concurrency_strategy": "queue"}'),
          'an explicit strategy alone is enough (per-enqueue limits then apply)');

-- rejected options
select throws_ok($$select durable.create_queue('bad', '{"concurrency_limit": 0}')$$, 'DU001', null,
                 'concurrency_limit 0');
select throws_ok($$select durable.create_queue('bad', '{"concurrency_limit": 2.5}')$$, 'DU001', null,
                 'a fractional concurrency_limit');
select throws_ok($$select durable.create_queue('bad', '{"concurrency_limit": "5"}')$$, 'DU001', null,
                 'a concurrency_limit that is a string');
select throws_ok($$select durable.create_queue('bad', '{"concurrency_key_limit": -1}')$$, 'DU001', null,
                 'a negative concurrency_key_limit');
select throws_ok($$select durable.create_queue('bad', '{"concurrency_strategy": "lifo"}')$$, 'DU001', null,
                 'an unknown strategy');
select throws_ok($$select durable.create_queue('bad', '{"rate_limit": {"limit": 10}}')$$, 'DU001', null,
                 'a rate limit without period');
select throws_ok($$select durable.create_queue('bad', '{"rate_limit": {"limit": 0, "period": 1}}')$$, 'DU001', null,
                 'a rate limit of 0');
select throws_ok($$select durable.create_queue('bad', '{"rate_limit": {"limit": 1, "period": 1, "per": "task"}}')$$,
                 'DU001', null, 'a rate limit per something else');
select throws_ok($$select durable.create_queue('bad', '{"rate_limit": {"limit": 1, "period": 1, "burst": 2}}')$$,
                 'DU001', null, 'an unknown key in rate_limit');
select throws_ok($$select durable.create_queue('bad', '{"rate_limit": 5}')$$, 'DU001', null,
                 'a rate limit that is not an object');
select throws_ok($$select durable.create_queue('bad', '{"hold_slots_while_suspended": 1}')$$, 'DU001', null,
                 'hold_slots_while_suspended that is not a boolean');
select is((select count(*)::integer from durable.queues where queue = 'bad'), 0, 'no rejected queue was created');

-- enqueue options
select durable.create_queue('plain');
create temp table t1 as
select durable.enqueue('q', 'job', '{}', '{"concurrency_key": "tenant-1", "concurrency_key_limit": 3}') as id;
select is(
    (select jsonb_build_object('key', k.concurrency_key, 'limit', k.concurrency_key_limit, 'tag', k.fair_tag)
     from durable.all_tasks k, t1 where k.task_id = t1.id),
    '{"key": "tenant-1", "limit": 3, "tag": 0}'::jsonb,
    'the task stores its key and its own key limit; fair_tag is 0 outside round_robin'
);
create temp table t2 as select durable.enqueue('plain', 'job', '{}', '{"concurrency_key": "k"}') as id;
select is((select k.concurrency_key from durable.all_tasks k, t2 where k.task_id = t2.id), 'k',
          'a queue without limits stores a key too (it counts once the queue gets limits)');
select throws_ok($$select durable.enqueue('plain', 'job', '{}', '{"concurrency_key": "k", "concurrency_key_limit": 2}')$$,
                 'DU001', null, 'a per-task key limit on a queue without concurrency options');
select throws_ok($$select durable.enqueue('q', 'job', '{}', '{"concurrency_key_limit": 2}')$$,
                 'DU001', null, 'a per-task key limit without a key');
select throws_ok($$select durable.enqueue('q', 'job', '{}', '{"concurrency_key": ""}')$$,
                 'DU001', null, 'an empty key');
select throws_ok($$select durable.enqueue('q', 'job', '{}', '{"concurrency_key": 7}')$$,
                 'DU001', null, 'a key that is not a string');
select throws_ok($$select durable.enqueue('q', 'job', '{}', '{"concurrency_key": "k", "concurrency_key_limit": 0}')$$,
                 'DU001', null, 'a per-task key limit of 0');
select is(
    (select count(*)::integer from durable.enqueue_many('q', '[
        {"task_name": "a", "options": {"concurrency_key": "x"}},
        {"task_name": "b", "options": {"concurrency_key": "y", "concurrency_key_limit": 1}},
        {"task_name": "c"}]')),
    3, 'enqueue_many takes the same options'
);
select is(
    (select jsonb_agg(jsonb_build_array(k.task_name, k.concurrency_key, k.concurrency_key_limit) order by k.seq)
     from durable.all_tasks k where k.queue = 'q' and k.task_name in ('a', 'b', 'c')),
    '[["a", "x", null], ["b", "y", 1], ["c", null, null]]'::jsonb,
    'enqueue_many stores each spec''s key and limit'
);

-- the limited claim refuses an isolation level where its snapshot predates its lock
select durable.create_queue('iso', '{"concurrency_limit": 1}');
select durable.enqueue('iso', 'job', '{}', '{}');
commit;
begin isolation level repeatable read;
select throws_ok($$select * from durable.claim('iso', 'w', 1, 30)$$, 'DU001', null,
                 'a limited claim under REPEATABLE READ is refused (DU001)');
commit;

select * from finish();

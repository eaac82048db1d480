-- The attempt history (durable.attempts, one row per ended attempt, for each outcome),
-- durable.get_task (the task as JSON with its history) and durable.queue_stats.
select plan(17);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "none"}, "max_attempts": 10}');
select pg_temp.enq('h', 'q', '{"timeout": 100, "priority": 3, "idempotency_key": "key-1"}', '{"in": "put"}');

-- attempt 1: released; 2: failed; 3: lost lease; 4: timed out; 5: completed
select pg_temp.claim_as('a1', 'q', 'w1', 30);
select pg_temp.clock(1);
select durable.release(pg_temp.id('h'), pg_temp.tok('a1'), 0, 'busy');
select pg_temp.clock(2);
select pg_temp.claim_as('a2', 'q', 'w2', 30);
select pg_temp.clock(3);
select durable.fail(pg_temp.id('h'), pg_temp.tok('a2'), '{"type": "KeyError", "message": "k", "traceback": "..."}');
select pg_temp.clock(4);
select pg_temp.claim_as('a3', 'q', 'w3', 10);
select pg_temp.clock(14);
select pg_temp.claim_as('a4', 'q', 'w4', 100);
select pg_temp.clock(114);
select pg_temp.claim_as('a5', 'q', 'w5', 30);
select pg_temp.clock(120);
select durable.complete(pg_temp.id('h'), pg_temp.tok('a5'), '{"out": 1}');

select is(
    (select array_agg(id order by name) from ids where name like 'a_'),
    array_fill(pg_temp.id('h'), array[5]),
    'the five claims all took the task'
);
select is(
    (select jsonb_agg(jsonb_build_object('attempt', a.attempt, 'queue', a.queue, 'worker', a.worker,
                                         'started_at', a.started_at, 'ended_at', a.ended_at,
                                         'outcome', a.outcome, 'error_type', a.error ->> 'type')
                      order by a.attempt)
     from durable.attempts a where a.task_id = pg_temp.id('h')),
    jsonb_build_array(
        jsonb_build_object('attempt', 1, 'queue', 'q', 'worker', 'w1', 'started_at', pg_temp.t(0), 'ended_at', pg_temp.t(1),
                           'outcome', 'released', 'error_type', 'Released'),
        jsonb_build_object('attempt', 2, 'queue', 'q', 'worker', 'w2', 'started_at', pg_temp.t(2), 'ended_at', pg_temp.t(3),
                           'outcome', 'failed', 'error_type', 'KeyError'),
        jsonb_build_object('attempt', 3, 'queue', 'q', 'worker', 'w3', 'started_at', pg_temp.t(4), 'ended_at', pg_temp.t(14),
                           'outcome', 'lease_expired', 'error_type', 'LeaseExpired'),
        jsonb_build_object('attempt', 4, 'queue', 'q', 'worker', 'w4', 'started_at', pg_temp.t(14), 'ended_at', pg_temp.t(114),
                           'outcome', 'timed_out', 'error_type', 'Timeout'),
        jsonb_build_object('attempt', 5, 'queue', 'q', 'worker', 'w5', 'started_at', pg_temp.t(114), 'ended_at', pg_temp.t(120),
                           'outcome', 'completed', 'error_type', null)),
    'one attempt row per ended attempt: worker, start, end, outcome, error'
);
select is(
    (select array_agg(a.lease_token = i.token order by a.attempt)
     from durable.attempts a join ids i on i.name = 'a' || a.attempt
     where a.task_id = pg_temp.id('h')),
    array[true, true, true, true, true],
    'each attempt row holds the lease token of its attempt'
);
select is(
    (select error from durable.attempts where task_id = pg_temp.id('h') and attempt = 2),
    '{"type": "KeyError", "message": "k", "traceback": "..."}'::jsonb,
    'a failed attempt keeps the error as the worker gave it'
);

-- get_task
create temp table doc as select durable.get_task(pg_temp.id('h')) as j;
create temp table doc_keys as
select array['queue', 'task_name', 'input', 'status', 'priority', 'run_at', 'attempt', 'failures', 'lost_leases',
             'max_attempts', 'max_lost_leases', 'backoff', 'timeout', 'schedule_deadline', 'idempotency_key',
             'worker', 'lease_expires_at', 'started_at', 'output', 'error', 'created_at', 'finished_at',
             'task_id', 'attempts'] as k;
select ok((select j ?& k from doc, doc_keys), 'get_task has every field of the task queue');
select is(
    (select jsonb_object_agg(key, j -> key) from doc, doc_keys, unnest(k) as key
     where key not in ('task_id', 'attempts')),
    jsonb_build_object(
        'queue', 'q', 'task_name', 'job', 'input', '{"in": "put"}'::jsonb, 'status', 'completed', 'priority', 3,
        'run_at', pg_temp.t(114), 'attempt', 5, 'failures', 2, 'lost_leases', 1, 'max_attempts', 10,
        'max_lost_leases', 10, 'backoff', '{"kind": "none"}'::jsonb, 'timeout', 100,
        'schedule_deadline', null, 'idempotency_key', 'key-1', 'worker', 'w5', 'lease_expires_at', null,
        'started_at', pg_temp.t(114), 'output', '{"out": 1}'::jsonb, 'error', null,
        'created_at', pg_temp.t(0), 'finished_at', pg_temp.t(120)),
    'get_task: the task''s fields'
);
select is((select (j ->> 'task_id')::uuid from doc), pg_temp.id('h'), 'get_task: the task id');
select is(
    (select jsonb_agg(jsonb_build_object('attempt', e -> 'attempt', 'outcome', e -> 'outcome', 'worker', e -> 'worker'))
     from doc, jsonb_array_elements(j -> 'attempts') as e),
    '[{"attempt": 1, "outcome": "released", "worker": "w1"}, {"attempt": 2, "outcome": "failed", "worker": "w2"},
      {"attempt": 3, "outcome": "lease_expired", "worker": "w3"}, {"attempt": 4, "outcome": "timed_out", "worker": "w4"},
      {"attempt": 5, "outcome": "completed", "worker": "w5"}]'::jsonb,
    'get_task: the attempts in order'
);
select is(
    (select j -> 'attempts' -> 1 from doc),
    jsonb_build_object('attempt', 2, 'worker', 'w2', 'started_at', pg_temp.t(2), 'ended_at', pg_temp.t(3),
                       'outcome', 'failed', 'error', '{"type": "KeyError", "message": "k", "traceback": "..."}'::jsonb),
    'get_task: an attempt with its times and error'
);
select ok(
    not (select j::text like '%' || pg_temp.tok('a5')::text || '%' from doc)
    and not (select j ? 'lease_token' from doc),
    'get_task does not show lease tokens'
);
select is(durable.get_task(gen_random_uuid()), null, 'get_task of an unknown task is null');
select pg_temp.enq('fresh', 'q', '{"delay": 50}');
select is(durable.get_task(pg_temp.id('fresh')) -> 'attempts', '[]'::jsonb, 'a task that never ran has no attempts');
select is(durable.get_task(pg_temp.id('fresh')) ->> 'status', 'pending', 'and is pending');

-- cancelled attempts
select pg_temp.enq('c', 'q');
select pg_temp.claim_as('c', 'q', 'w6');
select durable.cancel(pg_temp.id('c'), 'stop');
select is(
    (select jsonb_build_object('outcome', outcome, 'worker', worker, 'error', error) from durable.attempts
     where task_id = pg_temp.id('c')),
    '{"outcome": "cancelled", "worker": "w6", "error": {"type": "Cancelled", "message": "stop"}}'::jsonb,
    'a cancelled running attempt leaves a cancelled row'
);

-- queue_stats
select durable.create_queue('s');
select pg_temp.clock(200);
select pg_temp.enq('s1', 's');
select pg_temp.clock(201);
select pg_temp.enq('s2', 's');
select pg_temp.enq('s3', 's');
select pg_temp.enq('s4', 's');
select pg_temp.claim_as('s1', 's');
select pg_temp.claim_as('s2', 's');
select durable.complete(pg_temp.id('s2'), pg_temp.tok('s2'));
select durable.cancel(pg_temp.id('s3'));
select is(
    (select jsonb_agg(jsonb_build_object('status', status, 'tasks', tasks, 'oldest', oldest) order by status)
     from durable.queue_stats('s')),
    jsonb_build_array(
        jsonb_build_object('status', 'cancelled', 'tasks', 1, 'oldest', pg_temp.t(201)),
        jsonb_build_object('status', 'completed', 'tasks', 1, 'oldest', pg_temp.t(201)),
        jsonb_build_object('status', 'pending', 'tasks', 1, 'oldest', pg_temp.t(201)),
        jsonb_build_object('status', 'running', 'tasks', 1, 'oldest', pg_temp.t(200))),
    'queue_stats: tasks per status with the oldest creation time'
);
select is((select count(*)::int from durable.queue_stats('nope')), 0, 'queue_stats of an unknown queue is empty');
select is(
    (select sum(tasks)::int from durable.queue_stats('q')), 3,
    'queue_stats counts only its queue'
);

select * from finish();

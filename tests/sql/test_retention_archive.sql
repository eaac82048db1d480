-- The archive of finished tasks (migrations/0020_finished_tasks.sql, finish.sql): every way a
-- task finishes moves it from durable.tasks into durable.finished_tasks, in the partition of
-- its day; every read by id or by listing sees it there; retry and replay move it back, fork
-- copies it; it keeps its idempotency key; a day goes (its archived tasks, attempts and
-- events, one DROP) only once no live task of it is left and every archived one is past its
-- queue's retention.
select plan(56);

\ir helpers/tasks.sql

\ir helpers/partitions.sql

-- where a task is: 'live', 'archived' (with its status) or 'gone'
create function pg_temp.where_is(p_name text) returns text language sql as $$
    select coalesce(
        (select 'live ' || t.status from durable.tasks t where t.task_id = pg_temp.id(p_name)),
        (select 'archived ' || f.status from durable.finished_tasks f where f.task_id = pg_temp.id(p_name)),
        'gone')
$$;

select pg_temp.clock(0);
select durable.create_queue('a');
select durable.create_queue('keep');

-- 0. the two tables have the same columns, in the same order (the moves copy rows whole)
select is(
    (select array_agg(a.attname::text || ':' || format_type(a.atttypid, a.atttypmod) order by a.attnum)
     from pg_attribute a where a.attrelid = 'durable.finished_tasks'::regclass and a.attnum > 0 and not a.attisdropped),
    (select array_agg(a.attname::text || ':' || format_type(a.atttypid, a.atttypmod) order by a.attnum)
     from pg_attribute a where a.attrelid = 'durable.tasks'::regclass and a.attnum > 0 and not a.attisdropped),
    'durable.finished_tasks has the columns of durable.tasks, in order');
select ok(pg_temp.day_of('durable.finished_tasks') = any(pg_temp.partitions('durable.finished_tasks'))
          and pg_temp.day_of('durable.finished_tasks', 7) = any(pg_temp.partitions('durable.finished_tasks')),
          'the archive has the day partitions of the history: today and 7 days ahead');

-- 1. every finish moves the task
select pg_temp.enq('c', 'a', '{}', '{"v": 1}');
select pg_temp.claim_as('c', 'a');
select durable.complete(pg_temp.id('c'), pg_temp.tok('c'), '{"done": 1}');
select is(pg_temp.where_is('c'), 'archived completed', 'complete moves the task to the archive');
select is((select tableoid::regclass::text from durable.finished_tasks where task_id = pg_temp.id('c')),
          pg_temp.day_of('durable.finished_tasks'), 'into the partition of its creation day');
select is((select array_agg(outcome) from durable.attempts where task_id = pg_temp.id('c')), array['completed'],
          'with its attempt recorded');
select is((pg_temp.task('c')).output, '{"done": 1}'::jsonb, 'and its output');

select pg_temp.enq('m1', 'a');
select pg_temp.enq('m2', 'a');
insert into ids (name, id, token)
select 'm' || row_number() over (order by c.task_id) + 2, c.task_id, c.lease_token from durable.claim('a', 'w', 2) c;
select is((select array_agg(ok order by task_id) from durable.complete_many(
              array[pg_temp.id('m3'), pg_temp.id('m4'), pg_temp.id('m3')],
              array[pg_temp.tok('m3'), pg_temp.tok('m4'), pg_temp.tok('m3')], array['{}', '{}', '{}']::jsonb[])),
          array[true, false, true], 'complete_many: two completions and a duplicate');
select is(array[pg_temp.where_is('m3'), pg_temp.where_is('m4')], array['archived completed', 'archived completed'],
          'complete_many moves every task it completes');
select throws_ok(format('select durable.complete(%L, %L)', pg_temp.id('m3'), pg_temp.tok('m3')),
                 'DU010', null, 'completing an archived task again: DU010 (the fence reads the archive)');
select is((select reason from durable.complete_many(array[pg_temp.id('m3')], array[gen_random_uuid()])),
          'lease_lost', 'complete_many of an archived task with a wrong token: lease_lost');

select pg_temp.enq('f', 'a', '{"max_attempts": 1}');
select pg_temp.claim_as('f', 'a');
select is((select status from durable.fail(pg_temp.id('f'), pg_temp.tok('f'), '{"type": "E"}')), 'failed',
          'fail with no attempt left: failed');
select is(pg_temp.where_is('f'), 'archived failed', 'the failed task is archived');
select is(array[(pg_temp.task('f')).failures, (pg_temp.task('f')).attempt], array[1, 1],
          'its failure is counted');

select pg_temp.enq('r', 'a', '{"max_attempts": 3}');
select pg_temp.claim_as('r', 'a');
select is((select status from durable.fail(pg_temp.id('r'), pg_temp.tok('r'), '{"type": "E"}')), 'pending',
          'a failure with attempts left stays live');
select is(pg_temp.where_is('r'), 'live pending', 'in durable.tasks');

-- a tree: the cancel moves the root and its unfinished children; a worker learns it
select pg_temp.enq('root', 'a', '{"durable": true}');
select pg_temp.claim_as('root', 'a');
insert into ids (name, id)
select 'kid', (durable.spawn(pg_temp.id('root'), pg_temp.tok('root'), 1, 'a', 'kid', '{}', '{"delay": 1000}')
               -> 'result' ->> 'task_id')::uuid;
select is(durable.cancel(pg_temp.id('root'), 'stop'), true, 'cancel of a running root');
select is(array[pg_temp.where_is('root'), pg_temp.where_is('kid')], array['archived cancelled', 'archived cancelled'],
          'the root and its pending child are archived, cancelled');
select throws_ok(format('select durable.heartbeat(%L, %L)', pg_temp.id('root'), pg_temp.tok('root')),
                 'DU011', null, 'the worker of the archived, cancelled task: DU011 at its next call');
select is(durable.cancel(pg_temp.id('root')), false, 'cancel of an archived cancelled task: false');
select throws_ok(format('select durable.cancel(%L)', pg_temp.id('c')), 'DU012', null,
                 'cancel of an archived completed task: DU012');
select is((select count(*)::int from durable.ready where task_id = pg_temp.id('kid')), 0,
          'the cancelled pending child left the claimable set');

-- a schedule timeout
select pg_temp.enq('late', 'a', '{"schedule_timeout": 5, "delay": 2000}');
select pg_temp.clock(2010);
select durable.reclaim('a');
select is(pg_temp.where_is('late'), 'archived cancelled', 'a schedule timeout archives the task');

-- a lost lease past max_lost_leases, an attempt past its timeout with no attempt left
select durable.create_queue('lq');
select pg_temp.enq('lost', 'lq', '{"max_lost_leases": 0}');
select pg_temp.claim_as('lost', 'lq', 'w1', 5);
select pg_temp.enq('slow', 'lq', '{"max_attempts": 1, "timeout": 1}');
select pg_temp.claim_as('slow', 'lq', 'w1', 5);
select pg_temp.clock(2020);
select durable.reclaim('lq');
select is(array[pg_temp.where_is('lost'), (pg_temp.task('lost')).error ->> 'type', (pg_temp.task('lost')).lost_leases::text],
          array['archived failed', 'LeaseLost', '1'], 'a lease lost once too often archives the task, failed');
select is(array[pg_temp.where_is('slow'), (pg_temp.task('slow')).error ->> 'type'],
          array['archived failed', 'Timeout'], 'and so does a timeout with no attempt left');
select is((select array_agg(outcome order by task_id) from durable.attempts
           where task_id in (pg_temp.id('lost'), pg_temp.id('slow'))),
          array['lease_expired', 'timed_out'], 'each with its attempt');

-- a cancel strategy
select durable.create_queue('cn', '{"concurrency_strategy": "cancel_newest"}');
select pg_temp.enq('first', 'cn', '{"concurrency_key": "k"}');
select pg_temp.enq('second', 'cn', '{"concurrency_key": "k"}');
select is(array[pg_temp.where_is('first'), pg_temp.where_is('second')], array['live pending', 'archived cancelled'],
          'cancel_newest archives the task it cancels');

-- a non-determinism: the re-run completes without going through the history
select durable.create_queue('nd');
select pg_temp.enq('nd', 'nd', '{"durable": true}');
select pg_temp.claim_as('nd', 'nd', 'w1', 5);
select durable.checkpoint(pg_temp.id('nd'), pg_temp.tok('nd'), 1, 'step', 'one', '{}');
select durable.release(pg_temp.id('nd'), pg_temp.tok('nd'), 0);
select pg_temp.claim_as('nd', 'nd', 'w1', 5);
select ok(durable.complete(pg_temp.id('nd'), pg_temp.tok('nd')) ? 'nondeterminism',
          'a completion that skipped the history: nondeterminism');
select is(array[pg_temp.where_is('nd'), (pg_temp.task('nd')).error ->> 'type'],
          array['archived failed', 'NonDeterminismError'], 'the task is archived, failed');
select throws_ok(format('select durable.heartbeat(%L, %L)', pg_temp.id('nd'), pg_temp.tok('nd')),
                 'DU020', null, 'its worker''s next call: DU020 (the fence reads the archive)');

-- 2. reads see the archive
select is(durable.get_task(pg_temp.id('c')) ->> 'status', 'completed', 'get_task of an archived task');
select is(durable.get_task(pg_temp.id('root')) -> 'children' -> 0 ->> 'status', 'cancelled',
          'get_task lists the archived children');
select is((select array_agg(task_id order by task_id) from durable.list_tasks(p_queue => 'a', p_status => 'completed')),
          array[pg_temp.id('c'), pg_temp.id('m3'), pg_temp.id('m4')], 'list_tasks of a finished status, in a queue');
select is((select array_agg(task_id) from durable.list_tasks(p_queue => 'a', p_limit => 2)),
          array[pg_temp.id('late'), pg_temp.id('kid')], 'list_tasks of a queue: live and archived, newest first');
select is((select array_agg(task_id) from durable.list_tasks(p_queue => 'a', p_limit => 2, p_before => pg_temp.id('kid'))),
          array[pg_temp.id('root'), pg_temp.id('r')], 'its next page');
select is((select array_agg(task_id) from durable.list_tasks(p_status => 'failed')),
          array[pg_temp.id('nd'), pg_temp.id('slow'), pg_temp.id('lost'), pg_temp.id('f')],
          'list_tasks of a finished status, every queue, newest first');
select is((select jsonb_object_agg(status, tasks) from durable.queue_stats('a')),
          '{"completed": 3, "failed": 1, "cancelled": 3, "pending": 1}'::jsonb, 'queue_stats counts both');
select is((select array[completed, failed, cancelled, pending] from durable.list_queues() where queue = 'a'),
          array[3, 1, 3, 1]::bigint[], 'list_queues too');

-- 3. restarts move it back; a fork copies it
select durable.retry(pg_temp.id('f'));
select is(pg_temp.where_is('f'), 'live pending', 'retry moves the archived task back to durable.tasks');
select is(array[(pg_temp.task('f')).restarts, (pg_temp.task('f')).failures], array[1, 0], 'counting a restart');
select is((select count(*)::int from durable.ready where task_id = pg_temp.id('f')), 1, 'claimable again');
select is(durable.replay(pg_temp.id('c')), 2, 'replay of an archived task: generation 2');
select is(pg_temp.where_is('c'), 'live pending', 'moved back');
select throws_ok(format('select durable.retry(%L)', pg_temp.id('c')), 'DU012', null, 'retry of a live task: DU012');
select isnt(durable.fork(pg_temp.id('root'), 2), null, 'fork of an archived task');
select is(pg_temp.where_is('root'), 'archived cancelled', 'the original stays archived');

-- 4. a finished task keeps its idempotency key
select durable.create_queue('ka');
select pg_temp.enq('k', 'ka', '{"idempotency_key": "once"}');
select pg_temp.claim_as('k', 'ka');
select durable.complete(pg_temp.id('k'), pg_temp.tok('k'));
select is(durable.enqueue('ka', 'job', '{}', '{"idempotency_key": "once"}'), pg_temp.id('k'),
          'an enqueue with the key of an archived task returns that task');
select is((select e.t from durable.enqueue_many('ka', '[{"task_name": "job", "options": {"idempotency_key": "once"}},
                                                      {"task_name": "job", "options": {"idempotency_key": "twice"}}]')
                  with ordinality as e (t, n) where e.n = 1),
          pg_temp.id('k'), 'so does enqueue_many');

-- 5. the day: kept while a task of it is live, or an archived one is within its retention
select durable.create_queue('a', '{"retention": 60}');
select durable.create_queue('ka', '{"retention": 60}');
select pg_temp.enq('kept', 'keep');
select pg_temp.claim_as('kept', 'keep');
select durable.complete(pg_temp.id('kept'), pg_temp.tok('kept'));
select durable.cancel(t.task_id) from durable.tasks t;
select pg_temp.clock(100000);
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(pg_temp.day_of('durable.finished_tasks') = any(pg_temp.partitions('durable.finished_tasks')),
          'a day with an archived task of a queue without retention is kept');
select is((select drop_at from durable.history_partitions where day = (clock_timestamp() at time zone 'UTC')::date),
          'infinity'::timestamptz, 'its drop_at: never (looked at again hourly)');
select durable.create_queue('keep', '{"retention": 3600}');
select durable.create_queue('lq', '{"retention": 60}');
select durable.create_queue('cn', '{"retention": 60}');
select durable.create_queue('nd', '{"retention": 60}');
select pg_temp.enq('live', 'lq', '{"durable": true}');
select pg_temp.claim_as('live', 'lq', 'w1', 86400);
select durable.checkpoint(pg_temp.id('live'), pg_temp.tok('live'), 1, 'step', 'kept', '{}');
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(pg_temp.day_of('durable.finished_tasks') = any(pg_temp.partitions('durable.finished_tasks'))
          and pg_temp.day_of('durable.events') = any(pg_temp.partitions('durable.events')),
          'every archived task past its retention, but a running task of the day: kept');
select is((select count(*)::int from durable.history(pg_temp.id('live'))), 1, 'the running task''s history is whole');
select is((select drop_at from durable.history_partitions where day = (clock_timestamp() at time zone 'UTC')::date),
          null, 'its day''s drop_at: not known while a live task of it is left');
select durable.complete(pg_temp.id('live'), pg_temp.tok('live'));
select pg_temp.clock(200000);
-- one more task of the day, of queue a (retention 60 s), ends now: the day can go at 200060
select pg_temp.enq('near', 'a');
select pg_temp.claim_as('near', 'a');
select durable.complete(pg_temp.id('near'), pg_temp.tok('near'));
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select is((select drop_at from durable.history_partitions where day = (clock_timestamp() at time zone 'UTC')::date),
          pg_temp.t(200060), 'the maintenance records when the day can go: its last end + retention');
select pg_temp.clock(200100);
select pg_temp.claim_as('none', 'a');
select is(pg_temp.where_is('near'), 'archived completed',
          'the claim''s row-wise retention leaves a day whose DROP is near to that DROP');
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(not pg_temp.day_of('durable.finished_tasks') = any(pg_temp.partitions('durable.finished_tasks'))
          and not pg_temp.day_of('durable.events') = any(pg_temp.partitions('durable.events'))
          and not pg_temp.day_of('durable.attempts') = any(pg_temp.partitions('durable.attempts')),
          'then the day goes: its archived tasks, attempts and events, one DROP');
select is((select count(*)::int from durable.all_tasks), 0, 'with every task of that day');

select * from finish();

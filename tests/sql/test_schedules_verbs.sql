-- Schedules (plpgsql/schedules.sql), on the test clock:
--   1. create_schedule stores the definition and returns the next tick; re-creating a
--      name replaces it; bad input is refused before anything is written;
--   2. the claims of the queue enqueue each tick once (idempotency key
--      schedule:<name>:<tick>), with the schedule's input and enqueue options, and move
--      next_run_at on; next_wake includes the next tick;
--   3. catch-up of missed ticks: once, skip (within catch_up_grace), all (the latest
--      catch_up_max), far behind too;
--   4. pause, resume (the ticks of the pause are not caught up), delete, DU032;
--   5. a tick that cannot enqueue is recorded (last_error), and the claim goes on;
--   6. rights: create needs producer on the queue, pause/resume/delete producer or
--      operator, list_schedules shows the queues the caller may read.
select plan(54);

\ir helpers/errors.sql
\ir helpers/security.sql

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue(q) from unnest(array['sq', 'cq', 'far', 'other']) as q;

create function pg_temp.keys(p_queue text) returns text[] language sql as $$
    select coalesce(array_agg(k.idempotency_key order by k.idempotency_key), '{}')
    from durable.all_tasks k where k.queue = p_queue
$$;
create function pg_temp.sched(p_queue text, p_name text) returns durable.schedules language sql as $$
    select * from durable.schedules s where s.queue = p_queue and s.name = p_name
$$;

-- 1. create
select is(
    durable.create_schedule('every5', 'sq', 'job', '*/5 * * * *',
                            '{"input": {"a": 1}, "enqueue_options": {"priority": 3, "max_attempts": 2}}'),
    '2030-01-01 00:05:00+00'::timestamptz, '1: create_schedule returns the next tick');
select is(
    (select jsonb_build_object('task_name', s.task_name, 'cron', s.cron, 'tz', s.tz, 'input', s.input,
                               'enqueue_options', s.enqueue_options, 'catch_up', s.catch_up, 'paused', s.paused,
                               'next_run_at', s.next_run_at, 'ticks', s.ticks)
     from durable.list_schedules('sq') s),
    jsonb_build_object('task_name', 'job', 'cron', '*/5 * * * *', 'tz', 'UTC', 'input', '{"a": 1}'::jsonb,
                       'enqueue_options', '{"priority": 3, "max_attempts": 2}'::jsonb, 'catch_up', 'once',
                       'paused', false, 'next_run_at', '2030-01-01 00:05:00+00'::timestamptz, 'ticks', 0),
    '1: list_schedules shows it, with the defaults (tz UTC, catch_up once)');
select is(durable.create_schedule('every5', 'sq', 'job', '*/10 * * * *', '{"input": {"a": 2}, "tz": "Europe/Berlin"}'),
          '2030-01-01 00:10:00+00'::timestamptz, '1: re-creating the name replaces it');
select is((select array_agg(s.cron || ' ' || s.tz || ' ' || s.input::text) from durable.schedules s),
          array['*/10 * * * * Europe/Berlin {"a": 2}'], '1: one row, the new definition');

create temp table before_bad as select pg_temp.durable_state() as s;
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '* * *')$$) ->> 'sqlstate', 'DU030', '1: a malformed cron: DU030');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '0 0 31 4 *')$$) ->> 'sqlstate', 'DU033', '1: a cron that never fires: DU033');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"tz": "Moon/Base"}')$$) ->> 'sqlstate', 'DU031', '1: an unknown zone: DU031');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"tz": "UTC+3"}')$$) ->> 'sqlstate', 'DU031', '1: a POSIX zone spec is not an IANA name: DU031');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"enqueue_options": {"bogus": 1}}')$$) ->> 'sqlstate', 'DU001', '1: an unknown enqueue option: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"enqueue_options": {"priority": "high"}}')$$) ->> 'sqlstate', 'DU001', '1: a bad enqueue option value: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"enqueue_options": {"idempotency_key": "k"}}')$$) ->> 'sqlstate', 'DU001', '1: an idempotency_key of its own: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"input": [1]}')$$) ->> 'sqlstate', 'DU001', '1: an input that is not an object: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"catch_up": "some"}')$$) ->> 'sqlstate', 'DU001', '1: a bad catch_up: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"catch_up_max": 0}')$$) ->> 'sqlstate', 'DU001', '1: a catch_up_max of 0: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', 'job', '@daily', '{"when": 1}')$$) ->> 'sqlstate', 'DU001', '1: an unknown option: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'sq', '', '@daily')$$) ->> 'sqlstate', 'DU001', '1: an empty task name: DU001');
select is(pg_temp.error_of($$select durable.create_schedule('b', 'nope', 'job', '@daily')$$) ->> 'sqlstate', 'DU002', '1: an unknown queue: DU002');
select is(pg_temp.durable_state(), (select s from before_bad), '1: the refused calls wrote nothing');

-- 2. ticks
select set_config('durable.fake_now', '2030-01-01 00:09:59+00', false);
select is((select count(*) from durable.claim('sq', 'w', 10)), 0::bigint, '2: before the tick a claim finds nothing');
select is(durable.next_wake('sq'), '2030-01-01 00:10:00+00'::timestamptz, '2: next_wake is the next tick');
select set_config('durable.fake_now', '2030-01-01 00:10:02+00', false);
create temp table c2 as select * from durable.claim('sq', 'w', 10);
select is((select jsonb_agg(jsonb_build_object('task_name', c.task_name, 'input', c.input)) from c2 c),
          '[{"task_name": "job", "input": {"a": 2}}]'::jsonb, '2: the claim after the tick enqueues the task and claims it');
select is(pg_temp.keys('sq'), array['schedule:every5:2030-01-01T00:10:00Z'], '2: its idempotency key names the schedule and the tick (UTC)');
select is((select count(*) from durable.claim('sq', 'w2', 10)), 0::bigint, '2: a second claim enqueues nothing more');
select is((select jsonb_build_object('next', s.next_run_at, 'last', s.last_tick_at, 'task', s.last_task_id = (select task_id from c2), 'ticks', s.ticks)
           from pg_temp.sched('sq', 'every5') s),
          jsonb_build_object('next', '2030-01-01 00:20:00+00'::timestamptz, 'last', '2030-01-01 00:10:00+00'::timestamptz, 'task', true, 'ticks', 1),
          '2: next_run_at moved on; last_tick_at, last_task_id, ticks recorded');
select durable.create_schedule('opts', 'other', 'job', '0 * * * *', '{"enqueue_options": {"priority": 7, "max_attempts": 2, "delay": 30}}');
select set_config('durable.fake_now', '2030-01-01 01:00:00+00', false);
select is(durable.reclaim('other'), 1, '2: reclaim (the claim''s maintenance) enqueues the due tick');
select is((select jsonb_build_object('priority', k.priority, 'max_attempts', k.max_attempts, 'run_at', k.run_at)
           from durable.all_tasks k where k.queue = 'other'),
          jsonb_build_object('priority', 7, 'max_attempts', 2, 'run_at', '2030-01-01 01:00:30+00'::timestamptz),
          '2: the task has the schedule''s enqueue options');

-- 3. catch-up: every 10 minutes from 00:00, nobody claims until 01:05 (ticks 00:10 .. 01:00)
select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_schedule('once', 'cq', 'job', '*/10 * * * *');
select durable.create_schedule('skip', 'cq', 'job', '*/10 * * * *', '{"catch_up": "skip"}');
select durable.create_schedule('skip15', 'cq', 'job', '*/10 * * * *', '{"catch_up": "skip", "catch_up_grace": 900}');
select durable.create_schedule('all', 'cq', 'job', '*/10 * * * *', '{"catch_up": "all", "catch_up_max": 3}');
select durable.create_schedule('allmany', 'cq', 'job', '*/10 * * * *', '{"catch_up": "all", "catch_up_max": 100}');
select set_config('durable.fake_now', '2030-01-01 01:05:00+00', false);
select is(durable.reclaim('cq'), 1 + 1 + 3 + 6, '3: the catch-up enqueues 11 tasks in all');
select is(pg_temp.keys('cq'), array[
    'schedule:all:2030-01-01T00:40:00Z', 'schedule:all:2030-01-01T00:50:00Z', 'schedule:all:2030-01-01T01:00:00Z',
    'schedule:allmany:2030-01-01T00:10:00Z', 'schedule:allmany:2030-01-01T00:20:00Z', 'schedule:allmany:2030-01-01T00:30:00Z',
    'schedule:allmany:2030-01-01T00:40:00Z', 'schedule:allmany:2030-01-01T00:50:00Z', 'schedule:allmany:2030-01-01T01:00:00Z',
    'schedule:once:2030-01-01T01:00:00Z', 'schedule:skip15:2030-01-01T01:00:00Z'],
    '3: once: the latest tick; skip: none when 5 minutes late past a 60 s grace, the latest within a 15-minute one; all: the latest catch_up_max');
select is((select array_agg(s.next_run_at order by s.name) from durable.schedules s where s.queue = 'cq'),
          array_fill('2030-01-01 01:10:00+00'::timestamptz, array[5]), '3: each schedule''s next tick is the first after now');
select is(durable.reclaim('cq'), 0, '3: nothing is enqueued twice');
select durable.create_schedule('minutely', 'far', 'job', '* * * * *', '{"catch_up": "all", "catch_up_max": 5}');
select set_config('durable.fake_now', '2030-01-03 00:00:30+00', false);
select is(durable.reclaim('far'), 5, '3: two days behind a minutely schedule: catch_up_max ticks');
select is(pg_temp.keys('far'), array['schedule:minutely:2030-01-02T23:56:00Z', 'schedule:minutely:2030-01-02T23:57:00Z',
    'schedule:minutely:2030-01-02T23:58:00Z', 'schedule:minutely:2030-01-02T23:59:00Z', 'schedule:minutely:2030-01-03T00:00:00Z'],
    '3: the latest five');
select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('far2');
select durable.create_schedule('m100', 'far2', 'job', '* * * * *', '{"catch_up": "all", "catch_up_max": 100}');
select durable.create_schedule('m1', 'far2', 'job', '* * * * *');
select set_config('durable.fake_now', '2030-01-03 00:00:30+00', false);
select is(durable.reclaim('far2'), 101, '3: two days behind, catch_up_max 100 (more than an hour holds) and once: 101 tasks');
select is((select jsonb_build_object('n', count(*), 'first', min(k.idempotency_key), 'last', max(k.idempotency_key))
           from durable.all_tasks k where k.queue = 'far2' and k.idempotency_key like 'schedule:m100:%'),
          '{"n": 100, "first": "schedule:m100:2030-01-02T22:21:00Z", "last": "schedule:m100:2030-01-03T00:00:00Z"}'::jsonb,
          '3: the latest 100 ticks, the last at 00:00');
select is((select array_agg(k.idempotency_key) from durable.all_tasks k where k.queue = 'far2' and k.idempotency_key like 'schedule:m1:%'),
          array['schedule:m1:2030-01-03T00:00:00Z'], '3: once: the latest tick only');

-- 4. pause, resume, delete
select set_config('durable.fake_now', '2030-01-01 01:05:00+00', false);
select is(durable.pause_schedule('once', 'cq'), true, '4: pause_schedule pauses');
select is(durable.pause_schedule('once', 'cq'), false, '4: pausing again: false');
select is((select count(*) from durable.list_schedules('cq') s where s.paused), 1::bigint, '4: list_schedules shows it paused');
select set_config('durable.fake_now', '2030-01-01 01:31:00+00', false);
select durable.reclaim('cq');
select is((select count(*) from durable.all_tasks k where k.idempotency_key like 'schedule:once:%'), 1::bigint, '4: a paused schedule enqueues nothing');
select is(durable.resume_schedule('once', 'cq'), '2030-01-01 01:40:00+00'::timestamptz, '4: resume returns the first tick after now');
select durable.reclaim('cq');
select is((select count(*) from durable.all_tasks k where k.idempotency_key like 'schedule:once:%'), 1::bigint, '4: the ticks of the pause are not caught up');
select is(durable.delete_schedule('once', 'cq'), true, '4: delete_schedule deletes');
select is(durable.delete_schedule('once', 'cq'), false, '4: deleting again: false');
select is(pg_temp.error_of($$select durable.pause_schedule('once', 'cq')$$) ->> 'sqlstate', 'DU032', '4: pausing an unknown schedule: DU032');
select is(pg_temp.error_of($$select durable.resume_schedule('once', 'cq')$$) ->> 'sqlstate', 'DU032', '4: resuming one: DU032');

-- 5. a tick that cannot enqueue: its queue's concurrency options were removed under it
select durable.create_queue('lim', '{"concurrency_limit": 5}');
select durable.create_schedule('keyed', 'lim', 'job', '*/5 * * * *', '{"enqueue_options": {"concurrency_key": "k", "concurrency_key_limit": 2}}');
select durable.create_queue('lim', '{"concurrency_limit": null}');
select set_config('durable.fake_now', '2030-01-01 01:46:00+00', false);
select is((select count(*) from durable.claim('lim', 'w', 5)), 0::bigint, '5: the claim goes on (nothing to claim)');
select is((select jsonb_build_object('sqlstate', s.last_error ->> 'sqlstate', 'next', s.next_run_at) from pg_temp.sched('lim', 'keyed') s),
          jsonb_build_object('sqlstate', 'DU001', 'next', '2030-01-01 01:50:00+00'::timestamptz),
          '5: the failed tick is recorded in last_error and the schedule moved on');

-- 6. rights
select pg_temp.login('pr', '{durable_producer}');
select pg_temp.login('wo', '{durable_worker}');
select pg_temp.login('op', '{durable_operator}');
select pg_temp.login('rd', '{durable_reader}');
select durable.grant_queue(pg_temp.role('pr'), 'sq', '{producer}');
select durable.grant_queue(pg_temp.role('rd'), 'cq', '{reader}');
select pg_temp.refused_as(pg_temp.role('pr'), $$select durable.create_schedule('x', 'other', 'job', '@daily')$$, '42501',
                          '6: a producer restricted to sq may not create a schedule on other');
select is(pg_temp.state_as(pg_temp.role('pr'), $$select durable.create_schedule('x', 'sq', 'job', '@daily')$$), null,
          '6: it may on sq');
select pg_temp.refused_as(pg_temp.role('wo'), $$select durable.create_schedule('y', 'sq', 'job', '@daily')$$, '42501',
                          '6: a worker may not create schedules');
select is(pg_temp.state_as(pg_temp.role('op'), $$select durable.pause_schedule('x', 'sq')$$), null, '6: an operator may pause one');
select is(pg_temp.value_as(pg_temp.role('rd'), $$select string_agg(distinct s.queue, ',') from durable.list_schedules() s$$), 'cq',
          '6: a reader restricted to cq lists only cq''s schedules');

select pg_temp.drop_roles();

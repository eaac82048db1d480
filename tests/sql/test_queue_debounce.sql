-- Debounce (the enqueue option {"debounce": {"key", "delay", "max_delay"}}), on the test
-- clock:
--   1. a second enqueue with the key of a pending, never started task returns that task,
--      pushes its run time to now + delay and replaces its input, never past its first
--      enqueue + max_delay; without max_delay, no cap;
--   2. a started (or cancelled) holder frees its key: the next enqueue creates a task;
--      keys are per queue; a retried task no longer holds its key;
--   3. enqueue_many: the specs of one key make one task (the last spec's input and
--      delay), or update the pending holder;
--   4. bad input: DU001 (malformed, combined with run_at, delay or idempotency_key, in a
--      spawn), DU040 (a holder of another task name); nothing written;
--   5. rights: a producer may debounce, a worker may not enqueue;
--   6. a race: three sessions enqueue one key at once: one task.
select plan(57);

\ir helpers/tasks.sql
\ir helpers/security.sql
\ir helpers/sessions.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select durable.create_queue('other');

create function pg_temp.deb(p_name text, p_queue text, p_key text, p_input jsonb, p_delay double precision,
                            p_max double precision default null) returns uuid language sql as $$
    select pg_temp.enq(p_name, p_queue,
                       jsonb_build_object('debounce', jsonb_strip_nulls(
                           jsonb_build_object('key', p_key, 'delay', p_delay, 'max_delay', p_max))),
                       p_input)
$$;
create function pg_temp.count(p_queue text, p_key text) returns integer language sql
    as $$ select count(*)::integer from durable.all_tasks where queue = p_queue and debounce_key = p_key $$;

-- 1. push forward, capped ---------------------------------------------------------------
select pg_temp.deb('a', 'q', 'k', '{"n": 1}', 10, 30);
select is(array[(pg_temp.task('a')).run_at, (pg_temp.task('a')).debounce_deadline],
          array[pg_temp.t(10), pg_temp.t(30)], '1: a new debounced task runs after its delay; deadline at max_delay');
select pg_temp.clock(5);
select is(pg_temp.deb('a2', 'q', 'k', '{"n": 2}', 10, 30), pg_temp.id('a'), '1: the next enqueue of the key returns the pending task');
select is(pg_temp.count('q', 'k'), 1, '1: ... and creates none');
select is(array[(pg_temp.task('a')).run_at::text, (pg_temp.task('a')).input::text],
          array[pg_temp.t(15)::text, '{"n": 2}'], '1: its run time is pushed to now + delay and its input replaced');
select pg_temp.clock(25);
select pg_temp.deb('a3', 'q', 'k', '{"n": 3}', 10, 300);
select is((pg_temp.task('a')).run_at, pg_temp.t(30), '1: never past the first enqueue + max_delay (the first max_delay)');
select pg_temp.clock(29);
select pg_temp.deb('a4', 'q', 'k', '{"n": 4}', 0.5, 30);
select is(array[(pg_temp.task('a')).run_at::text, (pg_temp.task('a')).input::text],
          array[pg_temp.t(29.5)::text, '{"n": 4}'], '1: a shorter delay brings it nearer: now + delay');
select is((select count(*)::integer from durable.claim('q', 'w1', 5)), 0, '1: not claimable before its run time');

select pg_temp.clock(100);
select pg_temp.deb('u', 'q', 'nocap', '{}', 10);
select pg_temp.clock(200);
select pg_temp.deb('u2', 'q', 'nocap', '{}', 10);
select is(array[(pg_temp.task('u')).run_at, (pg_temp.task('u')).debounce_deadline],
          array[pg_temp.t(210), null], '1: without max_delay no cap');
select pg_temp.enq('sched', 'q', '{"debounce": {"key": "st", "delay": 5}, "schedule_timeout": 60}');
select pg_temp.clock(203);
select pg_temp.enq('sched2', 'q', '{"debounce": {"key": "st", "delay": 5}}');
select is(array[(pg_temp.task('sched')).run_at, (pg_temp.task('sched')).schedule_deadline],
          array[pg_temp.t(208), pg_temp.t(268)], '1: the schedule timeout counts from the pushed run time');

-- 2. a started holder frees its key -------------------------------------------------------
select pg_temp.clock(1000);
select pg_temp.deb('s', 'q', 'ks', '{"n": 1}', 0, 60);
-- (the older tasks of q, due, are claimed first: claim them all, then find s)
select count(*) from durable.claim('q', 'w1', 10);
select is((pg_temp.task('s')).status, 'running', '2: s started');
select isnt(pg_temp.deb('s2', 'q', 'ks', '{"n": 2}', 10, 60), pg_temp.id('s'), '2: an enqueue of the key of a started task creates one');
select is(array[(pg_temp.task('s2')).run_at, (pg_temp.task('s2')).debounce_deadline],
          array[pg_temp.t(1010), pg_temp.t(1060)], '2: ... its own run time and deadline');
select is((pg_temp.task('s')).input, '{"n": 1}'::jsonb, '2: the started task''s input is kept');
select is(pg_temp.deb('s3', 'q', 'ks', '{"n": 3}', 10, 60), pg_temp.id('s2'), '2: the new task holds the key now');
select is(pg_temp.deb('o', 'other', 'ks', '{}', 10, 60) <> pg_temp.id('s2'), true, '2: keys are per queue');
select durable.cancel(pg_temp.id('s2'));
select isnt(pg_temp.deb('s4', 'q', 'ks', '{}', 10, 60), pg_temp.id('s2'), '2: a cancelled holder frees its key');
select durable.retry(pg_temp.id('s2'));
select is(array[(pg_temp.task('s2')).status, (pg_temp.task('s2')).debounce_key],
          array['pending', null], '2: a retried task no longer holds its key');
select is(pg_temp.deb('s5', 'q', 'ks', '{}', 10, 60), pg_temp.id('s4'), '2: ... the holder is still the newer task');

-- 3. enqueue_many ----------------------------------------------------------------------------
select pg_temp.clock(2000);
create temp table b1 as
select array_agg(e.id order by e.ord) as ids from durable.enqueue_many('q', '[
    {"task_name": "job", "input": {"n": 1}, "options": {"debounce": {"key": "b", "delay": 10, "max_delay": 20}}},
    {"task_name": "job", "input": {"plain": true}},
    {"task_name": "job", "input": {"n": 2}, "options": {"debounce": {"key": "b", "delay": 30, "max_delay": 300}}},
    {"task_name": "job", "input": {"n": 9}, "options": {"debounce": {"key": "k", "delay": 1}}}
]') with ordinality as e (id, ord);
select is((select ids[1] = ids[3] and ids[1] <> ids[2] from b1), true, '3: two specs of one key get one id');
select is(pg_temp.count('q', 'b'), 1, '3: ... one task');
select is((select jsonb_build_object('input', input, 'run_at', run_at, 'deadline', debounce_deadline)
           from durable.all_tasks where task_id = (select ids[1] from b1)),
          jsonb_build_object('input', '{"n": 2}'::jsonb, 'run_at', pg_temp.t(2020), 'deadline', pg_temp.t(2020)),
          '3: the last spec''s input; its delay, capped by the first spec''s max_delay');
select is((select count(*)::integer from durable.all_tasks where input = '{"plain": true}'), 1, '3: a spec without a key is a task of its own');
select isnt((select ids[4] from b1), pg_temp.id('a'), '3: key k: a (started by the claim above) no longer holds it');
select is((select array_agg(e.id) from durable.enqueue_many('q', '[
    {"task_name": "job", "input": {"n": 10}, "options": {"debounce": {"key": "k", "delay": 5}}},
    {"task_name": "job", "input": {"n": 11}, "options": {"debounce": {"key": "k", "delay": 7}}}]') as e (id)),
          array[(select ids[4] from b1), (select ids[4] from b1)], '3: a batch updates the pending holder of its key');
select is((select jsonb_build_object('input', input, 'run_at', run_at) from durable.all_tasks where task_id = (select ids[4] from b1)),
          jsonb_build_object('input', '{"n": 11}'::jsonb, 'run_at', pg_temp.t(2007)), '3: ... with the last spec');

create temp table b2 as
select array_agg(distinct e.id) as ids from durable.enqueue_many('q', '[
    {"task_name": "job", "input": {"n": 1}, "options": {"debounce": {"key": "same", "delay": 3}}},
    {"task_name": "job", "input": {"n": 2}, "options": {"debounce": {"key": "same", "delay": 3}}}]') as e (id);
select is((select ids from b2),
          (select array_agg(task_id) from durable.all_tasks where debounce_key = 'same' and input = '{"n": 2}'),
          '3: specs with one options object: one task, the last input');

-- 4. bad input ---------------------------------------------------------------------------------
select pg_temp.rejects(format('select durable.enqueue(%L, %L, %L, %L)', 'q', 'job', '{}', v.options), 'DU001',
                       'enqueue with ' || v.what)
from (values
    ('{"debounce": "k"}', 'a debounce that is not an object'),
    ('{"debounce": {"delay": 1}}', 'a debounce without a key'),
    ('{"debounce": {"key": "k"}}', 'a debounce without a delay'),
    ('{"debounce": {"key": "", "delay": 1}}', 'an empty debounce key'),
    ('{"debounce": {"key": "k", "delay": -1}}', 'a negative debounce delay'),
    ('{"debounce": {"key": "k", "delay": 10, "max_delay": 5}}', 'a max_delay below the delay'),
    ('{"debounce": {"key": "k", "delay": 1, "wait": 2}}', 'an unknown debounce key'),
    ('{"debounce": {"key": "k", "delay": 1}, "delay": 5}', 'debounce and delay'),
    ('{"debounce": {"key": "k", "delay": 1}, "idempotency_key": "i"}', 'debounce and an idempotency key')
) as v (options, what);
select durable.create_queue('par');
select pg_temp.enq('P', 'par', '{"durable": true}');
select pg_temp.claim_as('P', 'par');
select pg_temp.rejects(format($$select durable.spawn(%L, %L, 1, 'q', 'job', '{}', '{"debounce": {"key": "k", "delay": 1}}')$$,
                              pg_temp.id('P'), pg_temp.tok('P')),
                       'DU001', 'a spawn with debounce');
select pg_temp.rejects($$select durable.enqueue('q', 'other_job', '{}', '{"debounce": {"key": "k", "delay": 1}}')$$,
                       'DU040', 'a debounce key held by a task of another name');
select pg_temp.rejects($$select * from durable.enqueue_many('q', '[
    {"task_name": "job", "options": {"debounce": {"key": "new", "delay": 1}}},
    {"task_name": "job2", "options": {"debounce": {"key": "new", "delay": 1}}}]')$$,
                       'DU040', 'two specs of one key with different names');

-- 5. rights -------------------------------------------------------------------------------------
select pg_temp.login('pr', '{durable_producer}');
select pg_temp.login('wk', '{durable_worker}');
select is(pg_temp.value_as(pg_temp.role('pr'), $$select durable.enqueue('q', 'job', '{"n": 12}', '{"debounce": {"key": "k", "delay": 1}}')$$),
          (select ids[4] from b1)::text, '5: a producer debounces');
select is(pg_temp.state_as(pg_temp.role('wk'), $$select durable.enqueue('q', 'job', '{}', '{"debounce": {"key": "k", "delay": 1}}')$$),
          '42501', '5: a worker may not enqueue');

-- 6. a race: this session enqueues key r (uncommitted); a and b enqueue it too ---------------------
commit;
select pg_temp.connect_ab();
select pg_temp.clock(3000);
select pg_temp.deb('r', 'q', 'r', '{"by": "me"}', 10, 60);
select dblink_send_query('a', $$select durable.enqueue('q', 'job', '{"by": "a"}', '{"debounce": {"key": "r", "delay": 10}}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '6: a waits for the key');
select dblink_send_query('b', $$select durable.enqueue('q', 'job', '{"by": "b"}', '{"debounce": {"key": "r", "delay": 10}}')::text$$);
select isnt(pg_temp.blockers('b', (select b from pids)), '{}'::integer[], '6: so does b');
commit;
create temp table r6 as
select (select r from dblink_get_result('a') as x (r text))::uuid as a,
       (select r from dblink_get_result('b') as x (r text))::uuid as b;
select count(*) from dblink_get_result('a') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is(pg_temp.count('q', 'r'), 1, '6: one task');
select is((select array[a, b] from r6), array[pg_temp.id('r'), pg_temp.id('r')], '6: a and b got its id');
select ok((pg_temp.task('r')).input ->> 'by' in ('a', 'b'), '6: the last enqueue''s input');

select dblink_disconnect(s) from unnest(array['a', 'b']) as s;
select pg_temp.drop_roles();

select * from finish();

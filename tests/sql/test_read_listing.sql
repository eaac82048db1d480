-- Listing (durable.list_tasks, durable.list_queues) and what get_task says of a parked task:
--   1. list_tasks: every filter (queue, status, task name, parent, created since, finished
--      since, idempotency key), alone and combined, newest first (task_id descending), the
--      columns as the task row holds them;
--   2. keyset pages (p_before = the last row's id): they never overlap and cover every
--      task, in order, whatever the page size and the filters;
--   3. permissions: a role restricted to some queues sees their tasks only, is refused
--      (42501) a queue it may not read, and a worker capability is not a reader's; a
--      prefix grant merges the pages of its queues;
--   4. bad input: DU001 before anything else, and nothing changed;
--   5. get_task: "waiting_for" of a sleeping task, a task waiting for an event (with and
--      without a timeout) and one waiting for children (the unfinished ones only);
--      "next_run_at"; "children" (oldest first, the first 1000);
--   6. list_queues: the counts per status, oldest_pending_seconds on the test clock (ready
--      tasks only), every readable queue by name, options.
select plan(86);

\ir helpers/tasks.sql
\ir helpers/security.sql

-- enqueues a task named p_task_name under p_name (pg_temp.id)
create function pg_temp.add(p_name text, p_queue text, p_task_name text, p_options jsonb default '{}')
returns uuid language sql as $$
    insert into ids (name, id) values (p_name, durable.enqueue(p_queue, p_task_name, '{}', p_options))
    returning id
$$;
-- the ids of the names given, in that order
create function pg_temp.ids(variadic p_names text[]) returns uuid[] language sql as $$
    select array(select pg_temp.id(n.name) from unnest(p_names) with ordinality as n (name, ord) order by n.ord)
$$;
-- the task ids a listing returns, in its order
create function pg_temp.listed(p_sql text) returns uuid[]
language plpgsql as $$
declare
    v uuid[];
begin
    execute format('select array(select x.task_id from (%s) as x)', p_sql) into v;
    return v;
end;
$$;
-- every page of a listing, p_limit at a time, each from the last id of the one before, as
-- p_role (null: this session's role): {"ids": all of them in order, "pages": how many,
-- "sizes": each page's size}
create function pg_temp.walk(
    p_limit integer, p_queue text default null, p_status text default null, p_parent uuid default null,
    p_role text default null
)
returns jsonb
language plpgsql as $$
declare
    v_before uuid;
    v_page uuid[];
    v_all uuid[] := '{}';
    v_sizes integer[] := '{}';
begin
    if p_role is not null then
        execute format('set role %I', p_role);
    end if;
    loop
        v_page := array(
            select l.task_id
            from durable.list_tasks(p_queue => p_queue, p_status => p_status, p_parent => p_parent,
                                    p_before => v_before, p_limit => p_limit) as l
        );
        exit when cardinality(v_page) = 0;
        v_all := v_all || v_page;
        v_sizes := v_sizes || cardinality(v_page);
        v_before := v_page[cardinality(v_page)];
    end loop;
    reset role;
    return jsonb_build_object('ids', to_jsonb(v_all), 'pages', cardinality(v_sizes), 'sizes', to_jsonb(v_sizes));
end;
$$;

-- ---------------------------------------------------------------------------------------
-- the tasks: in queue la a1 a2 a3 a4, in lb b1 b2, created in this order on the test clock
select pg_temp.clock(0);
select durable.create_queue('la', '{"max_attempts": 3}');
select durable.create_queue('lb');
select pg_temp.add('a1', 'la', 'send', '{"idempotency_key": "k1"}');
select pg_temp.clock(5);
select pg_temp.add('b1', 'lb', 'send', '{"idempotency_key": "k1", "priority": 7}');
select pg_temp.clock(10);
select pg_temp.add('a2', 'la', 'send');
select pg_temp.clock(15);
select pg_temp.add('b2', 'lb', 'build');
select pg_temp.clock(20);
select pg_temp.add('a3', 'la', 'build', '{"idempotency_key": "k3"}');
select pg_temp.clock(25);
select pg_temp.add('a4', 'la', 'build', '{"delay": 1000}');
-- a1 completed at 30, a2 failed at 40, b1 running since 45, b2 cancelled at 50
select pg_temp.clock(30);
select pg_temp.claim_as('a1', 'la');
select durable.complete(pg_temp.id('a1'), pg_temp.tok('a1'));
select pg_temp.clock(40);
select pg_temp.claim_as('a2', 'la');
select durable.fail(pg_temp.id('a2'), pg_temp.tok('a2'), '{"message": "no"}', false);
select pg_temp.clock(45);
select pg_temp.claim_as('b1', 'lb');
select pg_temp.clock(50);
select durable.cancel(pg_temp.id('b2'));

-- ---------------------------------------------------------------------------------------
-- 1. filters and order
select is(
    pg_temp.listed('select * from durable.list_tasks()'),
    pg_temp.ids('a4', 'a3', 'b2', 'a2', 'b1', 'a1'),
    'no filter: every task, newest first'
);
select is(
    pg_temp.listed('select * from durable.list_tasks()'),
    array(select t.task_id from durable.all_tasks t order by t.task_id desc),
    'newest first is task_id descending'
);
select is(
    (select jsonb_agg(to_jsonb(l) order by l.task_id desc) from durable.list_tasks(p_queue => 'lb') as l),
    (select jsonb_agg(jsonb_build_object(
                'task_id', t.task_id, 'queue', t.queue, 'task_name', t.task_name, 'status', t.status,
                'durable', t.durable, 'attempt', t.attempt, 'priority', t.priority, 'run_at', t.run_at,
                'created_at', t.created_at, 'started_at', t.started_at, 'finished_at', t.finished_at,
                'parent_id', t.parent_id, 'idempotency_key', t.idempotency_key)
            order by t.task_id desc)
     from durable.all_tasks t where t.queue = 'lb'),
    'the columns are the task row''s'
);
select is(
    (select jsonb_build_object('queue', l.queue, 'task_name', l.task_name, 'status', l.status, 'attempt', l.attempt,
                               'priority', l.priority, 'created_at', l.created_at, 'started_at', l.started_at,
                               'finished_at', l.finished_at, 'idempotency_key', l.idempotency_key)
     from durable.list_tasks(p_queue => 'lb', p_status => 'running') as l),
    jsonb_build_object('queue', 'lb', 'task_name', 'send', 'status', 'running', 'attempt', 1, 'priority', 7,
                       'created_at', pg_temp.t(5), 'started_at', pg_temp.t(45), 'finished_at', null,
                       'idempotency_key', 'k1'),
    'a row: queue, name, status, attempt, priority, times, idempotency key'
);
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'la')$$),
          pg_temp.ids('a4', 'a3', 'a2', 'a1'), 'p_queue: that queue''s tasks');
select is(pg_temp.listed($$select * from durable.list_tasks('lb')$$),
          pg_temp.ids('b2', 'b1'), 'p_queue, positional');
select is(pg_temp.listed($$select * from durable.list_tasks(p_status => 'pending')$$),
          pg_temp.ids('a4', 'a3'), 'p_status pending, across queues');
select is(pg_temp.listed($$select * from durable.list_tasks(p_status => 'running')$$),
          pg_temp.ids('b1'), 'p_status running');
select is(pg_temp.listed($$select * from durable.list_tasks(p_status => 'cancelled')$$),
          pg_temp.ids('b2'), 'p_status cancelled');
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'la', p_status => 'completed')$$),
          pg_temp.ids('a1'), 'p_queue and p_status');
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'lb', p_status => 'failed')$$),
          '{}'::uuid[], 'p_queue and p_status matching nothing');
select is(pg_temp.listed($$select * from durable.list_tasks(p_task_name => 'send')$$),
          pg_temp.ids('a2', 'b1', 'a1'), 'p_task_name');
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'la', p_task_name => 'build')$$),
          pg_temp.ids('a4', 'a3'), 'p_queue and p_task_name');
select is(pg_temp.listed(format('select * from durable.list_tasks(p_created_since => %L)', pg_temp.t(10))),
          pg_temp.ids('a4', 'a3', 'b2', 'a2'), 'p_created_since: created at or after it');
select is(pg_temp.listed(format('select * from durable.list_tasks(p_finished_since => %L)', pg_temp.t(40))),
          pg_temp.ids('b2', 'a2'), 'p_finished_since: finished at or after it');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_queue => 'la', p_finished_since => %L)$$,
                                pg_temp.t(0))),
          pg_temp.ids('a2', 'a1'), 'p_queue and p_finished_since');
select is(pg_temp.listed($$select * from durable.list_tasks(p_idempotency_key => 'k1')$$),
          pg_temp.ids('b1', 'a1'), 'p_idempotency_key: the task holding it in each queue');
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'lb', p_idempotency_key => 'k1')$$),
          pg_temp.ids('b1'), 'p_queue and p_idempotency_key');
select is(pg_temp.listed($$select * from durable.list_tasks(p_idempotency_key => 'k1', p_status => 'completed')$$),
          pg_temp.ids('a1'), 'p_idempotency_key and p_status');
select is(pg_temp.listed(format('select * from durable.list_tasks(p_before => %L)', pg_temp.id('b2'))),
          pg_temp.ids('a2', 'b1', 'a1'), 'p_before: only older tasks');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_queue => 'la', p_before => %L, p_limit => 1)$$,
                                pg_temp.id('a3'))),
          pg_temp.ids('a2'), 'p_queue, p_before and p_limit');
select is(pg_temp.listed($$select * from durable.list_tasks(p_limit => 2)$$),
          pg_temp.ids('a4', 'a3'), 'p_limit: the newest ones');
select is(pg_temp.listed(format(
              $$select * from durable.list_tasks(p_queue => 'la', p_status => 'pending', p_task_name => 'build',
                                                 p_created_since => %L, p_idempotency_key => 'k3')$$, pg_temp.t(20))),
          pg_temp.ids('a3'), 'every filter at once');
select is(pg_temp.listed($$select * from durable.list_tasks(p_queue => 'nope')$$),
          '{}'::uuid[], 'an unknown queue has no tasks');

-- created_since outside a test database: the tasks ids' bound (durable._task_id_floor)
-- serves it, on the real clock
update durable.settings set test_clock = false;
select pg_temp.clock(0);
select pg_temp.add('real1', 'lb', 'real');
select pg_temp.add('real2', 'lb', 'real');
select ok(durable._task_id_floor(clock_timestamp()) < pg_temp.id('real1'),
          'outside a test database, the bound of a time is below the ids of the tasks created since');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_task_name => 'real', p_created_since => %L)$$,
                                (select t.created_at from durable.all_tasks t where t.task_id = pg_temp.id('real1')))),
          pg_temp.ids('real2', 'real1'), 'outside a test database, p_created_since finds the tasks created since');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_queue => 'lb', p_task_name => 'real',
                                                                  p_created_since => %L)$$,
                                (select t.created_at from durable.all_tasks t where t.task_id = pg_temp.id('real2')))),
          pg_temp.ids('real2'), 'in one queue too');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_task_name => 'real', p_created_since => %L)$$,
                                clock_timestamp() + interval '1 hour')),
          '{}'::uuid[], 'and none created after an hour from now');
update durable.settings set test_clock = true;
select is(durable._task_id_floor(clock_timestamp()), null, 'in a test database there is no bound');
delete from durable.tasks where task_name = 'real';

-- the indexes by status are the archive's (finished tasks only), out of reach of the
-- worker's statements on unfinished ones (migrations/0009_listing.sql, 0020_finished_tasks.sql)
select is(
    (select array_agg(i.indrelid::regclass::text order by c.relname)
     from pg_index i join pg_class c on c.oid = i.indexrelid
     where c.relname in ('tasks_list_queue_status_idx', 'tasks_list_status_idx',
                         'finished_tasks_list_queue_status_idx', 'finished_tasks_list_status_idx')),
    array['durable.finished_tasks', 'durable.finished_tasks'],
    'the listing indexes by status hold finished tasks only'
);

-- ---------------------------------------------------------------------------------------
-- 2. pages
select is(pg_temp.walk(1),
          jsonb_build_object('ids', to_jsonb(pg_temp.ids('a4', 'a3', 'b2', 'a2', 'b1', 'a1')), 'pages', 6,
                             'sizes', '[1, 1, 1, 1, 1, 1]'::jsonb),
          'pages of 1: each task once, in order');
select is(pg_temp.walk(4) - 'pages',
          jsonb_build_object('ids', to_jsonb(pg_temp.ids('a4', 'a3', 'b2', 'a2', 'b1', 'a1')), 'sizes', '[4, 2]'::jsonb),
          'pages of 4: a full page, then the rest');
select is(pg_temp.walk(3, 'la') -> 'ids', to_jsonb(pg_temp.ids('a4', 'a3', 'a2', 'a1')),
          'pages of one queue');
select is(pg_temp.walk(1, null, 'pending') -> 'ids', to_jsonb(pg_temp.ids('a4', 'a3')),
          'pages of one status');

-- ---------------------------------------------------------------------------------------
-- 3. permissions
select pg_temp.login('rd', '{durable_reader}');
select pg_temp.login('pr', '{durable_producer}');
select pg_temp.login('wk', '{durable_reader,durable_worker}');
select pg_temp.login('rp', '{durable_reader}');
select pg_temp.login('ur', '{durable_reader}');
select durable.grant_queue(pg_temp.role('rd'), 'la', '{reader}');
select durable.grant_queue(pg_temp.role('pr'), 'lb', '{producer}');
select durable.grant_queue(pg_temp.role('wk'), 'la', '{worker}');
select durable.grant_queue(pg_temp.role('rp'), 'l*', '{reader}');

select is(pg_temp.value_as(pg_temp.role('rd'), 'select array(select l.task_id from durable.list_tasks() l)::text'),
          pg_temp.ids('a4', 'a3', 'a2', 'a1')::text, 'restricted to la: list_tasks() shows la''s tasks only');
select is(pg_temp.value_as(pg_temp.role('rd'), $$select array(select l.task_id from durable.list_tasks(p_queue => 'la') l)::text$$),
          pg_temp.ids('a4', 'a3', 'a2', 'a1')::text, 'restricted to la: list_tasks(la)');
select pg_temp.refused_as(pg_temp.role('rd'), $$select * from durable.list_tasks(p_queue => 'lb')$$, '42501',
                          'restricted to la: list_tasks(lb) is 42501');
select is(pg_temp.value_as(pg_temp.role('rd'),
                           $$select array(select l.task_id from durable.list_tasks(p_task_name => 'send') l)::text$$),
          pg_temp.ids('a2', 'a1')::text, 'restricted to la: a filter across queues finds la''s tasks only');
select is(pg_temp.value_as(pg_temp.role('rd'),
                           $$select array(select l.task_id from durable.list_tasks(p_idempotency_key => 'k1') l)::text$$),
          pg_temp.ids('a1')::text, 'restricted to la: an idempotency key in la only');
select is(pg_temp.value_as(pg_temp.role('rd'),
                           $$select array(select l.task_id from durable.list_tasks(p_status => 'running') l)::text$$),
          '{}', 'restricted to la: not the running task of lb');
select is(pg_temp.walk(1, p_role => pg_temp.role('rd')) -> 'ids', to_jsonb(pg_temp.ids('a4', 'a3', 'a2', 'a1')),
          'restricted to la: its pages');
select is(pg_temp.value_as(pg_temp.role('pr'), 'select array(select l.task_id from durable.list_tasks() l)::text'),
          pg_temp.ids('b2', 'b1')::text, 'a producer restricted to lb reads lb''s tasks');
select is(pg_temp.value_as(pg_temp.role('wk'), 'select array(select l.task_id from durable.list_tasks() l)::text'),
          '{}', 'a worker capability on la is no right to read it: nothing listed');
select is(pg_temp.state_as(pg_temp.role('wk'), $$select * from durable.list_tasks(p_queue => 'la')$$),
          '42501', 'and list_tasks(la) is 42501');
select is(pg_temp.value_as(pg_temp.role('rp'), 'select array(select l.task_id from durable.list_tasks(p_limit => 3) l)::text'),
          pg_temp.ids('a4', 'a3', 'b2')::text, 'restricted to l*: the newest of both queues, merged');
select is(pg_temp.walk(2, p_role => pg_temp.role('rp')),
          jsonb_build_object('ids', to_jsonb(pg_temp.ids('a4', 'a3', 'b2', 'a2', 'b1', 'a1')), 'pages', 3,
                             'sizes', '[2, 2, 2]'::jsonb),
          'restricted to l*: pages across both queues');
select is(pg_temp.value_as(pg_temp.role('ur'), 'select array(select l.task_id from durable.list_tasks() l)::text'),
          pg_temp.ids('a4', 'a3', 'b2', 'a2', 'b1', 'a1')::text, 'an unrestricted reader lists every task');
select is(pg_temp.value_as(pg_temp.role('rd'), 'select array(select l.queue from durable.list_queues() l)::text'),
          '{la}', 'restricted to la: list_queues() shows la only');
select is(pg_temp.value_as(pg_temp.role('wk'), 'select count(*) from durable.list_queues()'),
          '0', 'a worker capability only: list_queues() shows nothing');
select is(pg_temp.value_as(pg_temp.role('ur'), 'select array(select l.queue from durable.list_queues() l)::text'),
          '{la,lb}', 'an unrestricted reader: every queue');

-- ---------------------------------------------------------------------------------------
-- 4. bad input: DU001, nothing changed
select pg_temp.rejects('select * from durable.list_tasks(p_limit => 0)', 'DU001', 'p_limit 0');
select pg_temp.rejects('select * from durable.list_tasks(p_limit => 1001)', 'DU001', 'p_limit 1001');
select pg_temp.rejects('select * from durable.list_tasks(p_limit => null)', 'DU001', 'p_limit null');
select pg_temp.rejects($$select * from durable.list_tasks(p_status => 'done')$$, 'DU001', 'an unknown status');
select pg_temp.rejects($$select * from durable.list_tasks(p_queue => 'la', p_status => 'PENDING')$$, 'DU001',
                       'a status in capitals');
select is(pg_temp.state_as(pg_temp.role('rd'), $$select * from durable.list_tasks(p_queue => 'lb', p_limit => 0)$$),
          'DU001', 'bad input is DU001 before the queue permission is checked');
select is((select count(*)::integer from durable.list_tasks(p_limit => 1000)), 6, 'p_limit 1000 is allowed');

-- ---------------------------------------------------------------------------------------
-- 5. get_task: waiting_for, next_run_at, children
select pg_temp.clock(100);
select durable.create_queue(q) from unnest(array['ls', 'le', 'lp', 'lk', 'lm']) as q;
-- a sleeping task
select pg_temp.add('sleeper', 'ls', 'wf', '{"durable": true}');
select pg_temp.claim_as('sleeper', 'ls');
select durable.sleep(pg_temp.id('sleeper'), pg_temp.tok('sleeper'), 1, 'nap', 60);
select is(
    (select jsonb_build_object('status', j -> 'status', 'waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at',
                               'run_at', j -> 'run_at')
     from durable.get_task(pg_temp.id('sleeper')) as j),
    jsonb_build_object('status', 'sleeping', 'waiting_for', jsonb_build_object('kind', 'sleep', 'until', pg_temp.t(160)),
                       'next_run_at', pg_temp.t(160), 'run_at', pg_temp.t(100)),
    'a sleeping task: waiting_for {kind sleep, until}, next_run_at its wake time (run_at is still its enqueue time)'
);
-- waiting for an event, with a timeout and without
select pg_temp.add('waiter', 'le', 'wf', '{"durable": true}');
select pg_temp.add('forever', 'le', 'wf', '{"durable": true}');
select pg_temp.claim_as('waiter', 'le');
select pg_temp.claim_as('forever', 'le');
select durable.wait_event(pg_temp.id('waiter'), pg_temp.tok('waiter'), 1, 'go', 30);
select durable.wait_event(pg_temp.id('forever'), pg_temp.tok('forever'), 1, 'later');
select is(
    (select jsonb_build_object('waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
     from durable.get_task(pg_temp.id('waiter')) as j),
    jsonb_build_object('waiting_for', jsonb_build_object('kind', 'event', 'key', 'go', 'timeout_at', pg_temp.t(130)),
                       'next_run_at', pg_temp.t(130)),
    'waiting for an event with a timeout: waiting_for {kind event, key, timeout_at}, next_run_at the timeout'
);
select is(
    (select jsonb_build_object('waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
     from durable.get_task(pg_temp.id('forever')) as j),
    jsonb_build_object('waiting_for', jsonb_build_object('kind', 'event', 'key', 'later', 'timeout_at', null),
                       'next_run_at', null),
    'waiting for an event without a timeout: timeout_at and next_run_at null'
);
select durable.emit_event('le', 'go', '{"ok": true}');
select is(
    (select jsonb_build_object('status', j -> 'status', 'waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
     from durable.get_task(pg_temp.id('waiter')) as j),
    jsonb_build_object('status', 'pending', 'waiting_for', null, 'next_run_at', pg_temp.t(100)),
    'woken by the emit: pending, waiting_for null, next_run_at its new run_at'
);
-- waiting for children
select pg_temp.add('parent', 'lp', 'wf', '{"durable": true}');
select pg_temp.claim_as('parent', 'lp');
insert into ids (name, id)
select 'c' || n, (durable.spawn(pg_temp.id('parent'), pg_temp.tok('parent'), n, 'lk', 'kid' || n) #>> '{result,task_id}')::uuid
from generate_series(1, 3) as n order by n;
select pg_temp.claim_as('c1', 'lk');
select durable.complete(pg_temp.id('c1'), pg_temp.tok('c1'));
select durable.wait_children(pg_temp.id('parent'), pg_temp.tok('parent'), 4, pg_temp.ids('c3', 'c1', 'c2'));
select is(
    (select jsonb_build_object('status', j -> 'status', 'waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
     from durable.get_task(pg_temp.id('parent')) as j),
    jsonb_build_object('status', 'waiting',
                       'waiting_for', jsonb_build_object('kind', 'children', 'children', to_jsonb(pg_temp.ids('c3', 'c2')),
                                                         'timeout_at', null),
                       'next_run_at', null),
    'waiting for children: the unfinished ones, in the order the wait named them; no timeout, no next_run_at'
);
select is(
    durable.get_task(pg_temp.id('parent')) -> 'children',
    jsonb_build_array(
        jsonb_build_object('task_id', pg_temp.id('c1'), 'queue', 'lk', 'task_name', 'kid1', 'status', 'completed'),
        jsonb_build_object('task_id', pg_temp.id('c2'), 'queue', 'lk', 'task_name', 'kid2', 'status', 'pending'),
        jsonb_build_object('task_id', pg_temp.id('c3'), 'queue', 'lk', 'task_name', 'kid3', 'status', 'pending')),
    'children: {task_id, queue, task_name, status}, oldest first'
);
select is(
    (select jsonb_build_object('parent_id', j -> 'parent_id', 'children', j -> 'children')
     from durable.get_task(pg_temp.id('c2')) as j),
    jsonb_build_object('parent_id', pg_temp.id('parent'), 'children', '[]'::jsonb),
    'a child names its parent, and has no children'
);
select is(pg_temp.listed(format('select * from durable.list_tasks(p_parent => %L)', pg_temp.id('parent'))),
          pg_temp.ids('c3', 'c2', 'c1'), 'list_tasks(p_parent): the children, newest first');
select is(pg_temp.listed(format($$select * from durable.list_tasks(p_parent => %L, p_status => 'pending')$$,
                                pg_temp.id('parent'))),
          pg_temp.ids('c3', 'c2'), 'list_tasks(p_parent, p_status)');
select pg_temp.claim_as('c2', 'lk');
select durable.complete(pg_temp.id('c2'), pg_temp.tok('c2'));
select is(durable.get_task(pg_temp.id('parent')) #> '{waiting_for,children}', to_jsonb(pg_temp.ids('c3')),
          'a child that ends leaves the list of those waited for');
select pg_temp.clock(110);
select durable.cancel(pg_temp.id('c3'));
select is(
    (select jsonb_build_object('status', j -> 'status', 'waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
     from durable.get_task(pg_temp.id('parent')) as j),
    jsonb_build_object('status', 'pending', 'waiting_for', null, 'next_run_at', pg_temp.t(110)),
    'the last child ended: the parent is pending, next_run_at when it was woken'
);
-- neither sleeping nor waiting
select is(
    (select jsonb_agg(jsonb_build_object('waiting_for', j -> 'waiting_for', 'next_run_at', j -> 'next_run_at')
                      order by n.ord)
     from unnest(array['a4', 'a3', 'b1', 'a1', 'a2', 'b2']) with ordinality as n (name, ord),
          durable.get_task(pg_temp.id(n.name)) as j),
    jsonb_build_array(
        jsonb_build_object('waiting_for', null, 'next_run_at', pg_temp.t(1025)),
        jsonb_build_object('waiting_for', null, 'next_run_at', pg_temp.t(20)),
        jsonb_build_object('waiting_for', null, 'next_run_at', null),
        jsonb_build_object('waiting_for', null, 'next_run_at', null),
        jsonb_build_object('waiting_for', null, 'next_run_at', null),
        jsonb_build_object('waiting_for', null, 'next_run_at', null)),
    'pending (delayed, ready): next_run_at its run_at; running, completed, failed, cancelled: null; waiting_for null'
);
select is(
    (select jsonb_build_object('children', j -> 'children', 'parent_id', j -> 'parent_id')
     from durable.get_task(pg_temp.id('a1')) as j),
    '{"children": [], "parent_id": null}'::jsonb,
    'a task without children: children []'
);
-- 1001 children: the first 1000
select pg_temp.add('many', 'lm', 'wf', '{"durable": true}');
insert into durable.tasks (task_id, queue, task_name, input, status, run_at, max_attempts, max_lost_leases, backoff,
                           created_at, parent_id)
select durable.uuidv7(), 'lm', 'kid', '{}', 'pending', pg_temp.t(100), 1, 1, '{"kind": "none"}', pg_temp.t(100),
       pg_temp.id('many')
from generate_series(1, 1001);
select is(
    (select array(select (c ->> 'task_id')::uuid from jsonb_array_elements(durable.get_task(pg_temp.id('many')) -> 'children') as c)),
    array(select t.task_id from durable.all_tasks t where t.parent_id = pg_temp.id('many') order by t.task_id limit 1000),
    'get_task lists the first 1000 children, oldest first'
);
select is(pg_temp.walk(1000, p_parent => pg_temp.id('many')) -> 'sizes', '[1000, 1]'::jsonb,
          'list_tasks(p_parent) pages through all 1001');
select is(pg_temp.walk(1000, p_parent => pg_temp.id('many')) -> 'ids',
          to_jsonb(array(select t.task_id from durable.all_tasks t where t.parent_id = pg_temp.id('many')
                         order by t.task_id desc)),
          'each child once, newest first');

-- ---------------------------------------------------------------------------------------
-- 6. list_queues
select durable.create_queue('lz', '{"max_attempts": 9}');
select pg_temp.clock(200);
create function pg_temp.queue_row(p_queue text) returns jsonb language sql as $$
    select to_jsonb(l) from durable.list_queues() as l where l.queue = p_queue
$$;
select is(
    pg_temp.queue_row('la'),
    jsonb_build_object('queue', 'la', 'options', (select q.options from durable.queues q where q.queue = 'la'),
                       'pending', 2, 'running', 0, 'sleeping', 0, 'waiting', 0, 'completed', 1, 'failed', 1,
                       'cancelled', 0, 'oldest_pending_seconds', 180),
    'la: its options, counts by status, and its oldest ready task (a3, due at 20) has waited 180 s; a4 is not due'
);
select is(
    pg_temp.queue_row('lb') - 'options',
    '{"queue": "lb", "pending": 0, "running": 1, "sleeping": 0, "waiting": 0, "completed": 0, "failed": 0,
      "cancelled": 1, "oldest_pending_seconds": null}'::jsonb,
    'lb: no pending task, oldest_pending_seconds null'
);
select is(
    (select jsonb_build_object('ls', pg_temp.queue_row('ls') -> 'sleeping', 'le', pg_temp.queue_row('le') -> 'waiting',
                               'le_pending', pg_temp.queue_row('le') -> 'pending', 'lk', pg_temp.queue_row('lk') - 'options')),
    jsonb_build_object('ls', 1, 'le', 1, 'le_pending', 1,
                       'lk', '{"queue": "lk", "pending": 0, "running": 0, "sleeping": 0, "waiting": 0,
                               "completed": 2, "failed": 0, "cancelled": 1, "oldest_pending_seconds": null}'::jsonb),
    'sleeping and waiting tasks are counted'
);
select is(
    pg_temp.queue_row('lz'),
    jsonb_build_object('queue', 'lz', 'options', (select q.options from durable.queues q where q.queue = 'lz'),
                       'pending', 0, 'running', 0, 'sleeping', 0, 'waiting', 0, 'completed', 0, 'failed', 0,
                       'cancelled', 0, 'oldest_pending_seconds', null),
    'a queue without tasks: zero counts'
);
select is(
    array(select l.queue from durable.list_queues() as l),
    array(select q.queue from durable.queues q order by q.queue),
    'every queue, by name'
);
select pg_temp.clock(1100);
select is(pg_temp.queue_row('la') -> 'oldest_pending_seconds', '1080'::jsonb,
          'the test clock moves oldest_pending_seconds (a3 is still the oldest ready one)');
select is(pg_temp.queue_row('lm') -> 'oldest_pending_seconds', '1000'::jsonb,
          'lm: its oldest ready task was due at 100');

select pg_temp.drop_roles();

select * from finish();

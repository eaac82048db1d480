-- durable.claim with a list of task names (what a worker passes): the first ready tasks
-- of each name, merged in claim order (priority desc, fair_tag, run_at, enqueue order),
-- returned in that order; names listed twice count once; tasks whose run_at has not come
-- or whose schedule deadline passed are not taken; rows another claim holds are skipped,
-- and the rows a claim looked at but did not take are claimable once it commits (session
-- a, dblink, holds a claim open).
select plan(15);

\ir helpers/tasks.sql
\ir helpers/sessions.sql

-- enqueues a task named after the first letter of p_name (a1: task name a)
create function pg_temp.enq_named(p_name text, p_queue text, p_options jsonb default '{}') returns uuid
language sql as $$
    insert into ids (name, id) values (p_name, durable.enqueue(p_queue, left(p_name, 1), '{}', p_options))
    returning id
$$;

select pg_temp.clock(0);
select durable.create_queue('n');
select durable.create_queue('other');

-- a backlog of another name ahead of everything, and tasks of the names a and b
select count(*) from durable.enqueue_many('n',
    (select jsonb_agg(jsonb_build_object('task_name', 'backlog', 'options', jsonb_build_object('priority', 50)))
     from generate_series(1, 30)));
select pg_temp.enq_named('a1', 'n');
select pg_temp.enq_named('b1', 'n', '{"priority": 5}');
select pg_temp.enq_named('a2', 'n', jsonb_build_object('run_at', pg_temp.t(-10)));
select pg_temp.enq_named('b2', 'n');
select pg_temp.enq_named('a_late', 'n', '{"priority": 100, "delay": 60}');
select pg_temp.enq_named('b_deadline', 'n', jsonb_build_object('priority', 90, 'run_at', pg_temp.t(-20), 'schedule_timeout', 5));
select pg_temp.enq_named('a3', 'n');
select pg_temp.enq_named('a_other_queue', 'other');

select is(
    array(select task_id from durable.claim('n', 'w', 3, 3600, array['a', 'b'])),
    array[pg_temp.id('b1'), pg_temp.id('a2'), pg_temp.id('a1')],
    'the best tasks of the listed names, merged in claim order and returned in it'
);
select is(
    (select count(*)::int from durable.all_tasks where queue = 'n' and task_name = 'backlog' and status = 'pending'), 30,
    'the backlog of another name ahead of them is left alone'
);
select is((pg_temp.task('b_deadline')).status, 'cancelled', 'a task past its schedule deadline is not claimed (the reclaim cancels it)');
select is(
    array(select task_id from durable.claim('n', 'w', 10, 3600, array['b', 'a', 'b', 'a'])),
    array[pg_temp.id('b2'), pg_temp.id('a3')],
    'names listed twice count once; a task whose run_at has not come is not taken, whatever its priority'
);
select is((pg_temp.task('a_other_queue')).status, 'pending', 'tasks of the names in other queues are not taken');
select is(array(select task_id from durable.claim('n', 'w', 10, 3600, array[]::text[])), array[]::uuid[],
          'an empty list of names claims nothing');
select is(array(select task_id from durable.claim('n', 'w', 10, 3600, array[null, 'zzz'])), array[]::uuid[],
          'a null name or a name without tasks claims nothing');
select pg_temp.clock(60);
select is(array(select task_id from durable.claim('n', 'w', 10, 3600, array['a'])), array[pg_temp.id('a_late')],
          'once its run_at came, the delayed task is claimed');
select is(
    (select count(*)::int from durable.all_tasks where queue = 'n' and task_name <> 'backlog' and status = 'pending'), 0,
    'every task of the names was claimed once'
);

-- the unfiltered claim returns its tasks in claim order too
select durable.create_queue('order');
select pg_temp.enq('o1', 'order');
select pg_temp.enq('o2', 'order', '{"priority": 3}');
select pg_temp.enq('o3', 'order', '{"priority": 7}');
select is(
    array(select task_id from durable.claim('order', 'w', 3)),
    array[pg_temp.id('o3'), pg_temp.id('o2'), pg_temp.id('o1')],
    'an unfiltered claim returns its tasks in claim order'
);

-- concurrency: session a holds a claim of one task of the names x and y open; it looked
-- at the first task of each name and took the better one
select durable.create_queue('race');
select pg_temp.enq_named('x1', 'race', '{"priority": 2}');
select pg_temp.enq_named('y1', 'race', '{"priority": 1}');
select pg_temp.enq_named('x2', 'race');
select pg_temp.enq_named('y2', 'race');
commit;
select pg_temp.connect_ab();
select dblink_exec('a', 'begin');
select is(
    (select t from dblink('a', $$select task_id from durable.claim('race', 'wa', 1, 30, array['x', 'y'])$$) as d (t uuid)),
    pg_temp.id('x1'),
    'session a claims the best task of its names'
);
select is(
    array(select task_id from durable.claim('race', 'wb', 1, 30, array['x', 'y'])),
    array[pg_temp.id('x2')],
    'a concurrent claim skips the rows session a holds, without waiting'
);
select dblink_exec('a', 'commit');
select is(
    array(select task_id from durable.claim('race', 'wb', 5, 30, array['x', 'y'])),
    array[pg_temp.id('y1'), pg_temp.id('y2')],
    'once a committed, the task it looked at without taking it is claimable, in its place'
);
select is((pg_temp.task('x1')).worker, 'wa', 'session a''s claim stands');
select is(
    (select count(*)::int from durable.all_tasks where queue = 'race' and status = 'running'), 4,
    'each task of the race was claimed once'
);
select dblink_disconnect('a');
select dblink_disconnect('b');

select * from finish();

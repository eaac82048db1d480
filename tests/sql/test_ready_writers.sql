-- Writers of durable.ready whose queue or task name has no floor yet (plpgsql/ready.sql):
--   1. a writer in REPEATABLE READ whose snapshot predates the first floor of a task name
--      (made by another session's enqueue since) still enqueues: no serialization failure
--      from a floor it cannot see;
--   2. two writers of a new task name do not wait for each other (dblink session b
--      enqueues while a holds the first task of that name open);
--   and their tasks are claimable, no row below its floors.
select plan(8);

\ir helpers/tasks.sql
\ir helpers/sessions.sql
\ir helpers/ready.sql

select pg_temp.clock(0);
select durable.create_queue('w');
select pg_temp.enq('first', 'w');
select pg_temp.raise('w');
commit;
select pg_temp.connect_ab();

-- 1. a's snapshot predates b's first task of the name 'fresh'
select dblink_exec('a', 'begin isolation level repeatable read');
select count(*) from dblink('a', 'select count(*) from durable.ready_floors') as x (n bigint);
select count(*) from dblink('b', $$select durable.enqueue('w', 'fresh', '{}')$$) as x (id uuid);
select is((select count(*) from durable.ready_floors f where f.queue = 'w' and f.task_name = 'fresh'), 1::bigint,
          '1: (b made the first floor of the name)');
select lives_ok($$select * from dblink('a', 'select durable.enqueue(''w'', ''fresh'', ''{}'')') as x (id uuid)$$,
                '1: the REPEATABLE READ enqueue of the same name goes through');
select dblink_exec('a', 'commit');
select is((select count(*) from durable.ready r where r.task_name = 'fresh'), 2::bigint, '1: both tasks are ready');

-- 2. a holds the first task of the name 'new' open; b enqueues one too
select dblink_exec('a', 'begin');
select count(*) from dblink('a', $$select durable.enqueue('w', 'new', '{}')$$) as x (id uuid);
select dblink_send_query('b', $$select durable.enqueue('w', 'new', '{}')$$);
create temp table waited as select pg_temp.waits_for('b', (select b from pids), (select a from pids)) as w;
select dblink_exec('a', 'commit');
select count(*) from dblink_get_result('b') as x (id uuid);
select is((select w from waited), false, '2: the second writer of a new name does not wait for the first');
select is((select count(*) from durable.claim('w', 'w1', 10, 30, array['new'])), 2::bigint,
          '2: both tasks of the name are claimed');
select is((select count(*) from durable.claim('w', 'w1', 10)), 3::bigint, 'the others too');
select is(pg_temp.below_floor(), 0::bigint, 'no row lies below its floors');
select is(pg_temp.ready_mismatch(), 0::bigint, 'durable.ready holds the pending tasks');
select dblink_disconnect(s) from unnest(array['a', 'b']) as s;

select * from finish();

-- History partitions (plpgsql/retention.sql): durable.attempts and durable.events are
-- partitioned by day of task creation; the claim's maintenance makes the days ahead and
-- drops a past day once no task of it is left. The queue's retention deletes task rows and
-- leaves their history to the day's DROP; a day with an unfinished task is never dropped.
select plan(24);

\ir helpers/tasks.sql

\ir helpers/partitions.sql

select pg_temp.clock(0);
select durable.create_queue('r', '{"retention": 60}');

-- a: a durable task that ends with one event; b: one that is still running
select pg_temp.enq('a', 'r', '{"durable": true}');
select pg_temp.claim_as('a', 'r', 'w1', 60);
select durable.checkpoint(pg_temp.id('a'), pg_temp.tok('a'), 1, 'step', 'one', '{"v": 1}');
select durable.complete(pg_temp.id('a'), pg_temp.tok('a'), '{}');
select pg_temp.enq('b', 'r', '{"durable": true}');
select pg_temp.claim_as('b', 'r', 'w1', 86400);
select durable.checkpoint(pg_temp.id('b'), pg_temp.tok('b'), 1, 'step', 'only', '{"v": 2}');

-- 1. the days ahead, made by the migration (else by the first claim)
select is((select count(*)::int from durable.history_partitions), 8, 'today and 7 days ahead are made');
select ok(pg_temp.day_of('durable.attempts') = any(pg_temp.partitions('durable.attempts'))
          and pg_temp.day_of('durable.attempts', 7) = any(pg_temp.partitions('durable.attempts')),
          'attempts has a partition for today and for 7 days ahead');
select is(cardinality(pg_temp.partitions('durable.events')), 10, 'events: the 8 days, legacy and default');
select is(
    (select count(*)::int from pg_class c
     where c.relnamespace = 'durable'::regnamespace and (c.relname like 'attempts\_%' or c.relname like 'events\_%')
       and (pg_get_userbyid(c.relowner) <> 'durable_owner'
            or exists (select 1 from aclexplode(c.relacl) a where a.grantee <> c.relowner))),
    0, 'every partition and its index belongs to the owner and is granted to nobody');
select is((select tableoid::regclass::text from durable.attempts where task_id = pg_temp.id('a')),
          pg_temp.day_of('durable.attempts'), 'a task''s attempts are in the partition of its creation day');
select is((select tableoid::regclass::text from durable.events where task_id = pg_temp.id('b')),
          pg_temp.day_of('durable.events'), 'and so are its events');

-- 2. a partition alone keeps the rules of the event log
select throws_ok(format('delete from %s where task_id = %L', pg_temp.day_of('durable.events'), pg_temp.id('b')),
                 'DU013', null, 'DELETE on a partition of the events of a task that exists: DU013');
select throws_ok(format('truncate %s', pg_temp.day_of('durable.events')),
                 'DU013', null, 'TRUNCATE of a partition of events: DU013');
select throws_ok(format('update %s set name = %L', pg_temp.day_of('durable.events'), 'renamed'),
                 'DU013', null, 'UPDATE on a partition of events: DU013');

-- 3. the queue's retention deletes the finished task; its history waits for the day's DROP
select pg_temp.clock(100);
select pg_temp.claim_as('none', 'r');
select is((select count(*)::int from durable.all_tasks where task_id = pg_temp.id('a')), 0,
          'the claim''s retention deleted the task that ended 100 s ago');
select is((select count(*)::int from durable.events where task_id = pg_temp.id('a')), 1,
          'its event stays in the day partition');
select is((select count(*)::int from durable.attempts where task_id = pg_temp.id('a')), 1,
          'and its attempt');
select is((select count(*)::int from durable.history(pg_temp.id('a'), true)), 0,
          'no verb reaches it: the purged task''s history reads as none');

-- 4. the maintenance ten days later: the empty past days go, today stays (b runs)
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(pg_temp.day_of('durable.events') = any(pg_temp.partitions('durable.events')),
          'the day of a running task is kept');
select ok(not pg_temp.day_of('durable.events', 1) = any(pg_temp.partitions('durable.events'))
          and not pg_temp.day_of('durable.attempts', 5) = any(pg_temp.partitions('durable.attempts')),
          'the past days without a task are dropped');
select ok(pg_temp.day_of('durable.events', 17) = any(pg_temp.partitions('durable.events')),
          'and the days ahead of that time are made');
select is((select count(*)::int from durable.events where task_id = pg_temp.id('b')), 1,
          'the running task''s history is whole');

-- 5. a session that reads the history holds the DROP back; the maintenance does not wait
select durable.complete(pg_temp.id('b'), pg_temp.tok('b'), '{}');
select pg_temp.clock(400);
select pg_temp.claim_as('none', 'r');
select is((select count(*)::int from durable.all_tasks), 0, 'retention deleted b as well: the day has no task left');
commit;
select dblink_connect('a', current_setting('durable_test.conninfo'));
select dblink_exec('a', 'begin');
select * from dblink('a', 'select count(*) from durable.events') as r (n bigint);
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(pg_temp.day_of('durable.events') = any(pg_temp.partitions('durable.events')),
          'while another session reads the events, the day stays (the lock was not given in 100 ms)');
select dblink_exec('a', 'rollback');
select dblink_disconnect('a');

-- 6. then it goes, with the history of a and b
select pg_temp.maintain(clock_timestamp() + interval '10 days');
select ok(not pg_temp.day_of('durable.events') = any(pg_temp.partitions('durable.events'))
          and not pg_temp.day_of('durable.attempts') = any(pg_temp.partitions('durable.attempts')),
          'once free, the day without tasks is dropped (attempts and events)');
select is((select count(*)::int from durable.events), 0, 'a''s and b''s events went with it');
select is((select count(*)::int from durable.attempts), 0, 'and their attempts');
select is((select count(*)::int from durable.history_partitions where day = (clock_timestamp() at time zone 'UTC')::date),
          0, 'history_partitions no longer lists the day');

-- 7. a task created on a dropped day (a clock set back) still has a history: in the default
select pg_temp.enq('c', 'r');
select pg_temp.claim_as('c', 'r');
select durable.complete(pg_temp.id('c'), pg_temp.tok('c'), '{}');
select is((select tableoid::regclass::text from durable.attempts where task_id = pg_temp.id('c')),
          'durable.attempts_default', 'an id outside every day lands in the default partition');

select * from finish();

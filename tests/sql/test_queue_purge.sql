-- durable.purge: deletes only finished tasks (completed, failed, cancelled) of its queue
-- that ended before the cutoff, oldest first, with their attempt history; skips rows
-- another session holds.
select plan(21);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('p', '{"backoff": {"kind": "none"}}');
select durable.create_queue('other', '{"backoff": {"kind": "none"}}');

-- finished at t0: one completed, one failed, one cancelled while running; in both queues
create function pg_temp.finish_three(p_queue text, p_prefix text) returns void language plpgsql as $$
begin
    perform pg_temp.enq(p_prefix || '_done', p_queue);
    perform pg_temp.claim_as(p_prefix || '_done', p_queue);
    perform durable.complete(pg_temp.id(p_prefix || '_done'), pg_temp.tok(p_prefix || '_done'), '{"x": 1}');
    perform pg_temp.enq(p_prefix || '_failed', p_queue, '{"max_attempts": 1}');
    perform pg_temp.claim_as(p_prefix || '_failed', p_queue);
    perform durable.fail(pg_temp.id(p_prefix || '_failed'), pg_temp.tok(p_prefix || '_failed'), '{"message": "x"}');
    perform pg_temp.enq(p_prefix || '_cancelled', p_queue);
    perform pg_temp.claim_as(p_prefix || '_cancelled', p_queue);
    perform durable.cancel(pg_temp.id(p_prefix || '_cancelled'));
end;
$$;
select pg_temp.finish_three('p', 'old');
select pg_temp.finish_three('other', 'oth');
-- unfinished, created long ago
select pg_temp.enq('pending', 'p', '{"delay": 100000}');
select pg_temp.enq('running', 'p');
select pg_temp.claim_as('running', 'p', 'w', 86400);
select pg_temp.enq('retrying', 'p', '{"max_attempts": 5, "backoff": {"kind": "fixed", "delay": 100000}}');
select pg_temp.claim_as('retrying', 'p', 'w', 86400);
select durable.fail(pg_temp.id('retrying'), pg_temp.tok('retrying'), '{"message": "again"}');
-- finished later
select pg_temp.clock(150);
select pg_temp.enq('edge', 'p');
select pg_temp.claim_as('edge', 'p');
select durable.complete(pg_temp.id('edge'), pg_temp.tok('edge'));
select pg_temp.clock(180);
select pg_temp.enq('recent', 'p');
select pg_temp.claim_as('recent', 'p');
select durable.complete(pg_temp.id('recent'), pg_temp.tok('recent'));

select is(
    (select count(*)::int from durable.attempts where task_id in (select id from ids where name like 'old\_%')), 3,
    'the old finished tasks have attempt history'
);

select pg_temp.clock(200);
select pg_temp.save('before');
select is(durable.purge('p'), 0, 'without retention and without an age, purge deletes nothing');
select is(pg_temp.everything(), pg_temp.saved('before'), 'nothing at all');

select is(durable.purge('p', 50), 3, 'purge deletes the tasks of the queue that finished before the cutoff');
select is(
    (select array_agg(name order by name) from ids where id not in (select task_id from durable.all_tasks)),
    array['old_cancelled', 'old_done', 'old_failed'],
    'the completed, failed and cancelled tasks that ended at t0'
);
select is(
    (select count(*)::int from durable.attempts where task_id in (select id from ids where name like 'old\_%')), 0,
    'with their attempt history'
);
select is(
    (select count(*)::int from durable.attempts a where not exists (select 1 from durable.all_tasks t where t.task_id = a.task_id)),
    0, 'no attempt row is left without its task'
);
select is(
    (select array_agg(status order by status) from durable.all_tasks where queue = 'p'),
    array['completed', 'completed', 'pending', 'pending', 'running'],
    'unfinished tasks stay however old; so do tasks that finished at or after the cutoff'
);
select is(
    (select count(*)::int from durable.all_tasks where queue = 'other'), 3,
    'the finished tasks of another queue stay'
);
select is(
    (select count(*)::int from durable.attempts a join durable.all_tasks t using (task_id) where t.queue in ('p', 'other')),
    (select count(*)::int from durable.attempts), 'the other tasks keep their attempts'
);
select is(durable.purge('p', 50), 0, 'purging again finds nothing');
select is(durable.purge('p', 49.999999), 1, 'the cutoff is strict: the task that ended exactly at it goes a microsecond later');
select is((select count(*)::int from durable.all_tasks where task_id = pg_temp.id('edge')), 0, 'that was the task ended at t150');

-- the queue's retention; limit, oldest first
select durable.create_queue('other', '{"retention": 150}');
select pg_temp.clock(300);
select is(durable.purge('other', null, 2), 2, 'purge with a limit deletes at most that many');
select is(
    (select array_agg(name order by name) from ids where name like 'oth\_%' and id not in (select task_id from durable.all_tasks)),
    array['oth_done', 'oth_failed'],
    'the oldest first (the queue''s retention of 150 s applies when no age is given)'
);
select pg_temp.rejects($$select durable.purge('p', -1)$$, 'DU001', 'purge with a negative age');
select pg_temp.rejects($$select durable.purge('nope', 10)$$, 'DU002', 'purge of an unknown queue');

-- rows another session holds are skipped, not waited for
select durable.create_queue('locked');
select pg_temp.enq('l1', 'locked');
select pg_temp.claim_as('l1', 'locked');
select durable.complete(pg_temp.id('l1'), pg_temp.tok('l1'));
select pg_temp.enq('l2', 'locked');
select pg_temp.claim_as('l2', 'locked');
select durable.complete(pg_temp.id('l2'), pg_temp.tok('l2'));
commit;
select dblink_connect('a', current_setting('durable_test.conninfo'));
select dblink_exec('a', 'begin');
select * from dblink('a', format('select task_id from durable.finished_tasks where task_id = %L for update', pg_temp.id('l1')))
    as r (task_id uuid);
select pg_temp.clock(1000);
select is(durable.purge('locked', 0), 1, 'purge skips a finished task another session has locked');
select is((select array_agg(task_id) from durable.all_tasks where queue = 'locked'), array[pg_temp.id('l1')],
          'the locked one is still there');
select dblink_exec('a', 'rollback');
select dblink_disconnect('a');

select * from finish();

-- Races around suspension, forced with two sessions (dblink 'a' and 'b') of which one
-- holds its transaction open while the other blocks on a row it locked; the test checks
-- that the second one is blocked by the first (pg_blocking_pids), commits the first,
-- then collects the second's result. No sleeps.
--   1. emit vs wait on one key, both orders, new key or existing row: no lost wakeup;
--   2. children ending at once (two children; a child vs its parent's wait_children,
--      both orders): the parent is woken exactly once with every outcome;
--   3. an emit racing the timeout sweep, both orders: one outcome only;
--   4. a cancel cascading to a child that ends meanwhile: no deadlock.
select plan(49);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue(q) from unnest(array['q1', 'q2', 'q4', 'parents', 'kids', 'q3a', 'q3b']) as q;

\ir helpers/sessions.sql

commit;
select pg_temp.connect_ab();

-- ---------------------------------------------------------------------------------
-- 1a. wait first: A waits for key race-1 in an open transaction; B's emit blocks on
-- the key's row; A commits; B must wake the task.
create temp table w1 as select durable.enqueue('q1', 'wf', '{}', '{"durable": true}') as id;
create temp table c1 as select * from durable.claim('q1', 'w', 1, 3600);
commit;
select dblink_exec('a', 'begin');
create temp table r1a as
select r::jsonb as r from c1, dblink('a', format('select durable.wait_event(%L, %L, 1, %L)::text',
                                                 c1.task_id, c1.lease_token, 'race-1')) as x (r text);
select is((select r from r1a), '{"seq": 1, "kind": "wait", "name": "race-1", "suspended": true}'::jsonb,
          '1a: A''s wait suspends the task (not committed)');
select dblink_send_query('b', $$select durable.emit_event('q1', 'race-1', '{"n": 1}')$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '1a: B''s emit blocks on A (the key''s row)');
select dblink_exec('a', 'commit');
create temp table r1b as select n from dblink_get_result('b') as x (n integer);
select count(*) from dblink_get_result('b') as x (n integer);
select is((select n from r1b), 1, '1a: once A commits, B''s emit wakes the task: 1 woken');
select is(
    (select jsonb_build_object('status', k.status, 'wait_kind', k.wait_kind,
                               'recorded', (select e.result from durable.events e
                                            where e.task_id = k.task_id and e.seq = 1))
     from durable.all_tasks k, w1 where k.task_id = w1.id),
    '{"status": "pending", "wait_kind": null, "recorded": {"payload": {"n": 1}, "timed_out": false}}'::jsonb,
    '1a: no lost wakeup: the task is pending with the payload recorded at its wait'
);

-- 1b. emit first: A emits race-2 (a new key) in an open transaction; B's wait blocks on
-- the key's row; A commits; B's wait gets the payload at once.
create temp table w2 as select durable.enqueue('q2', 'wf', '{}', '{"durable": true}') as id;
create temp table c2 as select * from durable.claim('q2', 'w', 1, 3600);
commit;
select dblink_exec('a', 'begin');
select is(
    (select n from dblink('a', $$select durable.emit_event('q2', 'race-2', '{"n": 2}')$$) as x (n integer)),
    0, '1b: A''s emit (not committed) finds no waiter'
);
select dblink_send_query('b', format('select durable.wait_event(%L, %L, 1, %L)::text',
                                     (select task_id from c2), (select lease_token from c2), 'race-2'));
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '1b: B''s wait blocks on A (the key''s row A created)');
select dblink_exec('a', 'commit');
create temp table r2 as select r::jsonb as r from dblink_get_result('b') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is((select r from r2),
          '{"seq": 1, "kind": "wait", "name": "race-2", "outcome": "ok", "result": {"payload": {"n": 2}, "timed_out": false}}'::jsonb,
          '1b: once A commits, B''s wait gets the payload at once');
select is(
    (select jsonb_build_object('status', k.status, 'lease', k.lease_token = c2.lease_token,
                               'recorded', (select e.result from durable.events e
                                            where e.task_id = k.task_id and e.seq = 1))
     from durable.all_tasks k, c2 where k.task_id = c2.task_id),
    '{"status": "running", "lease": true, "recorded": {"payload": {"n": 2}, "timed_out": false}}'::jsonb,
    '1b: the task did not suspend and has the payload recorded'
);

-- 1c. emit first on a key whose row exists (a cancelled waiter left it unemitted)
create temp table w3 as
select n, durable.enqueue('q2', 'wf', jsonb_build_object('n', n), '{"durable": true}') as id
from generate_series(1, 2) as n;
create temp table c3 as select * from durable.claim('q2', 'w', 2, 3600);
select durable.wait_event(c3.task_id, c3.lease_token, 1, 'race-3') from c3 where c3.input ->> 'n' = '1';
select durable.cancel((select id from w3 where n = 1));
select is(
    (select jsonb_build_object('payload', v.payload, 'emitted_at', v.emitted_at)
     from durable.event_values v where v.key = 'race-3'),
    '{"payload": null, "emitted_at": null}'::jsonb,
    '1c: the key''s row exists, not emitted'
);
commit;
select dblink_exec('a', 'begin');
select is(
    (select n from dblink('a', $$select durable.emit_event('q2', 'race-3', '{"n": 3}')$$) as x (n integer)),
    0, '1c: A''s emit (not committed) wakes nobody (the waiter was cancelled)'
);
select dblink_send_query('b', (select format('select durable.wait_event(%L, %L, 1, %L)::text',
                                             c3.task_id, c3.lease_token, 'race-3')
                               from c3 where c3.input ->> 'n' = '2'));
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '1c: B''s wait blocks on A (the key''s row A updated)');
select dblink_exec('a', 'commit');
create temp table r3 as select r::jsonb as r from dblink_get_result('b') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is((select r from r3),
          '{"seq": 1, "kind": "wait", "name": "race-3", "outcome": "ok", "result": {"payload": {"n": 3}, "timed_out": false}}'::jsonb,
          '1c: once A commits, B''s wait gets the payload at once');
select is((select status from durable.all_tasks, w3 where task_id = w3.id and w3.n = 2), 'running',
          '1c: the waiter did not suspend');

-- 1d. wait first on a key whose row exists (nobody inserts it now): A's wait must
-- still lock it, or B's emit would not see the waiter
create temp table w4 as
select n, durable.enqueue('q4', 'wf', jsonb_build_object('n', n), '{"durable": true}') as id
from generate_series(1, 2) as n;
create temp table c4 as select * from durable.claim('q4', 'w', 2, 3600);
select durable.wait_event(c4.task_id, c4.lease_token, 1, 'race-4') from c4 where c4.input ->> 'n' = '1';
select durable.cancel((select id from w4 where n = 1));
commit;
select dblink_exec('a', 'begin');
select is(
    (select r::jsonb from c4, dblink('a', format('select durable.wait_event(%L, %L, 1, %L)::text',
                                                 c4.task_id, c4.lease_token, 'race-4')) as x (r text)
     where c4.input ->> 'n' = '2'),
    '{"seq": 1, "kind": "wait", "name": "race-4", "suspended": true}'::jsonb,
    '1d: A''s wait on the existing key suspends the task (not committed)'
);
select dblink_send_query('b', $$select durable.emit_event('q4', 'race-4', '{"n": 4}')$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '1d: B''s emit blocks on A (the key''s row A locked)');
select dblink_exec('a', 'commit');
create temp table r4 as select n from dblink_get_result('b') as x (n integer);
select count(*) from dblink_get_result('b') as x (n integer);
select is((select n from r4), 1, '1d: once A commits, B''s emit wakes the task: 1 woken');
select is(
    (select jsonb_build_object('status', k.status,
                               'recorded', (select e.result from durable.events e
                                            where e.task_id = k.task_id and e.seq = 1))
     from durable.all_tasks k, w4 where k.task_id = w4.id and w4.n = 2),
    '{"status": "pending", "recorded": {"payload": {"n": 4}, "timed_out": false}}'::jsonb,
    '1d: no lost wakeup'
);

-- ---------------------------------------------------------------------------------
-- 2a. two children end at once: A completes child 1 and B child 2, each in an open
-- transaction; B blocks on the parent's row (locked by the trigger in A); A commits,
-- then B: the parent is woken once, with both outcomes.
create temp table p as select durable.enqueue('parents', 'parent', '{}', '{"durable": true}') as id;
create temp table cp as select * from durable.claim('parents', 'w', 1, 3600);
create temp table kids as
select n, (durable.spawn(cp.task_id, cp.lease_token, n, 'kids', 'child', jsonb_build_object('n', n)) #>> '{result,task_id}')::uuid as id
from cp, generate_series(1, 2) as n order by n;
select is(
    (select durable.wait_children(cp.task_id, cp.lease_token, 3, array(select id from kids order by n)) from cp),
    '{"seq": 3, "kind": "children", "name": "children", "suspended": true}'::jsonb,
    '2a: the parent waits for its two children'
);
create temp table ck as select c.*, kids.n from durable.claim('kids', 'wk', 2, 3600) c join kids on kids.id = c.task_id;
commit;
select dblink_exec('a', 'begin');
select dblink_exec('b', 'begin');
select x.r from ck, dblink('a', format('select durable.complete(%L, %L, %L)', ck.task_id, ck.lease_token, '{"r": 1}'))
    as x (r text) where ck.n = 1;
select dblink_send_query('b', format('select durable.complete(%L, %L, %L)', ck.task_id, ck.lease_token, '{"r": 2}'))
from ck where ck.n = 2;
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '2a: B''s completion blocks on A (the parent''s row, locked by A''s trigger)');
select dblink_exec('a', 'commit');
select count(*) from dblink_get_result('b') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is((select status from durable.all_tasks, p where task_id = p.id), 'waiting',
          '2a: A committed, B not yet: the parent still waits');
select dblink_exec('b', 'commit');
select is(
    (select jsonb_build_object(
        'status', k.status,
        'waits recorded', (select count(*) from durable.events e where e.task_id = k.task_id and e.kind = 'children'),
        'outcomes', (select jsonb_agg(x - 'task_id') from durable.events e, jsonb_array_elements(e.result) as x
                     where e.task_id = k.task_id and e.seq = 3))
     from durable.all_tasks k, p where k.task_id = p.id),
    '{"status": "pending", "waits recorded": 1,
      "outcomes": [{"status": "completed", "output": {"r": 1}, "error": null},
                   {"status": "completed", "output": {"r": 2}, "error": null}]}'::jsonb,
    '2a: after both commits the parent is pending, both outcomes recorded exactly once'
);
select is(
    (select array_agg(x ->> 'task_id' order by o) from durable.events e, p,
            jsonb_array_elements(e.result) with ordinality as y (x, o)
     where e.task_id = p.id and e.seq = 3),
    (select array_agg(id::text order by n) from kids),
    '2a: the outcomes name the children in the order waited for'
);

-- 2b. the last child ends (A, open) while its parent calls wait_children (B): B blocks
-- on the parent's row, then sees the child ended and gets the outcome at once.
create temp table p2 as select durable.enqueue('parents', 'parent2', '{}', '{"durable": true}') as id;
create temp table cp2 as select * from durable.claim('parents', 'w', 1, 3600, array['parent2']);
create temp table k2 as
select (durable.spawn(cp2.task_id, cp2.lease_token, 1, 'kids', 'child2', '{}') #>> '{result,task_id}')::uuid as id from cp2;
create temp table ck2 as select * from durable.claim('kids', 'wk', 1, 3600);
select is((select task_id from ck2), (select id from k2), '2b: the child is running');
commit;
select dblink_exec('a', 'begin');
select x.r from ck2, dblink('a', format('select durable.complete(%L, %L, %L)', ck2.task_id, ck2.lease_token, '{"r": "b"}'))
    as x (r text);
select dblink_send_query('b', format('select durable.wait_children(%L, %L, 2, array[%L]::uuid[])::text',
                                     cp2.task_id, cp2.lease_token, k2.id))
from cp2, k2;
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '2b: the parent''s wait_children blocks on the ending child''s transaction');
select dblink_exec('a', 'commit');
create temp table r2b as select r::jsonb as r from dblink_get_result('b') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is(
    (select r from r2b),
    (select jsonb_build_object('seq', 2, 'kind', 'children', 'name', 'children', 'outcome', 'ok',
                               'result', jsonb_build_array(jsonb_build_object(
        'task_id', k2.id, 'status', 'completed', 'output', '{"r": "b"}'::jsonb, 'error', null)))
     from k2),
    '2b: the wait sees the child ended and returns its outcome without suspending'
);
select is(
    (select jsonb_build_object('status', k.status,
                               'waits recorded', (select count(*) from durable.events e
                                                  where e.task_id = k.task_id and e.kind = 'children'))
     from durable.all_tasks k, p2 where k.task_id = p2.id),
    '{"status": "running", "waits recorded": 1}'::jsonb,
    '2b: the parent runs on, its wait recorded once'
);

-- 2c. the parent's wait_children first (A, open: suspended), the last child ends in B:
-- B's trigger blocks on the parent's row, then sees the parent waiting and wakes it.
create temp table p3 as select durable.enqueue('parents', 'parent3', '{}', '{"durable": true}') as id;
create temp table cp3 as select * from durable.claim('parents', 'w', 1, 3600, array['parent3']);
create temp table k3 as
select (durable.spawn(cp3.task_id, cp3.lease_token, 1, 'kids', 'child3', '{}') #>> '{result,task_id}')::uuid as id from cp3;
create temp table ck3 as select * from durable.claim('kids', 'wk', 1, 3600);
select is((select task_id from ck3), (select id from k3), '2c: the child is running');
commit;
select dblink_exec('a', 'begin');
select is(
    (select r::jsonb from cp3, k3,
            dblink('a', format('select durable.wait_children(%L, %L, 2, array[%L]::uuid[])::text',
                               cp3.task_id, cp3.lease_token, k3.id)) as x (r text)),
    '{"seq": 2, "kind": "children", "name": "children", "suspended": true}'::jsonb,
    '2c: A''s wait_children suspends the parent (not committed)'
);
select dblink_send_query('b', format('select durable.complete(%L, %L, %L)', ck3.task_id, ck3.lease_token, '{"r": "c"}'))
from ck3;
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '2c: the child''s completion blocks on the parent''s row');
select dblink_exec('a', 'commit');
select count(*) from dblink_get_result('b') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is(
    (select jsonb_build_object('status', k.status,
                               'recorded', (select (e.result -> 0) - 'task_id' from durable.events e
                                            where e.task_id = k.task_id and e.seq = 2))
     from durable.all_tasks k, p3 where k.task_id = p3.id),
    '{"status": "pending", "recorded": {"status": "completed", "output": {"r": "c"}, "error": null}}'::jsonb,
    '2c: the child''s end woke the parent with its outcome: no lost wakeup'
);

-- ---------------------------------------------------------------------------------
-- 3a. the sweep first: A's reclaim times the wait out (open); B's emit blocks on the
-- task's row; A commits; B finds the task no longer waiting: one outcome.
create temp table t3a as select durable.enqueue('q3a', 'wf', '{}', '{"durable": true}') as id;
create temp table c3a as select * from durable.claim('q3a', 'w', 1, 3600);
select is(
    (select durable.wait_event(c3a.task_id, c3a.lease_token, 1, 'race-t', 10) from c3a),
    '{"seq": 1, "kind": "wait", "name": "race-t", "suspended": true}'::jsonb,
    '3a: the task waits with a timeout of 10 s'
);
commit;
select dblink_exec('a', $$set durable.fake_now = '2030-01-01 00:00:10+00'$$);
select dblink_exec('b', $$set durable.fake_now = '2030-01-01 00:00:10+00'$$);
select set_config('durable.fake_now', '2030-01-01 00:00:10+00', false);
select dblink_exec('a', 'begin');
select is(
    (select n from dblink('a', $$select durable.reclaim('q3a')$$) as x (n integer)),
    1, '3a: A''s sweep times the wait out (not committed)'
);
select dblink_send_query('b', $$select durable.emit_event('q3a', 'race-t', '"late"')$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '3a: B''s emit blocks on the task''s row held by the sweep');
select dblink_exec('a', 'commit');
create temp table r3a as select n from dblink_get_result('b') as x (n integer);
select count(*) from dblink_get_result('b') as x (n integer);
select is((select n from r3a), 0, '3a: B''s emit wakes nobody: the task no longer waits');
select is(
    (select jsonb_build_object('status', k.status,
                               'events', (select jsonb_agg(e.result order by e.seq) from durable.events e
                                          where e.task_id = k.task_id))
     from durable.all_tasks k, t3a where k.task_id = t3a.id),
    '{"status": "pending", "events": [{"payload": null, "timed_out": true}]}'::jsonb,
    '3a: one outcome only: the timeout'
);
select is(
    (select payload from durable.event_values where key = 'race-t'), '"late"'::jsonb,
    '3a: the emit still set the latch for later waits'
);

-- 3b. the emit first: A's emit wakes the task (open); B's sweep skips the locked row
-- without waiting; A commits: one outcome, the payload.
create temp table t3b as select durable.enqueue('q3b', 'wf', '{}', '{"durable": true}') as id;
create temp table c3b as select * from durable.claim('q3b', 'w', 1, 3600);
select is(
    (select durable.wait_event(c3b.task_id, c3b.lease_token, 1, 'race-t2', 5) from c3b),
    '{"seq": 1, "kind": "wait", "name": "race-t2", "suspended": true}'::jsonb,
    '3b: the task waits with a timeout of 5 s (due at 00:00:15)'
);
commit;
select dblink_exec('a', $$set durable.fake_now = '2030-01-01 00:00:20+00'$$);
select dblink_exec('b', $$set durable.fake_now = '2030-01-01 00:00:20+00'$$);
select set_config('durable.fake_now', '2030-01-01 00:00:20+00', false);
select dblink_exec('a', 'begin');
select is(
    (select n from dblink('a', $$select durable.emit_event('q3b', 'race-t2', '"first"')$$) as x (n integer)),
    1, '3b: A''s emit wakes the task (not committed)'
);
select dblink_send_query('b', $$select durable.reclaim('q3b')$$);
select is(pg_temp.blockers('b', (select b from pids)), '{}'::integer[],
          '3b: B''s sweep, meanwhile, does not wait for A (it skips the task A holds)');
select dblink_exec('a', 'commit');
create temp table r3b as select n from dblink_get_result('b') as x (n integer);
select count(*) from dblink_get_result('b') as x (n integer);
select is((select n from r3b), 0, '3b: it woke nothing');
select is(
    (select n from dblink('b', $$select durable.reclaim('q3b')$$) as x (n integer)),
    0, '3b: after A commits there is nothing left to time out'
);
select is(
    (select jsonb_build_object('status', k.status, 'wake_at', k.wake_at,
                               'events', (select jsonb_agg(e.result order by e.seq) from durable.events e
                                          where e.task_id = k.task_id))
     from durable.all_tasks k, t3b where k.task_id = t3b.id),
    '{"status": "pending", "wake_at": null, "events": [{"payload": "first", "timed_out": false}]}'::jsonb,
    '3b: one outcome only: the payload'
);
create temp table c3b2 as select * from durable.claim('q3b', 'w', 1, 3600);
select is(
    (select durable.wait_event(c3b2.task_id, c3b2.lease_token, 1, 'race-t2', 5) from c3b2),
    '{"seq": 1, "kind": "wait", "name": "race-t2", "outcome": "ok", "result": {"payload": "first", "timed_out": false}}'::jsonb,
    '3b: the re-run sees the payload'
);

-- ---------------------------------------------------------------------------------
-- 4. a cancel cascading while a child ends: the child's worker (A) holds the child's
-- row (a heartbeat in an open transaction) and then completes it, which locks the
-- parent (the trigger); B cancels the parent meanwhile. Whatever order the cancel takes
-- its locks in, it must not deadlock with the child's end: no error on either side.
select set_config('durable.fake_now', '2030-01-01 00:01:00+00', false);
select dblink_exec('a', $$set durable.fake_now = '2030-01-01 00:01:00+00'$$);
select dblink_exec('b', $$set durable.fake_now = '2030-01-01 00:01:00+00'$$);
create temp table p4 as select durable.enqueue('parents', 'parent4', '{}', '{"durable": true}') as id;
create temp table cp4 as select * from durable.claim('parents', 'w', 1, 3600, array['parent4']);
create temp table k4 as
select n, (durable.spawn(cp4.task_id, cp4.lease_token, n, 'kids', 'child4', jsonb_build_object('n', n)) #>> '{result,task_id}')::uuid as id
from cp4, generate_series(1, 2) as n order by n;
select durable.wait_children(cp4.task_id, cp4.lease_token, 3, array(select id from k4 order by n)) from cp4;
create temp table ck4 as select * from durable.claim('kids', 'wk', 1, 3600);
select is((select task_id from ck4), (select id from k4 where n = 1), '4: child 1 runs, child 2 is pending');
commit;
select dblink_exec('a', 'begin');
select x.r from ck4, dblink('a', format('select durable.heartbeat(%L, %L)', ck4.task_id, ck4.lease_token)) as x (r text);
select dblink_send_query('b', format('select durable.cancel(%L)', (select id from p4)));
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '4: B''s cancel blocks on the running child''s row, held by A');
select x.r from ck4, dblink('a', format('select durable.complete(%L, %L, %L)', ck4.task_id, ck4.lease_token, '{"r": 4}'),
                            false) as x (r text);
select is(dblink_error_message('a'), 'OK', '4: A''s complete does not fail (no deadlock)');
select dblink_exec('a', 'commit');
create temp table r4b as select r from dblink_get_result('b', false) as x (r boolean);
create temp table r4b_error as select dblink_error_message('b') as m;
select count(*) from dblink_get_result('b', false) as x (r boolean);
select is((select m from r4b_error), 'OK', '4: B''s cancel does not fail (no deadlock)');
select is((select r from r4b), true, '4: the cancel returns true');
select is(
    (select jsonb_object_agg(coalesce('child ' || k4.n, 'parent'), t.status)
     from durable.all_tasks t left join k4 on k4.id = t.task_id
     where t.task_id in (select id from k4 union all select id from p4)),
    '{"parent": "cancelled", "child 1": "completed", "child 2": "cancelled"}'::jsonb,
    '4: the child that ended first stays completed; the parent and the other child are cancelled'
);

select dblink_disconnect('a');
select dblink_disconnect('b');

select * from finish();

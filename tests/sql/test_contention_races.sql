-- Correct under contention, the races (issue 10), forced with three sessions: this one
-- holds a row lock in its open transaction, sessions a and b (dblink) run verbs that block
-- behind it, in the interleaving that deadlocked or lost a wake-up before the lock order
-- of plpgsql/README.md. Each case then releases the lock and checks that both verbs ended
-- without error (no 40P01) with the right outcome. No sleeps: pg_temp.blockers waits
-- until a session blocks (or ends).
--   1. two complete_many batches ending children of parents P1 and P2 in opposite orders,
--      one parent's row held: no batch waits for a parent any more;
--   2. two enqueue_many batches sharing idempotency keys in opposite orders;
--   3. create_queue leaving round_robin (it resets the tags of the queue's tasks) against
--      a claim that reclaims an expired lease;
--   4. an emit waking a child and a grandchild that wait on one key, against a cancel of
--      their tree;
--   5. a wait on a never-emitted key whose latch row retention deletes before the wait
--      holds it, then an emit: the emit must wake the task;
--   6. an enqueue on a round_robin queue whose key row retention deletes between the
--      enqueue's look and its lock: the enqueue must still hold its key (else it takes it
--      after inserting, when a batch sharing an idempotency key may hold it: two
--      enqueue_many deadlocked so in the randomized test);
--   7. an enqueue whose idempotency key is held by a task another transaction is
--      updating (a completion): it must wait for that task before it locks the tasks it
--      may cancel, not after (the insert waits for the updater: spawns deadlocked so);
--   8. an enqueue whose idempotency key is held by a task another transaction completes
--      (moves to the archive): it waits for it, then finds the key in the archive and
--      returns that task (no second task of the key);
--   9. an enqueue whose key is held by an archived task another transaction replays
--      (moves back): it waits for the key, which the replay holds, and returns that task,
--      live again (looking for the holder in two tables while it moves between them could
--      find it in neither, and make a second task of the key).
select plan(40);

\ir helpers/tasks.sql
\ir helpers/sessions.sql

select pg_temp.clock(0);
select durable.create_queue(q) from unnest(array['par', 'kids', 'idem', 'evq', 'lw']) as q;
select durable.create_queue('rrq', '{"concurrency_strategy": "round_robin", "concurrency_key_limit": 5}');

-- 1. parents P1 and P2, each waiting for two running children (a1, b1 of P1; a2, b2 of P2)
select pg_temp.enq('P1', 'par', '{"durable": true}');
select pg_temp.claim_as('P1', 'par');
select pg_temp.enq('P2', 'par', '{"durable": true}');
select pg_temp.claim_as('P2', 'par');
insert into ids (name, id)
select c.name, (durable.spawn(pg_temp.id(c.parent), pg_temp.tok(c.parent), c.seq, 'kids', 'job', '{}', '{}')
               #>> '{result,task_id}')::uuid
from (values ('a1', 'P1', 1), ('b1', 'P1', 2), ('a2', 'P2', 1), ('b2', 'P2', 2)) as c (name, parent, seq);
select durable.wait_children(pg_temp.id(p), pg_temp.tok(p), 3, array[pg_temp.id('a' || right(p, 1)), pg_temp.id('b' || right(p, 1))])
from unnest(array['P1', 'P2']) as p;
update ids i set token = c.lease_token
from durable.claim('kids', 'wk', 4) as c
where i.id = c.task_id;

-- 2. (nothing to set up)

-- 3. queue rrq: h pending (enqueued first), r running with an expired lease (higher
-- priority, so claimed first); both have a round_robin tag above 0 (second of their key)
select pg_temp.enq('h0', 'rrq', '{"concurrency_key": "y"}');
select pg_temp.enq('h', 'rrq', '{"concurrency_key": "y"}');
select pg_temp.enq('r0', 'rrq', '{"concurrency_key": "x"}');
select pg_temp.enq('r', 'rrq', '{"concurrency_key": "x", "priority": 5}');
select is(array[(pg_temp.task('h')).fair_tag, (pg_temp.task('r')).fair_tag], array[1, 1]::bigint[],
          '3: h and r have tags to reset');
select is(pg_temp.claim_as('r', 'rrq', 'w', 1), pg_temp.id('r'), '3: r is claimed (a one-second lease)');

-- 4. P runs; its child C and grandchild G (queue evq) wait for key k
select pg_temp.enq('P', 'evq', '{"durable": true}');
select pg_temp.claim_as('P', 'evq');
insert into ids (name, id)
select 'C', (durable.spawn(pg_temp.id('P'), pg_temp.tok('P'), 1, 'evq', 'job', '{}', '{"durable": true}') #>> '{result,task_id}')::uuid;
select pg_temp.claim_as('C', 'evq');
insert into ids (name, id)
select 'G', (durable.spawn(pg_temp.id('C'), pg_temp.tok('C'), 1, 'evq', 'job', '{}', '{"durable": true}') #>> '{result,task_id}')::uuid;
select pg_temp.claim_as('G', 'evq');
select durable.wait_event(pg_temp.id('G'), pg_temp.tok('G'), 1, 'k');
select durable.wait_event(pg_temp.id('C'), pg_temp.tok('C'), 2, 'k');

-- 5. W runs; the key "late" of queue lw has a latch row nobody emitted
select pg_temp.enq('W', 'lw', '{"durable": true}');
select pg_temp.claim_as('W', 'lw');
insert into durable.event_values (queue, key) values ('lw', 'late');

-- 6. queue rr6 (round_robin) has a row for key c
select durable.create_queue('rr6', '{"concurrency_strategy": "round_robin"}');
select pg_temp.enq('c0', 'rr6', '{"concurrency_key": "c"}');

-- 7. queue cq (cancel_in_progress, 5 per key): X holds idempotency key ik7; Y, newer,
-- is an unfinished task of key c (one the next enqueue of c may cancel)
select durable.create_queue('cq', '{"concurrency_strategy": "cancel_in_progress", "concurrency_key_limit": 5}');
select pg_temp.enq('X', 'cq', '{"idempotency_key": "ik7"}');
select pg_temp.enq('Y', 'cq', '{"concurrency_key": "c"}');
select ok(pg_temp.id('X') < pg_temp.id('Y'), '7: Y is newer than X');

commit;
select pg_temp.connect_ab();

-- ---------------------------------------------------------------------------------
-- 1. this session holds P1; a completes [a1, a2], b completes [b2, b1]: neither waits
-- for a parent (a child never does); P2 is woken by its last child, P1 (locked here) by
-- the next claim of its queue
select 1 from durable.tasks where task_id = pg_temp.id('P1') for update;
select dblink_send_query('a', format('select string_agg(reason, '','' order by reason) from durable.complete_many(%L::uuid[], %L::uuid[])',
                                     array[pg_temp.id('a1'), pg_temp.id('a2')], array[pg_temp.tok('a1'), pg_temp.tok('a2')]));
select ok(not pg_temp.waits_for('a', (select a from pids), pg_backend_pid()), '1: a''s batch does not wait for the parent held here');
select dblink_send_query('b', format('select string_agg(reason, '','' order by reason) from durable.complete_many(%L::uuid[], %L::uuid[])',
                                     array[pg_temp.id('b2'), pg_temp.id('b1')], array[pg_temp.tok('b2'), pg_temp.tok('b1')]));
-- (b may wait for a, which counts down the same parents' waits: that wait ends)
select ok(not pg_temp.waits_for('b', (select b from pids), pg_backend_pid()), '1: nor does b''s');
select is((select r from dblink_get_result('a') as x (r text)), 'completed,completed', '1: a''s batch completes both');
select count(*) from dblink_get_result('a') as x (r text);
select is((select r from dblink_get_result('b') as x (r text)), 'completed,completed', '1: b''s batch completes both');
select count(*) from dblink_get_result('b') as x (r text);
commit;
select is(array[(pg_temp.task('P1')).status, (pg_temp.task('P2')).status], array['waiting', 'pending'],
          '1: P2 is woken by its last child; P1, whose row was held, still waits');
select is((select remaining from durable.wait_counts where parent_id = pg_temp.id('P1')), 0,
          '1: ... with nothing left to wait for');
select count(*) from durable.claim('par', 'w', 1);
select ok((pg_temp.task('P1')).status in ('pending', 'running'), '1: the next claim of its queue wakes P1');

-- 2. this session holds idempotency key k0 (an uncommitted enqueue); a enqueues
-- [k1, k0, k2], b enqueues [k2, k1]
select pg_temp.enq('k0', 'idem', '{"idempotency_key": "k0"}');
select dblink_send_query('a', $$select array_agg(id)::text from durable.enqueue_many('idem',
    '[{"task_name": "job", "options": {"idempotency_key": "k1"}},
      {"task_name": "job", "options": {"idempotency_key": "k0"}},
      {"task_name": "job", "options": {"idempotency_key": "k2"}}]') as e (id)$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '2: a''s batch blocks behind k0');
select dblink_send_query('b', $$select array_agg(id)::text from durable.enqueue_many('idem',
    '[{"task_name": "job", "options": {"idempotency_key": "k2"}},
      {"task_name": "job", "options": {"idempotency_key": "k1"}}]') as e (id)$$);
select pg_temp.blockers('b', (select b from pids));
commit;
create temp table r2 as
select (select r from dblink_get_result('a') as x (r text))::uuid[] as a,
       (select r from dblink_get_result('b') as x (r text))::uuid[] as b;
select count(*) from dblink_get_result('a') as x (r text);
select count(*) from dblink_get_result('b') as x (r text);
select is((select count(*) from durable.all_tasks where queue = 'idem'), 3::bigint, '2: three tasks, one per key');
select is((select a from r2),
          array[(select task_id from durable.all_tasks where idempotency_key = 'k1'), pg_temp.id('k0'),
                (select task_id from durable.all_tasks where idempotency_key = 'k2')],
          '2: a gets the id of each key''s task, in its order');
select is((select b from r2),
          array[(select task_id from durable.all_tasks where idempotency_key = 'k2'),
                (select task_id from durable.all_tasks where idempotency_key = 'k1')],
          '2: so does b');

-- 3. this session holds h; a leaves round_robin; b claims (after r's lease ran out)
select dblink_exec('b', format('set durable.fake_now = %L', pg_temp.t(10)));
select 1 from durable.tasks where task_id = pg_temp.id('h') for update;
select dblink_send_query('a', $$select durable.create_queue('rrq', '{"concurrency_strategy": "queue"}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '3: create_queue blocks behind h');
select dblink_send_query('b', $$select count(*)::text from durable.claim('rrq', 'w2', 5)$$);
select isnt(pg_temp.blockers('b', (select b from pids)), '{}'::integer[], '3: the claim blocks too');
commit;
select is((select r from dblink_get_result('a') as x (r text))::jsonb ->> 'concurrency_strategy', 'queue',
          '3: create_queue changes the strategy');
select count(*) from dblink_get_result('a') as x (r text);
select is((select r from dblink_get_result('b') as x (r text)), '4', '3: the claim reclaims r and starts the four tasks');
select count(*) from dblink_get_result('b') as x (r text);

-- 4. this session holds C; a emits k; b cancels P
select 1 from durable.tasks where task_id = pg_temp.id('C') for update;
select dblink_send_query('a', $$select durable.emit_event('evq', 'k', '"go"')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '4: the emit blocks behind C');
select dblink_send_query('b', format('select durable.cancel(%L, %L)::text', pg_temp.id('P'), 'stop'));
select isnt(pg_temp.blockers('b', (select b from pids)), '{}'::integer[], '4: the cancel blocks too');
commit;
select is((select r from dblink_get_result('a') as x (r text)), '2', '4: the emit wakes the child and the grandchild');
select count(*) from dblink_get_result('a') as x (r text);
select is((select r from dblink_get_result('b') as x (r text)), 'true', '4: the cancel cancels the tree');
select count(*) from dblink_get_result('b') as x (r text);
select is(array[(pg_temp.task('P')).status, (pg_temp.task('C')).status, (pg_temp.task('G')).status],
          array['cancelled', 'cancelled', 'cancelled'], '4: all three are cancelled');

-- 5. this session holds the latch row; a waits (open transaction); this session deletes
-- the row, as retention does, and commits; then b emits
select 1 from durable.event_values where queue = 'lw' and key = 'late' for update;
select dblink_exec('a', 'begin');
select dblink_send_query('a', format('select durable.wait_event(%L, %L, 1, %L)::text',
                                     pg_temp.id('W'), pg_temp.tok('W'), 'late'));
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '5: the wait blocks behind the latch row');
delete from durable.event_values where queue = 'lw' and key = 'late';
commit;
select is((select r from dblink_get_result('a') as x (r text))::jsonb,
          '{"seq": 1, "kind": "wait", "name": "late", "suspended": true}'::jsonb,
          '5: the wait suspends the task (not committed)');
select count(*) from dblink_get_result('a') as x (r text);
select dblink_send_query('b', $$select durable.emit_event('lw', 'late', '"now"')::text$$);
select is(pg_temp.blockers('b', (select b from pids)), array[(select a from pids)],
          '5: the emit blocks behind the wait: the wait holds the latch row it created again');
select dblink_exec('a', 'commit');
select is((select r from dblink_get_result('b') as x (r text)), '1', '5: the emit wakes the waiting task');
select count(*) from dblink_get_result('b') as x (r text);

-- 6. b holds idempotency key ik6 (an uncommitted enqueue); this session holds key c's
-- row; a enqueues (c, ik6) and blocks behind it; this session deletes the row, as
-- retention does, and commits: a goes on to its insert, where it waits for b
select dblink_exec('b', 'begin');
select count(*) from dblink('b', $$select durable.enqueue('rr6', 'job', '{}', '{"idempotency_key": "ik6"}')$$) as x (id uuid);
select 1 from durable.fair_keys where queue = 'rr6' and concurrency_key = 'c' for update;
select dblink_exec('a', 'begin');
select dblink_send_query('a', $$select durable.enqueue('rr6', 'job', '{}', '{"idempotency_key": "ik6", "concurrency_key": "c"}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '6: the enqueue blocks behind the key''s row');
delete from durable.fair_keys where queue = 'rr6' and concurrency_key = 'c';
commit;
select is(pg_temp.blockers('a', (select a from pids)), array[(select b from pids)],
          '6: then it waits for the idempotency key b holds');
set lock_timeout = '200ms';
select throws_ok($$insert into durable.fair_keys (queue, concurrency_key, last_tag) values ('rr6', 'c', -1)
                   on conflict do nothing$$,
                 '55P03', null, '6: ... holding key c all along (another insert of the key waits for it)');
reset lock_timeout;
rollback;
select dblink_exec('b', 'commit');
select is((select r from dblink_get_result('a') as x (r text))::uuid,
          (select task_id from durable.all_tasks where queue = 'rr6' and idempotency_key = 'ik6'),
          '6: the enqueue returns the task of b''s key');
select count(*) from dblink_get_result('a') as x (r text);
select dblink_exec('a', 'commit');

-- 7. this session updates X, as a completion does; a enqueues (c, ik7) on cq and blocks
-- behind X, holding nothing: this session can take Y, newer, without waiting
update durable.tasks set priority = priority where task_id = pg_temp.id('X');
select dblink_send_query('a', $$select durable.enqueue('cq', 'job', '{}', '{"idempotency_key": "ik7", "concurrency_key": "c"}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '7: the enqueue blocks behind X');
select lives_ok(format('select 1 from durable.tasks where task_id = %L for update nowait', pg_temp.id('Y')),
                '7: ... before it locks Y, newer (the lock order)');
commit;
select is((select r from dblink_get_result('a') as x (r text))::uuid, pg_temp.id('X'),
          '7: the enqueue returns X, the task of its key');
select count(*) from dblink_get_result('a') as x (r text);

-- 8. this session completes Z, which holds ik8 (its move to the archive, uncommitted); a
-- enqueues ik8 and blocks behind Z; once this commits, a finds the key in the archive
select durable.create_queue('ik');
select pg_temp.enq('Z', 'ik', '{"idempotency_key": "ik8"}');
select pg_temp.claim_as('Z', 'ik');
commit;
select durable.complete(pg_temp.id('Z'), pg_temp.tok('Z'));
select dblink_send_query('a', $$select durable.enqueue('ik', 'job', '{}', '{"idempotency_key": "ik8"}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[], '8: the enqueue blocks behind Z');
commit;
select is((select r from dblink_get_result('a') as x (r text))::uuid, pg_temp.id('Z'),
          '8: then returns Z, archived, the task of its key');
select count(*) from dblink_get_result('a') as x (r text);
select is((select count(*)::int from durable.all_tasks where idempotency_key = 'ik8'), 1, '8: one task of the key');

-- 9. this session replays Z (its move back, uncommitted: it holds ik8's lock); a enqueues
-- ik8 and waits for the key; once this commits, a finds Z live
select durable.replay(pg_temp.id('Z'));
select dblink_send_query('a', $$select durable.enqueue('ik', 'job', '{}', '{"idempotency_key": "ik8"}')::text$$);
select isnt(pg_temp.blockers('a', (select a from pids)), '{}'::integer[],
            '9: the enqueue waits for the replay, which holds the key');
commit;
select is((select r from dblink_get_result('a') as x (r text))::uuid, pg_temp.id('Z'), '9: then returns Z, live again');
select count(*) from dblink_get_result('a') as x (r text);
select is((select count(*)::int from durable.all_tasks where idempotency_key = 'ik8'), 1, '9: one task of the key');
commit;

select * from finish();

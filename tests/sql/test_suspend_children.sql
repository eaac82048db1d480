-- Child tasks: spawn exactly once (same seq -> same child, a different spawn there is a
-- non-determinism), wait_children at once when every child ended, otherwise waiting until
-- the last one ends (the trigger records [{task_id, status, output, error}] in order and
-- wakes the parent), failed and cancelled children, a subset wait, two children ending in
-- one statement, and waits for tasks that are not children (DU001). Both verbs return
-- the event ({"seq", "kind", "name", "outcome", "result"}) or, when the parent must wait,
-- {"seq", "kind", "name", "suspended": true}; a non-determinism fails the parent.
select plan(71);

\ir helpers/errors.sql
\ir helpers/nondeterminism.sql

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('parents');
select durable.create_queue('kids');
select durable.create_queue('kids3');
select durable.create_queue('kids4');
select durable.create_queue('kids5');
select durable.create_queue('kids6');

create temp table p as select durable.enqueue('parents', 'parent', '{}', '{"durable": true}') as id;
create temp table cp as select * from durable.claim('parents', 'w1', 1, 300);

-- spawn, exactly once
create temp table spawned as
select 1 as n, durable.spawn(cp.task_id, cp.lease_token, 1, 'kids', 'child', '{"n": 1}',
                             '{"max_attempts": 2, "backoff": {"kind": "none"}}') as e
from cp;
create temp table kids as select n, (e #>> '{result,task_id}')::uuid as id from spawned;
select is(
    (select e from spawned),
    (select jsonb_build_object('seq', 1, 'kind', 'spawn', 'name', 'child', 'outcome', 'ok',
                               'result', jsonb_build_object('task_id', kids.id, 'queue', 'kids'))
     from kids),
    'spawn returns its event: the child''s id and queue as its result'
);
select is(
    (select jsonb_build_object('queue', k.queue, 'task_name', k.task_name, 'input', k.input, 'status', k.status,
                               'parent', k.parent_id = p.id, 'parent_seq', k.parent_seq,
                               'max_attempts', k.max_attempts, 'durable', k.durable)
     from durable.all_tasks k, kids, p where k.task_id = kids.id and kids.n = 1),
    '{"queue": "kids", "task_name": "child", "input": {"n": 1}, "status": "pending", "parent": true,
      "parent_seq": 1, "max_attempts": 2, "durable": false}'::jsonb,
    'spawn enqueues the child with its input and options, linked to its parent and the spawn''s seq'
);
select is(
    (select jsonb_build_object('kind', e.kind, 'name', e.name, 'result', e.result, 'input_hash', e.input_hash)
     from durable.events e, p where e.task_id = p.id and e.seq = 1),
    (select jsonb_build_object('kind', 'spawn', 'name', 'child',
                               'result', jsonb_build_object('task_id', kids.id, 'queue', 'kids'),
                               'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 1}}'))
     from kids where kids.n = 1),
    'the spawn is recorded at its seq with the child''s id and the hash of queue and input'
);
select is(
    (select durable.spawn(cp.task_id, cp.lease_token, 1, 'kids', 'child', '{"n": 1}',
                          '{"max_attempts": 2, "backoff": {"kind": "none"}}') from cp),
    (select e from spawned),
    'the same spawn at the same seq again returns the same event (the same child)'
);
select is((select count(*) from durable.all_tasks where queue = 'kids'), 1::bigint, 'and creates no second child');
-- (each wrong spawn is undone after its checks)
select pg_temp.nondeterminism_ok(
    format($$select durable.spawn(%L, %L, 1, 'kids', 'child', '{"n": 99}')$$, cp.task_id, cp.lease_token),
    cp.task_id, cp.lease_token,
    jsonb_build_object(
        'task_id', cp.task_id, 'seq', 1,
        'recorded', jsonb_build_object('kind', 'spawn', 'name', 'child',
                                       'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 1}}')),
        'presented', jsonb_build_object('kind', 'spawn', 'name', 'child',
                                        'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 99}}')),
        'message', format('non-determinism in task %s at event 1: recorded spawn "child" with other arguments, '
                          'the code did spawn "child" with other arguments', cp.task_id)),
    'a different input at the recorded seq is a non-determinism')
from cp;
select pg_temp.nondeterminism_ok(
    format($$select durable.spawn(%L, %L, 1, 'kids3', 'child', '{"n": 1}')$$, cp.task_id, cp.lease_token),
    cp.task_id, cp.lease_token,
    jsonb_build_object(
        'task_id', cp.task_id, 'seq', 1,
        'recorded', jsonb_build_object('kind', 'spawn', 'name', 'child',
                                       'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 1}}')),
        'presented', jsonb_build_object('kind', 'spawn', 'name', 'child',
                                        'input_hash', durable.input_hash('{"queue": "kids3", "input": {"n": 1}}')),
        'message', format('non-determinism in task %s at event 1: recorded spawn "child" with other arguments, '
                          'the code did spawn "child" with other arguments', cp.task_id)),
    'a different queue at the recorded seq is a non-determinism')
from cp;
select pg_temp.nondeterminism_ok(
    format($$select durable.spawn(%L, %L, 1, 'kids', 'other child', '{"n": 1}')$$, cp.task_id, cp.lease_token),
    cp.task_id, cp.lease_token,
    jsonb_build_object(
        'task_id', cp.task_id, 'seq', 1,
        'recorded', jsonb_build_object('kind', 'spawn', 'name', 'child',
                                       'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 1}}')),
        'presented', jsonb_build_object('kind', 'spawn', 'name', 'other child',
                                        'input_hash', durable.input_hash('{"queue": "kids", "input": {"n": 1}}')),
        'message', format('non-determinism in task %s at event 1: recorded spawn "child", '
                          'the code did spawn "other child"', cp.task_id)),
    'a different task name at the recorded seq is a non-determinism')
from cp;
select throws_ok(
    $$select durable.spawn(cp.task_id, cp.lease_token, 3, 'kids', 'child', '{"n": 3}') from cp$$,
    'DU021', null, 'a spawn past the end of the log raises DU021'
);
select throws_ok(
    $$select durable.spawn(cp.task_id, cp.lease_token, 2, 'no such queue', 'child', '{"n": 2}') from cp$$,
    'DU002', null, 'a spawn on an unknown queue raises DU002'
);
select is(
    (select jsonb_build_object('children', (select count(*) from durable.all_tasks where parent_id = p.id),
                               'events', (select count(*) from durable.events where task_id = p.id)) from p),
    '{"children": 1, "events": 1}'::jsonb,
    'the rejected spawns created no child and recorded nothing'
);

insert into kids
select 2, (durable.spawn(cp.task_id, cp.lease_token, 2, 'kids', 'child', '{"n": 2}') #>> '{result,task_id}')::uuid from cp;

-- the parent waits for both
select is(
    (select durable.wait_children(cp.task_id, cp.lease_token, 3, array[(select id from kids where n = 1),
                                                                      (select id from kids where n = 2)]) from cp),
    '{"seq": 3, "kind": "children", "name": "children", "suspended": true}'::jsonb,
    'waiting for unfinished children suspends the parent: {seq, kind, name, suspended}'
);
select is(
    (select jsonb_build_object('status', k.status, 'wait_kind', k.wait_kind, 'wait_key', k.wait_key,
                               'wait_seq', k.wait_seq, 'wake_at', k.wake_at, 'lease_expires_at', k.lease_expires_at,
                               'children', k.wait_children = array[(select id from kids where n = 1),
                                                                   (select id from kids where n = 2)])
     from durable.all_tasks k, p where k.task_id = p.id),
    '{"status": "waiting", "wait_kind": "children", "wait_key": "children", "wait_seq": 3, "wake_at": null,
      "lease_expires_at": null, "children": true}'::jsonb,
    'the parent waits for the two children at seq 3, for ever, with no lease'
);
select is(
    (select array_agg(a.outcome) from durable.attempts a, p where a.task_id = p.id),
    array['suspended'],
    'the parent''s attempt ended as suspended'
);
select is(durable.next_wake('parents'), null, 'a wait for children has no wake time');

-- child 2 completes: the parent still waits for child 1
create temp table ck as select * from durable.claim('kids', 'wk', 2, 300);
select is((select count(*) from ck), 2::bigint, 'both children are claimed');
select durable.complete(ck.task_id, ck.lease_token, '{"r": 2}') from ck where ck.task_id = (select id from kids where n = 2);
select is((select status from durable.all_tasks, p where task_id = p.id), 'waiting',
          'one child ended: the parent still waits');
-- child 1 fails once, retryably: it is not over
select durable.fail(ck.task_id, ck.lease_token, '{"type": "Flaky", "message": "once"}')
from ck where ck.task_id = (select id from kids where n = 1);
select is(
    (select jsonb_build_object('child', c.status, 'parent', k.status)
     from durable.all_tasks c, durable.tasks k, kids, p
     where c.task_id = kids.id and kids.n = 1 and k.task_id = p.id),
    '{"child": "pending", "parent": "waiting"}'::jsonb,
    'a child that will be retried has not ended: the parent still waits'
);
select is((select count(*) from durable.events e, p where e.task_id = p.id and e.seq = 3), 0::bigint,
          'nothing is recorded at the wait''s seq yet');
-- its last attempt fails: the last child ended, the parent wakes
create temp table ck1 as select * from durable.claim('kids', 'wk', 1, 300);
select durable.fail(ck1.task_id, ck1.lease_token, '{"type": "Boom", "message": "no"}') from ck1;
select is(
    (select jsonb_build_object('status', k.status, 'run_at', k.run_at, 'wait_kind', k.wait_kind,
                               'wait_children', k.wait_children, 'wait_seq', k.wait_seq)
     from durable.all_tasks k, p where k.task_id = p.id),
    jsonb_build_object('status', 'pending', 'run_at', '2030-01-01 00:00:00+00'::timestamptz,
                       'wait_kind', null, 'wait_children', null, 'wait_seq', null),
    'the last child''s end wakes the parent: pending, due now, its wait cleared'
);
select is(
    (select jsonb_build_object('kind', e.kind, 'name', e.name, 'result', e.result,
                               'input_hash', e.input_hash, 'attempt', e.attempt)
     from durable.events e, p where e.task_id = p.id and e.seq = 3),
    jsonb_build_object(
        'kind', 'children', 'name', 'children',
        'result', jsonb_build_array(
            jsonb_build_object('task_id', (select id from kids where n = 1), 'status', 'failed', 'output', null,
                               'error', '{"type": "Boom", "message": "no"}'::jsonb),
            jsonb_build_object('task_id', (select id from kids where n = 2), 'status', 'completed',
                               'output', '{"r": 2}'::jsonb, 'error', null)),
        'input_hash', durable.input_hash(to_jsonb(array[(select id from kids where n = 1),
                                                        (select id from kids where n = 2)])),
        'attempt', 1),
    'the outcomes are recorded at the wait''s seq, in the order waited for (the failed child with its error)'
);

-- the re-run sees the recorded outcomes
create temp table cp2 as select * from durable.claim('parents', 'w2', 1, 300);
select is((select task_id from cp2), (select id from p), 'the woken parent is claimed');
select is(
    (select durable.spawn(cp2.task_id, cp2.lease_token, 1, 'kids', 'child', '{"n": 1}') from cp2),
    (select history -> 0 from cp2),
    'the re-run''s spawn returns the recorded event (the recorded child), as its history lists it'
);
create temp table rerun as
select durable.wait_children(cp2.task_id, cp2.lease_token, 3, array[(select id from kids where n = 1),
                                                                   (select id from kids where n = 2)]) as r
from cp2;
select is(
    (select r from rerun),
    (select history -> 2 from cp2),
    'the re-run''s wait returns the recorded event, as its history lists it, without suspending'
);
select is(
    (select r #>> '{result,0,status}' from rerun), 'failed', 'the failed child is still seen as failed'
);
select is((select status from durable.all_tasks, p where task_id = p.id), 'running', 'the re-run keeps running');
select pg_temp.nondeterminism_ok(
    format('select durable.wait_children(%L, %L, 3, %L)', cp2.task_id, cp2.lease_token,
           array[(select id from kids where n = 2), (select id from kids where n = 1)]),
    cp2.task_id, cp2.lease_token,
    jsonb_build_object(
        'task_id', cp2.task_id, 'seq', 3,
        'recorded', jsonb_build_object('kind', 'children', 'name', 'children', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 1), (select id from kids where n = 2)]))),
        'presented', jsonb_build_object('kind', 'children', 'name', 'children', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 2), (select id from kids where n = 1)]))),
        'message', format('non-determinism in task %s at event 3: recorded children "children" with other arguments, '
                          'the code did children "children" with other arguments', cp2.task_id)),
    'waiting for the children in another order at the recorded seq is a non-determinism')
from cp2;
select pg_temp.nondeterminism_ok(
    format($$select durable.wait_children(%L, %L, 3, %L, 'others')$$, cp2.task_id, cp2.lease_token,
           array[(select id from kids where n = 1), (select id from kids where n = 2)]),
    cp2.task_id, cp2.lease_token,
    jsonb_build_object(
        'task_id', cp2.task_id, 'seq', 3,
        'recorded', jsonb_build_object('kind', 'children', 'name', 'children', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 1), (select id from kids where n = 2)]))),
        'presented', jsonb_build_object('kind', 'children', 'name', 'others', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 1), (select id from kids where n = 2)]))),
        'message', format('non-determinism in task %s at event 3: recorded children "children", '
                          'the code did children "others"', cp2.task_id)),
    'a wait of another name at the recorded seq is a non-determinism')
from cp2;
select pg_temp.nondeterminism_ok(
    format($$select durable.replay_check(%L, %L, %L)$$, cp2.task_id, cp2.lease_token, jsonb_build_array(
        '{"seq": 1, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 1}}'::jsonb,
        '{"seq": 2, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 2}}'::jsonb,
        jsonb_build_object('seq', 3, 'kind', 'children', 'name', 'children',
                           'children', jsonb_build_array((select id from kids where n = 1))))),
    cp2.task_id, cp2.lease_token,
    jsonb_build_object(
        'task_id', cp2.task_id, 'seq', 3,
        'recorded', jsonb_build_object('kind', 'children', 'name', 'children', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 1), (select id from kids where n = 2)]))),
        'presented', jsonb_build_object('kind', 'children', 'name', 'children', 'input_hash',
            durable.input_hash(to_jsonb(array[(select id from kids where n = 1)]))),
        'message', format('non-determinism in task %s at event 3: recorded children "children" with other arguments, '
                          'the code did children "children" with other arguments', cp2.task_id)),
    'replay_check: a wait for fewer children at the recorded seq is a non-determinism')
from cp2;
select is(
    (select durable.replay_check(cp2.task_id, cp2.lease_token, jsonb_build_array(
        '{"seq": 1, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 1}}'::jsonb,
        '{"seq": 2, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 2}}'::jsonb,
        jsonb_build_object('seq', 3, 'kind', 'children', 'name', 'children',
                           'children', jsonb_build_array((select id from kids where n = 1), (select id from kids where n = 2)))))
     from cp2),
    '{"checked": 3}'::jsonb,
    'replay_check passes the spawns (queue and input) and the wait (the ids, in order)'
);
select throws_ok(
    format($$select durable.replay_check(%L, %L, %L)$$, cp2.task_id, cp2.lease_token, jsonb_build_array(
        '{"seq": 1, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 1}}'::jsonb,
        '{"seq": 2, "kind": "spawn", "name": "child", "queue": "kids", "input": {"n": 2}}'::jsonb,
        '{"seq": 3, "kind": "children", "name": "children", "children": ["not a task id"]}'::jsonb)),
    'DU001', null,
    'replay_check: a presented child id that is not a uuid is a bad argument (DU001)')
from cp2;
select is((select status from durable.all_tasks, p where task_id = p.id), 'running', 'and fails nothing');
select is((select count(*) from durable.events, p where task_id = p.id), 3::bigint, 'the re-run recorded nothing new');

-- every child already ended: the outcomes come at once
create temp table p3 as select durable.enqueue('parents', 'parent3', '{}', '{"durable": true}') as id;
create temp table cp3 as select * from durable.claim('parents', 'w1', 1, 300, array['parent3']);
create temp table k3 as
select (durable.spawn(cp3.task_id, cp3.lease_token, 1, 'kids3', 'child', '{"n": 3}') #>> '{result,task_id}')::uuid as id from cp3;
create temp table ck3 as select * from durable.claim('kids3', 'wk', 1, 300);
select durable.complete(ck3.task_id, ck3.lease_token, '{"r": 3}') from ck3;
select is(
    (select jsonb_build_object('status', k.status, 'lease', k.lease_token = cp3.lease_token)
     from durable.all_tasks k, cp3 where k.task_id = cp3.task_id),
    '{"status": "running", "lease": true}'::jsonb,
    'a child ending while its parent runs leaves the parent alone'
);
select is(
    (select durable.wait_children(cp3.task_id, cp3.lease_token, 2, array[k3.id]) from cp3, k3),
    (select jsonb_build_object('seq', 2, 'kind', 'children', 'name', 'children', 'outcome', 'ok',
                               'result', jsonb_build_array(jsonb_build_object(
        'task_id', k3.id, 'status', 'completed', 'output', '{"r": 3}'::jsonb, 'error', null)))
     from k3),
    'waiting for children that all ended returns their outcomes at once'
);
select is(
    (select jsonb_build_object('status', k.status, 'lease', k.lease_token = cp3.lease_token,
                               'attempts', (select count(*) from durable.attempts a where a.task_id = k.task_id),
                               'recorded', (select e.result #>> '{0,status}' from durable.events e
                                            where e.task_id = k.task_id and e.seq = 2))
     from durable.all_tasks k, cp3 where k.task_id = cp3.task_id),
    '{"status": "running", "lease": true, "attempts": 0, "recorded": "completed"}'::jsonb,
    'without suspending, and with the outcomes recorded'
);

-- waiting for a task that is not a child
select throws_ok(
    $$select durable.wait_children(cp3.task_id, cp3.lease_token, 3, array[(select id from kids where n = 1)]) from cp3$$,
    'DU001', null, 'waiting for another task''s child raises DU001'
);
select throws_ok(
    $$select durable.wait_children(cp3.task_id, cp3.lease_token, 3, array[k3.id, (select id from kids where n = 2)]) from cp3, k3$$,
    'DU001', null, 'a wait mixing a child and a stranger raises DU001'
);
select throws_ok(
    $$select durable.wait_children(cp3.task_id, cp3.lease_token, 3, array[cp3.task_id]) from cp3$$,
    'DU001', null, 'a task cannot wait for itself (DU001)'
);
select throws_ok(
    $$select durable.wait_children(cp3.task_id, cp3.lease_token, 3, array[gen_random_uuid()]) from cp3$$,
    'DU001', null, 'waiting for an unknown task raises DU001'
);
select throws_ok(
    $$select durable.wait_children(cp3.task_id, cp3.lease_token, 3, array[]::uuid[]) from cp3$$,
    'DU001', null, 'waiting for no children raises DU001'
);
select is(
    (select jsonb_build_object('status', k.status, 'events', (select count(*) from durable.events e where e.task_id = k.task_id))
     from durable.all_tasks k, cp3 where k.task_id = cp3.task_id),
    '{"status": "running", "events": 2}'::jsonb,
    'the rejected waits recorded nothing and did not suspend the parent'
);

-- a cancelled child counts as ended, and its cancellation can be the last end
create temp table p4 as select durable.enqueue('parents', 'parent4', '{}', '{"durable": true}') as id;
create temp table cp4 as select * from durable.claim('parents', 'w1', 1, 300, array['parent4']);
create temp table k4 as
select n, (durable.spawn(cp4.task_id, cp4.lease_token, n, 'kids4', 'child', jsonb_build_object('n', n)) #>> '{result,task_id}')::uuid as id
from cp4, generate_series(1, 2) as n order by n;
select durable.wait_children(cp4.task_id, cp4.lease_token, 3, array(select id from k4 order by n)) from cp4;
create temp table ck4 as select * from durable.claim('kids4', 'wk', 2, 300);
select durable.complete(ck4.task_id, ck4.lease_token, '{"r": 2}') from ck4 where ck4.task_id = (select id from k4 where n = 2);
select durable.cancel((select id from k4 where n = 1), 'not needed');
select is(
    (select jsonb_build_object('status', k.status,
                               'first', (select (e.result -> 0) - 'task_id' from durable.events e
                                         where e.task_id = k.task_id and e.seq = 3))
     from durable.all_tasks k, p4 where k.task_id = p4.id),
    '{"status": "pending",
      "first": {"status": "cancelled", "output": null, "error": {"type": "Cancelled", "message": "not needed"}}}'::jsonb,
    'cancelling the last unfinished child wakes the parent; the child is recorded as cancelled'
);

-- a wait for a subset: another child's end does not count
create temp table p5 as select durable.enqueue('parents', 'parent5', '{}', '{"durable": true}') as id;
create temp table cp5 as select * from durable.claim('parents', 'w1', 1, 300, array['parent5']);
create temp table k5 as
select n, (durable.spawn(cp5.task_id, cp5.lease_token, n, 'kids5', 'child', jsonb_build_object('n', n)) #>> '{result,task_id}')::uuid as id
from cp5, generate_series(1, 2) as n order by n;
select durable.wait_children(cp5.task_id, cp5.lease_token, 3, array(select id from k5 where n = 1), 'first only') from cp5;
create temp table ck5 as select * from durable.claim('kids5', 'wk', 2, 300);
select durable.complete(ck5.task_id, ck5.lease_token, '{}') from ck5 where ck5.task_id = (select id from k5 where n = 2);
select is((select status from durable.all_tasks, p5 where task_id = p5.id), 'waiting',
          'a child not waited for ends: the parent still waits');
select durable.complete(ck5.task_id, ck5.lease_token, '{"first": true}') from ck5 where ck5.task_id = (select id from k5 where n = 1);
select is(
    (select jsonb_build_object('status', k.status,
                               'recorded', (select jsonb_build_object('name', e.name, 'n', jsonb_array_length(e.result),
                                                                      'output', e.result #> '{0,output}')
                                            from durable.events e where e.task_id = k.task_id and e.seq = 3))
     from durable.all_tasks k, p5 where k.task_id = p5.id),
    '{"status": "pending", "recorded": {"name": "first only", "n": 1, "output": {"first": true}}}'::jsonb,
    'the child waited for wakes it, with only its outcome recorded under the wait''s name'
);

-- two children ending in one statement: the parent is woken once, with both outcomes
create temp table p6 as select durable.enqueue('parents', 'parent6', '{}', '{"durable": true}') as id;
create temp table cp6 as select * from durable.claim('parents', 'w1', 1, 300, array['parent6']);
create temp table k6 as
select n, (durable.spawn(cp6.task_id, cp6.lease_token, n, 'kids6', 'child', jsonb_build_object('n', n)) #>> '{result,task_id}')::uuid as id
from cp6, generate_series(1, 2) as n order by n;
select durable.wait_children(cp6.task_id, cp6.lease_token, 3, array(select id from k6 order by n)) from cp6;
create temp table ck6 as select * from durable.claim('kids6', 'wk', 2, 300);
select is(
    (select array_agg(c.ok) from durable.complete_many(
        (select array_agg(task_id order by task_id) from ck6),
        (select array_agg(lease_token order by task_id) from ck6),
        (select array_agg(jsonb_build_object('done', task_id) order by task_id) from ck6)) c),
    array[true, true],
    'both children complete in one complete_many'
);
select is(
    (select jsonb_build_object('status', k.status,
                               'events', (select count(*) from durable.events e where e.task_id = k.task_id),
                               'statuses', (select jsonb_agg(x ->> 'status') from durable.events e,
                                            jsonb_array_elements(e.result) as x
                                            where e.task_id = k.task_id and e.seq = 3),
                               'outputs_match', (select bool_and(x -> 'output' = jsonb_build_object('done', x -> 'task_id'))
                                                 from durable.events e, jsonb_array_elements(e.result) as x
                                                 where e.task_id = k.task_id and e.seq = 3))
     from durable.all_tasks k, p6 where k.task_id = p6.id),
    '{"status": "pending", "events": 3, "statuses": ["completed", "completed"], "outputs_match": true}'::jsonb,
    'the parent is woken once with both outcomes'
);

select * from finish();

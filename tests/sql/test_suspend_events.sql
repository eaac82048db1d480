-- Event latches: running -> waiting on a key, woken by emit_event (payload recorded at
-- the wait's seq, task pending, queue notified), emit before wait (the latch: no
-- suspension), a later emit replacing the payload, several waiters, wait timeouts
-- recorded by the claim's sweep, and the argument checks. A wait returns its event
-- {"seq", "kind": "wait", "name": key, "outcome", "result": {"payload", "timed_out"}}, or
-- {"seq", "kind", "name", "suspended": true} when it parks the task.
select plan(58);
\ir helpers/notify.sql
\ir helpers/errors.sql
\ir helpers/nondeterminism.sql

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');
select durable.create_queue('latch');
select durable.create_queue('timeouts');
select durable.create_queue('plain');

-- running -> waiting (the wait is the task's second event)
create temp table w1 as select durable.enqueue('q', 'wf', '{}', '{"durable": true}') as id;
create temp table c1 as select * from durable.claim('q', 'w1', 1, 300);
select durable.checkpoint(c1.task_id, c1.lease_token, 1, 'step', 'prepare', '{"prepared": true}') from c1;
select is(
    (select durable.wait_event(c1.task_id, c1.lease_token, 2, 'order:1') from c1),
    '{"seq": 2, "kind": "wait", "name": "order:1", "suspended": true}'::jsonb,
    'a wait for a key nobody emitted suspends the task: {seq, kind, name, suspended}'
);
select is(
    (select jsonb_build_object(
        'status', k.status, 'wait_kind', k.wait_kind, 'wait_key', k.wait_key, 'wait_seq', k.wait_seq,
        'wake_at', k.wake_at, 'lease_expires_at', k.lease_expires_at)
     from durable.all_tasks k where k.task_id = (select id from w1)),
    '{"status": "waiting", "wait_kind": "event", "wait_key": "order:1", "wait_seq": 2,
      "wake_at": null, "lease_expires_at": null}'::jsonb,
    'the task waits for the key at seq 2, for ever (no timeout), with no lease'
);
select is(
    (select array_agg(a.outcome) from durable.attempts a where a.task_id = (select id from w1)),
    array['suspended'],
    'its attempt ended as suspended'
);
select is((select max(seq) from durable.events where task_id = (select id from w1)), 1,
          'nothing is recorded at the wait''s seq yet');
select is(
    (select jsonb_build_object('payload', v.payload, 'emitted_at', v.emitted_at)
     from durable.event_values v where v.key = 'order:1'),
    '{"payload": null, "emitted_at": null}'::jsonb,
    'the wait created the key''s latch row, not emitted'
);
select is((select count(*) from durable.claim('q', 'w2', 10, 300)), 0::bigint, 'a waiting task is not claimed');
select is(durable.next_wake('q'), null, 'a wait without timeout has no wake time');
select throws_ok(
    $$select durable.heartbeat(c1.task_id, c1.lease_token) from c1$$,
    'DU010', null, 'a heartbeat on the suspended attempt raises DU010'
);
select is(durable.emit_event('q', 'order:2', '{"ok": false}'), 0, 'an emit of another key wakes nobody');
select is((select status from durable.all_tasks where task_id = (select id from w1)), 'waiting',
          'the waiter still waits');

-- emit wakes it; the queue is notified (seen from another session, after commit)
commit;
select dblink_connect('l', current_setting('durable_test.conninfo'));
select dblink_exec('l', 'listen durable');
create temp table woken1 as select durable.emit_event('q', 'order:1', '{"ok": true}') as n;
commit;
select is((select n from woken1), 1, 'emit_event returns the number of tasks it woke: 1');
select is(
    (select jsonb_build_object(
        'status', k.status, 'run_at', k.run_at, 'wait_kind', k.wait_kind, 'wait_key', k.wait_key,
        'wait_seq', k.wait_seq, 'wake_at', k.wake_at)
     from durable.all_tasks k where k.task_id = (select id from w1)),
    jsonb_build_object('status', 'pending', 'run_at', '2030-01-01 00:00:00+00'::timestamptz,
                       'wait_kind', null, 'wait_key', null, 'wait_seq', null, 'wake_at', null),
    'the woken task is pending, due now, its wait cleared'
);
select is(
    (select jsonb_agg(jsonb_build_object(
        'seq', h.seq, 'kind', h.kind, 'name', h.name, 'outcome', h.outcome, 'result', h.result,
        'input_hash', h.input_hash, 'attempt', h.attempt) order by h.seq)
     from durable.history((select id from w1)) h where h.seq >= 2),
    '[{"seq": 2, "kind": "wait", "name": "order:1", "outcome": "ok",
       "result": {"payload": {"ok": true}, "timed_out": false}, "input_hash": null, "attempt": 1}]'::jsonb,
    'the payload is recorded at the wait''s seq in the waiter''s log'
);
select is(
    (select jsonb_build_object('payload', v.payload, 'emitted_at', v.emitted_at)
     from durable.event_values v where v.key = 'order:1'),
    jsonb_build_object('payload', '{"ok": true}'::jsonb, 'emitted_at', '2030-01-01 00:00:00+00'::timestamptz),
    'the key''s latch is set'
);
select pg_notify('durable', 'sentinel');
commit;
select is(pg_temp.notified_before_sentinel('l'), array['q'], 'the emit notified the waiter''s queue');
select is(
    (select jsonb_agg(jsonb_build_object('channel', x.channel, 'pid', x.pid = pg_backend_pid())) from notified x),
    '[{"channel": "durable", "pid": true}]'::jsonb,
    'on channel durable, from the emitting session'
);
select dblink_disconnect('l');

-- the re-run gets the recorded payload
create temp table c1b as select * from durable.claim('q', 'w2', 10, 300);
select is((select array_agg(task_id) from c1b), (select array_agg(id) from w1), 'the woken task is claimed');
select is(
    (select jsonb_array_length(history) from c1b), 2, 'with both of its events'
);
select is(
    (select durable.wait_event(c1b.task_id, c1b.lease_token, 2, 'order:1') from c1b),
    '{"seq": 2, "kind": "wait", "name": "order:1", "outcome": "ok",
      "result": {"payload": {"ok": true}, "timed_out": false}}'::jsonb,
    'the re-run''s wait returns the recorded event (the payload) without suspending'
);
select is(
    (select durable.wait_event(c1b.task_id, c1b.lease_token, 2, 'order:1') from c1b),
    (select history -> 1 from c1b),
    'exactly as its history lists it'
);
select is((select status from durable.all_tasks where task_id = (select id from w1)), 'running',
          'the re-run keeps running');
-- (undone after its checks)
select pg_temp.nondeterminism_ok(
    format($$select durable.wait_event(%L, %L, 2, 'order:2')$$, c1b.task_id, c1b.lease_token),
    c1b.task_id, c1b.lease_token,
    jsonb_build_object(
        'task_id', c1b.task_id, 'seq', 2,
        'recorded', '{"kind": "wait", "name": "order:1", "input_hash": null}'::jsonb,
        'presented', '{"kind": "wait", "name": "order:2", "input_hash": null}'::jsonb,
        'message', format('non-determinism in task %s at event 2: recorded wait "order:1", the code did wait "order:2"',
                          c1b.task_id)),
    'a wait for another key at the recorded seq is a non-determinism')
from c1b;
select is((select count(*) from durable.events where task_id = (select id from w1)), 2::bigint,
          'the re-run recorded nothing new');

-- the latch: emit first, wait later
select is(durable.emit_event('latch', 'k2', '{"v": 1}'), 0, 'an emit with no waiter wakes nobody');
create temp table w2 as select durable.enqueue('latch', 'wf', '{}', '{"durable": true}') as id;
create temp table c2 as select * from durable.claim('latch', 'w1', 1, 300);
select is(
    (select durable.wait_event(c2.task_id, c2.lease_token, 1, 'k2', 60) from c2),
    '{"seq": 1, "kind": "wait", "name": "k2", "outcome": "ok", "result": {"payload": {"v": 1}, "timed_out": false}}'::jsonb,
    'a wait for a key already emitted gets its payload at once'
);
select is(
    (select jsonb_build_object('status', k.status, 'lease', k.lease_token = c2.lease_token, 'wake_at', k.wake_at)
     from durable.all_tasks k, c2 where k.task_id = c2.task_id),
    '{"status": "running", "lease": true, "wake_at": null}'::jsonb,
    'it does not suspend: same lease, still running'
);
select is((select count(*) from durable.attempts where task_id = (select id from w2)), 0::bigint,
          'no attempt ended');
select is(
    (select result from durable.events where task_id = (select id from w2) and seq = 1),
    '{"payload": {"v": 1}, "timed_out": false}'::jsonb,
    'the payload is recorded at the wait''s seq'
);

-- a later emit replaces the payload for later waits, not for recorded ones
select is(durable.emit_event('latch', 'k2', '{"v": 2}'), 0, 'a second emit wakes nobody (the first waiter is running)');
create temp table w3 as select durable.enqueue('latch', 'wf', '{}', '{"durable": true}') as id;
create temp table c3 as select * from durable.claim('latch', 'w1', 1, 300);
select is(
    (select durable.wait_event(c3.task_id, c3.lease_token, 1, 'k2') from c3) #> '{result,payload}',
    '{"v": 2}'::jsonb,
    'a wait after the second emit gets the second payload'
);
select is(
    (select durable.wait_event(c2.task_id, c2.lease_token, 1, 'k2', 60) from c2) #> '{result,payload}',
    '{"v": 1}'::jsonb,
    'the first waiter''s recorded payload is unchanged'
);

-- an emit with no payload is still an emit
select durable.emit_event('latch', 'k-null');
create temp table w_null as select durable.enqueue('latch', 'wf', '{}', '{"durable": true}') as id;
create temp table c_null as select * from durable.claim('latch', 'w1', 1, 300);
select is(
    (select durable.wait_event(c_null.task_id, c_null.lease_token, 1, 'k-null') from c_null),
    '{"seq": 1, "kind": "wait", "name": "k-null", "outcome": "ok", "result": {"payload": null, "timed_out": false}}'::jsonb,
    'a key emitted without payload releases the wait with payload null, timed_out false'
);

-- several waiters on one key; another key's waiter stays
create temp table many as
select durable.enqueue('latch', 'wf', jsonb_build_object('i', i), '{"durable": true}') as id, i
from generate_series(1, 3) as i;
create temp table c_many as select * from durable.claim('latch', 'w1', 3, 300);
select is((select count(*) from c_many), 3::bigint, 'three waiters are claimed');
select durable.wait_event(c.task_id, c.lease_token, 1, case when c.input ->> 'i' = '3' then 'k3b' else 'k3' end)
from c_many c;
select is(durable.emit_event('latch', 'k3', '"go"'), 2, 'an emit wakes every task waiting for its key');
select is(
    (select jsonb_object_agg(m.i, jsonb_build_object('status', k.status, 'result', e.result))
     from many m join durable.all_tasks k on k.task_id = m.id
     left join durable.events e on e.task_id = m.id and e.seq = 1),
    '{"1": {"status": "pending", "result": {"payload": "go", "timed_out": false}},
      "2": {"status": "pending", "result": {"payload": "go", "timed_out": false}},
      "3": {"status": "waiting", "result": null}}'::jsonb,
    'both waiters of k3 are pending with the payload recorded; the waiter of k3b still waits'
);

-- a wait with a timeout: the claim's sweep records {"timed_out": true}
create temp table w7 as select durable.enqueue('timeouts', 'wf', '{}', '{"durable": true}') as id;
create temp table c7 as select * from durable.claim('timeouts', 'w1', 1, 300);
select is(
    (select durable.wait_event(c7.task_id, c7.lease_token, 1, 'k4', 30) from c7),
    '{"seq": 1, "kind": "wait", "name": "k4", "suspended": true}'::jsonb,
    'a wait with a timeout for a key not emitted suspends'
);
select is(
    (select wake_at from durable.all_tasks where task_id = (select id from w7)),
    '2030-01-01 00:00:30+00'::timestamptz,
    'it wakes at the latest when the timeout passes'
);
select is(durable.next_wake('timeouts'), '2030-01-01 00:00:30+00'::timestamptz, 'next_wake is the timeout');
select set_config('durable.fake_now', '2030-01-01 00:00:29.999+00', false);
select is((select count(*) from durable.claim('timeouts', 'w2', 1, 300)), 0::bigint,
          'not claimable before the timeout');
select set_config('durable.fake_now', '2030-01-01 00:00:30+00', false);
create temp table c7b as select * from durable.claim('timeouts', 'w2', 1, 300);
select is((select array_agg(task_id) from c7b), (select array_agg(id) from w7),
          'claimable once the timeout passed');
select is(
    (select jsonb_build_object('kind', e.kind, 'name', e.name, 'result', e.result, 'attempt', e.attempt)
     from durable.events e where e.task_id = (select id from w7) and e.seq = 1),
    '{"kind": "wait", "name": "k4", "result": {"payload": null, "timed_out": true}, "attempt": 1}'::jsonb,
    'the sweep recorded the timeout at the wait''s seq'
);
select is(durable.emit_event('timeouts', 'k4', '"late"'), 0, 'a late emit wakes nobody');
select is(
    (select durable.wait_event(c7b.task_id, c7b.lease_token, 1, 'k4', 30) from c7b),
    '{"seq": 1, "kind": "wait", "name": "k4", "outcome": "ok", "result": {"payload": null, "timed_out": true}}'::jsonb,
    'the re-run sees the timeout, not the late payload'
);

-- argument checks
select throws_ok(
    $$select durable.wait_event(c7b.task_id, c7b.lease_token, 2, '') from c7b$$,
    'DU001', null, 'an empty key raises DU001'
);
select throws_ok(
    $$select durable.wait_event(c7b.task_id, c7b.lease_token, 2, 'k5', -1) from c7b$$,
    'DU001', null, 'a negative timeout raises DU001'
);
select throws_ok(
    $$select durable.wait_event(c7b.task_id, c7b.lease_token, 3, 'k5') from c7b$$,
    'DU021', null, 'a wait past the end of the log raises DU021'
);
select throws_ok($$select durable.emit_event('q', '')$$, 'DU001', null, 'emitting an empty key raises DU001');
select throws_ok(
    $$select durable.emit_event('q', 'big', to_jsonb(repeat('x', durable.max_payload_bytes() + 1)))$$,
    'DU003', null, 'a payload over the limit raises DU003'
);
select is((select count(*) from durable.event_values where key in ('big', 'k5')), 0::bigint,
          'the rejected calls left no latch');
select durable.enqueue('plain', 'job', '{}');
create temp table c_plain as select * from durable.claim('plain', 'w1', 1, 300);
select throws_ok(
    $$select durable.wait_event(c_plain.task_id, c_plain.lease_token, 1, 'k2') from c_plain$$,
    'DU012', null, 'a plain (not durable) task cannot wait (DU012)'
);

-- the latch stays set for a later generation: a replayed task's wait gets the payload at once
select durable.create_queue('again');
select durable.emit_event('again', 'k-again', '{"v": "kept"}');
create temp table w_again as select durable.enqueue('again', 'wf', '{}', '{"durable": true}') as id;
create temp table c_again as select * from durable.claim('again', 'w1', 1, 300);
select durable.wait_event(c.task_id, c.lease_token, 1, 'k-again') from c_again c;
select is(
    (select durable.complete(c.task_id, c.lease_token, '{}') from c_again c),
    '{"completed": true}'::jsonb,
    'a task that got the payload of an emitted key completes'
);
select is(durable.replay((select id from w_again)), 2, 'and is replayed');
create temp table c_again2 as select * from durable.claim('again', 'w1', 1, 300);
select is(
    (select durable.wait_event(c.task_id, c.lease_token, 1, 'k-again') from c_again2 c),
    '{"seq": 1, "kind": "wait", "name": "k-again", "outcome": "ok", "result": {"payload": {"v": "kept"}, "timed_out": false}}'::jsonb,
    'the new generation''s wait for the key gets its payload at once'
);
select is(
    (select jsonb_agg(jsonb_build_object('generation', h.generation, 'seq', h.seq, 'kind', h.kind) order by h.generation)
     from durable.history((select id from w_again), true) h),
    '[{"generation": 1, "seq": 1, "kind": "wait"}, {"generation": 2, "seq": 1, "kind": "wait"}]'::jsonb,
    'recorded in generation 2, as in generation 1'
);

select * from finish();

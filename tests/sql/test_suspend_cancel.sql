-- Cancellation of suspended tasks and its cascade: cancelling a task cancels its
-- unfinished children and grandchildren whatever their state (pending, running, sleeping,
-- waiting for an event or for children), clears every wait, leaves finished children
-- alone; the worker of a cancelled running child gets DU011; nothing wakes a cancelled
-- task afterwards.
select plan(29);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue(q)
from unnest(array['roots', 'kp', 'kr', 'ks', 'kw', 'kwc', 'kd', 'gp', 'gs', 'solo']) as q;

create temp table r as select durable.enqueue('roots', 'root', '{}', '{"durable": true}') as id;
create temp table cr as select * from durable.claim('roots', 'w', 1, 3600);

-- one child in each state
create temp table kids (role text primary key, id uuid);
insert into kids
select s.role, (durable.spawn(cr.task_id, cr.lease_token, s.seq, s.queue, s.role, '{}', s.options) #>> '{result,task_id}')::uuid
from cr, (values (1, 'pending', 'kp', '{}'::jsonb), (2, 'running', 'kr', '{}'),
                 (3, 'sleeping', 'ks', '{"durable": true}'), (4, 'waiting', 'kw', '{"durable": true}'),
                 (5, 'waiting children', 'kwc', '{"durable": true}'), (6, 'completed', 'kd', '{}'))
     as s (seq, role, queue, options)
order by s.seq;

create temp table c_run as select * from durable.claim('kr', 'wr', 1, 3600);
create temp table c_sleep as select * from durable.claim('ks', 'ws', 1, 3600);
select durable.sleep(c.task_id, c.lease_token, 1, 'nap', 600) from c_sleep c;
create temp table c_wait as select * from durable.claim('kw', 'ww', 1, 3600);
select durable.wait_event(c.task_id, c.lease_token, 1, 'never', 600) from c_wait c;
create temp table c_done as select * from durable.claim('kd', 'wd', 1, 3600);
select durable.complete(c.task_id, c.lease_token, '{"kept": true}') from c_done c;

-- the waiting-for-children child has two grandchildren: one pending, one sleeping
create temp table c_wc as select * from durable.claim('kwc', 'wc', 1, 3600);
insert into kids
select s.role, (durable.spawn(c.task_id, c.lease_token, s.seq, s.queue, s.role, '{}', s.options) #>> '{result,task_id}')::uuid
from c_wc c, (values (1, 'grandchild pending', 'gp', '{}'::jsonb), (2, 'grandchild sleeping', 'gs', '{"durable": true}'))
     as s (seq, role, queue, options)
order by s.seq;
create temp table c_gs as select * from durable.claim('gs', 'wg', 1, 3600);
select durable.sleep(c.task_id, c.lease_token, 1, 'nap', 900) from c_gs c;
select durable.wait_children(c.task_id, c.lease_token, 3,
                             array[(select id from kids where role = 'grandchild pending'),
                                   (select id from kids where role = 'grandchild sleeping')])
from c_wc c;

-- the root waits for its six children
select durable.wait_children(cr.task_id, cr.lease_token, 7,
                             array(select k.id from kids k where k.role not like 'grandchild%' order by k.id))
from cr;

select is(
    (select jsonb_object_agg(k.role, t.status) from kids k join durable.all_tasks t on t.task_id = k.id),
    '{"pending": "pending", "running": "running", "sleeping": "sleeping", "waiting": "waiting",
      "waiting children": "waiting", "completed": "completed",
      "grandchild pending": "pending", "grandchild sleeping": "sleeping"}'::jsonb,
    'the tree is set up: a child in every state, two grandchildren'
);
select is((select status from durable.all_tasks, r where task_id = r.id), 'waiting', 'the root waits for its children');

-- cancel the root
select is(durable.cancel((select id from r), 'stop'), true, 'cancel returns true');
select is(
    (select jsonb_build_object('status', t.status, 'error', t.error, 'finished_at', t.finished_at,
                               'wait_kind', t.wait_kind, 'wait_key', t.wait_key, 'wait_seq', t.wait_seq,
                               'wait_children', t.wait_children, 'wake_at', t.wake_at)
     from durable.all_tasks t, r where t.task_id = r.id),
    jsonb_build_object('status', 'cancelled', 'error', '{"type": "Cancelled", "message": "stop"}'::jsonb,
                       'finished_at', '2030-01-01 00:00:00+00'::timestamptz, 'wait_kind', null, 'wait_key', null,
                       'wait_seq', null, 'wait_children', null, 'wake_at', null),
    'the waiting root is cancelled with its wait cleared'
);
select is(
    (select jsonb_object_agg(k.role, t.status) from kids k join durable.all_tasks t on t.task_id = k.id),
    '{"pending": "cancelled", "running": "cancelled", "sleeping": "cancelled", "waiting": "cancelled",
      "waiting children": "cancelled", "completed": "completed",
      "grandchild pending": "cancelled", "grandchild sleeping": "cancelled"}'::jsonb,
    'the cancel cascades to pending, running, sleeping and waiting children and to grandchildren; the finished child stays'
);
select is(
    (select jsonb_object_agg(k.role, t.error ->> 'message') from kids k join durable.all_tasks t on t.task_id = k.id
     where k.role not in ('completed')),
    (select jsonb_object_agg(k.role, format('parent task %s was cancelled',
                                            case when k.role like 'grandchild%'
                                                 then (select id from kids where role = 'waiting children')
                                                 else (select id from r) end))
     from kids k where k.role not in ('completed')),
    'each cascaded cancel names the cancelled parent'
);
select is(
    (select count(*) from durable.all_tasks t
     where t.wake_at is not null or t.wait_kind is not null or t.wait_key is not null
        or t.wait_seq is not null or t.wait_children is not null),
    0::bigint,
    'no task is left sleeping or waiting on anything: every wait was cleared'
);
select is(
    (select jsonb_build_object('status', t.status, 'output', t.output, 'error', t.error)
     from durable.all_tasks t join kids k on k.id = t.task_id where k.role = 'completed'),
    '{"status": "completed", "output": {"kept": true}, "error": null}'::jsonb,
    'the completed child keeps its output'
);
select is(
    (select jsonb_build_object('outcome', a.outcome, 'error', a.error ->> 'type', 'worker', a.worker)
     from durable.attempts a join kids k on k.id = a.task_id where k.role = 'running'),
    '{"outcome": "cancelled", "error": "Cancelled", "worker": "wr"}'::jsonb,
    'the running child''s attempt ended as cancelled'
);
select is(
    (select jsonb_object_agg(k.role, (select array_agg(a.outcome order by a.attempt) from durable.attempts a
                                     where a.task_id = k.id))
     from kids k where k.role in ('sleeping', 'waiting', 'waiting children', 'grandchild sleeping')),
    '{"sleeping": ["suspended"], "waiting": ["suspended"], "waiting children": ["suspended"],
      "grandchild sleeping": ["suspended"]}'::jsonb,
    'a suspended task''s cancel ends no second attempt'
);

-- the running child's worker learns it at its next call
select throws_ok(
    $$select durable.heartbeat(c.task_id, c.lease_token) from c_run c$$,
    'DU011', null, 'the cancelled running child''s heartbeat raises DU011'
);
select throws_ok(
    $$select durable.complete(c.task_id, c.lease_token, '{}') from c_run c$$,
    'DU011', null, 'its complete raises DU011'
);
select throws_ok(
    $$select durable.fail(c.task_id, c.lease_token, '{"type": "X"}') from c_run c$$,
    'DU011', null, 'its fail raises DU011'
);
select is((select status from durable.all_tasks t, c_run c where t.task_id = c.task_id), 'cancelled',
          'and it stays cancelled');

-- the cancelled parents were not woken by their children's ends
select is(
    (select jsonb_build_object(
        'root', (select array_agg(e.kind order by e.seq) from durable.events e, r where e.task_id = r.id),
        'child', (select array_agg(e.kind order by e.seq) from durable.events e
                  where e.task_id = (select id from kids where role = 'waiting children')))),
    '{"root": ["spawn", "spawn", "spawn", "spawn", "spawn", "spawn"], "child": ["spawn", "spawn"]}'::jsonb,
    'no outcome was recorded for the waits of the cancelled parents'
);

-- nothing brings a cancelled task back: not an emit, not the sweep, not a claim
select is(durable.emit_event('kw', 'never', '"late"'), 0, 'an emit of the key the cancelled child waited for wakes nobody');
select is(
    (select count(*) from durable.all_tasks t where t.status = 'cancelled'),
    8::bigint,
    'the eight cancelled tasks (root, five children, two grandchildren) are still cancelled'
);
select is(
    (select jsonb_agg(durable.next_wake(q) order by q) from unnest(array['ks', 'kw', 'gs']) as q),
    '[null, null, null]'::jsonb,
    'no queue expects a wake-up'
);
select set_config('durable.fake_now', '2030-01-02 00:00:00+00', false);
select is(
    (select count(*) from unnest(array['roots', 'kp', 'kr', 'ks', 'kw', 'kwc', 'kd', 'gp', 'gs']) as q,
                          durable.claim(q, 'late', 10, 60) as c),
    0::bigint,
    'a day later, no claim on any queue returns a task of the tree'
);
select is(
    (select count(*) from durable.all_tasks t where t.status = 'cancelled'),
    8::bigint,
    'and they are all still cancelled'
);

-- cancel again, cancel a finished task
select is(durable.cancel((select id from r)), false, 'cancelling the root again returns false');
select throws_ok(
    format('select durable.cancel(%L)', (select id from kids where role = 'completed')),
    'DU012', null, 'cancelling the completed child raises DU012'
);

-- cancelling a sleeping or waiting task on its own
select set_config('durable.fake_now', '2030-01-03 00:00:00+00', false);
create temp table solo as
select n, durable.enqueue('solo', 'wf', jsonb_build_object('n', n), '{"durable": true}') as id
from generate_series(1, 2) as n;
create temp table c_solo as select * from durable.claim('solo', 'w', 2, 3600);
select durable.sleep(c.task_id, c.lease_token, 1, 'nap', 60) from c_solo c where c.input ->> 'n' = '1';
select durable.wait_event(c.task_id, c.lease_token, 1, 'solo-key', 60) from c_solo c where c.input ->> 'n' = '2';
select is(
    (select array_agg(t.status order by s.n) from solo s join durable.all_tasks t on t.task_id = s.id),
    array['sleeping', 'waiting'],
    'one task sleeps, one waits'
);
select is(
    (select array_agg(durable.cancel(s.id) order by s.n) from solo s),
    array[true, true],
    'both are cancelled'
);
select is(
    (select jsonb_agg(jsonb_build_object('status', t.status, 'wake_at', t.wake_at, 'wait_key', t.wait_key,
                                         'wait_kind', t.wait_kind, 'wait_seq', t.wait_seq) order by s.n)
     from solo s join durable.all_tasks t on t.task_id = s.id),
    '[{"status": "cancelled", "wake_at": null, "wait_key": null, "wait_kind": null, "wait_seq": null},
      {"status": "cancelled", "wake_at": null, "wait_key": null, "wait_kind": null, "wait_seq": null}]'::jsonb,
    'the cancel cleared the sleep and the wait'
);
select is(durable.next_wake('solo'), null, 'the queue expects no wake-up');
select is(durable.emit_event('solo', 'solo-key', '"hello"'), 0, 'an emit for the key wakes nobody');
select set_config('durable.fake_now', '2030-01-03 00:05:00+00', false);
select is((select count(*) from durable.claim('solo', 'w', 10, 60)), 0::bigint,
          'after both wake times, the claim returns neither');
select is(
    (select count(*) from durable.events e join solo s on s.id = e.task_id),
    1::bigint,
    'only the sleep was ever recorded: no payload, no timeout for the cancelled wait'
);

select * from finish();

-- durable.purge_event_keys: retention for event latches.
select plan(6);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('q');
select durable.emit_event('q', 'old', '{"n": 1}');
select set_config('durable.fake_now', '2030-01-01 01:00:00+00', false);
select durable.emit_event('q', 'recent', '{"n": 2}');

-- a key a task waits for (never emitted), and a placeholder nobody waits for any more
create temp table w as select durable.enqueue('q', 'wf', '{}', '{"durable": true}') as id;
create temp table c as select * from durable.claim('q', 'w', 1, 3600);
select durable.wait_event((select task_id from c), (select lease_token from c), 1, 'awaited');
insert into durable.event_values (queue, key) values ('q', 'abandoned');

select is(durable.purge_event_keys('q', 1800), 2, 'deletes the key emitted before the cutoff and the abandoned placeholder');
select results_eq(
    $$select key from durable.event_values order by key$$,
    $$values ('awaited'), ('recent')$$,
    'keeps a recent latch and the key a task waits for'
);
select is(
    (select status from durable.all_tasks where task_id = (select id from w)), 'waiting',
    'the waiting task still waits'
);
select is(durable.emit_event('q', 'awaited', '{"ok": true}'), 1, 'and an emit still wakes it');
select throws_ok($$select durable.purge_event_keys('q', -1)$$, 'DU001', null, 'a negative age is refused');
select throws_ok($$select durable.purge_event_keys('q', 1, 0)$$, 'DU001', null, 'a limit below 1 is refused');

select * from finish();

-- A slot is released on every way out of running: complete, fail (retried or final),
-- cancel, release, lease expiry, timeout, durable sleep, durable wait; and kept while a
-- durable task sleeps or waits on a queue with hold_slots_while_suspended.
--
-- Each case: a queue with concurrency_limit 1 and concurrency_key_limit 1; task x of key
-- k runs, task y of key k waits and cannot start; x leaves running one way; y starts.
select plan(25);

create function pg_temp.at(p_seconds double precision) returns timestamptz language sql as $$
    select set_config('durable.fake_now',
                      ('2030-01-01 00:00:00+00'::timestamptz + make_interval(secs => p_seconds))::text,
                      false)::timestamptz
$$;
create temp table x (queue text primary key, id uuid, token uuid);
-- the queue, x running (durable when asked), y waiting; true when y is blocked
create function pg_temp.setup(p_queue text, p_options jsonb default '{}', p_x_options jsonb default '{}')
returns boolean language plpgsql as $$
begin
    perform durable.create_queue(p_queue, '{"concurrency_limit": 1, "concurrency_key_limit": 1}'::jsonb || p_options);
    perform durable.enqueue(p_queue, 'job', '{"n": "x"}', '{"concurrency_key": "k"}'::jsonb || p_x_options);
    perform durable.enqueue(p_queue, 'job', '{"n": "y"}', '{"concurrency_key": "k"}');
    insert into x select p_queue, c.task_id, c.lease_token from durable.claim(p_queue, 'w', 10, 30) c;
    return (select count(*) = 0 from durable.claim(p_queue, 'w', 10, 30));
end;
$$;
-- what a claim of 10 starts now, by name
create function pg_temp.next(p_queue text) returns text[] language sql as $$
    select coalesce(array_agg(c.input ->> 'n' order by c.input ->> 'n'), '{}') from durable.claim(p_queue, 'w', 10, 30) c
$$;
create function pg_temp.xid(p_queue text) returns uuid language sql as $$ select id from x where queue = p_queue $$;
create function pg_temp.xtok(p_queue text) returns uuid language sql as $$ select token from x where queue = p_queue $$;

select pg_temp.at(0);

select ok(pg_temp.setup('c'), 'complete: while x runs, y waits');
select durable.complete(pg_temp.xid('c'), pg_temp.xtok('c'), '{}');
select is(pg_temp.next('c'), array['y'], 'complete releases the slot: y starts');

select ok(pg_temp.setup('f'), 'fail (retried): y waits');
select is((select status from durable.fail(pg_temp.xid('f'), pg_temp.xtok('f'), '{"message": "boom"}')), 'pending',
          'x fails and will be retried');
select is(pg_temp.next('f'), array['y'], 'a failure releases the slot: y starts (x waits out its backoff)');

select ok(pg_temp.setup('ff'), 'fail (final): y waits');
select durable.fail(pg_temp.xid('ff'), pg_temp.xtok('ff'), '{"message": "boom"}', false);
select is(pg_temp.next('ff'), array['y'], 'a final failure releases the slot');

select ok(pg_temp.setup('x'), 'cancel: y waits');
select durable.cancel(pg_temp.xid('x'), 'stop');
select is(pg_temp.next('x'), array['y'], 'cancelling a running task releases its slot');

select ok(pg_temp.setup('r'), 'release: y waits');
select durable.release(pg_temp.xid('r'), pg_temp.xtok('r'), 0, 'not mine');
select is(pg_temp.next('r'), array['x'], 'a released task gives its slot back (and, due again, takes it first)');

select ok(pg_temp.setup('l'), 'lease expiry: y waits');
select pg_temp.at(31);
select is(pg_temp.next('l'), array['x'],
          'x''s lease ran out: the claim reclaims it first, its slot is free, and x, which keeps its place, starts again');
select is((select jsonb_build_object('status', status, 'lost', lost_leases, 'attempt', attempt)
           from durable.all_tasks where task_id = pg_temp.xid('l')),
          '{"status": "running", "lost": 1, "attempt": 2}'::jsonb, 'x runs its second attempt after its lost lease');

select pg_temp.at(0);
select ok(pg_temp.setup('t', '{}', '{"timeout": 5}'), 'timeout: y waits');
select pg_temp.at(6);
select is(pg_temp.next('t'), array['y'], 'x outlived its timeout: failed as timed_out, its slot is free');

-- durable sleep and wait (statuses sleeping and waiting hold no slot)
select pg_temp.at(0);
select ok(pg_temp.setup('s', '{}', '{"durable": true}'), 'sleep: y waits');
select is(durable.sleep(pg_temp.xid('s'), pg_temp.xtok('s'), 1, 'nap', 600) ->> 'suspended', 'true', 'x sleeps');
select is(pg_temp.next('s'), array['y'], 'a sleeping task holds no slot: y starts');

select ok(pg_temp.setup('w', '{}', '{"durable": true}'), 'wait: y waits');
select is(durable.wait_event(pg_temp.xid('w'), pg_temp.xtok('w'), 1, 'release-test') ->> 'suspended', 'true',
          'x waits for an event');
select is(pg_temp.next('w'), array['y'], 'a waiting task holds no slot: y starts');

-- hold_slots_while_suspended: the sleeper keeps its slot until it wakes and ends
select ok(pg_temp.setup('h', '{"hold_slots_while_suspended": true}', '{"durable": true}'), 'held: y waits');
select durable.sleep(pg_temp.xid('h'), pg_temp.xtok('h'), 1, 'nap', 60);
select is(pg_temp.next('h'), '{}'::text[], 'with hold_slots_while_suspended, the sleeping x keeps its slot: y still waits');
select pg_temp.at(61);
select is(pg_temp.next('h'), array['y'],
          'x wakes: pending again, it holds no slot any more, and y (first in claim order) starts');

select * from finish();

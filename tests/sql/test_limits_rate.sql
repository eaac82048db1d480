-- Rate limits: at most N starts in any period-long window (a SLIDING window: the starts
-- in (now - period, now] count), per concurrency key or for the whole queue. Tasks over
-- the limit wait pending; they are never failed. The test clock moves time.
select plan(20);

create function pg_temp.at(p_seconds double precision) returns timestamptz language sql as $$
    select set_config('durable.fake_now',
                      ('2030-01-01 00:00:00+00'::timestamptz + make_interval(secs => p_seconds))::text,
                      false)::timestamptz
$$;
create temp table held (n text, id uuid primary key, token uuid);
create function pg_temp.enq(p_queue text, p_n text, p_options jsonb default '{}') returns uuid language sql as $$
    select durable.enqueue(p_queue, 'job', jsonb_build_object('n', p_n), p_options)
$$;
create function pg_temp.take(p_queue text, p_max integer default 10) returns text[] language sql as $$
    with c as (select * from durable.claim(p_queue, 'w', p_max, 300)),
    ins as (insert into held select c.input ->> 'n', c.task_id, c.lease_token from c returning n)
    select coalesce(array_agg(ins.n order by ins.n), '{}') from ins
$$;
-- completes everything claimed (rate limits are about starts, not about what runs)
create function pg_temp.done_all() returns void language sql as $$
    select count(durable.complete(h.id, h.token, '{}')) from held h;
    delete from held;
$$;

-- 1. per key: 3 starts per 10 seconds
select pg_temp.at(0);
select durable.create_queue('r', '{"rate_limit": {"limit": 3, "period": 10}}');
select pg_temp.enq('r', 'a' || i, '{"concurrency_key": "a"}') from generate_series(1, 5) as i;
select pg_temp.enq('r', 'b' || i, '{"concurrency_key": "b"}') from generate_series(1, 2) as i;
select pg_temp.enq('r', 'nokey');
select is(pg_temp.take('r'), array['a1', 'a2', 'a3', 'b1', 'b2', 'nokey'],
          't=0: key a starts 3 (its rate), b its 2; a task without a key is not rate limited');
select pg_temp.done_all();
select is(pg_temp.take('r'), '{}'::text[], 't=0: nothing runs, yet a4 and a5 may not start (rate, not concurrency)');
select is(
    (select jsonb_object_agg(k.input ->> 'n', k.status) from durable.all_tasks k where k.queue = 'r' and k.status <> 'completed'),
    '{"a4": "pending", "a5": "pending"}'::jsonb,
    'over the limit, tasks wait pending: they are not failed'
);
select is(
    (select jsonb_agg(jsonb_build_array(u.concurrency_key, u.recent_starts) order by u.concurrency_key)
     from durable.limit_usage('r') as u where u.concurrency_key is not null),
    '[["a", 3], ["b", 2]]'::jsonb,
    'limit_usage shows the starts in the window per key'
);
select pg_temp.at(9.999);
select is(pg_temp.take('r'), '{}'::text[], 't=9.999: the starts at 0 are still in the window');
select pg_temp.at(10);
select is(pg_temp.take('r'), array['a4', 'a5'], 't=10: the window (0, 10] no longer holds them: a4, a5 start');
select pg_temp.done_all();

-- sliding, not fixed: at t=20 a fixed window [20, 30) would allow 3 again; the sliding
-- window (10, 20] still holds the start at 12
select pg_temp.at(12);
select pg_temp.enq('r', 'a' || i, '{"concurrency_key": "a"}') from generate_series(6, 9) as i;
select is(pg_temp.take('r'), array['a6'], 't=12: two starts at 10 in the window: one more (a6)');
select pg_temp.at(19.9);
select is(pg_temp.take('r'), '{}'::text[], 't=19.9: starts at 10, 10, 12 in the window: none');
select pg_temp.at(20);
select is(pg_temp.take('r'), array['a7', 'a8'], 't=20: the start at 12 still counts: two, not three');
select pg_temp.at(21.9);
select is(pg_temp.take('r'), '{}'::text[], 't=21.9: starts at 12, 20, 20: none');
select pg_temp.at(22);
select is(pg_temp.take('r'), array['a9'], 't=22: the start at 12 left the window: a9');
select pg_temp.done_all();

-- the log keeps only what is in the window; a key whose window passed loses its row
select pg_temp.at(100);
select pg_temp.enq('r', 'c1', '{"concurrency_key": "c"}');
select is(pg_temp.take('r'), array['c1'], 't=100: c1 starts');
select is(
    (select jsonb_object_agg(ls.concurrency_key, cardinality(ls.start_times)) from durable.limit_state ls where ls.queue = 'r'),
    '{"c": 1}'::jsonb,
    'the logs of a and b (nothing in the window) are gone; c''s holds its one claim'
);

-- 2. the whole queue: 2 starts per second, keys or not
select pg_temp.at(0);
select durable.create_queue('rq', '{"rate_limit": {"limit": 2, "period": 1, "per": "queue"}}');
select pg_temp.enq('rq', 'q' || i, case when i % 2 = 0 then '{"concurrency_key": "k"}'::jsonb else '{}'::jsonb end)
from generate_series(1, 5) as i;
select is(pg_temp.take('rq'), array['q1', 'q2'], 't=0: 2 of 5 start (per queue)');
select pg_temp.at(0.5);
select is(pg_temp.take('rq'), '{}'::text[], 't=0.5: none');
select pg_temp.at(1);
select is(pg_temp.take('rq', 1), array['q3'], 't=1: a claim of 1 takes one of the two starts');
select is(pg_temp.take('rq'), array['q4'], 'the next claim the other');
select is(pg_temp.take('rq'), '{}'::text[], 'then none');

-- 3. rate and concurrency together: both apply
select pg_temp.at(0);
select durable.create_queue('both', '{"rate_limit": {"limit": 5, "period": 60}, "concurrency_key_limit": 1}');
select pg_temp.enq('both', 'x' || i, '{"concurrency_key": "x"}') from generate_series(1, 8) as i;
select is(pg_temp.take('both'), array['x1'], 'concurrency 1 per key: one starts although the rate allows 5');
select pg_temp.done_all();
select pg_temp.take('both');
select pg_temp.done_all();
select pg_temp.take('both');
select pg_temp.done_all();
select pg_temp.take('both');
select pg_temp.done_all();
select pg_temp.take('both');
select pg_temp.done_all();
select is(
    (select jsonb_build_object('started', count(*) filter (where status = 'completed'),
                               'pending', count(*) filter (where status = 'pending'),
                               'more', (select cardinality(pg_temp.take('both'))))
     from durable.all_tasks where queue = 'both'),
    '{"started": 5, "pending": 3, "more": 0}'::jsonb,
    'one at a time, 5 start within the minute, then the rate stops the sixth'
);

select * from finish();

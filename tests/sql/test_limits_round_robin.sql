-- round_robin: keys take turns (start-time fair queuing tags, see limits.sql).
--
-- The fairness bound, asserted here: a task whose key has no other waiting task starts
-- before every waiting task of the same priority with a larger tag; with K keys having
-- ready tasks, at most K - 1 other tasks of its priority start before it (its own key
-- not at its limit). With one key holding 5,000 waiting tasks and another key getting
-- one task, that task is the very next start (K = 2: at most 1, here 0).
select plan(17);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);

create temp table held (n text, id uuid primary key, token uuid);
create function pg_temp.enq(p_queue text, p_n text, p_options jsonb default '{}')
returns uuid language sql as $$
    select durable.enqueue(p_queue, 'job', jsonb_build_object('n', p_n), p_options)
$$;
create function pg_temp.many(p_queue text, p_key text, p_count integer) returns bigint language sql as $$
    select count(*) from durable.enqueue_many(p_queue, (
        select jsonb_agg(jsonb_build_object('task_name', 'job', 'input', jsonb_build_object('n', p_key || i),
                                            'options', jsonb_build_object('concurrency_key', p_key)) order by i)
        from generate_series(1, p_count) as i))
$$;
-- claims one task at a time, p_claims times; returns the names in start order
create function pg_temp.starts(p_queue text, p_claims integer, p_max integer default 1) returns text[]
language plpgsql as $$
declare
    v text[] := '{}';
    c record;
begin
    for i in 1..p_claims loop
        for c in select * from durable.claim(p_queue, 'w', p_max, 300) loop
            insert into held values (c.input ->> 'n', c.task_id, c.lease_token);
            v := v || (c.input ->> 'n');
        end loop;
    end loop;
    return v;
end;
$$;
create function pg_temp.done_all() returns void language sql as $$
    select count(durable.complete(h.id, h.token, '{}')) from held h;
    delete from held;
$$;

-- 1. the bound: 5,000 waiting tasks of key a, then one task of key b
select durable.create_queue('rr', '{"concurrency_strategy": "round_robin"}');
select is(pg_temp.many('rr', 'a', 5000), 5000::bigint, 'key a has 5,000 waiting tasks');
analyze durable.tasks;
select is(pg_temp.starts('rr', 3), array['a1', 'a2', 'a3'], 'alone, key a is served in FIFO order');
select pg_temp.enq('rr', 'b1', '{"concurrency_key": "b"}');
select is(pg_temp.starts('rr', 1), array['b1'],
          'a task of key b enqueued behind 4,997 tasks of key a is the very next start (bound K - 1 = 1)');
select pg_temp.enq('rr', n, '{"concurrency_key": "b"}') from unnest(array['b2', 'b3', 'b4']) as n;
select is(pg_temp.starts('rr', 6), array['a4', 'b2', 'a5', 'b3', 'a6', 'b4'],
          'while both have waiting tasks, a and b alternate');
select is(pg_temp.starts('rr', 2), array['a7', 'a8'], 'b has nothing left: a goes on');

-- three keys: a new key waits behind at most K - 1 = 2 other starts
select pg_temp.enq('rr', n, '{"concurrency_key": "b"}') from unnest(array['b5', 'b6']) as n;
select pg_temp.enq('rr', 'c1', '{"concurrency_key": "c"}');
create temp table s3 as select pg_temp.starts('rr', 3) as s;
select ok((select 'c1' = any(s) from s3), 'with 3 keys busy, c''s first task is among the next 3 starts');
select is((select cardinality(array_positions(s, 'c1')) from s3), 1, '(exactly once)');

-- the batch claim: max_tasks 6 takes the next 6 of the round, in one claim
select pg_temp.done_all();
select pg_temp.enq('rr', n, '{"concurrency_key": "d"}') from unnest(array['d1', 'd2']) as n;
create temp table batch as select pg_temp.starts('rr', 1, 6) as s;
select is((select cardinality(s) from batch), 6, 'a claim of 6 starts 6');
select ok((select s @> array['d1', 'd2'] from batch), 'both tasks of the new key d are among them');

-- tasks without a key share one turn
select durable.create_queue('rr2', '{"concurrency_strategy": "round_robin"}');
select pg_temp.many('rr2', 'x', 100);
select pg_temp.enq('rr2', 'nokey');
select is(pg_temp.starts('rr2', 2), array['x1', 'nokey'], 'keyless tasks take turns as one key');

-- 2. round_robin with a queue limit and a per-key limit
select durable.create_queue('rrl', '{"concurrency_strategy": "round_robin", "concurrency_limit": 3, "concurrency_key_limit": 2}');
select pg_temp.many('rrl', 'a', 1000);
select pg_temp.enq('rrl', 'b1', '{"concurrency_key": "b"}');
select pg_temp.enq('rrl', 'c1', '{"concurrency_key": "c"}');
select is((select array_agg(x order by x) from unnest(pg_temp.starts('rrl', 1, 10)) as x), array['a1', 'b1', 'c1'],
          'queue limit 3: the first of a, then b and c (not a''s second)');
select pg_temp.done_all();
select pg_temp.enq('rrl', 'b2', '{"concurrency_key": "b"}');
select is((select array_agg(x order by x) from unnest(pg_temp.starts('rrl', 1, 10)) as x), array['a2', 'a3', 'b2'],
          'then a, b, a (one claim): a''s limit of 2 caps it');

-- 3. priorities come first
select durable.create_queue('rrp', '{"concurrency_strategy": "round_robin"}');
select pg_temp.many('rrp', 'a', 10);
select pg_temp.enq('rrp', 'b-low', '{"concurrency_key": "b", "priority": -1}');
select pg_temp.enq('rrp', 'c-high', '{"concurrency_key": "c", "priority": 1}');
select is(pg_temp.starts('rrp', 2), array['c-high', 'a1'], 'a higher priority goes first, a lower one waits');

-- 4. tags: increasing per key, starting at the queue's clock
select is(
    (select array_agg(k.fair_tag order by k.seq) from durable.all_tasks k where k.queue = 'rrp' and k.concurrency_key = 'a'),
    (select array_agg(g::bigint) from generate_series(0, 9) as g),
    'a backlog enqueued at clock 0 gets tags 0, 1, 2, ...'
);
select is((select ls.fair_clock from durable.limit_state ls where ls.queue = 'rrp' and ls.concurrency_key = ''),
          0::bigint, 'the clock is the largest tag started (a1 has tag 0)');

-- 5. a queue that leaves round_robin forgets its tags: the old tasks keep their FIFO place
select durable.create_queue('rrp', '{"concurrency_strategy": "queue"}');
select is(
    (select jsonb_build_object(
        'tags', (select count(*) from durable.all_tasks k where k.queue = 'rrp' and k.fair_tag <> 0),
        'keys', (select count(*) from durable.fair_keys f where f.queue = 'rrp'))),
    '{"tags": 0, "keys": 0}'::jsonb,
    'leaving round_robin resets the tags of unfinished tasks and forgets the keys'
);
select pg_temp.enq('rrp', 'e-new', '{"concurrency_key": "e"}');
select is(pg_temp.starts('rrp', 2), array['a2', 'a3'], 'then the claim order is FIFO again (a2 before e-new)');

select * from finish();

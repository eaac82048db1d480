-- Backoff: the delay before the retry that follows failure n, computed by
-- durable.backoff_delay and applied by durable.fail: exponential (base * factor^(n-1)
-- capped at max), fixed, none; jitter between half and all of the delay; no overflow.
select plan(26);

-- helpers of this session (pg_temp): ids(name) and tokens, the test clock, snapshots
\ir helpers/tasks.sql

create function pg_temp.delays(p_policy jsonb, p_from integer, p_to integer) returns double precision[]
language sql as $$
    select array_agg(durable.backoff_delay(durable._backoff_policy(p_policy), n) order by n)
    from generate_series(p_from, p_to) as n
$$;

-- the schedule, without jitter ------------------------------------------------------------
select is(pg_temp.delays('{"jitter": false}', 1, 11),
          array[1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]::float8[],
          'exponential by default: 1, 2, 4, ... seconds, capped at 300');
select is(pg_temp.delays('{"base": 0.5, "factor": 3, "max": 10, "jitter": false}', 1, 5),
          array[0.5, 1.5, 4.5, 10, 10]::float8[],
          'exponential with base 0.5, factor 3, max 10');
select is(pg_temp.delays('{"base": 2, "factor": 1, "jitter": false}', 1, 4),
          array[2, 2, 2, 2]::float8[],
          'factor 1 keeps the base');
select is(pg_temp.delays('{"base": 5, "max": 3, "jitter": false}', 1, 2),
          array[3, 3]::float8[],
          'a base above max is capped too');
select is(pg_temp.delays('{"base": 0, "jitter": false}', 1, 3), array[0, 0, 0]::float8[], 'base 0: no wait');
select is(pg_temp.delays('{"max": 0, "jitter": false}', 1, 3), array[0, 0, 0]::float8[], 'max 0: no wait');
select is(pg_temp.delays('{"kind": "fixed", "delay": 7}', 1, 4), array[7, 7, 7, 7]::float8[],
          'fixed: the same delay after every failure (no jitter by default)');
select is(pg_temp.delays('{"kind": "fixed"}', 1, 2), array[1, 1]::float8[], 'fixed defaults to 1 second');
select is(pg_temp.delays('{"kind": "none"}', 1, 3), array[0, 0, 0]::float8[], 'none: retry at once');

-- large failure counts do not overflow
select is(durable.backoff_delay(durable._backoff_policy('{"jitter": false}'), 2147483647), 300::float8,
          'failure number 2^31-1: the cap, no overflow');
select is(durable.backoff_delay(durable._backoff_policy('{"factor": 100, "max": 31536000, "jitter": false}'), 1000000),
          31536000::float8, 'factor 100 after a million failures: the cap');
select is((select d between 15768000 and 31536000
           from durable.backoff_delay(durable._backoff_policy('{"base": 86400, "factor": 100, "max": 31536000, "jitter": true}'), 2147483647) d),
          true,
          'with jitter too');

-- jitter ---------------------------------------------------------------------------------
create temp table samples as
select n, durable.backoff_delay(durable._backoff_policy('{}'), 5) as d16,
          durable.backoff_delay(durable._backoff_policy('{}'), 30) as dmax,
          durable.backoff_delay(durable._backoff_policy('{"kind": "fixed", "delay": 10, "jitter": true}'), 3) as dfixed
from generate_series(1, 2000) as n;
select is((select count(*)::int from samples where d16 < 8 or d16 > 16), 0,
          'jitter: the delay after failure 5 (16 s) stays within [8, 16]');
select cmp_ok((select count(distinct d16)::int from samples), '>', 1000, 'and varies');
select is((select count(*)::int from samples where dmax < 150 or dmax > 300), 0,
          'jitter on the capped delay stays within [150, 300]');
select is((select count(*)::int from samples where dfixed < 5 or dfixed > 10), 0,
          'a fixed delay with jitter stays within [5, 10]');
select cmp_ok((select count(distinct dfixed)::int from samples), '>', 1000, 'and varies');

-- applied by fail() ------------------------------------------------------------------------
select pg_temp.clock(0);
select durable.create_queue('q_exp', '{"max_attempts": 10}');
select durable.create_queue('q_fixed', '{"max_attempts": 10}');
select durable.create_queue('q_none', '{"max_attempts": 10}');
select durable.create_queue('q_jit', '{"max_attempts": 10}');
select pg_temp.enq('exp', 'q_exp', '{"backoff": {"max": 5, "jitter": false}}');
-- fails the task, moves the clock to its retry, claims it again; returns the wait in seconds
create function pg_temp.fail_and_wait(p_name text) returns double precision language plpgsql as $$
declare
    v_now timestamptz := durable.current_time();
    v_status text;
    v_run_at timestamptz;
begin
    select f.status, f.run_at into v_status, v_run_at
    from durable.fail(pg_temp.id(p_name), pg_temp.tok(p_name), '{"message": "again"}') f;
    if v_status <> 'pending' or v_run_at is distinct from (pg_temp.task(p_name)).run_at then
        return null;
    end if;
    perform set_config('durable.fake_now', (v_run_at - interval '1 microsecond')::text, false);
    if pg_temp.claim_as(p_name, (pg_temp.task(p_name)).queue) is not null then
        return -1;  -- claimable before its run_at
    end if;
    perform set_config('durable.fake_now', v_run_at::text, false);
    if pg_temp.claim_as(p_name, (pg_temp.task(p_name)).queue) is distinct from pg_temp.id(p_name) then
        return -2;  -- not claimable at its run_at
    end if;
    return extract(epoch from v_run_at - v_now);
end;
$$;
select pg_temp.claim_as('exp', 'q_exp');
select is(
    (select array_agg(pg_temp.fail_and_wait('exp') order by n) from generate_series(1, 6) as n),
    array[1, 2, 4, 5, 5, 5]::float8[],
    'fail() schedules each retry after the backoff of its failure number: 1, 2, 4, then the cap of 5'
);
select is((pg_temp.task('exp')).failures, 6, 'six failures counted');

select pg_temp.enq('fixed', 'q_fixed', '{"backoff": {"kind": "fixed", "delay": 7.5}}');
select pg_temp.claim_as('fixed', 'q_fixed');
select is(
    (select array_agg(pg_temp.fail_and_wait('fixed') order by n) from generate_series(1, 3) as n),
    array[7.5, 7.5, 7.5]::float8[],
    'a fixed backoff waits the same after every failure'
);

select pg_temp.clock(5000);
select pg_temp.enq('none', 'q_none', '{"backoff": {"kind": "none"}}');
select pg_temp.claim_as('none', 'q_none');
select is(
    (select run_at from durable.fail(pg_temp.id('none'), pg_temp.tok('none'), '{"message": "x"}')),
    pg_temp.t(5000),
    'backoff none: the retry is due at once'
);
select is(pg_temp.claim_as('none', 'q_none'), pg_temp.id('none'), 'and claimable at once');

select pg_temp.clock(6000);
select pg_temp.enq('jit', 'q_jit', '{"backoff": {"base": 40, "jitter": true}}');
select pg_temp.claim_as('jit', 'q_jit');
select ok(
    (select w between 20 and 40 from pg_temp.fail_and_wait('jit') as w),
    'with jitter, the retry after the first failure (40 s) comes after 20 to 40 s, not before its run_at'
);
select is((pg_temp.task('jit')).started_at, (pg_temp.task('jit')).run_at, 'and is claimed at its run_at');
select is(
    (select f.run_at between durable.current_time() + interval '40 s' and durable.current_time() + interval '80 s'
     from durable.fail(pg_temp.id('jit'), pg_temp.tok('jit'), '{"message": "x"}') f),
    true,
    'the retry after the second failure (80 s) comes after 40 to 80 s'
);

-- the queue's backoff applies to tasks that have none of their own
select durable.create_queue('qb', '{"backoff": {"kind": "fixed", "delay": 42}}');
select pg_temp.clock(8000);
select pg_temp.enq('qb', 'qb');
select pg_temp.claim_as('qb', 'qb');
select is((select run_at from durable.fail(pg_temp.id('qb'), pg_temp.tok('qb'), '{"message": "x"}')), pg_temp.t(8042),
          'a task without a backoff of its own follows its queue''s');

select * from finish();

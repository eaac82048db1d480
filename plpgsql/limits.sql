-- limits.sql: concurrency limits, per-key limits with strategies, and rate limits.
--
-- ## What a queue may ask for (queue options, see durable.create_queue)
--
--   concurrency_limit       at most N tasks of the queue running at once, all workers together
--   concurrency_key_limit   at most N running tasks per concurrency key (the enqueue option
--                           concurrency_key; an enqueue may give its task its own
--                           concurrency_key_limit). Tasks without a key have no per-key limit.
--   concurrency_strategy    what happens to the excess of a key:
--     queue (default)       it waits, FIFO within the key (claim order across keys);
--     round_robin           it waits, and keys take turns: a key with 10,000 waiting tasks
--                           does not starve a key with one (see "round_robin" below);
--     cancel_in_progress    the newest wins: when a task is enqueued, the oldest unfinished
--                           (pending or running) tasks of its key beyond the limit are
--                           cancelled; running ones learn it at their next fenced call (DU011);
--     cancel_newest         a task enqueued while its key is full (it already has `limit`
--                           unfinished tasks, pending or running) is cancelled at once, with
--                           the reason in its error.
--                           Both cancel strategies default the key limit to 1.
--   rate_limit              {"limit": N, "period": seconds, "per": "key" | "queue"}: at most
--                           N starts (claims) in any period-long window, per concurrency key
--                           (tasks without a key are not rate limited) or for the whole queue.
--                           A SLIDING window, enforced exactly: a claim counts the starts
--                           logged in (now - period, now] and admits only what fits. Tasks over
--                           the limit stay pending and wait; they are never failed.
--   hold_slots_while_suspended
--                           true: a durable task that sleeps or waits (statuses 'sleeping',
--                           'waiting') keeps its slot (queue and key). Default false: a slot is
--                           released on every way out of 'running': complete, fail, cancel,
--                           release, timeout, lease expiry, sleep, wait.
--
-- Priorities still order claims within what the limits admit.
--
-- ## How it is enforced: one lock per queue (its row), then count
--
-- "What is running" is never stored: it is the task rows whose status is 'running' (plus
-- 'sleeping'/'waiting' with hold_slots_while_suspended). So every way out of running
-- releases its slot by construction, with no counter to decrement and nothing to leak
-- when a worker is killed: a lost lease stays 'running' (and keeps its slot) until the
-- reclaim that every claim starts with moves it back to pending.
--
-- A claim on a queue with any of the options above locks the queue's row in
-- durable.queues (FOR UPDATE: the queue lock, first in the lock order of
-- plpgsql/README.md) before anything else, its reclaim included, and so BEFORE the
-- statements that count what runs. Only claims and create_queue take it, so claims of one
-- queue are serialised and nothing else is (enqueue, heartbeat, complete and fail never
-- wait for it). A row lock, not an advisory lock: no role can take it without rights on
-- the table, so no role can stall a queue's claims by holding it. Under READ COMMITTED
-- each statement takes a new snapshot, and the lock is released only after the previous
-- holder's commit is visible; so the counting statements see every task every earlier
-- claimer started, and every slot released by a commit before them. A release that has
-- not committed yet still counts as running: the error is always on the safe side. The
-- claim then admits tasks, marks them running and commits, all under the lock. No
-- SERIALIZABLE, no retry loop; the claim refuses to run at another isolation level
-- (DU001), where its snapshot could predate the lock.
--
-- Naive SKIP LOCKED with counting is racy (two claimers both count 4 of 5 and both
-- start one); the lock is what serialises the decision on the limited resource itself.
-- Queues without limits keep the lock-free SKIP LOCKED claim, at no extra cost (its
-- order gains fair_tag, which is 0 outside round_robin queues). A claim that finds the
-- lock taken and the queue already full (by the committed tasks) returns nothing at once
-- instead of queueing behind the lock.
--
-- The admission walks ready tasks in claim order (priority desc, fair_tag, run_at, seq)
-- through tasks_claim_idx: tasks of keys already at their limit or out of rate budget
-- are dropped by the scan itself, the walk counts per key what runs plus what it has
-- admitted so far, and it stops as soon as it has enough. Its cost under the lock is
-- bounded: it looks at most 10,000 ready tasks deep (those of full keys included). So
-- under the queue strategy, a full key whose backlog fills the first 10,000 places in
-- claim order holds back the keys behind it until the backlog thins (3,000 deep is
-- tested); round_robin interleaves keys by tag, so a backlog never piles up in front.
-- Admitted rows are locked with SKIP LOCKED and handed back to durable.claim, which
-- starts them. Skipping matters: another claimer's reclaim may hold a pending row
-- (cancelling it at its schedule_timeout) while it waits for this lock; waiting for that
-- row here would deadlock.
--
-- Rate limits keep a log of recent starts in durable.limit_state (one row per key, and
-- one for the queue, key ''), written only by claims holding the queue's lock, so nobody
-- waits on those rows. A log keeps at most one element per claim within the window.
--
-- Every claim commits with synchronous_commit = off (durable.claim): here that keeps the
-- serialised section short, since the queue lock is held until the commit (the flush
-- costs milliseconds, the admission a fraction of one). What a crash can lose is the last
-- claims before it: their tasks are pending again (their workers' next calls fail with
-- DU010), exactly as if those workers had died. Call claim in a transaction of its own
-- (as every worker does).
--
-- ## round_robin: start-time fair queuing
--
-- Each task of a round_robin queue gets a tag at enqueue: max(V, tag of its key's
-- previous task + 1), where V (durable.limit_state.fair_clock) is the largest tag started
-- so far. Claims go by (priority desc, tag): a key's backlog is spread over increasing
-- tags while a newly active key starts at V, so it is interleaved with the backlog
-- instead of queued behind it. Fairness bound: a task whose key had no waiting task when
-- it was enqueued is started before every task of the same priority with a larger tag,
-- i.e. with K keys having ready tasks, at most K - 1 other tasks of its priority start
-- before it (unless its own key is at its limit). tests/sql/test_limits_round_robin.sql
-- asserts it with 5,000 tasks of one key waiting: the new key's task is the next start.
-- Tags come from one row per key (durable.fair_keys), locked by the enqueue that updates
-- it: concurrent enqueues of one key wait for each other, not for claims. A queue that
-- leaves round_robin has the tags of its unfinished tasks reset to 0.
--
-- ## cancel_in_progress, cancel_newest: decided at enqueue
--
-- Before its insert, an enqueue on a queue with a cancel strategy takes a transaction
-- advisory lock per (queue, key) it enqueues for (1685418498, in key order, with the
-- tasks it may cancel: durable._lock_for_new_tasks); after it, it counts the key's
-- unfinished tasks. The tasks of this enqueue are the newest (others that it
-- can see committed before it took the lock). Victims go through durable.cancel, so
-- running ones get an attempt row and their workers DU011. One call locks its keys in
-- order; a transaction that enqueues keys in several calls can deadlock with another
-- doing the same in the opposite order (PostgreSQL then aborts one of them, 40P01).
--
-- SQLSTATEs: DU001 (bad options; a limited claim, or an enqueue with a cancel strategy,
-- outside READ COMMITTED).

-- Whether a queue's options ask for any limit (the claim then takes the admission path).
create or replace function durable._has_limits(p_options jsonb)
returns boolean
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return coalesce(p_options ?| array[
        'concurrency_limit', 'concurrency_key_limit', 'concurrency_strategy', 'rate_limit'
    ], false);
end;
$$;

comment on function durable._has_limits(jsonb) is
'Internal: true when a queue''s options set concurrency_limit, concurrency_key_limit, concurrency_strategy or rate_limit: its claims then go through durable._claim_admit, under the queue''s lock.';

-- Checks the concurrency and rate options of a queue and returns them normalised (a key
-- given as JSON null comes back null, which removes it).
create or replace function durable._limit_options(p_options jsonb)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_result jsonb := '{}'::jsonb;
    v_strategy text;
    v_rate jsonb;
    v_per text;
begin
    if p_options ? 'concurrency_limit' then
        v_result := v_result || jsonb_build_object(
            'concurrency_limit', durable._opt_number(p_options, 'concurrency_limit', 1, 100000, true)::integer);
    end if;
    if p_options ? 'concurrency_key_limit' then
        v_result := v_result || jsonb_build_object(
            'concurrency_key_limit',
            durable._opt_number(p_options, 'concurrency_key_limit', 1, 100000, true)::integer);
    end if;
    if p_options ? 'concurrency_strategy' then
        v_strategy := durable._opt_text(p_options, 'concurrency_strategy', 50);
        if v_strategy <> all(array['queue', 'round_robin', 'cancel_in_progress', 'cancel_newest']) then
            raise exception 'durable: concurrency_strategy must be queue, round_robin, cancel_in_progress or cancel_newest, got %',
                v_strategy
                using errcode = 'DU001';
        end if;
        v_result := v_result || jsonb_build_object('concurrency_strategy', v_strategy);
    end if;
    if p_options ? 'rate_limit' then
        v_rate := p_options -> 'rate_limit';
        if jsonb_typeof(v_rate) = 'null' then
            v_result := v_result || jsonb_build_object('rate_limit', null);
        else
            perform durable._check_keys(v_rate, array['limit', 'period', 'per'], 'rate_limit');
            if not (v_rate ? 'limit' and v_rate ? 'period') then
                raise exception 'durable: rate_limit needs "limit" (starts) and "period" (seconds), got %', durable._quote(v_rate::text)
                    using errcode = 'DU001';
            end if;
            v_per := coalesce(durable._opt_text(v_rate, 'per', 10), 'key');
            if v_per not in ('key', 'queue') then
                raise exception 'durable: rate_limit "per" must be key or queue, got %', v_per
                    using errcode = 'DU001';
            end if;
            v_result := v_result || jsonb_build_object('rate_limit', jsonb_build_object(
                'limit', durable._opt_number(v_rate, 'limit', 1, 1000000, true)::integer,
                'period', durable._opt_number(v_rate, 'period', 0.001, 31536000),
                'per', v_per
            ));
        end if;
    end if;
    if p_options ? 'hold_slots_while_suspended' then
        v_result := v_result || jsonb_build_object(
            'hold_slots_while_suspended', durable._opt_bool(p_options, 'hold_slots_while_suspended'));
    end if;
    return v_result;
end;
$$;

comment on function durable._limit_options(jsonb) is
'Internal: checks the concurrency options of a queue (concurrency_limit, concurrency_key_limit, concurrency_strategy, rate_limit {"limit","period","per"}, hold_slots_while_suspended) and returns them normalised; DU001 on a bad value.';

-- Raises DU001 unless the transaction runs at READ COMMITTED.
create or replace function durable._require_read_committed(p_what text)
returns void
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'durable: % must run at READ COMMITTED, not %', p_what, current_setting('transaction_isolation')
            using errcode = 'DU001',
                  hint = 'limits are enforced under a lock taken before counting; an older snapshot would not see the other claims';
    end if;
end;
$$;

comment on function durable._require_read_committed(text) is
'Internal: raises DU001 unless the current transaction is READ COMMITTED (limited claims and cancel strategies count under a lock and need each statement''s fresh snapshot).';

-- The admission of a limited queue: decides, under the queue's lock, which ready tasks
-- may start now, locks them and returns their ids (and the time of the claim).
create or replace function durable._claim_admit(
    p_queue durable.queues, p_max_tasks integer, p_task_names text[],
    out task_ids uuid[], out claimed_at timestamptz
)
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_strategy text := coalesce(p_queue.options ->> 'concurrency_strategy', 'queue');
    v_queue_limit integer := (p_queue.options ->> 'concurrency_limit')::integer;
    v_key_limit integer := coalesce(
        (p_queue.options ->> 'concurrency_key_limit')::integer,
        case when v_strategy in ('cancel_in_progress', 'cancel_newest') then 1 end
    );
    v_rate_limit integer := (p_queue.options #>> '{rate_limit,limit}')::integer;
    v_rate_period interval := make_interval(secs => (p_queue.options #>> '{rate_limit,period}')::double precision);
    v_rate_per_key boolean := coalesce(p_queue.options #>> '{rate_limit,per}' = 'key', false);
    v_hold boolean := coalesce((p_queue.options ->> 'hold_slots_while_suspended')::boolean, false);
    v_take integer := p_max_tasks;
    -- key -> slots it holds; complete when v_all_running (every key with a slot is in it)
    v_running jsonb := '{}'::jsonb;
    v_all_running boolean := false;
    v_full text[] := '{}'::text[];
    -- key -> starts in the rate window (per-key rate limits), keys with none left
    v_rate_used jsonb := '{}'::jsonb;
    v_exhausted text[] := '{}'::text[];
    v_stale text[];
    -- key -> tasks this claim admitted
    v_taken jsonb := '{}'::jsonb;
    v_taken_key integer;
    v_limit integer;
    v_used integer;
    v_ids uuid[] := '{}'::uuid[];
    -- Ready tasks in claim order, at most 10,000 deep, without the keys known to be full
    -- (unless the task brings its own limit) or out of rate budget. The subquery's order
    -- is kept: nothing above its LIMIT reorders rows.
    ready cursor for
        select r.task_id, r.concurrency_key, r.concurrency_key_limit
        from (
            select k.task_id, k.concurrency_key, k.concurrency_key_limit
            from durable.tasks k
            where k.queue = p_queue.queue
              and k.status = 'pending'
              and k.run_at <= claimed_at
              and (p_task_names is null or k.task_name = any(p_task_names))
              and (k.schedule_deadline is null or k.attempt > 0 or k.schedule_deadline > claimed_at)
            order by k.priority desc, k.fair_tag, k.run_at, k.seq
            limit 10000
        ) r
        where r.concurrency_key is null
           or (r.concurrency_key <> all(v_exhausted)
               and (r.concurrency_key_limit is not null or r.concurrency_key <> all(v_full)));
begin
    perform durable._require_read_committed('a claim on a queue with concurrency or rate limits');
    -- durable.claim took the queue lock (its row) before its reclaim
    -- From here on, each statement sees what every earlier claimer of this queue
    -- committed: the lock is released after the holder's commit becomes visible.
    -- (durable.claim set synchronous_commit off for its transaction: the lock is held
    -- until a commit that does not wait for the flush)
    task_ids := '{}'::uuid[];

    -- What holds a slot: one scan of the queue's running tasks (and suspended ones with
    -- hold_slots_while_suspended) gives the queue's total and each key's count. Two static
    -- queries rather than one with an OR on v_hold, so that each keeps its partial index.
    if v_queue_limit is not null or v_key_limit is not null then
        if v_hold then
            select coalesce(sum(r.n), 0)::integer,
                   coalesce(jsonb_object_agg(r.concurrency_key, r.n) filter (where r.concurrency_key is not null),
                            '{}'::jsonb),
                   coalesce(array_agg(r.concurrency_key)
                            filter (where r.concurrency_key is not null and r.n >= v_key_limit), '{}'::text[])
            into v_used, v_running, v_full
            from (
                select h.concurrency_key, count(*)::integer as n
                from (
                    select k.concurrency_key from durable.tasks k
                    where k.queue = p_queue.queue and k.status = 'running'
                    union all
                    select k.concurrency_key from durable.tasks k
                    where k.queue = p_queue.queue and k.status in ('sleeping', 'waiting')
                ) h
                group by h.concurrency_key
            ) r;
        else
            select coalesce(sum(r.n), 0)::integer,
                   coalesce(jsonb_object_agg(r.concurrency_key, r.n) filter (where r.concurrency_key is not null),
                            '{}'::jsonb),
                   coalesce(array_agg(r.concurrency_key)
                            filter (where r.concurrency_key is not null and r.n >= v_key_limit), '{}'::text[])
            into v_used, v_running, v_full
            from (
                select k.concurrency_key, count(*)::integer as n
                from durable.tasks k
                where k.queue = p_queue.queue and k.status = 'running'
                group by k.concurrency_key
            ) r;
        end if;
        v_all_running := true;
        if v_queue_limit is not null then
            v_take := least(v_take, v_queue_limit - v_used);
        end if;
    end if;
    -- The claim's time, read after the count: every end the count relied on (a complete,
    -- a fail, a reclaim) read its own time before committing, so on the database clock
    -- an attempt never starts before the end of one whose slot it took.
    claimed_at := durable.current_time();

    if v_rate_limit is not null then
        select coalesce(jsonb_object_agg(s.concurrency_key, s.used), '{}'::jsonb),
               coalesce(array_agg(s.concurrency_key) filter (where s.used >= v_rate_limit), '{}'),
               array_agg(s.concurrency_key) filter (where s.used = 0 and s.concurrency_key <> '')
        into v_rate_used, v_exhausted, v_stale
        from (
            select ls.concurrency_key,
                   (select coalesce(sum(u.n), 0)::integer
                    from unnest(ls.start_times, ls.start_counts) as u (t, n)
                    where u.t > claimed_at - v_rate_period) as used
            from durable.limit_state ls
            where ls.queue = p_queue.queue
              and (ls.concurrency_key <> '') = v_rate_per_key
        ) s;
        if v_stale is not null then
            -- keys whose window has passed: their rows go (they come back with a start)
            delete from durable.limit_state ls
            where ls.queue = p_queue.queue and ls.concurrency_key = any(v_stale);
        end if;
        if not v_rate_per_key then
            v_take := least(v_take, v_rate_limit - coalesce((v_rate_used ->> '')::integer, 0));
            v_exhausted := '{}'::text[];
        end if;
    end if;

    if v_take <= 0 then
        return;
    end if;

    -- The walk (the cursor "ready" above). A cursor, not a plain FOR over a query: a
    -- cursor is planned to return its first rows fast (cursor_tuple_fraction), i.e. by
    -- walking tasks_claim_idx in order, where a plain query planned for all its 10,000
    -- rows would sort the queue's whole backlog first.
    for c in ready
    loop
        if c.concurrency_key is not null then
            v_taken_key := coalesce((v_taken ->> c.concurrency_key)::integer, 0);
            v_limit := coalesce(c.concurrency_key_limit, v_key_limit);
            if v_limit is not null then
                v_used := (v_running ->> c.concurrency_key)::integer;
                if v_used is null and v_all_running then
                    v_used := 0;
                elsif v_used is null then
                    select count(*)::integer into v_used
                    from durable.tasks k
                    where k.queue = p_queue.queue
                      and k.concurrency_key = c.concurrency_key
                      and (k.status = 'running' or (v_hold and k.status in ('sleeping', 'waiting')));
                    v_running := v_running || jsonb_build_object(c.concurrency_key, v_used);
                end if;
                continue when v_used + v_taken_key >= v_limit;
            end if;
            continue when v_rate_per_key
                and coalesce((v_rate_used ->> c.concurrency_key)::integer, 0) + v_taken_key >= v_rate_limit;
            v_taken := v_taken || jsonb_build_object(c.concurrency_key, v_taken_key + 1);
        end if;
        v_ids := v_ids || c.task_id;
        exit when cardinality(v_ids) >= v_take;
    end loop;

    if cardinality(v_ids) = 0 then
        return;
    end if;
    -- Lock what was admitted; a row a concurrent transaction holds (a cancel) or that is no
    -- longer pending is left out: this claim starts fewer, never more.
    select coalesce(array_agg(x.task_id), '{}') into task_ids
    from (
        select k.task_id from durable.tasks k
        where k.task_id = any(v_ids) and k.status = 'pending'
        for update skip locked
    ) x;
    if cardinality(task_ids) = 0 then
        return;
    end if;

    if v_strategy = 'round_robin' then
        insert into durable.limit_state as ls (queue, concurrency_key, fair_clock)
        select p_queue.queue, '', max(k.fair_tag)
        from durable.tasks k
        where k.task_id = any(task_ids)
        on conflict (queue, concurrency_key) do update
            set fair_clock = greatest(ls.fair_clock, excluded.fair_clock);
    end if;

    if v_rate_limit is not null then
        insert into durable.limit_state as ls (queue, concurrency_key, start_times, start_counts)
        select p_queue.queue, g.bucket, array[claimed_at], array[g.n]
        from (
            select case when v_rate_per_key then k.concurrency_key else '' end as bucket, count(*)::integer as n
            from durable.tasks k
            where k.task_id = any(task_ids) and (not v_rate_per_key or k.concurrency_key is not null)
            group by 1
        ) g
        on conflict (queue, concurrency_key) do update
            -- the log keeps what is still in the window, plus this claim
            set start_times = array(
                    select u.t from unnest(ls.start_times, ls.start_counts) with ordinality as u (t, n, i)
                    where u.t > claimed_at - v_rate_period order by u.i
                ) || excluded.start_times,
                start_counts = array(
                    select u.n from unnest(ls.start_times, ls.start_counts) with ordinality as u (t, n, i)
                    where u.t > claimed_at - v_rate_period order by u.i
                ) || excluded.start_counts;
    end if;
end;
$$;

comment on function durable._claim_admit(durable.queues, integer, text[]) is
'Internal: the admission of a queue with concurrency or rate limits (see the top of limits.sql). Under the queue''s lock (its row, taken by durable.claim), counts what runs, walks ready tasks in claim order admitting those the queue limit, per-key limits and rate limits allow (at most p_max_tasks), locks them and returns their ids with the claim time. Updates the rate logs and the round_robin clock. durable.claim starts the tasks. DU001 outside READ COMMITTED.';

-- The round_robin tags of new tasks of a queue (start-time fair queuing): the i-th new
-- task of a key gets max(V, the tag of the key's previous task + 1) + i - 1, V being the
-- queue's clock. The keys' rows in durable.fair_keys are locked in key order (one batch
-- cannot wait for another's keys in a cycle) until the enqueue commits.
create or replace function durable._assign_fair_tags(p_queue text, p_task_ids uuid[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_clock bigint;
begin
    select ls.fair_clock into v_clock
    from durable.limit_state ls
    where ls.queue = p_queue and ls.concurrency_key = '';
    v_clock := coalesce(v_clock, 0);
    with new as (
        select k.task_id, coalesce(k.concurrency_key, '') as fair_key,
               row_number() over (partition by coalesce(k.concurrency_key, '') order by u.ord) as rank
        from unnest(p_task_ids) with ordinality as u (id, ord)
        join durable.tasks k on k.task_id = u.id
    ),
    per_key as (
        select n.fair_key, count(*)::bigint as tasks from new n group by n.fair_key
    ),
    bumped as (
        insert into durable.fair_keys as f (queue, concurrency_key, last_tag)
        select p_queue, pk.fair_key, v_clock + pk.tasks - 1
        from per_key pk
        order by pk.fair_key
        on conflict (queue, concurrency_key) do update
            set last_tag = greatest(f.last_tag + 1, v_clock) + (excluded.last_tag - v_clock)
        returning f.concurrency_key, f.last_tag
    )
    update durable.tasks k
    set fair_tag = b.last_tag - pk.tasks + n.rank
    from new n
    join per_key pk on pk.fair_key = n.fair_key
    join bumped b on b.concurrency_key = n.fair_key
    where k.task_id = n.task_id;
end;
$$;

comment on function durable._assign_fair_tags(text, uuid[]) is
'Internal: gives new tasks of a round_robin queue their fair_tag (start-time fair queuing: per key, max(the queue''s clock, the key''s previous tag + 1), then +1 per task, in the order given), locking the keys'' rows of durable.fair_keys in key order.';

-- After an enqueue on a queue with a cancel strategy: cancels what the strategy says.
create or replace function durable._enqueued_under_limits(p_queue durable.queues, p_task_ids uuid[])
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_strategy text := p_queue.options ->> 'concurrency_strategy';
    v_key_limit integer := coalesce((p_queue.options ->> 'concurrency_key_limit')::integer, 1);
    v_hold boolean := coalesce((p_queue.options ->> 'hold_slots_while_suspended')::boolean, false);
    v_keys text[];
    v_key text;
    v_victims uuid[];
    v_reasons text[];
begin
    if v_strategy is null or v_strategy not in ('cancel_in_progress', 'cancel_newest') then
        return;
    end if;
    select array_agg(distinct k.concurrency_key order by k.concurrency_key) into v_keys
    from durable.tasks k
    where k.task_id = any(p_task_ids) and k.concurrency_key is not null;
    if v_keys is null then
        return;
    end if;
    perform durable._require_read_committed(format('an enqueue on queue %s (strategy %s)', p_queue.queue, v_strategy));
    foreach v_key in array v_keys loop
        perform pg_advisory_xact_lock(1685418498, hashtext(p_queue.queue || E'\x1f' || v_key));
    end loop;
    -- From here on, each statement sees what earlier enqueuers of these keys committed.
    -- Each key's unfinished tasks, ranked: for cancel_newest the tasks of others first
    -- (oldest first), then this enqueue's; for cancel_in_progress this enqueue's first
    -- (newest first), then the others (newest first).
    select array_agg(r.task_id order by r.concurrency_key, r.rank),
           array_agg(
               case when v_strategy = 'cancel_newest'
                    then format('concurrency key %s already has %s unfinished task(s), its limit (strategy cancel_newest)',
                                quote_literal(r.concurrency_key), r.lim)
                    else format('superseded by a newer task of concurrency key %s (strategy cancel_in_progress, limit %s)',
                                quote_literal(r.concurrency_key), r.lim)
               end
               order by r.concurrency_key, r.rank)
    into v_victims, v_reasons
    from (
        select k.task_id, k.concurrency_key, k.task_id = any(p_task_ids) as mine,
               row_number() over (
                   partition by k.concurrency_key
                   order by
                       case when v_strategy = 'cancel_newest' then k.task_id = any(p_task_ids)
                            else not k.task_id = any(p_task_ids) end,
                       case when v_strategy = 'cancel_newest' then k.seq else -k.seq end
               ) as rank,
               case when v_strategy = 'cancel_newest'
                    then coalesce(k.concurrency_key_limit, v_key_limit)
                    -- cancel_in_progress: the limit of the key's newest task
                    else first_value(coalesce(k.concurrency_key_limit, v_key_limit)) over (
                        partition by k.concurrency_key
                        order by not k.task_id = any(p_task_ids), -k.seq
                    )
               end as lim
        from durable.tasks k
        where k.queue = p_queue.queue
          and k.concurrency_key = any(v_keys)
          and (k.status in ('pending', 'running') or (v_hold and k.status in ('sleeping', 'waiting')))
    ) r
    where r.rank > r.lim and (r.mine or v_strategy = 'cancel_in_progress');
    if v_victims is not null then
        -- all the victims (with their trees) locked at once, oldest first; a task that
        -- ended meanwhile is left alone
        perform durable._cancel_trees(v_victims, v_reasons);
    end if;
end;
$$;

comment on function durable._enqueued_under_limits(durable.queues, uuid[]) is
'Internal: called by enqueue after inserting tasks on a queue with concurrency_strategy cancel_newest (new tasks beyond their key''s limit of unfinished tasks are cancelled) or cancel_in_progress (the oldest unfinished tasks of the key beyond the limit are cancelled; running ones through durable.cancel, so their workers get DU011). Serialises enqueues per key with an advisory lock. DU001 outside READ COMMITTED.';

-- After create_queue changed a queue's options: a queue that is no longer round_robin
-- forgets its tags (else old tags would sort after the new tasks' 0).
create or replace function durable._limits_changed(p_queue text, p_options jsonb)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if coalesce(p_options ->> 'concurrency_strategy', '') = 'round_robin'
        or not exists (select 1 from durable.fair_keys f where f.queue = p_queue) then
        return;
    end if;
    -- create_queue holds the queue's row (the queue lock); then the keys' rows, in key
    -- order, then the tasks, oldest first (the lock order, plpgsql/README.md)
    delete from durable.fair_keys f
    where (f.queue, f.concurrency_key) in (
        select i.queue, i.concurrency_key from durable.fair_keys i
        where i.queue = p_queue
        order by i.concurrency_key
        for update
    );
    update durable.tasks k
    set fair_tag = 0
    where k.task_id in (
        select r.task_id from durable.tasks r
        where r.queue = p_queue and r.fair_tag <> 0
          and r.status in ('pending', 'running', 'sleeping', 'waiting')
        order by r.task_id
        for update
    );
    update durable.limit_state ls set fair_clock = 0
    where ls.queue = p_queue and ls.concurrency_key = '';
end;
$$;

comment on function durable._limits_changed(text, jsonb) is
'Internal: called by create_queue with the queue''s new options. When the queue is no longer round_robin, resets the fair_tag of its unfinished tasks to 0 and forgets its round_robin state, so that they keep their FIFO place.';

-- Every count is read from the partial index of its status (tasks_lease_idx,
-- tasks_claim_idx, tasks_concurrency_key_idx), within the queue: other queues' tasks are
-- never read. Each call is planned with its queue (force_custom_plan): a generic plan,
-- made for an average queue, could scan the table for a small one.
create or replace function durable.limit_usage(p_queue text)
returns table (concurrency_key text, running bigint, pending bigint, recent_starts bigint)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_custom_plan
as $$
begin
    perform durable._queue(p_queue);
    perform durable._require(p_queue, durable._readers(), 'read statistics');
    return query
    with q as (select * from durable._queue(p_queue)),
    keyed as (
        select k.concurrency_key,
               count(*) filter (where k.status = 'running') as running,
               count(*) filter (where k.status = 'pending') as pending
        from durable.tasks k
        where k.queue = p_queue and k.concurrency_key is not null and k.status in ('pending', 'running')
        group by k.concurrency_key
    ),
    starts as (
        select ls.concurrency_key, coalesce(sum(u.n), 0)::bigint as n
        from q
        join durable.limit_state ls on ls.queue = q.queue
        cross join lateral unnest(ls.start_times, ls.start_counts) as u (t, n)
        where u.t > durable.current_time()
                    - make_interval(secs => (q.options #>> '{rate_limit,period}')::double precision)
        group by ls.concurrency_key
    )
    select null::text,
           (select count(*) from durable.tasks k where k.queue = p_queue and k.status = 'running'),
           (select count(*) from durable.tasks k where k.queue = p_queue and k.status = 'pending'),
           (select coalesce(sum(s.n), 0)::bigint from starts s)
    union all
    select coalesce(kd.concurrency_key, s.concurrency_key), coalesce(kd.running, 0), coalesce(kd.pending, 0),
           coalesce(s.n, 0)
    from keyed kd
    full join (select * from starts where starts.concurrency_key <> '') s on s.concurrency_key = kd.concurrency_key
    order by 1 nulls first;
end;
$$;

comment on function durable.limit_usage(text) is
'What the limits of a queue see now: one row for the whole queue (concurrency_key null) and one per concurrency key with unfinished tasks or recent starts: running and pending tasks, and starts within the rate_limit window (0 without a rate limit). For monitoring; it takes no lock. Errors: DU002, 42501.';

grant execute on function durable.limit_usage(text) to durable_reader;

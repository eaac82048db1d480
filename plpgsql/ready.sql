-- ready.sql: the claimable set (durable.ready), the floors its claims start from, and the
-- triggers of durable.tasks that keep it (migrations/0019_ready.sql).
--
-- durable.ready has one narrow row per pending task, due or not, keyed in claim order
-- (neg_priority = -priority, fair_tag, run_at, seq: all ascending). The triggers below
-- insert it when a task is created pending or becomes pending again (a retry, a lost
-- lease, a release, a wake-up, a restart), move it when a pending task's place changes
-- (a debounce, a round_robin tag reset) and delete it when a pending task is cancelled or
-- deleted. The claim deletes the rows of the tasks it starts itself (claim.sql): it is the
-- only way out of pending into running.
--
-- Why a table of its own: while a transaction elsewhere pins the xmin horizon, no row
-- version can be removed, nor its index entry marked dead, so an index over the claimable
-- set keeps an entry for every task claimed since the pin, at its head, where every claim
-- starts. The claim then steps over all of them (a heap visit each): its cost grows with
-- the tasks processed since the pin.
--
-- ## Floors
-- durable.ready_floors holds, for each queue (task_name '') and each task name of it, one
-- or more keys (slots); the least of them, the floor, is at or below the first row of
-- durable.ready of that queue (and name). Claims start their index scan at the floor, so
-- they step over only the entries of the tasks claimed since the floor was last raised.
-- - The claim's maintenance raises the floors of its queue once a second
--   (durable._ready_raise, on the queue's turn), and a claim of more than one task that
--   takes all it asked for (a backlog) raises them again when the last raise is 100 ms old
--   (durable._ready_raise_early; raised_at on the queue's slot 0): to the first row of the
--   queue (and name) it can see, and no higher than (that row's priority and tag, now, the
--   lowest seq), so that a task enqueued later at that priority lands above it; with no
--   row, to (the default priority and tag, now, the lowest seq). It does so only holding
--   the queue's ready lock in exclusive mode, and only in a claim that is the first
--   statement of a READ COMMITTED transaction: no insert into the queue's rows is in
--   flight then, and it sees every committed one. The turn's raise waits at most 20 ms for
--   the writers in flight to commit (never in a cycle); a full batch's takes the lock only
--   if it is free at once, else leaves the raise to a later claim.
--   Under an xmin pin, a claim steps over the entries of the tasks claimed since the last
--   raise: raising every 100 ms under a backlog keeps that to a tenth of a second's claims
--   (bench/scale_bench.py, pinned ÷ free: 0.79 with the raise once a second, 0.99 with
--   both), and costs an idle queue nothing (its claims take less than they ask for, or
--   one task).
-- - Everything that inserts or moves rows of durable.ready holds the queue's ready lock
--   in shared mode to its commit (pg_advisory_xact_lock_shared: inserts never wait for
--   each other), and, when a row lands below a floor, lowers it by inserting a slot with
--   the row's key. A slot is only ever inserted by these writers, never updated, so they
--   never wait for a row lock of durable.ready_floors. In REPEATABLE READ or SERIALIZABLE,
--   whose snapshot may predate a raise, a writer inserts its slot whatever it reads.
--   A (queue, name) seen for the first time gets a slot at the lowest key (no floor yet),
--   which the next sweep raises. Writers' slots come from a sequence (slot 0 is the
--   sweep's): two writers of a name new to both each insert one, neither waiting for the
--   other's, nor failing in REPEATABLE READ on one its snapshot predates.
-- - The sweep folds the slots of a queue and name into one.
-- Lowering early is always safe (a scan starts lower); raising is the only step that
-- could hide a row, and it happens only while no writer can be inserting.

-- The ready lock of a queue: the advisory lock (1685418501, hashtext(queue)), shared by
-- the writers of durable.ready, exclusive for the sweep that raises the queue's floors.

-- Lowers the floors of a row just written to durable.ready (its queue's, and its name's)
-- where it lands below them, after taking the queue's ready lock in shared mode: a slot goes
-- in where none exists yet (at the lowest key: no floor), or where the row lies below the
-- floor (or, in a snapshot that may be stale, always).
create or replace function durable._ready_lower(
    p_queue text, p_name text, p_neg_priority integer, p_fair_tag bigint, p_run_at timestamptz, p_seq bigint
)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set plan_cache_mode = force_generic_plan
as $$
declare
    v_fresh boolean := current_setting('transaction_isolation') = 'read committed';
begin
    perform pg_advisory_xact_lock_shared(1685418501, hashtext(p_queue));
    -- a slot of its own (never 0, the raise's): two writers never insert the same key, so
    -- none waits for another's, nor, in REPEATABLE READ, fails on one it cannot see
    insert into durable.ready_floors (queue, task_name, slot, neg_priority, fair_tag, run_at, seq)
    select p_queue, l.n, nextval('durable.ready_floor_slots'),
           case when fl.neg_priority is null then -2147483648 else p_neg_priority end,
           case when fl.neg_priority is null then -9223372036854775808 else p_fair_tag end,
           case when fl.neg_priority is null then '-infinity'::timestamptz else p_run_at end,
           case when fl.neg_priority is null then -9223372036854775808 else p_seq end
    from (values (''), (p_name)) as l (n)
    left join lateral (
        select x.neg_priority, x.fair_tag, x.run_at, x.seq
        from durable.ready_floors x
        where x.queue = p_queue and x.task_name = l.n
        order by x.neg_priority, x.fair_tag, x.run_at, x.seq
        limit 1
    ) fl on true
    where fl.neg_priority is null
       or not v_fresh
       or (p_neg_priority, p_fair_tag, p_run_at, p_seq) < (fl.neg_priority, fl.fair_tag, fl.run_at, fl.seq)
    order by l.n;
end;
$$;

comment on function durable._ready_lower(text, text, integer, bigint, timestamptz, bigint) is
'Internal: for a row just written to durable.ready, takes its queue''s ready lock (shared) and lowers the floors (durable.ready_floors) of its queue and name that it lands below, by inserting a slot; a queue or name without a floor gets a slot at the lowest key. See ready.sql.';

-- Trigger: tasks created pending get their rows (one statement for the whole insert).
create or replace function durable._ready_created()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    k record;
begin
    insert into durable.ready (task_id, queue, task_name, neg_priority, fair_tag, run_at, seq, deadline)
    select c.task_id, c.queue, c.task_name, -c.priority, c.fair_tag, c.run_at, c.seq,
           case when c.attempt = 0 then c.schedule_deadline end
    from created c
    where c.status = 'pending';
    -- for each (queue, name), a key at or below every new one (each part's least: no sort),
    -- queues in order (their ready locks)
    for k in
        select c.queue, c.task_name, min(-c.priority) as neg_priority, min(c.fair_tag) as fair_tag,
               min(c.run_at) as run_at, min(c.seq) as seq
        from created c
        where c.status = 'pending'
        group by c.queue, c.task_name
        order by c.queue, c.task_name
    loop
        perform durable._ready_lower(k.queue, k.task_name, k.neg_priority, k.fair_tag, k.run_at, k.seq);
    end loop;
    return null;
end;
$$;

comment on function durable._ready_created() is
'Trigger (after insert on durable.tasks, per statement): inserts the rows of durable.ready of the tasks created pending, and lowers the floors they land below (durable._ready_lower with, for each queue and name, the least of each part of the new keys: a key at or below all of them).';

drop trigger if exists tasks_ready_created on durable.tasks;
create trigger tasks_ready_created
after insert on durable.tasks
referencing new table as created
for each statement
execute function durable._ready_created();

-- Trigger: a task that becomes pending, or moves while pending, gets its row (inserted or
-- moved); a pending task cancelled or deleted loses it. (Pending to running is the claim's:
-- it deletes the rows of what it starts.)
create or replace function durable._ready_changed()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if tg_op = 'UPDATE' and new.status = 'pending' then
        insert into durable.ready as r (task_id, queue, task_name, neg_priority, fair_tag, run_at, seq, deadline)
        values (new.task_id, new.queue, new.task_name, -new.priority, new.fair_tag, new.run_at, new.seq,
                case when new.attempt = 0 then new.schedule_deadline end)
        on conflict (task_id) do update
            set queue = excluded.queue, task_name = excluded.task_name, neg_priority = excluded.neg_priority,
                fair_tag = excluded.fair_tag, run_at = excluded.run_at, seq = excluded.seq,
                deadline = excluded.deadline;
        perform durable._ready_lower(new.queue, new.task_name, -new.priority, new.fair_tag, new.run_at, new.seq);
        return null;
    end if;
    delete from durable.ready r where r.task_id = old.task_id;
    return null;
end;
$$;

comment on function durable._ready_changed() is
'Trigger (after update or delete on durable.tasks, per row, when a task becomes or stays pending with another place in the claim order, or stops being pending other than by a claim): writes or deletes its row of durable.ready, lowering the floors it lands below.';

drop trigger if exists tasks_ready_changed on durable.tasks;
create trigger tasks_ready_changed
after update on durable.tasks
for each row
when ((new.status = 'pending'
       and (old.status <> 'pending'
            or (old.priority, old.fair_tag, old.run_at, old.seq, old.queue, old.task_name,
                old.attempt, old.schedule_deadline)
               is distinct from
               (new.priority, new.fair_tag, new.run_at, new.seq, new.queue, new.task_name,
                new.attempt, new.schedule_deadline)))
      or (old.status = 'pending' and new.status not in ('pending', 'running')))
execute function durable._ready_changed();

drop trigger if exists tasks_ready_deleted on durable.tasks;
create trigger tasks_ready_deleted
after delete on durable.tasks
for each row
when (old.status = 'pending')
execute function durable._ready_changed();

-- Trigger: a TRUNCATE of durable.tasks (a test's or a benchmark's reset) empties the
-- claimable set with it (row triggers do not fire for a TRUNCATE).
create or replace function durable._ready_truncated()
returns trigger
language plpgsql
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    truncate durable.ready, durable.ready_floors;
    return null;
end;
$$;

comment on function durable._ready_truncated() is
'Trigger (after truncate on durable.tasks): truncates durable.ready and durable.ready_floors with it.';

drop trigger if exists tasks_ready_truncated on durable.tasks;
create trigger tasks_ready_truncated
after truncate on durable.tasks
for each statement
execute function durable._ready_truncated();

-- The floor of a queue (p_name '') or of one task name of it: the least of its slots, or
-- the lowest key when it has none.
create or replace function durable._ready_floor(p_queue text, p_name text)
returns table (neg_priority integer, fair_tag bigint, run_at timestamptz, seq bigint)
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return query
    select coalesce(min(x.neg_priority), -2147483648), coalesce(min(x.fair_tag), -9223372036854775808),
           coalesce(min(x.run_at), '-infinity'::timestamptz), coalesce(min(x.seq), -9223372036854775808)
    from (
        select f.neg_priority, f.fair_tag, f.run_at, f.seq
        from durable.ready_floors f
        where f.queue = p_queue and f.task_name = p_name
        order by f.neg_priority, f.fair_tag, f.run_at, f.seq
        limit 1
    ) x;
end;
$$;

comment on function durable._ready_floor(text, text) is
'Internal: the floor of a queue (p_name empty) or of one of its task names: the least key of its slots in durable.ready_floors, or the lowest key when it has none. See ready.sql.';

-- Raises the floors of a queue and of its names, and folds their slots (see "Floors"
-- above), its caller holding the queue's ready lock in exclusive mode, in a statement
-- that began after it took it (durable._ready_raise, durable._ready_raise_early).
create or replace function durable._ready_raise_held(p_queue text, p_now timestamptz)
returns void
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    -- Every floor of the queue in one statement: its own ('', made on its first raise) and
    -- those of its names, each as it is (its least slot), the first row each can see from
    -- there, and the new floor: that row, but no higher than (its priority and tag, now,
    -- the lowest seq), so that a task enqueued from now on at that priority lands above it
    -- and lowers nothing; with no row, (the default priority and tag, now, the lowest
    -- seq). Then one slot (0) each with the new floor, the others deleted; the queue's own
    -- records the raise (raised_at).
    with floors as (
        select n.name, fl.neg_priority, fl.fair_tag, fl.run_at, fl.seq
        from (select '' as name union select f.task_name from durable.ready_floors f where f.queue = p_queue) as n
        cross join lateral durable._ready_floor(p_queue, n.name) as fl
    ),
    firsts as (
        select f.name, coalesce(q.neg_priority, m.neg_priority) as neg_priority,
               coalesce(q.fair_tag, m.fair_tag) as fair_tag, coalesce(q.run_at, m.run_at) as run_at,
               coalesce(q.seq, m.seq) as seq
        from floors f
        -- the queue's: its first row from its floor (ready_claim_idx)
        left join lateral (
            select r.neg_priority, r.fair_tag, r.run_at, r.seq
            from durable.ready r
            where f.name = ''
              and r.queue = p_queue
              and (r.neg_priority, r.fair_tag, r.run_at, r.seq) >= (f.neg_priority, f.fair_tag, f.run_at, f.seq)
            order by r.neg_priority, r.fair_tag, r.run_at, r.seq
            limit 1
        ) as q on true
        -- a name's: (the name leads the row comparison, and no equality on it, as in the
        -- claim: only ready_name_idx can take it, whatever plan the statistics make likely,
        -- and its scan starts at the floor, ending past the name)
        left join lateral (
            select r.neg_priority, r.fair_tag, r.run_at, r.seq
            from durable.ready r
            where f.name <> ''
              and r.queue = p_queue
              and (r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq)
                  >= (f.name, f.neg_priority, f.fair_tag, f.run_at, f.seq)
              and r.task_name <= f.name
            order by r.task_name, r.neg_priority, r.fair_tag, r.run_at, r.seq
            limit 1
        ) as m on true
    ),
    raised as (
        select f.name,
               (f.neg_priority, f.fair_tag, f.run_at, f.seq)
               < (f.neg_priority, f.fair_tag, p_now, (-9223372036854775808)::bigint) as at_row,
               f.neg_priority, f.fair_tag, f.run_at, f.seq
        from firsts f
    ),
    folded as (
        delete from durable.ready_floors x where x.queue = p_queue and x.slot <> 0
    )
    insert into durable.ready_floors as f (queue, task_name, slot, neg_priority, fair_tag, run_at, seq, raised_at)
    select p_queue, r.name, 0,
           case when r.at_row then r.neg_priority else coalesce(r.neg_priority, 0) end,
           case when r.at_row then r.fair_tag else coalesce(r.fair_tag, 0) end,
           case when r.at_row then r.run_at else p_now end,
           case when r.at_row then r.seq else -9223372036854775808 end,
           case when r.name = '' then p_now end
    from raised r
    order by r.name
    on conflict (queue, task_name, slot) do update
        set neg_priority = excluded.neg_priority, fair_tag = excluded.fair_tag,
            run_at = excluded.run_at, seq = excluded.seq, raised_at = excluded.raised_at
        where (f.neg_priority, f.fair_tag, f.run_at, f.seq, f.raised_at)
              is distinct from (excluded.neg_priority, excluded.fair_tag, excluded.run_at, excluded.seq,
                                excluded.raised_at);
end;
$$;

comment on function durable._ready_raise_held(text, timestamptz) is
'Internal: raises the floors of a queue and of its task names (durable.ready_floors) to the first row of durable.ready each can see, never above (that row''s priority and tag, p_now, the lowest seq; the default priority and tag when there is none), folds their slots into one and records p_now as the queue''s raised_at; its caller holds the queue''s ready lock in exclusive mode. See ready.sql.';

-- The raise of a claim of more than one task that took all it asked for (a backlog): when
-- the queue's floors were last raised 100 ms ago or more, and the queue's ready lock can
-- be had in exclusive mode at once (no writer in flight: it never waits), in a claim that
-- is the first statement of a READ COMMITTED transaction. Returns whether it raised them.
create or replace function durable._ready_raise_early(p_queue text, p_now timestamptz)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    -- (one test after another: an expression's terms may be evaluated in any order, and the
    -- lock, once taken, is held to the commit)
    if exists (select 1 from durable.ready_floors f
               where f.queue = p_queue and f.task_name = '' and f.slot = 0
                 -- (a clock set back, a test clock's, does not stop the raises)
                 and f.raised_at > p_now - interval '100 milliseconds' and f.raised_at <= p_now) then
        return false;
    end if;
    if current_setting('transaction_isolation') <> 'read committed' or not durable._alone_in_transaction() then
        return false;
    end if;
    if not pg_try_advisory_xact_lock(1685418501, hashtext(p_queue)) then
        return false;
    end if;
    perform durable._ready_raise_held(p_queue, p_now);
    return true;
end;
$$;

comment on function durable._ready_raise_early(text, timestamptz) is
'Internal: for a claim of more than one task that took all it asked for: raises the floors of its queue (durable._ready_raise_held) when they were last raised 100 ms ago or more and the queue''s ready lock can be taken in exclusive mode without waiting, in a claim that is the first statement of a READ COMMITTED transaction; returns whether it did. See ready.sql.';

-- Raises the floors of a queue (see "Floors" above) and folds their slots, when the
-- queue's ready lock can be had in exclusive mode within 20 ms and this is the first
-- statement of a READ COMMITTED transaction. Returns whether it did.
create or replace function durable._ready_raise(p_queue text, p_now timestamptz, p_anywhere boolean default false)
returns boolean
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
set lock_timeout = '20ms'
as $$
begin
    if current_setting('transaction_isolation') <> 'read committed'
        -- a claim inside a longer transaction would hold the lock to its end, and the
        -- queue's writers with it (p_anywhere: the owner's tests)
        or not (p_anywhere or durable._alone_in_transaction()) then
        return false;
    end if;
    -- The queue's ready lock in exclusive mode. Writers hold it shared from their first row
    -- to their commit, so a busy queue always has one in flight and a mere try would never
    -- get it; a waiting request goes ahead of the writers that come after it (they queue
    -- behind it), so it gets in once those in flight commit. It waits at most 20 ms
    -- (lock_timeout), then leaves the raise to the next turn: a writer that itself waits
    -- for something this claim holds (a task it started) would otherwise make a cycle,
    -- which only deadlock_timeout would end, with an error.
    begin
        perform pg_advisory_xact_lock(1685418501, hashtext(p_queue));
    exception when lock_not_available then
        return false;
    end;
    -- no writer of the queue's rows is in flight now, and this statement's snapshot sees
    -- every one that committed
    perform durable._ready_raise_held(p_queue, p_now);
    return true;
end;
$$;

comment on function durable._ready_raise(text, timestamptz, boolean) is
'Internal: raises the floors of a queue and of its task names (durable.ready_floors) to the first row of durable.ready each can see, never above (that row''s priority and tag, p_now, the lowest seq; the default priority and tag when there is none), and folds their slots into one; only with the queue''s ready lock taken in exclusive mode within 20 ms (lock_timeout), in a claim that is the first statement of a READ COMMITTED transaction (or anywhere with p_anywhere, for tests) (else returns false, doing nothing). See ready.sql.';

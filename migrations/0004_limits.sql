-- 0004: concurrency limits, per-key limits with strategies, rate limits.
--
-- How they are enforced (a transaction-level advisory lock per queue, taken by the claim
-- before it counts what runs) is explained at the top of plpgsql/limits.sql. Here: what
-- the admission reads and writes.

-- concurrency_key: the key a task counts under for per-key limits, per-key rate limits
-- and round_robin fairness (null: no key). concurrency_key_limit: a limit given at
-- enqueue for this task, overriding the queue's (null: the queue's). fair_tag: the
-- task's place in round_robin order (start-time fair queuing tag, see limits.sql); 0 for
-- every task of every other queue, so their claim order is unchanged.
alter table durable.tasks
    add column concurrency_key text,
    add column concurrency_key_limit integer,
    add column fair_tag bigint not null default 0;

-- The claim order gains fair_tag between priority and run_at. Every task outside a
-- round_robin queue has fair_tag 0, so for them the order is exactly the old one.
drop index durable.tasks_claim_idx;
create index tasks_claim_idx on durable.tasks (queue, priority desc, fair_tag, run_at, seq)
where status = 'pending';

-- Per-key counts (running tasks of a key, unfinished tasks of a key), for keyed tasks
-- only: tasks without a key do not pay for this index. 'sleeping' and 'waiting' (durable
-- tasks suspended, see 0003) are here for the queue option that keeps their slot held.
create index tasks_concurrency_key_idx on durable.tasks (queue, concurrency_key, status)
where concurrency_key is not null and status in ('pending', 'running', 'sleeping', 'waiting');

-- With hold_slots_while_suspended, the suspended tasks of a queue count too (with or
-- without a key, with or without a wake time: tasks_wake_idx has only the latter).
create index tasks_suspended_idx on durable.tasks (queue, concurrency_key)
where status in ('sleeping', 'waiting');

-- Claim-side state of limited queues, written only by a claim that holds the queue's
-- lock, so nobody ever waits on these rows. One row per (queue, key) that has recent
-- starts under a rate limit: the sliding-window log, as parallel arrays (one element per
-- claim: when, and how many tasks it started). The row whose key is '' belongs to the
-- queue itself: the queue-wide rate log, and fair_clock, the round_robin virtual clock
-- (the largest fair_tag started so far).
create table durable.limit_state (
    queue text not null,
    concurrency_key text not null,
    start_times timestamptz[] not null default '{}',
    start_counts integer[] not null default '{}',
    fair_clock bigint not null default 0,
    primary key (queue, concurrency_key)
);

-- Enqueue-side state of round_robin queues: the fair_tag handed to each key's latest
-- task ('' for tasks without a key). Written by enqueue only.
create table durable.fair_keys (
    queue text not null,
    concurrency_key text not null,
    last_tag bigint not null,
    primary key (queue, concurrency_key)
);

-- 0007: the worker protocol (docs/protocol.md).
--
-- A new event may be recorded only once every earlier event of the history was checked
-- in the running attempt: recorded by it, or presented again by the re-run (replay_check,
-- or the same call at the same seq). replayed_to is how far the running attempt has
-- checked the history it was handed; the claim sets it back to 0.
alter table durable.tasks add column replayed_to integer not null default 0;

-- Verbs whose result changed type (one JSON shape per event, from every verb): dropped
-- here, created again from plpgsql/.
drop function if exists durable.spawn(uuid, uuid, integer, text, text, jsonb, jsonb);
drop function if exists durable.replay_check(uuid, uuid, jsonb);
drop function if exists durable.complete(uuid, uuid, jsonb, integer);
drop function if exists durable.complete_many(uuid[], uuid[], jsonb[], integer[]);

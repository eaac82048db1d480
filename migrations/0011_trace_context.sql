-- 0011: trace context (W3C traceparent and tracestate) carried with a task, so that one
-- trace shows a workflow across the clients and workers that run it (README, "Tracing").
--
-- Set from the enqueue option trace_context (a JSON object of string carrier fields, at
-- most 512 bytes: durable._task_row), returned by durable.claim and shown by
-- durable.get_task. Nothing in the database reads it.
alter table durable.tasks add column trace_context jsonb;

-- claim returns one more column (trace_context, last): its result changed type, so it is
-- dropped here and created again from plpgsql/.
drop function if exists durable.claim(text, text, integer, integer, text[]);

-- The bypasses of the security issue, each tried and each failing with nothing changed
-- (a snapshot of every durable table before and after):
--   A. writing or reading the tables directly, as a worker, producer, operator or reader
--      (forged completion, priority, max_attempts, failures, events, queues): 42501;
--   B. the old door durable.restarting: no effect; even the owner (and a superuser) cannot
--      move a terminal task back to pending without counting a restart (DU012);
--   C. the old door durable.purging: no effect; even the owner cannot delete the events of
--      a task that still exists (DU013); retention still can; nor can a worker silence the
--      triggers (session_replication_role) or become the owner (SET ROLE): 42501;
--   D. CREATE TRIGGER on durable.tasks or durable.events: 42501;
--   E. a caller's temporary objects (a domain named jsonb, text, uuid..., tables and
--      functions named like durable's) do not change what create_queue, enqueue and
--      ensure_queue do: pg_temp is last in their search_path;
--   F. sizes: 2 MiB (and 2,001-character) reasons and a 2 MiB step error are DU003, a
--      client-given input_hash is no argument at all (42883), a 100,000-character name is
--      DU001 with an error of at most 300 characters that quotes at most 100 of them (so
--      do errors about other long texts a caller sends: option keys and values, role
--      names); nothing stored; a presented event with a 100,000-character name or kind is
--      a non-determinism whose envelope, stored error and later DU020 quote at most 100;
--   G. names with control or format characters or surrounding whitespace are DU001 for
--      queue, task name, worker, event key, step name, idempotency_key, concurrency_key.
select plan(357);

select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);

\ir helpers/security.sql

select pg_temp.login('w', '{durable_worker}');
select pg_temp.login('p', '{durable_producer}');
select pg_temp.login('o', '{durable_operator}');
select pg_temp.login('r', '{durable_reader}');
select pg_temp.login('po', '{durable_producer,durable_operator}');
-- the roles log in through dblink in part E
commit;

create temp table ids (name text primary key, id uuid, token uuid);
create function pg_temp.id(p_name text) returns uuid language sql
    as $$ select i.id from ids i where i.name = p_name $$;
create function pg_temp.tok(p_name text) returns uuid language sql
    as $$ select i.token from ids i where i.name = p_name $$;
-- enqueues one task on an empty-of-pending queue and claims it: recorded under its task name
create function pg_temp.start(p_queue text, p_name text, p_durable boolean) returns uuid language sql as $$
    select durable.enqueue(p_queue, p_name, '{}', jsonb_build_object('durable', p_durable));
    insert into ids (name, id, token)
    select c.task_name, c.task_id, c.lease_token from durable.claim(p_queue, 'w0', 1, 86400) c
    returning id
$$;

select durable.create_queue('q', '{"max_attempts": 3}');
select durable.create_queue('empty');
select durable.create_queue('oldq');
-- done: a durable task completed with one recorded step
select pg_temp.start('q', 'done', true);
select durable.checkpoint(pg_temp.id('done'), pg_temp.tok('done'), 1, 'step', 'one', '{"v": 1}');
select durable.complete(pg_temp.id('done'), pg_temp.tok('done'), '{"real": true}');
-- run: a durable task running (lease of a day) with one recorded step
select pg_temp.start('q', 'run', true);
select durable.checkpoint(pg_temp.id('run'), pg_temp.tok('run'), 1, 'step', 'one', '{"v": 1}');
-- spare: a plain task completed
select pg_temp.start('q', 'spare', false);
select durable.complete(pg_temp.id('spare'), pg_temp.tok('spare'), '{}');
-- old: a durable task of oldq, completed with one step (retention deletes it)
select pg_temp.start('oldq', 'old', true);
select durable.checkpoint(pg_temp.id('old'), pg_temp.tok('old'), 1, 'step', 'one', '{"v": 1}');
select durable.complete(pg_temp.id('old'), pg_temp.tok('old'), '{}');
-- run4, run5: durable tasks running with one recorded step (their re-runs present long texts)
select pg_temp.start('q', 'run4', true);
select durable.checkpoint(pg_temp.id('run4'), pg_temp.tok('run4'), 1, 'step', 'one', '{"v": 1}');
select pg_temp.start('q', 'run5', true);
select durable.checkpoint(pg_temp.id('run5'), pg_temp.tok('run5'), 1, 'step', 'one', '{"v": 1}');
-- pend, pend2: pending
insert into ids (name, id) values ('pend', durable.enqueue('q', 'pend')), ('pend2', durable.enqueue('q', 'pend2'));

-- ---------------------------------------------------------------------------------
-- A. the tables, directly (13 statements x 4 roles x 2 assertions)
create temp table table_bypasses (ord serial, label text, stmt text);
insert into table_bypasses (label, stmt) values
    ('UPDATE durable.tasks to completed with a forged output',
     format($$update durable.tasks set status = 'completed', output = '{"forged": true}' where task_id = %L$$,
            pg_temp.id('run'))),
    ('UPDATE durable.tasks.priority', $$update durable.tasks set priority = 1000000$$),
    ('UPDATE durable.tasks.max_attempts', $$update durable.tasks set max_attempts = 1000$$),
    ('UPDATE durable.tasks.failures', $$update durable.tasks set failures = 0$$),
    ('SELECT the lease tokens of durable.tasks', $$select lease_token from durable.all_tasks$$),
    ('INSERT INTO durable.tasks',
     $$insert into durable.tasks (task_id, queue, task_name, input, run_at, max_attempts, max_lost_leases, backoff,
                                  created_at)
       values (gen_random_uuid(), 'q', 'forged', '{}', now(), 1, 1, '{"kind": "none"}', now())$$),
    ('DELETE FROM durable.tasks', $$delete from durable.tasks$$),
    ('TRUNCATE durable.tasks', $$truncate durable.tasks$$),
    ('INSERT INTO durable.events',
     format($$insert into durable.events (task_id, generation, seq, kind, name, result, attempt, recorded_at)
              values (%L, 1, 2, 'step', 'forged', '{"v": 666}', 1, now())$$, pg_temp.id('run'))),
    ('DELETE FROM durable.events', $$delete from durable.events$$),
    ('INSERT INTO durable.queues', $$insert into durable.queues (queue) values ('sneaky')$$),
    ('DELETE FROM durable.queue_grants', $$delete from durable.queue_grants$$),
    ('SELECT durable.attempts', $$select * from durable.attempts$$);
select pg_temp.refused_as(pg_temp.role(k.kind), b.stmt, '42501', format('as %s: %s is 42501', k.grp, b.label))
from table_bypasses b
cross join (values (1, 'w', 'durable_worker'), (2, 'p', 'durable_producer'), (3, 'o', 'durable_operator'),
                   (4, 'r', 'durable_reader')) as k (ord, kind, grp)
order by b.ord, k.ord;

-- ---------------------------------------------------------------------------------
-- B. durable.restarting opens nothing
select pg_temp.refused_as(pg_temp.role('o'),
    format($$set durable.restarting = on; select durable.retry(%L)$$, pg_temp.id('done')),
    'DU012', 'an operator with durable.restarting = on: retry of a completed task is DU012');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$set durable.restarting = on; update durable.tasks set status = 'pending' where task_id = %L$$,
           pg_temp.id('done')),
    '42501', 'a worker with durable.restarting = on: UPDATE of a completed task to pending is 42501');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$set durable.restarting = on; select durable.complete(%L, %L, '{"forged": true}')$$,
           pg_temp.id('done'), pg_temp.tok('done')),
    'DU010', 'a worker with durable.restarting = on: completing the completed task again with its old token is DU010');
select pg_temp.refused_as('durable_owner',
    format($$set durable.restarting = on; update durable.finished_tasks set status = 'pending' where task_id = %L$$,
           pg_temp.id('done')),
    'DU012', 'the owner with durable.restarting = on: UPDATE of a completed task to pending without a restart is DU012');
select pg_temp.refused_as('durable_owner',
    format($$update durable.finished_tasks set status = 'pending' where task_id = %L$$, pg_temp.id('done')),
    'DU012', 'the owner: UPDATE of a completed task to pending without a restart is DU012');
select pg_temp.refused_as('durable_owner',
    format($$update durable.finished_tasks set status = 'pending', restarts = restarts where task_id = %L$$, pg_temp.id('done')),
    'DU012', 'the owner: UPDATE of a completed task to pending leaving restarts as it is is DU012');
select pg_temp.refused_as(session_user,
    format($$set durable.restarting = on; update durable.finished_tasks set status = 'pending' where task_id = %L$$,
           pg_temp.id('done')),
    'DU012', 'a superuser with durable.restarting = on: UPDATE of a completed task to pending without a restart is DU012');
select is(
    (select jsonb_build_object('status', t.status, 'output', t.output) from durable.all_tasks t
     where t.task_id = pg_temp.id('done')),
    '{"status": "completed", "output": {"real": true}}'::jsonb,
    'the completed task is still completed with its own output'
);
-- a finished task is in the archive, whose rows are never updated, even counting a restart:
-- the one way back is a restart verb (retry, replay), which moves it
select pg_temp.refused_as('durable_owner',
    format($$update durable.finished_tasks set status = 'pending', restarts = restarts + 1 where task_id = %L$$,
           pg_temp.id('spare')),
    'DU012', 'the owner: UPDATE of an archived task, even one that counts a restart, is DU012');
select is((select status from durable.all_tasks where task_id = pg_temp.id('spare')), 'completed',
          'that task is still completed');

-- ---------------------------------------------------------------------------------
-- C. durable.purging opens nothing
select pg_temp.refused_as(pg_temp.role('w'),
    format($$set durable.purging = on; delete from durable.events where task_id = %L$$, pg_temp.id('done')),
    '42501', 'a worker with durable.purging = on: DELETE FROM durable.events is 42501');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$set durable.purging = on;
             insert into durable.events (task_id, generation, seq, kind, name, result, attempt, recorded_at)
             values (%L, 1, 2, 'step', 'forged', '{"v": 666}', 1, now())$$, pg_temp.id('run')),
    '42501', 'a worker with durable.purging = on: INSERT INTO durable.events is 42501');
select pg_temp.refused_as(pg_temp.role('o'),
    format($$set durable.purging = on; delete from durable.events where task_id = %L$$, pg_temp.id('done')),
    '42501', 'an operator with durable.purging = on: DELETE FROM durable.events is 42501');
select pg_temp.refused_as('durable_owner',
    format($$set durable.purging = on; delete from durable.events where task_id = %L$$, pg_temp.id('done')),
    'DU013', 'the owner with durable.purging = on: DELETE of the events of a completed task that exists is DU013');
select pg_temp.refused_as('durable_owner',
    format($$set durable.purging = on; delete from durable.events where task_id = %L$$, pg_temp.id('run')),
    'DU013', 'the owner with durable.purging = on: DELETE of the events of a running task is DU013');
select pg_temp.refused_as(session_user,
    format($$set durable.purging = on; delete from durable.events where task_id = %L$$, pg_temp.id('done')),
    'DU013', 'a superuser with durable.purging = on: DELETE of the events of a task that exists is DU013');
select pg_temp.refused_as('durable_owner', $$set durable.purging = on; truncate durable.events$$,
    'DU013', 'the owner with durable.purging = on: TRUNCATE durable.events is DU013');
-- retention deletes a task with its events
select set_config('durable.fake_now', '2030-01-01 01:00:00+00', false);
select is(durable.purge('oldq', 0), 1, 'retention still deletes a finished task (with its events)');
select is((select count(*) from durable.events where task_id = pg_temp.id('old')), 0::bigint,
          'the purged task''s events are gone');

-- the other ways around the triggers and the owner's rights are PostgreSQL's own (in
-- sessions logged in as the roles: SET ROLE is checked against the login role)
select dblink_connect('w', pg_temp.conninfo_as(pg_temp.role('w')));
select alike(pg_temp.remote('w', $$set session_replication_role = replica; select current_setting('session_replication_role')$$),
             'ERROR 42501:%',
             'a worker cannot SET session_replication_role = replica (which would silence the triggers inside the verbs)');
select dblink_disconnect('w');
select dblink_connect('o', pg_temp.conninfo_as(pg_temp.role('o')));
select alike(pg_temp.remote('o', $$set role durable_owner; select current_user::text$$), 'ERROR 42501:%',
             'an operator cannot SET ROLE durable_owner');
select dblink_disconnect('o');

-- ---------------------------------------------------------------------------------
-- D. triggers
create temp table trigger_bypass as
select $q$create function pg_temp.evil() returns trigger language plpgsql as $f$
          begin new.status := 'completed'; return new; end $f$;
          create trigger evil before update on durable.tasks for each row execute function pg_temp.evil()$q$
       as on_tasks,
       $q$create function pg_temp.evil() returns trigger language plpgsql as $f$ begin return null; end $f$;
          create trigger evil before insert on durable.events for each row execute function pg_temp.evil()$q$
       as on_events;
select pg_temp.refused_as(pg_temp.role(k.kind), (select on_tasks from trigger_bypass), '42501',
                          format('as %s: CREATE TRIGGER on durable.tasks is 42501', k.grp))
from (values (1, 'w', 'durable_worker'), (2, 'p', 'durable_producer'), (3, 'o', 'durable_operator'),
             (4, 'r', 'durable_reader')) as k (ord, kind, grp)
order by k.ord;
select pg_temp.refused_as(pg_temp.role('w'), (select on_events from trigger_bypass), '42501',
                          'as durable_worker: CREATE TRIGGER on durable.events is 42501');

-- ---------------------------------------------------------------------------------
-- E. a caller's temporary objects, in a session of a producer and operator: domains named
-- like the types the verbs use, whose check raises; tables and functions named like
-- durable's (functions in pg_temp are never found without a schema; types and tables are,
-- first, unless the path names pg_temp)
select dblink_connect('h', pg_temp.conninfo_as(pg_temp.role('po')));
select dblink_exec('h', $q$create function pg_temp.hijacked() returns pg_catalog.bool language plpgsql as $f$
                          begin raise exception 'hijacked as %', current_user; end $f$$q$);
select dblink_exec('h', format('create domain pg_temp.%I as pg_catalog.%I check (pg_temp.hijacked())', t, t))
from unnest(array['jsonb', 'text', 'uuid', 'timestamptz', 'int4', 'int8', 'float8', 'numeric', 'bool']) as t;
select dblink_exec('h', $q$create table pg_temp.queues (queue pg_catalog.text, options pg_catalog.jsonb,
                                                         created_at pg_catalog.timestamptz, purged_at pg_catalog.timestamptz);
                          create table pg_temp.tasks (task_id pg_catalog.uuid);
                          create table pg_temp.settings (id pg_catalog.bool, test_clock pg_catalog.bool);
                          create table pg_temp.queue_grants (role_oid pg_catalog.oid, queue_pattern pg_catalog.text,
                                                             capabilities pg_catalog.text[])$q$);
select dblink_exec('h', $q$insert into pg_temp.queues (queue, options) values ('ghost', '{}'::pg_catalog.jsonb)$q$);
select dblink_exec('h', $q$create function pg_temp._check_name(pg_catalog.text, pg_catalog.text) returns void
                          language plpgsql as $f$ begin raise exception 'hijacked _check_name'; end $f$;
                          create function pg_temp."current_time"() returns pg_catalog.timestamptz
                          language plpgsql as $f$ begin raise exception 'hijacked current_time'; end $f$$q$);
select alike(pg_temp.remote('h', $$select '{}'::jsonb::pg_catalog.text$$), 'ERROR %hijacked as%',
            'in that session, jsonb is the trap (its own unqualified type names resolve to pg_temp)');
select is(pg_temp.remote('h', $$select queue from queues$$), 'ghost',
          'in that session, an unqualified queues is its temporary table');
select is(pg_temp.remote('h', $$select durable.create_queue('hq', '{"max_attempts": 3}'::pg_catalog.jsonb)::pg_catalog.text$$),
          '{"max_attempts": 3}', 'create_queue in that session works as anywhere (no trap sprung)');
create temp table hijack_enqueue as
select pg_temp.remote('h', $$select durable.enqueue('hq', 'job', '{"a": 1}'::pg_catalog.jsonb,
                                                    '{"priority": 2}'::pg_catalog.jsonb)::pg_catalog.text$$) as v;
select is(
    (select jsonb_build_object('queue', t.queue, 'task_name', t.task_name, 'input', t.input, 'priority', t.priority,
                               'max_attempts', t.max_attempts, 'status', t.status)
     from durable.all_tasks t where t.task_id::text = (select v from hijack_enqueue)),
    '{"queue": "hq", "task_name": "job", "input": {"a": 1}, "priority": 2, "max_attempts": 3, "status": "pending"}'::jsonb,
    'enqueue in that session stores the task as anywhere: ' || (select v from hijack_enqueue)
);
select alike(pg_temp.remote('h', $$select durable.enqueue('ghost', 'job')::pg_catalog.text$$), 'ERROR DU002:%',
            'enqueue on the queue of its temporary table queues is DU002 (durable.queues alone counts)');
select is(pg_temp.remote('h', $$select durable.ensure_queue('hq2')::pg_catalog.text$$), 'true',
          'ensure_queue in that session creates the queue');
-- its temporary objects go now (DISCARD TEMP), not at some point after the disconnect: the role is dropped below
select dblink_exec('h', 'discard temp');
select dblink_disconnect('h');

-- ---------------------------------------------------------------------------------
-- F. sizes
select pg_temp.refused_as(pg_temp.role('o'), format($$select durable.cancel(%L, repeat('x', 2097152))$$, pg_temp.id('pend')),
    'DU003', 'cancel with a 2 MiB reason is DU003');
select pg_temp.refused_as(pg_temp.role('o'), format($$select durable.cancel(%L, repeat('x', 2001))$$, pg_temp.id('pend')),
    'DU003', 'cancel with a reason of 2,001 characters is DU003');
select is(pg_temp.state_as(pg_temp.role('o'), format($$select durable.cancel(%L, repeat('x', 2000))$$, pg_temp.id('pend2'))),
          null, 'cancel with a reason of 2,000 characters is accepted');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$select durable.release(%L, %L, 60, repeat('x', 2097152))$$, pg_temp.id('run'), pg_temp.tok('run')),
    'DU003', 'release with a 2 MiB reason is DU003');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$select durable.release(%L, %L, 60, repeat('x', 2001))$$, pg_temp.id('run'), pg_temp.tok('run')),
    'DU003', 'release with a reason of 2,001 characters is DU003');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$select durable.checkpoint(%L, %L, 2, 'step', 'two', null, jsonb_build_object('x', repeat('x', 2097152)))$$,
           pg_temp.id('run'), pg_temp.tok('run')),
    'DU003', 'checkpoint with a 2 MiB step error is DU003');
select pg_temp.refused_as(pg_temp.role('w'),
    format($$select durable.checkpoint(%L, %L, 2, 'step', 'two', '{}', null, repeat('h', 32))$$,
           pg_temp.id('run'), pg_temp.tok('run')),
    '42883', 'checkpoint with an input_hash is 42883: the client gives no hash, the server computes them');
select pg_temp.refused_as(pg_temp.role('p'),
    $$select durable.emit_event('q', 'big', jsonb_build_object('x', repeat('x', 2097152)))$$,
    'DU003', 'emit_event with a 2 MiB payload is DU003');
-- a name of 100,000 characters: DU001, and the error quotes at most 100 of them
create temp table long_names (ord integer, label text, kind text, stmt text);
insert into long_names values
    (1, 'create_queue with a queue name', 'o', $$select durable.create_queue(repeat('n', 100000))$$),
    (2, 'ensure_queue with a queue name', 'w', $$select durable.ensure_queue(repeat('n', 100000))$$),
    (3, 'enqueue with a task name', 'p', $$select durable.enqueue('q', repeat('n', 100000))$$),
    (4, 'claim with a worker name', 'w', $$select * from durable.claim('q', repeat('n', 100000))$$),
    (5, 'emit_event with an event key', 'p', $$select durable.emit_event('q', repeat('n', 100000))$$);
select pg_temp.refused_as(pg_temp.role(l.kind), l.stmt, 'DU001', l.label || ' of 100,000 characters is DU001')
from long_names l order by l.ord;
create temp table long_errors as
select l.ord, l.label, pg_temp.error_as(pg_temp.role(l.kind), l.stmt) as e from long_names l;
select cmp_ok(length(e ->> 'message'), '<=', 300,
              l.label || ' of 100,000 characters: the error message is at most 300 characters')
from long_errors l order by l.ord;
select is(strpos(concat_ws(' ', e ->> 'message', e ->> 'detail', e ->> 'hint'), repeat('n', 101)), 0,
          l.label || ' of 100,000 characters: the error quotes at most 100 of them')
from long_errors l order by l.ord;

-- other texts of 100,000 characters the caller sends (keys, option values, presented
-- events, role names): a durable error that quotes at most 100 of them
create temp table long_inputs (ord integer, label text, kind text, stmt text);
insert into long_inputs values
    (1, 'enqueue with an unknown option key', 'p',
     $$select durable.enqueue('q', 'job', '{}', jsonb_build_object(repeat('n', 100000), 1))$$),
    (2, 'enqueue with a run_at', 'p',
     $$select durable.enqueue('q', 'job', '{}', jsonb_build_object('run_at', repeat('n', 100000)))$$),
    (3, 'create_queue with a concurrency_strategy', 'o',
     $$select durable.create_queue('q', jsonb_build_object('concurrency_strategy', repeat('n', 100000)))$$),
    (6, 'checkpoint of a kind', 'w',
     format($$select durable.checkpoint(%L, %L, 2, repeat('n', 100000), 'two')$$, pg_temp.id('run'), pg_temp.tok('run'))),
    (7, 'grant_queue to a role name', 'o', $$select durable.grant_queue(repeat('n', 100000), 'a*', '{reader}')$$);
create temp table long_input_errors as
select l.ord, l.label, pg_temp.error_as(pg_temp.role(l.kind), l.stmt) as e from long_inputs l;
select alike(coalesce(e ->> 'sqlstate', 'none'), 'DU%', l.label || ' of 100,000 characters: a durable error')
from long_input_errors l order by l.ord;
select cmp_ok(length(e ->> 'message'), '<=', 300,
              l.label || ' of 100,000 characters: the error message is at most 300 characters')
from long_input_errors l order by l.ord;
select is(strpos(concat_ws(' ', e ->> 'message', e ->> 'detail', e ->> 'hint'), repeat('n', 101)), 0,
          l.label || ' of 100,000 characters: the error (message, DETAIL, HINT) quotes at most 100 of them')
from long_input_errors l order by l.ord;

-- presented events of 100,000 characters: a non-determinism (the task is failed), whose
-- envelope, stored error and the next call's DU020 quote at most 100 of them
create temp table long_presented (ord integer, label text, task text, stmt text);
insert into long_presented values
    (4, 'replay_check presenting a step name', 'run4',
     format($$select durable.replay_check(%L, %L, jsonb_build_array(jsonb_build_object('seq', 1, 'kind', 'step',
                                                                                        'name', repeat('n', 100000))))$$,
            pg_temp.id('run4'), pg_temp.tok('run4'))),
    (5, 'replay_check presenting a kind', 'run5',
     format($$select durable.replay_check(%L, %L, jsonb_build_array(jsonb_build_object('seq', 1, 'kind', repeat('n', 100000),
                                                                                        'name', 'one')))$$,
            pg_temp.id('run5'), pg_temp.tok('run5')));
create temp table long_presented_results as
select l.ord, l.label, l.task, pg_temp.value_as(pg_temp.role('w'), l.stmt) as v from long_presented l;
create temp table long_presented_next as
select l.ord, pg_temp.error_as(pg_temp.role('w'),
                               format('select durable.heartbeat(%L, %L)', pg_temp.id(l.task), pg_temp.tok(l.task))) as e
from long_presented l;
select is(jsonb_typeof(r.v::jsonb -> 'nondeterminism'), 'object',
          r.label || ' of 100,000 characters: returns {"nondeterminism": ...}')
from long_presented_results r order by r.ord;
select cmp_ok(length(r.v::jsonb #>> '{nondeterminism,message}'), '<=', 300,
              r.label || ' of 100,000 characters: its message is at most 300 characters')
from long_presented_results r order by r.ord;
select is(strpos(r.v, repeat('n', 101)), 0,
          r.label || ' of 100,000 characters: what it returns quotes at most 100 of them')
from long_presented_results r order by r.ord;
select is(
    (select row(t.status, t.error ->> 'type', strpos(t.error::text, repeat('n', 101)))::text
     from durable.all_tasks t where t.task_id = pg_temp.id(r.task)),
    row('failed', 'NonDeterminismError', 0)::text,
    r.label || ' of 100,000 characters: the task is failed with an error that quotes at most 100 of them')
from long_presented_results r order by r.ord;
select is(
    (select row(n.e ->> 'sqlstate', strpos(concat_ws(' ', n.e ->> 'message', n.e ->> 'detail', n.e ->> 'hint'),
                                          repeat('n', 101)))::text
     from long_presented_next n where n.ord = r.ord),
    row('DU020', 0)::text,
    r.label || ' of 100,000 characters: the next call raises DU020 quoting at most 100 of them')
from long_presented_results r order by r.ord;

-- ---------------------------------------------------------------------------------
-- G. names: control and format characters, surrounding whitespace (7 kinds of names x 19)
create temp table bad_names (ord serial, label text, value text);
insert into bad_names (label, value) values
    ('a tab', e'a\tb'), ('a newline', e'a\nb'), ('a carriage return', e'a\rb'), ('U+0001', 'a' || chr(1) || 'b'),
    ('DEL', 'a' || chr(127) || 'b'), ('the C1 control NEL', 'a' || chr(133) || 'b'),
    ('the C1 control U+009F', 'a' || chr(159) || 'b'), ('a soft hyphen U+00AD', 'a' || chr(173) || 'b'),
    ('a zero-width space U+200B', 'a' || chr(8203) || 'b'), ('a right-to-left mark U+200F', 'a' || chr(8207) || 'b'),
    ('a bidi embedding U+202A', 'a' || chr(8234) || 'b'), ('a bidi override U+202E', 'a' || chr(8238) || 'b'),
    ('a bidi isolate U+2066', 'a' || chr(8294) || 'b'), ('a bidi isolate end U+2069', 'a' || chr(8297) || 'b'),
    ('a BOM U+FEFF', chr(65279) || 'ab'), ('a leading space', ' ab'), ('a trailing space', 'ab '),
    ('a leading no-break space', chr(160) || 'ab'), ('a trailing ideographic space', 'ab' || chr(12288));
create temp table name_kinds (ord integer, label text, kind text, stmt text);
insert into name_kinds values
    (1, 'a queue name', 'o', $$select durable.create_queue(%L)$$),
    (2, 'a task name', 'p', $$select durable.enqueue('q', %L)$$),
    (3, 'a worker name', 'w', $$select * from durable.claim('empty', %L)$$),
    (4, 'an event key', 'p', $$select durable.emit_event('q', %L)$$),
    (5, 'a step name', 'w',
     format($$select durable.checkpoint(%L, %L, 2, 'step', %%L, '{}')$$, pg_temp.id('run'), pg_temp.tok('run'))),
    (6, 'an idempotency_key', 'p', $$select durable.enqueue('q', 'job', '{}', jsonb_build_object('idempotency_key', %L))$$),
    (7, 'a concurrency_key', 'p', $$select durable.enqueue('q', 'job', '{}', jsonb_build_object('concurrency_key', %L))$$);
create temp table names_before as select pg_temp.durable_state() as s;
select is(pg_temp.state_as(pg_temp.role(n.kind), format(n.stmt, b.value)), 'DU001',
          format('%s with %s is DU001', n.label, b.label))
from name_kinds n cross join bad_names b
order by n.ord, b.ord;
select is(pg_temp.durable_state(), (select s from names_before), 'none of those names stored anything');
-- the same calls take a good name, spaces and letters of any script inside
select is(pg_temp.state_as(pg_temp.role(n.kind), format(n.stmt, 'ok name é ü 名')), null,
          format('%s with inner spaces and non-ASCII letters is accepted', n.label))
from name_kinds n
order by n.ord;

select pg_temp.drop_roles();

select * from finish();

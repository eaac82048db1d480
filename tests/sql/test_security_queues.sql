-- Queue permissions (security spec, "Queue permissions" and "Lease tokens"):
--   1. a role restricted by durable.grant_queue(role, 'a*', '{worker,producer,reader}')
--      cannot claim, read, cancel, purge, enqueue into, spawn into, emit into, nor use a
--      lease token on queue 'b' (42501, nothing changed), but can on the a* queues, where
--      it still lacks what its capabilities do not give (operator: cancel, purge, options)
--      until a grant adds it; unrestricted roles are unaffected;
--   2. restrictions follow the role in effect: SET ROLE, the login role, and membership
--      (a grant to a group role restricts its members); and SET ROLE to a durable group
--      role the login role holds does not lift them;
--   3. event keys are scoped by queue: an emit into queue b wakes no waiter of queue aw
--      with the same key, nor is a later wait in aw answered by b's latch;
--   4. a restricted operator cannot call grant_queue or revoke_queue (42501); an
--      unrestricted one can, and revoke_queue lifts the restriction;
--   5. lease tokens are capabilities: no read a reader, producer, operator or worker may
--      call (get_task, history, queue_stats, limit_usage, queue_grants) shows a live or
--      an ended attempt's lease token;
--   6. patterns: a prefix pattern is literal ('tenant_a.*' does not match 'tenantXa.q'), an
--      exact one matches that queue only, '*' every queue; bad patterns and capabilities
--      are DU001; ensure_queue never changes a queue's options;
--   7. retention runs in the claim of a worker (no operator right needed), at most once a
--      minute per queue.
select plan(190);

\ir helpers/security.sql

select pg_temp.login('u', '{durable_worker,durable_producer,durable_operator}');
select pg_temp.login('r', '{durable_worker,durable_producer,durable_operator}');
select pg_temp.make_role('g', '{durable_worker,durable_producer,durable_operator}', false);
select pg_temp.login('m', array[pg_temp.role('g')]);
select pg_temp.login('wo', '{durable_worker}');
select pg_temp.login('pr', '{durable_producer}');
select pg_temp.login('op', '{durable_operator}');
select pg_temp.login('rd', '{durable_reader}');
select pg_temp.login('t', '{durable_worker,durable_producer,durable_operator}');
select pg_temp.login('v', '{durable_worker,durable_producer,durable_operator}');

create temp table ids (name text primary key, id uuid, token uuid);
create function pg_temp.id(p_name text) returns uuid language sql
    as $$ select i.id from ids i where i.name = p_name $$;
create function pg_temp.tok(p_name text) returns uuid language sql
    as $$ select i.token from ids i where i.name = p_name $$;
-- claims the task named p_name (as this superuser), enqueueing it first when p_enqueue
create function pg_temp.start(p_queue text, p_name text, p_durable boolean, p_enqueue boolean default true)
returns uuid language sql as $$
    select durable.enqueue(p_queue, p_name, '{}', jsonb_build_object('durable', p_durable)) where p_enqueue;
    insert into ids (name, id, token)
    select c.task_name, c.task_id, c.lease_token from durable.claim(p_queue, 'w0', 1, 86400, array[p_name]) c
    on conflict (name) do update set id = excluded.id, token = excluded.token
    returning id
$$;
-- the state of one task
create function pg_temp.status(p_name text) returns text language sql
    as $$ select t.status from durable.all_tasks t where t.task_id = pg_temp.id(p_name) $$;

select durable.create_queue(q) from unnest(array['a1', 'a2', 'ap', 'aw', 'b', 'tokq']) as q;
-- queue b: completed (durable, one event), running (plain and durable), pending, cancelled
select pg_temp.start('b', 'b_done', true);
select durable.checkpoint(pg_temp.id('b_done'), pg_temp.tok('b_done'), 1, 'step', 'one', '{"v": 1}');
select durable.complete(pg_temp.id('b_done'), pg_temp.tok('b_done'), '{}');
select pg_temp.start('b', 'b_run', false);
select pg_temp.start('b', 'b_wf', true);
insert into ids (name, id) values ('b_pend', durable.enqueue('b', 'b_pend')), ('b_cancelled', durable.enqueue('b', 'b_cancelled'));
select durable.cancel(pg_temp.id('b_cancelled'));
-- queue a1: pending; a2: a durable task for the restricted role to claim
insert into ids (name, id) values ('a_pend', durable.enqueue('a1', 'a_pend')),
                                  ('a_wf', durable.enqueue('a2', 'a_wf', '{}', '{"durable": true}'));
-- queue ap: a durable task that spawned a child into b
select pg_temp.start('ap', 'parent', true);
insert into ids (name, id)
values ('b_child', (durable.spawn(pg_temp.id('parent'), pg_temp.tok('parent'), 1, 'b', 'b_child') #>> '{result,task_id}')::uuid);
-- an event key of queue b
select durable.emit_event('b', 'bkey');
-- queue aw: a durable task waiting for the key shared
select pg_temp.start('aw', 'waiter', true);
select durable.wait_event(pg_temp.id('waiter'), pg_temp.tok('waiter'), 1, 'shared');

-- ---------------------------------------------------------------------------------
-- 1. r and g (so m) restricted to a*, as worker, producer and reader
select is(pg_temp.state_as(pg_temp.role('u'),
                           format($$select durable.grant_queue(%L, 'a*', '{worker,producer,reader}')$$, pg_temp.role('r'))),
          null, 'an unrestricted operator restricts a role to a* (worker, producer, reader)');
select is(pg_temp.state_as(pg_temp.role('u'),
                           format($$select durable.grant_queue(%L, 'a*', '{worker,producer,reader}')$$, pg_temp.role('g'))),
          null, 'and a group role');
select is(
    pg_temp.value_as(pg_temp.role('u'),
        $$select string_agg(format('%s %s %s', g.role, g.queue_pattern, g.capabilities), '; ' order by g.role)
          from durable.queue_grants() g$$),
    format('%s a* {producer,reader,worker}; %s a* {producer,reader,worker}', pg_temp.role('g'), pg_temp.role('r')),
    'durable.queue_grants() lists both grants'
);

-- r on queue b: refused, nothing changed
create temp table on_b (ord serial, label text, stmt text);
insert into on_b (label, stmt) values
    ('claim', $$select * from durable.claim('b', 'r')$$),
    ('next_wake', $$select durable.next_wake('b')$$),
    ('get_task', format('select durable.get_task(%L)', pg_temp.id('b_pend'))),
    ('history', format('select * from durable.history(%L)', pg_temp.id('b_done'))),
    ('queue_stats', $$select * from durable.queue_stats('b')$$),
    ('limit_usage', $$select * from durable.limit_usage('b')$$),
    ('cancel', format('select durable.cancel(%L)', pg_temp.id('b_pend'))),
    ('retry', format('select durable.retry(%L)', pg_temp.id('b_cancelled'))),
    ('replay', format('select durable.replay(%L)', pg_temp.id('b_done'))),
    ('fork', format('select durable.fork(%L, 1)', pg_temp.id('b_done'))),
    ('purge', $$select durable.purge('b', 0)$$),
    ('purge_event_keys', $$select durable.purge_event_keys('b', 0)$$),
    ('reclaim', $$select durable.reclaim('b')$$),
    ('create_queue', $$select durable.create_queue('b', '{"max_attempts": 1}')$$),
    ('ensure_queue (a new queue bnew)', $$select durable.ensure_queue('bnew')$$),
    ('enqueue', $$select durable.enqueue('b', 'job')$$),
    ('enqueue_many', $$select * from durable.enqueue_many('b', '[{"task_name": "job"}]')$$),
    ('emit_event', $$select durable.emit_event('b', 'k')$$),
    ('heartbeat with the live token', format('select durable.heartbeat(%L, %L)', pg_temp.id('b_run'), pg_temp.tok('b_run'))),
    ('complete with the live token', format('select durable.complete(%L, %L)', pg_temp.id('b_run'), pg_temp.tok('b_run'))),
    ('fail with the live token',
     format($$select * from durable.fail(%L, %L, '{"message": "x"}')$$, pg_temp.id('b_run'), pg_temp.tok('b_run'))),
    ('release with the live token', format('select durable.release(%L, %L)', pg_temp.id('b_run'), pg_temp.tok('b_run'))),
    ('checkpoint with the live token',
     format($$select durable.checkpoint(%L, %L, 1, 'step', 'one', '{}')$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf'))),
    ('sleep with the live token',
     format($$select durable.sleep(%L, %L, 1, 'nap', 60)$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf'))),
    ('wait_event with the live token',
     format($$select durable.wait_event(%L, %L, 1, 'k')$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf'))),
    ('replay_check with the live token',
     format($$select durable.replay_check(%L, %L, '[]')$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf'))),
    ('spawn from a task of b with its live token',
     format($$select durable.spawn(%L, %L, 1, 'a1', 'child')$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf'))),
    ('wait_children with the live token',
     format($$select durable.wait_children(%L, %L, 1, array[gen_random_uuid()])$$, pg_temp.id('b_wf'), pg_temp.tok('b_wf')));
-- complete_many rejects per element: refused (42501) or not ok, and nothing changed
create temp table cm_before as select pg_temp.durable_state() as s;
create temp table cm as
select pg_temp.value_as(pg_temp.role('r'),
           format($$select string_agg(format('%%s %%s', ok, reason), ',') from durable.complete_many(array[%L]::uuid[], array[%L]::uuid[])$$,
                  pg_temp.id('b_run'), pg_temp.tok('b_run'))) as v;
select ok((select v like 'ERROR 42501:%' or v like 'f %' from cm),
          'restricted to a*: complete_many with the live token of a task of b is refused: ' || (select v from cm));
select is(pg_temp.durable_state(), (select s from cm_before), 'restricted to a*: that complete_many changed nothing');
select pg_temp.refused_as(pg_temp.role('r'), b.stmt, '42501', format('restricted to a*: %s on queue b is 42501', b.label))
from on_b b order by b.ord;

-- r's own task (a2), and a spawn from it
create temp table r_claim as
select pg_temp.value_as(pg_temp.role('r'), $$select to_jsonb(c)::text from durable.claim('a2', 'r', 1, 3600) c$$) as v;
insert into ids (name, id, token)
select 'r_wf', c.task_id, c.lease_token
from r_claim x, jsonb_to_record(case when x.v like '{%' then x.v::jsonb end) as c (task_id uuid, lease_token uuid);
select is(pg_temp.id('r_wf'), pg_temp.id('a_wf'), 'restricted to a*: claim on queue a2 gets its task: ' || (select v from r_claim));
select pg_temp.refused_as(pg_temp.role('r'),
    format($$select durable.spawn(%L, %L, 1, 'b', 'child')$$, pg_temp.id('r_wf'), pg_temp.tok('r_wf')),
    '42501', 'restricted to a*: spawn from a2 into queue b is 42501');
select is(pg_temp.state_as(pg_temp.role('r'),
              format($$select durable.spawn(%L, %L, 1, 'a1', 'child')$$, pg_temp.id('r_wf'), pg_temp.tok('r_wf'))),
          null, 'restricted to a*: spawn from a2 into queue a1 works');

-- r on the a* queues
select is(pg_temp.value_as(pg_temp.role('r'), format($$select durable.get_task(%L) ->> 'status'$$, pg_temp.id('a_pend'))),
          'pending', 'restricted to a*: get_task of a task of a1');
select is(pg_temp.value_as(pg_temp.role('r'), format($$select string_agg(kind, ',') from durable.history(%L)$$, pg_temp.id('r_wf'))),
          'spawn', 'restricted to a*: history of a task of a2');
select is(pg_temp.value_as(pg_temp.role('r'), $$select string_agg(status || '=' || tasks, ',') from durable.queue_stats('a1')$$),
          'pending=2', 'restricted to a*: queue_stats of a1');
select is(pg_temp.value_as(pg_temp.role('r'), $$select pending::text from durable.limit_usage('a1') where concurrency_key is null$$),
          '2', 'restricted to a*: limit_usage of a1');
select is(pg_temp.state_as(pg_temp.role('r'), $$select durable.enqueue('a1', 'job')$$), null,
          'restricted to a*: enqueue into a1');
select is(pg_temp.state_as(pg_temp.role('r'), $$select * from durable.enqueue_many('a1', '[{"task_name": "job"}]')$$), null,
          'restricted to a*: enqueue_many into a1');
select is(pg_temp.state_as(pg_temp.role('r'), $$select durable.emit_event('a1', 'k2')$$), null,
          'restricted to a*: emit_event into a1');
select is(pg_temp.value_as(pg_temp.role('r'), $$select durable.ensure_queue('a3')::text$$), 'true',
          'restricted to a*: ensure_queue creates a3');
select is(pg_temp.state_as(pg_temp.role('r'), $$select durable.next_wake('a1')$$), null,
          'restricted to a*: next_wake of a1');
-- what the capabilities do not give
select pg_temp.refused_as(pg_temp.role('r'), format('select durable.cancel(%L)', pg_temp.id('a_pend')), '42501',
                          'without operator on a*: cancel of a task of a1 is 42501');
select pg_temp.refused_as(pg_temp.role('r'), $$select durable.purge('a1', 0)$$, '42501',
                          'without operator on a*: purge of a1 is 42501');
select pg_temp.refused_as(pg_temp.role('r'), $$select durable.create_queue('a1', '{"max_attempts": 1}')$$, '42501',
                          'without operator on a*: create_queue changing a1 is 42501');
select pg_temp.refused_as(pg_temp.role('r'), $$select durable.reclaim('a1')$$, '42501',
                          'without operator on a*: reclaim of a1 is 42501 (the spec lists reclaim under operator)');
select pg_temp.refused_as(pg_temp.role('r'), $$select durable.purge_event_keys('a1', 0)$$, '42501',
                          'without operator on a*: purge_event_keys of a1 is 42501');
-- granting the pattern again replaces its capabilities
select is(pg_temp.state_as(pg_temp.role('u'),
              format($$select durable.grant_queue(%L, 'a*', '{worker,producer,reader,operator}')$$, pg_temp.role('r'))),
          null, 'the unrestricted operator adds operator to r''s grant on a*');
select is(pg_temp.state_as(pg_temp.role('r'), format('select durable.cancel(%L)', pg_temp.id('a_pend'))), null,
          'with operator on a*: cancel of a task of a1 works');
select is(pg_temp.status('a_pend'), 'cancelled', 'that task is cancelled');
select is(pg_temp.state_as(pg_temp.role('r'), $$select durable.purge('a1', 0)$$), null,
          'with operator on a*: purge of a1 works');
select is((select count(*) from durable.all_tasks where task_id in (pg_temp.id('a_pend'), pg_temp.id('b_done'))), 1::bigint,
          'that purge deleted the cancelled task of a1, not the completed task of b');
select is(pg_temp.state_as(pg_temp.role('r'), $$select durable.purge_event_keys('a1', 0)$$), null,
          'with operator on a*: purge_event_keys of a1 works');
select is((select string_agg(queue || ':' || key, ',' order by queue, key) from durable.event_values
           where queue in ('a1', 'b')),
          'b:bkey', 'that purge deleted the keys of a1 (k2), not those of b');
create temp table cascade_before as select pg_temp.durable_state() -> 'tasks' as s;
select pg_temp.state_as(pg_temp.role('r'), format('select durable.cancel(%L)', pg_temp.id('parent')));
select is(
    (select to_jsonb(t) from durable.all_tasks t where t.task_id = pg_temp.id('b_child')),
    (select x from cascade_before c, jsonb_array_elements(c.s) x where x ->> 'task_id' = pg_temp.id('b_child')::text),
    'with operator on a*: cancelling a task of ap does not cascade to its child in b'
);
select pg_temp.refused_as(pg_temp.role('r'), format('select durable.cancel(%L)', pg_temp.id('b_pend')), '42501',
                          'with operator on a*: cancel of a task of b is still 42501');

-- an unrestricted role on queue b
select is(pg_temp.value_as(pg_temp.role('u'), format($$select durable.get_task(%L) ->> 'status'$$, pg_temp.id('b_pend'))),
          'pending', 'unrestricted: get_task of a task of b');
select is(pg_temp.state_as(pg_temp.role('u'), $$select durable.enqueue('b', 'job')$$), null, 'unrestricted: enqueue into b');
select is(pg_temp.state_as(pg_temp.role('u'), $$select durable.emit_event('b', 'k')$$), null, 'unrestricted: emit_event into b');
select is(pg_temp.state_as(pg_temp.role('u'), format('select durable.cancel(%L)', pg_temp.id('b_pend'))), null,
          'unrestricted: cancel of a task of b');
select is(pg_temp.value_as(pg_temp.role('u'), $$select count(*)::text from durable.claim('b', 'u')$$), '1',
          'unrestricted: claim on b gets the task enqueued there');

-- ---------------------------------------------------------------------------------
-- 2. the role in effect: login role, SET ROLE, membership (sessions see what is committed)
commit;
select is(pg_temp.state_as(pg_temp.role('m'), $$select * from durable.claim('b', 'm')$$), '42501',
          'a member of the restricted group role, after SET ROLE: claim on b is 42501');
select dblink_connect('m', pg_temp.conninfo_as(pg_temp.role('m')));
select alike(pg_temp.remote('m', $$select count(*) from durable.claim('b', 'm')$$), 'ERROR 42501:%',
             'a session logged in as a member of the restricted group role: claim on b is 42501');
select alike(pg_temp.remote('m', format('select durable.get_task(%L)', pg_temp.id('b_done'))), 'ERROR 42501:%',
             'that session: get_task of a task of b is 42501');
select is(pg_temp.remote('m', $$select count(*) from durable.claim('a1', 'm')$$), '1',
          'that session: claim on a1 gets a task');
select dblink_disconnect('m');
select dblink_connect('r', pg_temp.conninfo_as(pg_temp.role('r')));
select alike(pg_temp.remote('r', $$select count(*) from durable.claim('b', 'r')$$), 'ERROR 42501:%',
             'a session logged in as the restricted role: claim on b is 42501');
select is(pg_temp.remote('r', $$select durable.next_wake('aw')::text$$), null,
          'that session: next_wake of aw works (nothing timed waits there)');
-- SET ROLE to a durable group role the login role holds (directly, or through the
-- restricted group) must not lift the restriction: every restricted role holds one.
-- (Beyond the letter of the spec, whose caller is then the group role, to which no grant
-- applies; tried in a transaction rolled back, so that an escape changes nothing here.)
select dblink_exec('r', 'begin');
select alike(pg_temp.remote('r', $$set local role durable_worker; select count(*) from durable.claim('b', 'r')$$),
             'ERROR 42501:%',
             'the restricted role cannot escape by SET ROLE durable_worker: claim on b is 42501');
select dblink_exec('r', 'rollback');
select dblink_exec('r', 'begin');
select alike(pg_temp.remote('r', format($$set local role durable_reader; select durable.get_task(%L)$$, pg_temp.id('b_done'))),
             'ERROR 42501:%',
             'the restricted role cannot escape by SET ROLE durable_reader: get_task of a task of b is 42501');
select dblink_exec('r', 'rollback');
select dblink_disconnect('r');
select dblink_connect('m', pg_temp.conninfo_as(pg_temp.role('m')));
select dblink_exec('m', 'begin');
select alike(pg_temp.remote('m', $$set local role durable_producer; select durable.enqueue('b', 'job')$$),
             'ERROR 42501:%',
             'a member of the restricted group cannot escape by SET ROLE durable_producer: enqueue into b is 42501');
select dblink_exec('m', 'rollback');
select dblink_disconnect('m');
select dblink_connect('s', current_setting('durable_test.conninfo'));
select dblink_exec('s', format('set role %I', pg_temp.role('r')));
select alike(pg_temp.remote('s', $$select count(*) from durable.claim('b', 's')$$), 'ERROR 42501:%',
             'a superuser''s session after SET ROLE to the restricted role: claim on b is 42501');
select dblink_disconnect('s');

-- ---------------------------------------------------------------------------------
-- 3. event keys are scoped by queue
select is(pg_temp.value_as(pg_temp.role('u'), $$select durable.emit_event('b', 'shared')::text$$), '0',
          'an emit of key shared into b wakes nobody');
select is(pg_temp.status('waiter'), 'waiting', 'the waiter of aw for key shared still waits');
select is(pg_temp.value_as(pg_temp.role('u'), $$select durable.emit_event('aw', 'shared')::text$$), '1',
          'an emit of key shared into aw wakes the waiter');
select is(pg_temp.status('waiter'), 'pending', 'the waiter is pending');
select is(pg_temp.state_as(pg_temp.role('u'), $$select durable.emit_event('b', 'late', '{"from": "b"}')$$), null,
          'key late is emitted into b');
select pg_temp.start('aw', 'late_waiter', true);
select is(durable.wait_event(pg_temp.id('late_waiter'), pg_temp.tok('late_waiter'), 1, 'late'),
          '{"seq": 1, "kind": "wait", "name": "late", "suspended": true}'::jsonb,
          'a wait in aw for key late does not see b''s latch: it suspends');

-- ---------------------------------------------------------------------------------
-- 4. a restricted operator cannot change grants
select pg_temp.refused_as(pg_temp.role('r'),
    format($$select durable.grant_queue(%L, '*', '{worker,producer,reader,operator}')$$, pg_temp.role('r')),
    '42501', 'the restricted operator cannot widen its own grant');
select pg_temp.refused_as(pg_temp.role('r'), format('select durable.revoke_queue(%L)', pg_temp.role('r')),
    '42501', 'the restricted operator cannot revoke its own grants');
select pg_temp.refused_as(pg_temp.role('r'),
    format($$select durable.grant_queue(%L, 'a*', '{reader}')$$, pg_temp.role('wo')),
    '42501', 'the restricted operator cannot restrict another role');
select pg_temp.refused_as(pg_temp.role('m'), format('select durable.revoke_queue(%L)', pg_temp.role('g')),
    '42501', 'a member of a restricted group role cannot revoke the group''s grants');
-- the unrestricted operator can: revoke_queue lifts the restriction
select is(pg_temp.value_as(pg_temp.role('u'), format('select durable.revoke_queue(%L)::text', pg_temp.role('r'))), '1',
          'the unrestricted operator revokes r''s grant (one)');
select is(pg_temp.value_as(pg_temp.role('u'), $$select string_agg(g.role, ',') from durable.queue_grants() g$$),
          pg_temp.role('g'), 'durable.queue_grants() lists the group''s grant alone');
select is(pg_temp.state_as(pg_temp.role('r'), $$select * from durable.claim('b', 'r')$$), null,
          'revoked: r may claim on b');
select is(pg_temp.value_as(pg_temp.role('r'), format($$select durable.get_task(%L) ->> 'status'$$, pg_temp.id('b_done'))),
          'completed', 'revoked: r may read a task of b');
select is(pg_temp.value_as(pg_temp.role('u'), format($$select durable.revoke_queue(%L, 'a*')::text$$, pg_temp.role('g'))),
          '1', 'the unrestricted operator revokes the group''s grant on a*');
select is(pg_temp.state_as(pg_temp.role('m'), $$select * from durable.claim('b', 'm')$$), null,
          'revoked: the member may claim on b');

-- ---------------------------------------------------------------------------------
-- 5. lease tokens: a durable task of tokq released once (its first token ended) and
-- claimed again (the live token)
select pg_temp.start('tokq', 'tok_task', true);
select durable.checkpoint(pg_temp.id('tok_task'), pg_temp.tok('tok_task'), 1, 'step', 'one', '{"v": 1}');
insert into ids (name, token) values ('ended', pg_temp.tok('tok_task'));
select durable.release(pg_temp.id('tok_task'), pg_temp.tok('tok_task'), 0);
select pg_temp.start('tokq', 'tok_task', true, false);
select durable.grant_queue(pg_temp.role('g'), 'tokq', '{reader}');
create temp table reads (ord integer, verb text, stmt text);
insert into reads values
    (1, 'get_task', format('select durable.get_task(%L)::text', pg_temp.id('tok_task'))),
    (2, 'history', format($$select coalesce(string_agg(to_jsonb(h)::text, ' '), '') from durable.history(%L, true) h$$,
                          pg_temp.id('tok_task'))),
    (3, 'queue_stats', $$select coalesce(string_agg(to_jsonb(s)::text, ' '), '') from durable.queue_stats('tokq') s$$),
    (4, 'limit_usage', $$select coalesce(string_agg(to_jsonb(l)::text, ' '), '') from durable.limit_usage('tokq') l$$),
    (5, 'queue_grants', $$select coalesce(string_agg(to_jsonb(g)::text, ' '), '') from durable.queue_grants() g$$);
create temp table read_outputs as
select k.ord as kord, k.grp, r.ord, r.verb, pg_temp.value_as(pg_temp.role(k.kind), r.stmt) as output
from reads r
cross join (values (1, 'rd', 'durable_reader'), (2, 'pr', 'durable_producer'), (3, 'op', 'durable_operator'),
                   (4, 'wo', 'durable_worker')) as k (ord, kind, grp);
select is(
    strpos(o.output, pg_temp.tok('tok_task')::text) + strpos(o.output, pg_temp.tok('ended')::text), 0,
    format('as %s: %s shows no lease token (the live one, an ended one)', o.grp, o.verb)
)
from read_outputs o order by o.kord, o.ord;
select is(
    (select output::jsonb ->> 'status' || ' ' || (output::jsonb -> 'attempts' -> 0 ->> 'outcome')
     from read_outputs where grp = 'durable_reader' and verb = 'get_task'),
    'running released',
    'what the reader read is the task (running, its first attempt released)'
);

-- ---------------------------------------------------------------------------------
-- 6. patterns and capabilities
select is(pg_temp.state_as(pg_temp.role('u'),
              format($$select durable.grant_queue(%L, 'tenant_a.*', '{worker,producer,operator,reader}')$$, pg_temp.role('t'))),
          null, 't is restricted to tenant_a.* ...');
select is(pg_temp.state_as(pg_temp.role('u'), format($$select durable.grant_queue(%L, 'x1', '{reader}')$$, pg_temp.role('t'))),
          null, '... and may read x1');
select is(pg_temp.state_as(pg_temp.role('u'), format($$select durable.grant_queue(%L, '*', '{reader}')$$, pg_temp.role('v'))),
          null, 'v may read every queue (*)');
select durable.create_queue(q) from unnest(array['x1', 'x10', 'x']) as q;
select is(pg_temp.value_as(pg_temp.role('t'), $$select durable.ensure_queue('tenant_a.q')::text$$), 'true',
          'tenant_a.* matches tenant_a.q');
select pg_temp.refused_as(pg_temp.role('t'), $$select durable.ensure_queue('tenantXa.q')$$, '42501',
                          'tenant_a.* is literal: it does not match tenantXa.q');
select pg_temp.refused_as(pg_temp.role('t'), $$select durable.ensure_queue('tenant_a')$$, '42501',
                          'tenant_a.* does not match tenant_a');
select is(pg_temp.state_as(pg_temp.role('t'), $$select * from durable.queue_stats('x1')$$), null, 'x1 matches x1');
select pg_temp.refused_as(pg_temp.role('t'), $$select * from durable.queue_stats('x10')$$, '42501',
                          'x1 does not match x10');
select pg_temp.refused_as(pg_temp.role('t'), $$select * from durable.queue_stats('x')$$, '42501', 'x1 does not match x');
select pg_temp.refused_as(pg_temp.role('t'), $$select durable.enqueue('x1', 'job')$$, '42501',
                          'reader on x1: enqueue into x1 is 42501');
select is(pg_temp.state_as(pg_temp.role('v'), $$select * from durable.queue_stats('b')$$), null, '* matches b');
select pg_temp.refused_as(pg_temp.role('v'), $$select durable.enqueue('b', 'job')$$, '42501',
                          'reader on *: enqueue into b is 42501');
select pg_temp.refused_as(pg_temp.role('u'), format($$select durable.grant_queue(%L, %L, '{reader}')$$, pg_temp.role('wo'), p),
                          'DU001', format('a pattern %s is DU001', l))
from (values (1, 'a*b', 'with * inside'), (2, '**', 'with two *'), (3, e'a\t*', 'with a tab'),
             (4, ' a*', 'with a leading space'), (5, '', 'empty')) as x (ord, p, l)
order by x.ord;
select pg_temp.refused_as(pg_temp.role('u'), format($$select durable.grant_queue(%L, 'a*', %L)$$, pg_temp.role('wo'), c),
                          'DU001', format('capabilities %s are DU001', c))
from (values (1, '{admin}'), (2, '{}'), (3, '{worker,owner}')) as x (ord, c)
order by x.ord;
select durable.create_queue('eq', '{"max_attempts": 7}');
select is(pg_temp.value_as(pg_temp.role('wo'), $$select durable.ensure_queue('eq')::text$$), 'false',
          'ensure_queue of an existing queue returns false ...');
select is((select options from durable.queues where queue = 'eq'), '{"max_attempts": 7}'::jsonb,
          '... and leaves its options as they were');

-- ---------------------------------------------------------------------------------
-- 7. retention in a worker's claim, at most once a minute (on the test clock)
select set_config('durable.fake_now', '2030-01-01 00:00:00+00', false);
select durable.create_queue('ret', '{"retention": 120}');
select pg_temp.start('ret', 'ret1', false);
select durable.complete(pg_temp.id('ret1'), pg_temp.tok('ret1'));
select set_config('durable.fake_now', '2030-01-01 00:00:01+00', false);
select pg_temp.start('ret', 'ret2', false);
select durable.complete(pg_temp.id('ret2'), pg_temp.tok('ret2'));
create function pg_temp.ret_left() returns text language sql
    as $$ select coalesce(string_agg(task_name, ',' order by task_name), '') from durable.all_tasks where queue = 'ret' $$;
select set_config('durable.fake_now', '2030-01-01 00:02:01+00', false);
select is(pg_temp.state_as(pg_temp.role('wo'), $$select * from durable.claim('ret', 'wo')$$), null, 'a worker claims on ret');
select is(pg_temp.ret_left(), 'ret2', 'its claim applied the retention: the task finished 121 s ago is gone');
select set_config('durable.fake_now', '2030-01-01 00:02:30+00', false);
select pg_temp.state_as(pg_temp.role('wo'), $$select * from durable.claim('ret', 'wo')$$);
select is(pg_temp.ret_left(), 'ret2', '29 s later a claim does not purge again (at most once a minute)');
select set_config('durable.fake_now', '2030-01-01 00:03:02+00', false);
select pg_temp.state_as(pg_temp.role('wo'), $$select * from durable.claim('ret', 'wo')$$);
select is(pg_temp.ret_left(), '', '61 s after the last purge a claim purges again');

select pg_temp.drop_roles();

select * from finish();

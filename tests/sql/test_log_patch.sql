-- Patch markers, the dry replay check and patch_usage (plpgsql/versioning.sql).
--   * a 'patch' event is a checkpoint with no result; a re-run presenting the marker of
--     the same id passes, of another id is a non-determinism (the existing one);
--   * durable.check_replay, as a reader: the rule of replay_check, writing nothing, with
--     no lease; a code that finished early is the mismatch a completion finds;
--   * durable.replay_histories: the unfinished durable tasks of a queue (and the recently
--     finished), with input and history, paged;
--   * durable.patch_usage: per task name, unfinished histories holding the marker, and
--     those the old code began.
select plan(34);

\ir helpers/tasks.sql
\ir helpers/errors.sql
\ir helpers/security.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "none"}, "max_attempts": 5}');
select durable.create_queue('other');
select pg_temp.login('r', '{durable_reader}');
select pg_temp.login('nobody');

-- claims the task p_name (of task name p_task) and records p_events (kind, name) on it
create function pg_temp.run(p_name text, p_task text, p_events text[][]) returns uuid
language plpgsql as $$
declare
    c record;
    i integer;
begin
    perform durable.enqueue('q', p_task, jsonb_build_object('who', p_name), '{"durable": true}');
    select * into c from durable.claim('q', 'w1', 1, 3600, array[p_task]);
    for i in 1 .. coalesce(array_length(p_events, 1), 0) loop
        perform durable.checkpoint(c.task_id, c.lease_token, i, p_events[i][1], p_events[i][2],
                                   case when p_events[i][1] = 'step' then '1'::jsonb end);
    end loop;
    insert into ids (name, id, token) values (p_name, c.task_id, c.lease_token);
    return c.task_id;
end;
$$;

-- 1. the marker: a checkpoint of kind patch, with no result
select pg_temp.run('new', 'order', array[['step', 'fetch'], ['patch', 'audit'], ['step', 'audit']]);
select is(
    (select jsonb_agg(jsonb_build_array(h.kind, h.name, h.outcome, h.result) order by h.seq)
     from durable.history(pg_temp.id('new')) h),
    '[["step", "fetch", "ok", 1], ["patch", "audit", "ok", null], ["step", "audit", "ok", 1]]'::jsonb,
    'a patch marker is an event of kind patch named by the patch id, with no result'
);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 4, 'patch', 'p', '{"x": 1}')$$, pg_temp.id('new'), pg_temp.tok('new')),
    'DU001', 'durable: the server supplies the value of a patch event; give no result',
    'a patch marker takes no result (DU001)'
);
select is(
    (select e.result from durable.event_kinds() e where e.kind = 'patch'),
    'null',
    'durable.event_kinds() lists the patch marker'
);

-- 2. the real replay: the same id passes, another id is a non-determinism
select durable.fail(pg_temp.id('new'), pg_temp.tok('new'), '{"type": "Crash"}');
update ids set token = (select c.lease_token from durable.claim('q', 'w2', 1, 3600) c) where name = 'new';
select is(
    durable.replay_check(pg_temp.id('new'), pg_temp.tok('new'),
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "patch", "name": "audit"}]'),
    '{"checked": 2}',
    'a re-run presenting the marker of the same id passes'
);
select is(
    durable.checkpoint(pg_temp.id('new'), pg_temp.tok('new'), 2, 'patch', 'audit') - 'result',
    '{"seq": 2, "kind": "patch", "name": "audit", "outcome": "ok"}',
    'a checkpoint of the same marker at its seq returns the recorded one'
);
select is(
    durable.replay_check(pg_temp.id('new'), pg_temp.tok('new'),
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "patch", "name": "audit-2"}]') #>> '{nondeterminism,message}',
    format('non-determinism in task %s at event 2: recorded patch "audit", the code did patch "audit-2"', pg_temp.id('new')),
    'a marker of another id at that seq is a non-determinism, named in the message'
);
select is((pg_temp.task('new')).status, 'failed', 'which failed the task, as any non-determinism does');

-- 3. the dry check, as a reader: same rule, nothing written, no lease
select pg_temp.run('old', 'order', array[['step', 'fetch'], ['step', 'charge']]);
select pg_temp.run('plain', 'order', array[]::text[]);
select durable.enqueue('q', 'job', '{}');
select pg_temp.run('sleepy', 'nap', array[]::text[]);
select durable.sleep(pg_temp.id('sleepy'), pg_temp.tok('sleepy'), 1, 'nap', 3600);
create temp table before_dry as select pg_temp.durable_state() as s;
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "step", "name": "charge"}]')$$, pg_temp.id('old'))),
    '{"checked": 2, "recorded": 2}',
    'a reader checks calls that match the history: checked and recorded'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "step", "name": "fetch"}]')$$, pg_temp.id('old'))),
    '{"checked": 1, "recorded": 2}',
    'a prefix matches (the code made a new call after it)'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "step", "name": "fetch"}]', true)$$, pg_temp.id('old')))::jsonb -> 'nondeterminism',
    jsonb_build_object('task_id', pg_temp.id('old'), 'seq', 2,
        'recorded', '{"kind": "step", "name": "charge", "input_hash": null}'::jsonb, 'presented', null,
        'message', format('non-determinism in task %s at event 2: recorded step "charge", the code did nothing (it finished)',
                          pg_temp.id('old'))),
    'a code that finished before the end of its history: the mismatch a completion finds'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "step", "name": "pay"}]')$$,
        pg_temp.id('old')))::jsonb -> 'nondeterminism' -> 'message',
    to_jsonb(format('non-determinism in task %s at event 2: recorded step "charge", the code did step "pay"', pg_temp.id('old'))),
    'a renamed call: the message of the real check'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "patch", "name": "audit"}]')$$, pg_temp.id('old')))::jsonb #>> '{nondeterminism,seq}',
    '1',
    'a marker presented where the old code recorded a step is a mismatch'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "step", "name": "charge"},
          {"seq": 3, "kind": "step", "name": "ship"}]')$$, pg_temp.id('old')))::jsonb #>> '{nondeterminism,message}',
    format('non-determinism in task %s at event 3: recorded nothing, the code did step "ship"', pg_temp.id('old')),
    'a call presented past the history''s end is a mismatch, as in the real check'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L,
        '[{"seq": 1, "kind": "sleep", "name": "nap"}]')$$, pg_temp.id('sleepy'))),
    '{"checked": 1, "recorded": 1}',
    'a sleeping task''s pending sleep is presented like any event'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L, '[]', true)$$, pg_temp.id('plain'))),
    '{"checked": 0, "recorded": 0}',
    'a task with no history, whose code finished: nothing to check'
);
select is(pg_temp.durable_state(), (select s from before_dry), 'the dry checks wrote nothing');
select is(
    (select row(t.status, t.replayed_to)::text from durable.all_tasks t where t.task_id = pg_temp.id('old')),
    row('running', 0)::text,
    'the task still runs, its replay mark untouched'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L, '[{"seq": 2, "kind": "step", "name": "x"}]')$$,
                     pg_temp.id('old'))),
    format('ERROR DU021: durable: task %s presents ''2'' as event 1; a replayed prefix is numbered 1, 2, 3, ... without gaps',
           pg_temp.id('old')),
    'a presented list that is not a prefix: DU021'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L, '{"seq": 1}')$$, pg_temp.id('old'))),
    'ERROR DU001: durable: presented events must be a JSON array of {"seq", "kind", "name", ...}',
    'presented events that are not an array: DU001'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L, '[]', null)$$, pg_temp.id('old'))),
    'ERROR DU001: durable: finished must be true or false',
    'finished null: DU001'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select durable.check_replay('00000000-0000-0000-0000-000000000001', '[]')$$),
    'ERROR DU004: durable: no task 00000000-0000-0000-0000-000000000001',
    'an unknown task: DU004'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select durable.check_replay(%L, '[]')$$,
                     (select t.task_id from durable.all_tasks t where t.task_name = 'job'))),
    format('ERROR DU012: durable: task %s is not a durable task', (select t.task_id from durable.all_tasks t where t.task_name = 'job')),
    'a task that is not durable: DU012'
);
select is(
    pg_temp.state_as(pg_temp.role('nobody'), format($$select durable.check_replay(%L, '[]')$$, pg_temp.id('old'))),
    '42501',
    'a role with no durable group may not'
);

-- 4. the histories to check: the unfinished durable tasks of the queue, paged
select durable.complete(pg_temp.id('plain'), pg_temp.tok('plain'));
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select string_agg(h.input ->> 'who' || ':' || h.status || ':' || jsonb_array_length(h.history),
                                                             ',' order by h.task_id) from durable.replay_histories('q') h$$),
    'old:running:2,sleepy:sleeping:1',
    'replay_histories: the unfinished durable tasks (not the failed, completed and plain ones), with input and history'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select string_agg(h.input ->> 'who', ',' order by h.task_id)
        from durable.replay_histories('q', %L) h$$, pg_temp.t(-1))),
    'new,old,plain,sleepy',
    'and the durable tasks finished since a time'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select string_agg(h.input ->> 'who', ',') from durable.replay_histories('q', null, null, 1) h$$)
    || ' ' ||
    pg_temp.value_as(pg_temp.role('r'), format($$select string_agg(h.input ->> 'who', ',') from durable.replay_histories('q', null, %L, 1) h$$,
                     pg_temp.id('old'))),
    'old sleepy',
    'paged by task id'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select count(*) from durable.replay_histories('nope')$$),
    'ERROR DU002: durable: no queue ''nope''',
    'an unknown queue: DU002'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select count(*) from durable.replay_histories('q', null, null, 0)$$),
    'ERROR DU001: durable: limit must be between 1 and 1000, got 0',
    'a limit out of range: DU001'
);

-- 5. patch_usage: markers in unfinished histories, and histories the old code began
-- (the clock: old-code histories at t=0 .. 10; the first marker at t=100)
select pg_temp.clock(10);
select pg_temp.run('begun_old', 'ship', array[['step', 'fetch']]);        -- old code, not at the patch yet
select pg_temp.run('passed_old', 'ship', array[['step', 'fetch'], ['step', 'label']]);  -- old code, old branch
select pg_temp.clock(100);
select pg_temp.run('marked', 'ship', array[['step', 'fetch'], ['patch', 'fast'], ['step', 'express']]);
select pg_temp.run('marked_done', 'ship', array[['step', 'fetch'], ['patch', 'fast']]);
select durable.complete(pg_temp.id('marked_done'), pg_temp.tok('marked_done'));
select pg_temp.clock(200);
select pg_temp.run('new_unpatched', 'ship', array[['step', 'fetch']]);    -- new code, not at the patch yet
select pg_temp.run('elsewhere', 'order', array[['step', 'fetch']]);       -- a task name without the patch
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select string_agg(concat_ws(' ', u.queue, u.task_name, u.first_marker_at, u.with_marker, u.old_histories), ';')
                                         from durable.patch_usage('fast') u$$),
    concat_ws(' ', 'q', 'ship', pg_temp.t(100), 1, 2),
    'patch_usage: per task name that recorded the marker, its first time, the unfinished histories holding it (keep the call) and those the old code began (keep the old branch)'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select u.old_histories from durable.patch_usage('fast', 'q', %L) u$$, pg_temp.t(5))),
    '0',
    'a deploy time before the old histories began: none of them counts'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), format($$select u.old_histories from durable.patch_usage('fast', 'q', %L) u$$, pg_temp.t(300))),
    '3',
    'a deploy time after them all: every unfinished history without the marker counts'
);
select durable.complete(pg_temp.id('marked'), pg_temp.tok('marked'));
select durable.cancel(pg_temp.id('begun_old'));
select durable.cancel(pg_temp.id('passed_old'));
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select u.with_marker || ' ' || u.old_histories from durable.patch_usage('fast', 'q') u$$),
    '0 0',
    'once they finished: the old branch, then the patch call, may go'
);
select is(
    pg_temp.value_as(pg_temp.role('r'), $$select count(*) from durable.patch_usage('never')$$),
    '0',
    'a patch no stored history recorded: no row'
);
select is(
    pg_temp.state_as(pg_temp.role('nobody'), $$select count(*) from durable.patch_usage('fast', 'q')$$),
    '42501',
    'patch_usage needs reader rights on the queue'
);

select pg_temp.drop_roles();
select * from finish();

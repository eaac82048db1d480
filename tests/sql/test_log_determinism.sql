-- The determinism check: a re-run must make the recorded calls in the recorded order.
-- A renamed, reordered or removed call, a changed spawn (queue, input) and a completion
-- that did not go through the whole history are a non-determinism: the call that finds
-- it fails the task (not retryable, NonDeterminismError naming the seq, the recorded
-- event and what the code did) and returns {"nondeterminism": ...}; the next call with
-- that lease raises DU020. A new event needs every earlier one checked in the attempt
-- (recorded by it, presented by replay_check, or called again at its seq): DU022.
select plan(162);

\ir helpers/tasks.sql
\ir helpers/errors.sql
\ir helpers/nondeterminism.sql

select pg_temp.clock(0);
select durable.create_queue('q', '{"backoff": {"kind": "none"}, "max_attempts": 5}');
select durable.create_queue('kids');

create temp table histories (name text primary key, attempt integer, history jsonb);
create function pg_temp.history(p_name text) returns jsonb language sql
    as $$ select h.history from histories h where h.name = p_name $$;
-- A task (named p_name) whose first attempt records four events, fails, and is claimed
-- again: its second attempt is ids(p_name).
--   1 step "fetch" {"n": 1}, 2 now "clock", 3 spawn "child" (queue kids, input {"x": 1}),
--   4 step "save" {"saved": true}
create function pg_temp.rerun(p_name text) returns uuid
language plpgsql as $$
declare
    c record;
begin
    perform durable.enqueue('q', p_name, '{"order": 7}', '{"durable": true}');
    select * into c from durable.claim('q', 'w1', 1, 3600, array[p_name]);
    perform durable.checkpoint(c.task_id, c.lease_token, 1, 'step', 'fetch', '{"n": 1}');
    perform durable.checkpoint(c.task_id, c.lease_token, 2, 'now', 'clock');
    perform durable.spawn(c.task_id, c.lease_token, 3, 'kids', 'child', '{"x": 1}');
    perform durable.checkpoint(c.task_id, c.lease_token, 4, 'step', 'save', '{"saved": true}');
    perform durable.fail(c.task_id, c.lease_token, '{"type": "Crash"}');
    select * into c from durable.claim('q', 'w2', 1, 3600, array[p_name]);
    insert into ids (name, id, token) values (p_name, c.task_id, c.lease_token);
    insert into histories values (p_name, c.attempt, c.history);
    return c.task_id;
end;
$$;
-- the calls of the unchanged code at seqs 1 .. p_n, as replay_check takes them
create function pg_temp.presented(p_n integer) returns jsonb language sql as $$
    select coalesce(jsonb_agg(x.call order by x.seq), '[]')
    from (values
        (1, '{"seq": 1, "kind": "step", "name": "fetch"}'::jsonb),
        (2, '{"seq": 2, "kind": "now", "name": "clock"}'),
        (3, '{"seq": 3, "kind": "spawn", "name": "child", "queue": "kids", "input": {"x": 1}}'),
        (4, '{"seq": 4, "kind": "step", "name": "save"}')
    ) as x (seq, call)
    where x.seq <= p_n
$$;
create function pg_temp.check_sql(p_name text, p_presented jsonb) returns text language sql as $$
    select format('select durable.replay_check(%L, %L, %L)', pg_temp.id(p_name), pg_temp.tok(p_name), p_presented)
$$;
-- the {"nondeterminism": ...} object expected of task p_name at p_seq
create function pg_temp.nd(p_name text, p_seq integer, p_recorded jsonb, p_presented jsonb, p_message text)
returns jsonb language sql as $$
    select jsonb_build_object(
        'task_id', pg_temp.id(p_name), 'seq', p_seq, 'recorded', p_recorded, 'presented', p_presented,
        'message', format('non-determinism in task %s at event %s: %s', pg_temp.id(p_name), p_seq, p_message))
$$;
create function pg_temp.ev(p_kind text, p_name text, p_hash text default null) returns jsonb language sql as $$
    select jsonb_build_object('kind', p_kind, 'name', p_name, 'input_hash', p_hash)
$$;
create temp table h as
select durable.input_hash('{"queue": "kids", "input": {"x": 1}}') as h1,
       durable.input_hash('{"queue": "kids", "input": {"x": 2}}') as h2,
       durable.input_hash('{"queue": "q", "input": {"x": 1}}') as h_other_queue,
       durable.input_hash('{"queue": null, "input": null}') as h_none;
create function pg_temp.h(p text) returns text language sql as $$
    select case p when 'h1' then h.h1 when 'h2' then h.h2 when 'other' then h.h_other_queue else h.h_none end from h
$$;

-- ---------------------------------------------------------------- the history, checked
select pg_temp.rerun('main');
create temp table main_child as
select k.task_id from durable.all_tasks k where k.parent_id = pg_temp.id('main') and k.parent_seq = 3;
select is((select attempt from histories where name = 'main'), 2, 'the second attempt is claimed');
select is(
    (select result from durable.events where task_id = pg_temp.id('main') and seq = 3),
    (select jsonb_build_object('task_id', task_id, 'queue', 'kids') from main_child),
    'the spawn recorded its child and queue'
);
create temp table main_history as select pg_temp.history('main') as history;
select is(
    (select history from main_history),
    jsonb_build_array(
        '{"seq": 1, "kind": "step", "name": "fetch", "outcome": "ok", "result": {"n": 1}}'::jsonb,
        jsonb_build_object('seq', 2, 'kind', 'now', 'name', 'clock', 'outcome', 'ok', 'result', to_jsonb(pg_temp.t(0))),
        jsonb_build_object('seq', 3, 'kind', 'spawn', 'name', 'child', 'outcome', 'ok',
                           'result', (select jsonb_build_object('task_id', task_id, 'queue', 'kids') from main_child)),
        '{"seq": 4, "kind": "step", "name": "save", "outcome": "ok", "result": {"saved": true}}'::jsonb),
    'the history the claim hands over: four events {seq, kind, name, outcome, result}'
);
select is(
    (select count(*) from main_history, jsonb_array_elements(history) as e where e ? 'input_hash'),
    0::bigint,
    'no history element carries an input hash (the server compares arguments itself)'
);

-- the same calls pass
select is(
    (select durable.replay_check(pg_temp.id('main'), pg_temp.tok('main'), pg_temp.presented(3))),
    '{"checked": 3}'::jsonb,
    'replay_check of a prefix returns how many calls it checked'
);
select is((select replayed_to from durable.all_tasks where task_id = pg_temp.id('main')), 3, 'the attempt has checked 3');
select is(
    (select durable.replay_check(pg_temp.id('main'), pg_temp.tok('main'), pg_temp.presented(4))),
    '{"checked": 4}'::jsonb,
    'replay_check passes the recorded calls (the spawn''s queue and input compared in SQL)'
);
select is(
    (select durable.replay_check(pg_temp.id('main'), pg_temp.tok('main'), '[]')),
    '{"checked": 0}'::jsonb,
    'replay_check of nothing checks nothing'
);
select is((select replayed_to from durable.all_tasks where task_id = pg_temp.id('main')), 4,
          'and does not undo what the attempt checked before');
select is(
    (select durable.checkpoint(pg_temp.id('main'), pg_temp.tok('main'), 1, 'step', 'fetch', '{"n": 99}')),
    (select history -> 0 from main_history),
    'checkpoint of a recorded call returns the recorded event, exactly as the history lists it'
);
select is(
    (select durable.checkpoint(pg_temp.id('main'), pg_temp.tok('main'), 2, 'now', 'clock')),
    (select history -> 1 from main_history),
    'a recorded clock read returns the recorded time'
);
select is(
    (select durable.spawn(pg_temp.id('main'), pg_temp.tok('main'), 3, 'kids', 'child', '{"x": 1}')),
    (select history -> 2 from main_history),
    'spawn of a recorded child returns the recorded event'
);
select is(
    (select count(*) from durable.all_tasks where parent_id = pg_temp.id('main')),
    1::bigint,
    'and spawns nothing again'
);

-- ---------------------------------------------------------------- what the code changed
-- each wrong re-run below is undone after its checks: the same attempt meets the next one
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step", "name": "fetch_v2"}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev('step', 'fetch_v2'),
               'recorded step "fetch", the code did step "fetch_v2"'),
    'replay_check: a renamed step');
select pg_temp.nondeterminism_ok(
    format($$select durable.checkpoint(%L, %L, 1, 'step', 'fetch_v2', '{"n": 2}')$$, pg_temp.id('main'), pg_temp.tok('main')),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev('step', 'fetch_v2'),
               'recorded step "fetch", the code did step "fetch_v2"'),
    'checkpoint: a renamed step');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 2, "kind": "random", "name": "clock"}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 2, pg_temp.ev('now', 'clock'), pg_temp.ev('random', 'clock'),
               'recorded now "clock", the code did random "clock"'),
    'replay_check: a call of another kind under the recorded name');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', pg_temp.presented(2) || '[
        {"seq": 3, "kind": "step", "name": "save"},
        {"seq": 4, "kind": "spawn", "name": "child", "queue": "kids", "input": {"x": 1}}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('step', 'save'),
               'recorded spawn "child", the code did step "save"'),
    'replay_check: reordered calls fail at the first seq that differs');
select pg_temp.nondeterminism_ok(
    format($$select durable.checkpoint(%L, %L, 3, 'step', 'save', '{"saved": true}')$$, pg_temp.id('main'), pg_temp.tok('main')),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('step', 'save'),
               'recorded spawn "child", the code did step "save"'),
    'checkpoint: a step moved earlier');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step", "name": "fetch"},
        {"seq": 2, "kind": "spawn", "name": "child", "queue": "kids", "input": {"x": 1}}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 2, pg_temp.ev('now', 'clock'), pg_temp.ev('spawn', 'child', pg_temp.h('h1')),
               'recorded now "clock", the code did spawn "child"'),
    'replay_check: a removed call shows as the next call at its seq');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', pg_temp.presented(4) || '[{"seq": 5, "kind": "step", "name": "notify"}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 5, null, pg_temp.ev('step', 'notify'), 'recorded nothing, the code did step "notify"'),
    'replay_check: presenting a call past the recorded end is not a replay');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step"}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev('step', null),
               'recorded step "fetch", the code did step ""'),
    'replay_check: a presented call without a name matches nothing');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "name": "fetch"}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev(null, 'fetch'),
               'recorded step "fetch", the code did  "fetch"'),
    'replay_check: a presented call without a kind matches nothing');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', '[{"seq": 1}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev(null, null),
               'recorded step "fetch", the code did  ""'),
    'replay_check: a presented call with only a seq matches nothing');

-- a changed spawn: the server hashes the presented queue and input itself
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', pg_temp.presented(2)
        || '[{"seq": 3, "kind": "spawn", "name": "child", "queue": "kids", "input": {"x": 2}}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('spawn', 'child', pg_temp.h('h2')),
               'recorded spawn "child" with other arguments, the code did spawn "child" with other arguments'),
    'replay_check: the same spawn with another input');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', pg_temp.presented(2)
        || '[{"seq": 3, "kind": "spawn", "name": "child", "queue": "q", "input": {"x": 1}}]'),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('spawn', 'child', pg_temp.h('other')),
               'recorded spawn "child" with other arguments, the code did spawn "child" with other arguments'),
    'replay_check: the same spawn on another queue');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('main', pg_temp.presented(2)
        || jsonb_build_array(jsonb_build_object('seq', 3, 'kind', 'spawn', 'name', 'child', 'input_hash', pg_temp.h('h1')))),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('spawn', 'child', pg_temp.h('none')),
               'recorded spawn "child" with other arguments, the code did spawn "child" with other arguments'),
    'replay_check: a hash the client presents instead of the spawn''s queue and input is not trusted');
select pg_temp.nondeterminism_ok(
    format($$select durable.spawn(%L, %L, 3, 'kids', 'child', '{"x": 2}')$$, pg_temp.id('main'), pg_temp.tok('main')),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('spawn', 'child', pg_temp.h('h2')),
               'recorded spawn "child" with other arguments, the code did spawn "child" with other arguments'),
    'spawn: another input at a recorded spawn (no second child)');
select pg_temp.nondeterminism_ok(
    format($$select durable.checkpoint(%L, %L, 3, 'step', 'child', '{"x": 1}')$$, pg_temp.id('main'), pg_temp.tok('main')),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 3, pg_temp.ev('spawn', 'child', pg_temp.h('h1')), pg_temp.ev('step', 'child'),
               'recorded spawn "child", the code did step "child"'),
    'checkpoint: a step where a spawn is recorded');
select pg_temp.nondeterminism_ok(
    format($$select durable.sleep(%L, %L, 4, 'save', 0)$$, pg_temp.id('main'), pg_temp.tok('main')),
    pg_temp.id('main'), pg_temp.tok('main'),
    pg_temp.nd('main', 4, pg_temp.ev('step', 'save'), pg_temp.ev('sleep', 'save'),
               'recorded step "save", the code did sleep "save"'),
    'sleep: a sleep where a step is recorded');

-- malformed presentations are refused, and change nothing
select throws_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 3, "kind": "step", "name": "x"}]'),
    'DU021',
    format('durable: task %s presents ''3'' as event 2; a replayed prefix is numbered 1, 2, 3, ... without gaps',
           pg_temp.id('main')),
    'replay_check: a presented prefix that skips seq 2 is rejected, not half checked'
);
select throws_ok(
    pg_temp.check_sql('main', '[{"seq": 1, "kind": "step", "name": "fetch"}, {"seq": 1, "kind": "step", "name": "fetch"}]'),
    'DU021', null, 'replay_check: a seq presented twice is rejected'
);
select throws_ok(
    pg_temp.check_sql('main', '[{"seq": 4, "kind": "step", "name": "save"}]'),
    'DU021', null, 'replay_check: a prefix must start at seq 1'
);
select throws_ok(
    pg_temp.check_sql('main', '[1]'),
    'DU001', null, 'replay_check: a presented element that is not an object is refused (DU001)'
);
select throws_ok(
    pg_temp.check_sql('main', '{"seq": 1}'),
    'DU001', null, 'replay_check takes a JSON array (DU001 otherwise)'
);
select throws_ok(
    format('select durable.replay_check(%L, %L, null)', pg_temp.id('main'), pg_temp.tok('main')),
    'DU001', null, 'replay_check of null is refused (DU001)'
);
select is(
    (select row(status, attempt, lease_token, replayed_to, finished_at)::text from durable.all_tasks where task_id = pg_temp.id('main')),
    row('running', 2, pg_temp.tok('main'), 4, null::timestamptz)::text,
    'after all that the task still runs its second attempt, its history checked'
);
select is(
    (select count(*) from durable.events where task_id = pg_temp.id('main')),
    4::bigint,
    'with its four events'
);

-- ---------------------------------------------------------------- a non-determinism for good
select pg_temp.rerun('renamed');
select pg_temp.nondeterminism_ok(
    pg_temp.check_sql('renamed', '[{"seq": 1, "kind": "step", "name": "fetch_v2"}]'),
    pg_temp.id('renamed'), pg_temp.tok('renamed'),
    pg_temp.nd('renamed', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev('step', 'fetch_v2'),
               'recorded step "fetch", the code did step "fetch_v2"'),
    'a renamed step, not undone',
    false);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 1, 'step', 'fetch_v2')$$, pg_temp.id('renamed'), pg_temp.tok('renamed')),
    'DU020',
    format('durable: non-determinism in task %s at event 1: recorded step "fetch", the code did step "fetch_v2"',
           pg_temp.id('renamed')),
    'then checkpoint with that lease raises DU020'
);
select throws_ok(
    pg_temp.check_sql('renamed', pg_temp.presented(4)),
    'DU020', null, 'and so does replay_check, even of the right calls'
);
select throws_ok(
    format($$select durable.complete(%L, %L, '{"done": true}')$$, pg_temp.id('renamed'), pg_temp.tok('renamed')),
    'DU020', null, 'and complete'
);
select throws_ok(
    format($$select durable.fail(%L, %L, '{"type": "E"}')$$, pg_temp.id('renamed'), pg_temp.tok('renamed')),
    'DU020', null, 'and fail'
);
select is(
    (select count(*) from durable.claim('q', 'w3', 1, 60, array['renamed'])),
    0::bigint,
    'the failed task is not claimed again (not retryable)'
);

select pg_temp.rerun('renamed by checkpoint');
select pg_temp.nondeterminism_ok(
    format($$select durable.checkpoint(%L, %L, 1, 'step', 'fetch_v2', '{"n": 2}')$$,
           pg_temp.id('renamed by checkpoint'), pg_temp.tok('renamed by checkpoint')),
    pg_temp.id('renamed by checkpoint'), pg_temp.tok('renamed by checkpoint'),
    pg_temp.nd('renamed by checkpoint', 1, pg_temp.ev('step', 'fetch'), pg_temp.ev('step', 'fetch_v2'),
               'recorded step "fetch", the code did step "fetch_v2"'),
    'checkpoint: a renamed step, not undone',
    false);
select is(
    (select jsonb_build_object('status', k.status, 'failures', k.failures, 'max_attempts', k.max_attempts)
     from durable.all_tasks k where k.task_id = pg_temp.id('renamed by checkpoint')),
    '{"status": "failed", "failures": 2, "max_attempts": 5}'::jsonb,
    'failed at its second failure of five allowed: a non-determinism is not retried'
);

-- ---------------------------------------------------------------- new events need a checked history
select pg_temp.rerun('unchecked');
create temp table unchecked_before as
select (select count(*) from durable.events) as events, (select count(*) from durable.all_tasks) as tasks;
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 5, 'step', 'notify', '{"sent": true}')$$,
           pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022',
    format('durable: task %s records event 5 before the re-run checked the recorded events 1 to 4', pg_temp.id('unchecked')),
    'a re-run that records a new event without presenting the history raises DU022'
);
select is(
    pg_temp.error_of(format($$select durable.checkpoint(%L, %L, 5, 'step', 'notify')$$,
                            pg_temp.id('unchecked'), pg_temp.tok('unchecked'))) ->> 'hint',
    'present the calls the re-run made at the recorded seqs with durable.replay_check first',
    'its HINT points to replay_check'
);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 5, 'uuid', 'id')$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022', null, 'a new uuid event too'
);
select throws_ok(
    format($$select durable.sleep(%L, %L, 5, 'nap', 0)$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022', null, 'a new sleep too'
);
select throws_ok(
    format($$select durable.wait_event(%L, %L, 5, 'key')$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022', null, 'a new wait too'
);
select throws_ok(
    format($$select durable.spawn(%L, %L, 5, 'kids', 'another', '{}')$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022', null, 'a new spawn too'
);
select throws_ok(
    format($$select durable.wait_children(%L, %L, 5, array[%L::uuid], 'kids')$$,
           pg_temp.id('unchecked'), pg_temp.tok('unchecked'),
           (select task_id from durable.all_tasks where parent_id = pg_temp.id('unchecked'))),
    'DU022', null, 'a new wait for children too'
);
select is(
    (select row((select count(*) from durable.events), (select count(*) from durable.all_tasks))::text),
    (select row(events, tasks)::text from unchecked_before),
    'none of them recorded an event or created a task'
);
select is(
    (select durable.checkpoint(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), 2, 'now', 'clock')),
    (pg_temp.history('unchecked') -> 1),
    'a recorded call out of order returns its event'
);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 5, 'step', 'notify')$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022',
    format('durable: task %s records event 5 before the re-run checked the recorded events 1 to 4', pg_temp.id('unchecked')),
    'but checks nothing: calls at the recorded seqs count one by one, from seq 1'
);
select is(
    (select durable.replay_check(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), pg_temp.presented(3))),
    '{"checked": 3}'::jsonb,
    'replay_check of the first three calls'
);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 5, 'step', 'notify')$$, pg_temp.id('unchecked'), pg_temp.tok('unchecked')),
    'DU022',
    format('durable: task %s records event 5 before the re-run checked the recorded events 4 to 4', pg_temp.id('unchecked')),
    'leaves event 4 unchecked: still DU022'
);
select is(
    (select durable.checkpoint(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), 4, 'step', 'save', '{"saved": false}')),
    '{"seq": 4, "kind": "step", "name": "save", "outcome": "ok", "result": {"saved": true}}'::jsonb,
    'the code then passes through event 4 (the recorded result)'
);
select is(
    (select durable.checkpoint(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), 5, 'step', 'notify', '{"sent": true}')),
    '{"seq": 5, "kind": "step", "name": "notify", "outcome": "ok", "result": {"sent": true}}'::jsonb,
    'and, its history checked, records a new step after the recorded end'
);
create temp table jitter as
select durable.checkpoint(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), 6, 'random', 'jitter') as e;
select is(
    (select e - 'result' from jitter),
    '{"seq": 6, "kind": "random", "name": "jitter", "outcome": "ok"}'::jsonb,
    'and another one after it'
);
select results_eq(
    $$select seq, name, attempt from durable.history(pg_temp.id('unchecked'))$$,
    $$values (1, 'fetch', 1), (2, 'clock', 1), (3, 'child', 1), (4, 'save', 1), (5, 'notify', 2), (6, 'jitter', 2)$$,
    'the log keeps the first attempt''s events and appends the re-run''s new ones'
);
select is(
    (select durable.complete(pg_temp.id('unchecked'), pg_temp.tok('unchecked'), '{"done": true}')),
    '{"completed": true}'::jsonb,
    'complete after the whole history was checked and extended returns {"completed": true}'
);
select is(
    (select row(status, output)::text from durable.all_tasks where task_id = pg_temp.id('unchecked')),
    row('completed', '{"done": true}'::jsonb)::text,
    'the task completed with its output'
);

-- each attempt checks the history again: the claim starts it over
select pg_temp.rerun('again');
select is(
    (select durable.replay_check(pg_temp.id('again'), pg_temp.tok('again'), pg_temp.presented(4))),
    '{"checked": 4}'::jsonb,
    'the second attempt checks the history'
);
select is(
    (select durable.checkpoint(pg_temp.id('again'), pg_temp.tok('again'), 5, 'step', 'notify', '{"sent": 1}')) -> 'seq',
    '5'::jsonb,
    'and records event 5'
);
select durable.fail(pg_temp.id('again'), pg_temp.tok('again'), '{"type": "Crash"}');
select pg_temp.claim_as('again', 'q', 'w3', 3600);
select is(
    (select row(attempt, replayed_to)::text from durable.all_tasks where task_id = pg_temp.id('again')),
    row(3, 0)::text,
    'the third attempt is claimed with nothing checked'
);
select throws_ok(
    format($$select durable.checkpoint(%L, %L, 6, 'step', 'more')$$, pg_temp.id('again'), pg_temp.tok('again')),
    'DU022',
    format('durable: task %s records event 6 before the re-run checked the recorded events 1 to 5', pg_temp.id('again')),
    'what the second attempt checked or recorded does not count for the third'
);
select is(
    (select durable.replay_check(pg_temp.id('again'), pg_temp.tok('again'),
                                 pg_temp.presented(4) || '[{"seq": 5, "kind": "step", "name": "notify"}]')),
    '{"checked": 5}'::jsonb,
    'the third attempt presents the five calls'
);
select is(
    (select durable.checkpoint(pg_temp.id('again'), pg_temp.tok('again'), 6, 'step', 'more')),
    '{"seq": 6, "kind": "step", "name": "more", "outcome": "ok", "result": null}'::jsonb,
    'and records event 6'
);

-- ---------------------------------------------------------------- completing
-- the issue's case: the code renamed its LAST step; the re-run presented the calls before
-- it and finished without going through event 4. The number of calls would have matched
-- (the renamed step is a call too); the history does not.
select pg_temp.rerun('issue');
select pg_temp.nondeterminism_ok(
    format($$select durable.complete(%L, %L, '{"done": true}')$$, pg_temp.id('issue'), pg_temp.tok('issue')),
    pg_temp.id('issue'), pg_temp.tok('issue'),
    pg_temp.nd('issue', 1, pg_temp.ev('step', 'fetch'), null, 'recorded step "fetch", the code did nothing (it finished)'),
    'complete without presenting anything');
select is(
    (select durable.replay_check(pg_temp.id('issue'), pg_temp.tok('issue'), pg_temp.presented(3))),
    '{"checked": 3}'::jsonb,
    'the re-run with a renamed last step presents the three calls before it'
);
select pg_temp.nondeterminism_ok(
    format($$select durable.complete(%L, %L, '{"done": true}')$$, pg_temp.id('issue'), pg_temp.tok('issue')),
    pg_temp.id('issue'), pg_temp.tok('issue'),
    pg_temp.nd('issue', 4, pg_temp.ev('step', 'save'), null, 'recorded step "save", the code did nothing (it finished)'),
    'complete with the last recorded event not gone through',
    false);
select is(
    (select row(status, output)::text from durable.all_tasks where task_id = pg_temp.id('issue')),
    row('failed', null::jsonb)::text,
    'the task did not complete: failed, without output'
);
select is(
    (select count(*) from durable.attempts where task_id = pg_temp.id('issue') and outcome = 'completed'),
    0::bigint,
    'no completed attempt is recorded'
);

-- the code may go through the history one call at a time instead of presenting it
select pg_temp.rerun('walk');
select is(
    (select jsonb_agg(x.e order by x.seq) from (
        select 1 as seq, durable.checkpoint(pg_temp.id('walk'), pg_temp.tok('walk'), 1, 'step', 'fetch', '{"n": 5}') as e
        union all
        select 2, durable.checkpoint(pg_temp.id('walk'), pg_temp.tok('walk'), 2, 'now', 'clock')
        union all
        select 3, durable.spawn(pg_temp.id('walk'), pg_temp.tok('walk'), 3, 'kids', 'child', '{"x": 1}')
        union all
        select 4, durable.checkpoint(pg_temp.id('walk'), pg_temp.tok('walk'), 4, 'step', 'save')
    ) as x),
    pg_temp.history('walk'),
    'calling the recorded calls again, one by one, returns the history'
);
select is(
    (select durable.complete(pg_temp.id('walk'), pg_temp.tok('walk'), '{"done": true}')),
    '{"completed": true}'::jsonb,
    'and then the task completes'
);

-- complete_many: the same rule, as a reason, without stopping the rest of the batch
select pg_temp.rerun('batch');
select durable.replay_check(pg_temp.id('batch'), pg_temp.tok('batch'), pg_temp.presented(3));
select pg_temp.enq('own', 'q', '{"durable": true}');
select pg_temp.enq('plain', 'q');
select pg_temp.claim_as('own', 'q', 'w4', 3600);
select pg_temp.claim_as('plain', 'q', 'w4', 3600);
select is(
    (select array_agg(name order by name) from ids i join durable.all_tasks k on k.task_id = i.id
     where i.name in ('own', 'plain') and k.status = 'running' and k.lease_token = i.token),
    array['own', 'plain'],
    'a fresh durable task and a plain task are claimed'
);
select durable.checkpoint(pg_temp.id('own'), pg_temp.tok('own'), 1, 'step', 'only', '{}');
select results_eq(
    $$select m.task_id, m.ok, m.reason
      from durable.complete_many(
          array[pg_temp.id('batch'), pg_temp.id('own'), pg_temp.id('plain')],
          array[pg_temp.tok('batch'), pg_temp.tok('own'), pg_temp.tok('plain')],
          array['{"a": 1}'::jsonb, '{"b": 2}'::jsonb, '{"c": 3}'::jsonb]) as m$$,
    $$values (pg_temp.id('batch'), false, 'nondeterminism'),
             (pg_temp.id('own'), true, 'completed'),
             (pg_temp.id('plain'), true, 'completed')$$,
    'complete_many: a history not gone through is reason nondeterminism; the rest of the batch completes'
);
select is(
    (select jsonb_build_object('status', k.status, 'output', k.output, 'error', k.error)
     from durable.all_tasks k where k.task_id = pg_temp.id('batch')),
    jsonb_build_object('status', 'failed', 'output', null, 'error',
        jsonb_build_object('type', 'NonDeterminismError', 'hint', pg_temp.nondeterminism_hint())
        || pg_temp.nd('batch', 4, pg_temp.ev('step', 'save'), null,
                      'recorded step "save", the code did nothing (it finished)')),
    'complete_many failed that task with a NonDeterminismError at event 4'
);
select throws_ok(
    format('select durable.heartbeat(%L, %L)', pg_temp.id('batch'), pg_temp.tok('batch')),
    'DU020',
    format('durable: non-determinism in task %s at event 4: recorded step "save", the code did nothing (it finished)',
           pg_temp.id('batch')),
    'its next call with the lease raises DU020'
);
select results_eq(
    $$select m.ok, m.reason from durable.complete_many(array[pg_temp.id('batch')], array[pg_temp.tok('batch')]) as m$$,
    $$values (false, 'lease_lost')$$,
    'complete_many of the failed task again: its lease has ended'
);
select pg_temp.rerun('batch ok');
select durable.replay_check(pg_temp.id('batch ok'), pg_temp.tok('batch ok'), pg_temp.presented(4));
select results_eq(
    $$select m.ok, m.reason from durable.complete_many(array[pg_temp.id('batch ok')], array[pg_temp.tok('batch ok')]) as m$$,
    $$values (true, 'completed')$$,
    'complete_many of a re-run that checked its whole history completes it'
);

select * from finish();

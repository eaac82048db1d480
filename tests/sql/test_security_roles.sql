-- The role boundary (security spec, "Roles" and "Definer verbs"): which group role may
-- call which public verb, and that nothing else is reachable.
--   1. the public verbs of the schema are exactly those of the spec;
--   2. a role x verb matrix: a login role granted only durable_worker, durable_producer,
--      durable_operator or durable_reader, and one granted none of them, holds EXECUTE on
--      exactly the verbs the spec gives its group (has_function_privilege);
--   3. the same, really calling a subset of the verbs as each role: 42501, or allowed
--      (success or a durable error DU...);
--   4. the catalogue: public verbs are SECURITY DEFINER, owned by durable_owner, pin
--      search_path = pg_catalog, durable, pg_temp, have a COMMENT and are not executable by
--      PUBLIC; internal ('_') functions are executable by their owner only; no table or
--      sequence grants anything to PUBLIC or a group role; only the owner may create in
--      the schema; the owner and the group roles cannot log in, and no group role is a
--      member of the owner.
select plan(371);

\ir helpers/security.sql

-- login roles granted one group role each, one granted none, and a role to restrict
select pg_temp.login('w', '{durable_worker}');
select pg_temp.login('p', '{durable_producer}');
select pg_temp.login('o', '{durable_operator}');
select pg_temp.login('r', '{durable_reader}');
select pg_temp.login('n');
select pg_temp.make_role('x', '{}', false);
create temp table kinds (kind text primary key, grp text);
insert into kinds values
    ('w', 'durable_worker'), ('p', 'durable_producer'), ('o', 'durable_operator'), ('r', 'durable_reader'), ('n', null);

-- every public verb of the spec and the group roles that may call it
create temp table verbs (sig text primary key, allowed text[] not null);
insert into verbs values
    -- durable_worker: claim and every lease-token verb, next_wake
    ('durable.claim(text,text,integer,integer,text[])', '{durable_worker}'),
    ('durable.heartbeat(uuid,uuid,integer)', '{durable_worker}'),
    ('durable.complete(uuid,uuid,jsonb)', '{durable_worker}'),
    ('durable.complete_many(uuid[],uuid[],jsonb[])', '{durable_worker}'),
    ('durable.fail(uuid,uuid,jsonb,boolean)', '{durable_worker}'),
    ('durable.release(uuid,uuid,double precision,text)', '{durable_worker}'),
    ('durable.checkpoint(uuid,uuid,integer,text,text,jsonb,jsonb)', '{durable_worker}'),
    ('durable.checkpoint_many(uuid[],uuid[],integer[],text[],text[],jsonb[],jsonb[])', '{durable_worker}'),
    ('durable.replay_check(uuid,uuid,jsonb)', '{durable_worker}'),
    ('durable.sleep(uuid,uuid,integer,text,double precision,timestamp with time zone)', '{durable_worker}'),
    ('durable.wait_event(uuid,uuid,integer,text,double precision)', '{durable_worker}'),
    ('durable.spawn(uuid,uuid,integer,text,text,jsonb,jsonb)', '{durable_worker}'),
    ('durable.wait_children(uuid,uuid,integer,uuid[],text)', '{durable_worker}'),
    ('durable.next_wake(text)', '{durable_worker}'),
    ('durable.ensure_queue(text)', '{durable_worker,durable_producer,durable_operator}'),
    ('durable.register_worker(text,text[],text[],integer,text,integer,double precision,double precision)',
     '{durable_worker}'),
    ('durable.worker_heartbeat(text,uuid)', '{durable_worker}'),
    ('durable.unregister_worker(text,uuid)', '{durable_worker}'),
    ('durable.workers(text)', '{durable_worker,durable_reader,durable_producer,durable_operator}'),
    -- durable_producer
    ('durable.enqueue(text,text,jsonb,jsonb)', '{durable_producer}'),
    ('durable.enqueue_many(text,jsonb)', '{durable_producer}'),
    ('durable.emit_event(text,text,jsonb)', '{durable_producer,durable_operator}'),
    -- schedules: created by a producer, paused, resumed and deleted by a producer or an operator
    ('durable.create_schedule(text,text,text,text,jsonb)', '{durable_producer}'),
    ('durable.pause_schedule(text,text)', '{durable_producer,durable_operator}'),
    ('durable.resume_schedule(text,text)', '{durable_producer,durable_operator}'),
    ('durable.delete_schedule(text,text)', '{durable_producer,durable_operator}'),
    ('durable.list_schedules(text)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.cron_next(text,text,timestamp with time zone)',
     '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    -- durable_operator
    ('durable.create_queue(text,jsonb)', '{durable_operator}'),
    ('durable.cancel(uuid,text)', '{durable_operator}'),
    ('durable.retry(uuid)', '{durable_operator}'),
    ('durable.replay(uuid)', '{durable_operator}'),
    ('durable.fork(uuid,integer)', '{durable_operator}'),
    ('durable.purge(text,double precision,integer)', '{durable_operator}'),
    ('durable.purge_event_keys(text,double precision,integer)', '{durable_operator}'),
    ('durable.reclaim(text,integer)', '{durable_operator}'),
    -- the shared test clock (refused outside a test database, DU055)
    ('durable.advance_test_clock(double precision)', '{durable_operator}'),
    ('durable.skip_test_clock()', '{durable_operator}'),
    ('durable.test_clock()', '{durable_operator}'),
    ('durable.grant_queue(text,text,text[])', '{durable_operator}'),
    ('durable.revoke_queue(text,text)', '{durable_operator}'),
    ('durable.queue_grants()', '{durable_operator}'),
    -- durable_reader (producer and operator are its members)
    ('durable.get_task(uuid)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.history(uuid,boolean)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.queue_stats(text)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.limit_usage(text)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.list_tasks(text,text,text,uuid,timestamp with time zone,timestamp with time zone,text,uuid,integer)',
     '{durable_reader,durable_producer,durable_operator}'),
    ('durable.list_queues()', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.queue_metrics(integer)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.check_replay(uuid,jsonb,boolean)', '{durable_reader,durable_producer,durable_operator}'),
    ('durable.replay_histories(text,timestamp with time zone,uuid,integer)',
     '{durable_reader,durable_producer,durable_operator}'),
    ('durable.patch_usage(text,text,timestamp with time zone)', '{durable_reader,durable_producer,durable_operator}'),
    -- helpers: all four
    ('durable."current_time"()', '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    ('durable.max_payload_bytes()', '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    ('durable.uuidv7()', '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    ('durable.input_hash(jsonb)', '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    ('durable.event_kinds()', '{durable_worker,durable_producer,durable_operator,durable_reader}'),
    ('durable.backoff_delay(jsonb,integer)', '{durable_worker,durable_producer,durable_operator,durable_reader}');

-- the functions of the schema: public ones (no leading underscore, not triggers) and internal ones
create temp view public_fns as
select p.oid, p.oid::regprocedure::text as sig, p.proname, p.prosecdef, p.proowner, p.proconfig, p.proacl
from pg_proc p
where p.pronamespace = 'durable'::regnamespace and p.proname !~ '^_' and p.prorettype <> 'trigger'::regtype;
create temp view internal_fns as
select p.oid, p.oid::regprocedure::text as sig, p.proowner, p.proconfig, p.proacl
from pg_proc p
where p.pronamespace = 'durable'::regnamespace and p.proname ~ '^_';

-- 1. the public verbs are exactly the spec's
select set_eq(
    'select sig from public_fns',
    $$select coalesce(to_regprocedure(sig)::text, sig) from verbs$$,
    'the public functions of schema durable are exactly the verbs of the spec'
);

-- 2. the matrix, by the catalogue (290 = 5 roles x 58 verbs)
select is(
    coalesce(has_function_privilege(pg_temp.role(k.kind), to_regprocedure(v.sig), 'EXECUTE'), false),
    k.grp is not null and k.grp = any(v.allowed),
    format('%s %s execute %s', coalesce(k.grp, 'a role with no durable group'),
           case when k.grp = any(v.allowed) then 'may' else 'may not' end, v.sig)
)
from verbs v cross join kinds k
order by v.sig, k.kind;

-- 3. the matrix, calling (60 = 5 roles x 12 verbs); allowed means success or a durable error
select durable.create_queue('q');
create temp table calls (verb text primary key, sig text not null, stmt text not null);
insert into calls values
    ('claim', 'durable.claim(text,text,integer,integer,text[])', $$select * from durable.claim('q', 'w1')$$),
    ('complete', 'durable.complete(uuid,uuid,jsonb)',
     $$select durable.complete(gen_random_uuid(), gen_random_uuid())$$),
    ('checkpoint', 'durable.checkpoint(uuid,uuid,integer,text,text,jsonb,jsonb)',
     $$select durable.checkpoint(gen_random_uuid(), gen_random_uuid(), 1, 'step', 'one')$$),
    ('event_kinds', 'durable.event_kinds()', $$select * from durable.event_kinds()$$),
    ('enqueue', 'durable.enqueue(text,text,jsonb,jsonb)', $$select durable.enqueue('q', 'job')$$),
    ('emit_event', 'durable.emit_event(text,text,jsonb)', $$select durable.emit_event('q', 'key-1')$$),
    ('get_task', 'durable.get_task(uuid)', $$select durable.get_task(gen_random_uuid())$$),
    ('cancel', 'durable.cancel(uuid,text)', $$select durable.cancel(gen_random_uuid())$$),
    ('retry', 'durable.retry(uuid)', $$select durable.retry(gen_random_uuid())$$),
    ('create_queue', 'durable.create_queue(text,jsonb)', $$select durable.create_queue('q')$$),
    ('purge', 'durable.purge(text,double precision,integer)', $$select durable.purge('q')$$),
    ('grant_queue', 'durable.grant_queue(text,text,text[])',
     format($$select durable.grant_queue(%L, 'zz', '{reader}')$$, pg_temp.role('x')));
select is(
    pg_temp.verdict(pg_temp.state_as(pg_temp.role(k.kind), c.stmt)),
    case when k.grp = any(v.allowed) then 'allowed' else '42501' end,
    format('called as %s: %s is %s', coalesce(k.grp, 'a role with no durable group'), c.verb,
           case when k.grp = any(v.allowed) then 'allowed' else 'refused with 42501' end)
)
from calls c join verbs v on v.sig = c.sig cross join kinds k
order by c.verb, k.kind;
select is(
    (select count(*) from durable.all_tasks where queue = 'q'),
    1::bigint,
    'the calls did what they say: the producer''s enqueue alone stored a task'
);

-- 4. the catalogue
select is(
    array(select sig from public_fns where not prosecdef order by sig), '{}'::text[],
    'every public verb is SECURITY DEFINER'
);
select is(
    array(select sig from public_fns where proowner <> 'durable_owner'::regrole order by sig), '{}'::text[],
    'every public verb is owned by durable_owner'
);
select is(
    array(select sig from public_fns
          where not coalesce('search_path=pg_catalog, durable, pg_temp' = any(proconfig), false) order by sig),
    '{}'::text[],
    'every public verb pins search_path = pg_catalog, durable, pg_temp'
);
select is(
    array(select sig from public_fns where coalesce(obj_description(oid, 'pg_proc'), '') = '' order by sig),
    '{}'::text[],
    'every public verb has a COMMENT'
);
select is(
    array(select sig from public_fns
          where exists (select 1 from aclexplode(coalesce(proacl, acldefault('f', proowner))) a
                        where a.grantee = 0 and a.privilege_type = 'EXECUTE')
          order by sig),
    '{}'::text[],
    'no public verb is executable by PUBLIC'
);
select is(
    array(select distinct f.sig || ' by ' || case when a.grantee = 0 then 'PUBLIC' else a.grantee::regrole::text end
          from internal_fns f, aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
          where a.grantee <> f.proowner
          order by 1),
    '{}'::text[],
    'no internal (_) function is executable by anyone but its owner (no grant, PUBLIC''s default revoked)'
);
select is(
    array(select f.sig || ' by ' || s.name
          from internal_fns f cross join sec_roles s
          where has_function_privilege(s.name, f.oid, 'EXECUTE')
          order by 1),
    '{}'::text[],
    'none of this file''s roles may execute an internal function'
);
select is(
    pg_temp.state_as(pg_temp.role('o'), $$select durable._locked_finished(gen_random_uuid())$$),
    '42501',
    'calling an internal function (durable._locked_finished) as an operator: 42501'
);
select is(
    array(select sig from internal_fns
          where not coalesce('search_path=pg_catalog, durable, pg_temp' = any(proconfig), false) order by sig),
    '{}'::text[],
    'internal functions pin search_path = pg_catalog, durable, pg_temp too'
);
select is(
    array(select format('%s %s', x.kind, x.name) from (
        select 'function' as kind, p.oid::regprocedure::text as name from pg_proc p
        where p.pronamespace = 'durable'::regnamespace and p.proowner <> 'durable_owner'::regrole
        union all
        select 'relation', c.oid::regclass::text from pg_class c
        where c.relnamespace = 'durable'::regnamespace and c.relowner <> 'durable_owner'::regrole
        union all
        select 'type', t.oid::regtype::text from pg_type t
        where t.typnamespace = 'durable'::regnamespace and t.typowner <> 'durable_owner'::regrole
    ) x order by 1),
    '{}'::text[],
    'durable_owner owns every function, table, index, sequence and type of schema durable'
);
select is(
    (select nspowner::regrole::text from pg_namespace where nspname = 'durable'),
    'durable_owner',
    'durable_owner owns schema durable'
);
select is(
    array(select distinct c.oid::regclass::text || ': ' || a.privilege_type || ' to '
                          || case when a.grantee = 0 then 'PUBLIC' else a.grantee::regrole::text end
          from pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
          where c.relnamespace = 'durable'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')
            and (a.grantee = 0 or a.grantee in (select oid from pg_roles
                                                where rolname in ('durable_worker', 'durable_producer',
                                                                  'durable_operator', 'durable_reader')))
          order by 1),
    '{}'::text[],
    'no table, view or sequence of schema durable grants anything to PUBLIC or a group role'
);
select is(
    array(select c.oid::regclass::text || ' to ' || r.name
          from pg_class c
          cross join (select rolname::text as name from pg_roles
                      where rolname in ('durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
                      union all select s.name from sec_roles s) r
          where c.relnamespace = 'durable'::regnamespace and c.relkind in ('r', 'p', 'v', 'm', 'f')
            and (has_table_privilege(r.name, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')
                 or has_any_column_privilege(r.name, c.oid, 'SELECT, INSERT, UPDATE, REFERENCES'))
          order by 1),
    '{}'::text[],
    'no group role, nor a login role holding one, has any privilege (table or column) on a table of schema durable'
);
select is(
    array(select c.oid::regclass::text || ' to ' || r.name
          from pg_class c
          cross join (select rolname::text as name from pg_roles
                      where rolname in ('durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
                      union all select s.name from sec_roles s) r
          where c.relnamespace = 'durable'::regnamespace and c.relkind = 'S'
            and has_sequence_privilege(r.name, c.oid, 'USAGE, SELECT, UPDATE')
          order by 1),
    '{}'::text[],
    'no group role, nor a login role holding one, has any privilege on a sequence of schema durable'
);
select is(
    array(select r.name from (select 'public' as name union all
                              select rolname::text from pg_roles
                              where rolname in ('durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
                              union all select s.name from sec_roles s) r
          where has_schema_privilege(r.name, 'durable', 'CREATE')
          order by 1),
    '{}'::text[],
    'nobody but the owner may create objects in schema durable (PUBLIC, the group roles, their members)'
);
select is(
    array(select rolname::text from pg_roles
          where rolname in ('durable_owner', 'durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
            and (rolcanlogin or rolsuper or rolbypassrls)
          order by 1),
    '{}'::text[],
    'durable_owner and the group roles are NOLOGIN (and neither superuser nor BYPASSRLS)'
);
select is(
    (select count(*)::integer from pg_roles
     where rolname in ('durable_owner', 'durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')),
    5,
    'the five roles of the spec exist'
);
select is(
    array(select m.rolname::text || ' in ' || g.rolname::text
          from pg_roles m cross join pg_roles g
          where m.rolname in ('durable_owner', 'durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
            and g.rolname in ('durable_owner', 'durable_worker', 'durable_producer', 'durable_operator', 'durable_reader')
            and m.oid <> g.oid and pg_has_role(m.oid, g.oid, 'MEMBER')
          order by 1),
    array['durable_operator in durable_reader', 'durable_producer in durable_reader'],
    'among the durable roles, only producer and operator are members of another (durable_reader); none of durable_owner'
);
select is(
    array(select s.name from sec_roles s where pg_has_role(s.name, 'durable_owner', 'MEMBER') order by 1),
    '{}'::text[],
    'a login role holding a group role is not a member of durable_owner'
);

select pg_temp.drop_roles();

select * from finish();

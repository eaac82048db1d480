-- The verbs a durable step goes through find a task's events by key whatever the
-- statistics say: their plans, made once per session, may have been made while the
-- events' partitions looked empty (ANALYZE before any load, a new day's partition), and
-- must not then read a whole partition at every call (plpgsql/common.sql, "Plans").
select plan(3);

\ir helpers/tasks.sql

select pg_temp.clock(0);
select durable.create_queue('q');
select pg_temp.enq('a', 'q', '{"durable": true}');
select pg_temp.enq('b', 'q', '{"durable": true}');
select pg_temp.claim_as('a', 'q');
select pg_temp.claim_as('b', 'q');
-- the statistics of an empty log
analyze durable.events;

create temp table scans (verb text primary key, whole_partition_scans bigint, events integer);

-- counted inside one transaction (pg_stat_xact_user_tables): every sequential scan of a
-- partition of durable.events, by verb
do $$
declare
    v_before bigint;
    i integer;
begin
    select coalesce(sum(s.seq_scan), 0) into v_before
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';
    for i in 1..12 loop
        perform durable.checkpoint(pg_temp.id('a'), pg_temp.tok('a'), i, 'step', 's' || i, '1');
    end loop;
    insert into scans
    select 'checkpoint', coalesce(sum(s.seq_scan), 0) - v_before,
           (select count(*) from durable.events e where e.task_id = pg_temp.id('a'))
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';

    select coalesce(sum(s.seq_scan), 0) into v_before
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';
    for i in 1..12 loop
        perform 1 from durable.checkpoint_many(
            array[pg_temp.id('b')], array[pg_temp.tok('b')], array[i], array['step'], array['s' || i],
            array['1']::jsonb[], null);
    end loop;
    insert into scans
    select 'checkpoint_many', coalesce(sum(s.seq_scan), 0) - v_before,
           (select count(*) from durable.events e where e.task_id = pg_temp.id('b'))
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';

    select coalesce(sum(s.seq_scan), 0) into v_before
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';
    perform durable.complete(pg_temp.id('a'), pg_temp.tok('a'), null);
    perform durable.complete(pg_temp.id('b'), pg_temp.tok('b'), null);
    insert into scans
    select 'complete', coalesce(sum(s.seq_scan), 0) - v_before,
           (select count(*) from durable.all_tasks t
            where t.task_id in (pg_temp.id('a'), pg_temp.id('b')) and t.status = 'completed')
    from pg_stat_xact_user_tables s where s.schemaname = 'durable' and s.relname like 'events%';
end;
$$;

select results_eq(
    'select whole_partition_scans, events from scans where verb = ''checkpoint''',
    $$values (0::bigint, 12)$$,
    'durable.checkpoint recorded 12 events without reading a partition of the events whole'
);
select results_eq(
    'select whole_partition_scans, events from scans where verb = ''checkpoint_many''',
    $$values (0::bigint, 12)$$,
    'durable.checkpoint_many recorded 12 events without reading a partition of the events whole'
);
select results_eq(
    'select whole_partition_scans, events from scans where verb = ''complete''',
    $$values (0::bigint, 2)$$,
    'durable.complete checked both histories without reading a partition of the events whole'
);

select * from finish();

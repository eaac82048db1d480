-- Helpers of the tests of the day partitions (test_retention_*.sql), included with
-- `\ir helpers/partitions.sql`: partition names of a day, the partitions of a table, and
-- the maintenance run now at a given time.
create function pg_temp.day_of(p_table text, p_offset integer default 0) returns text language sql as $$
    select p_table || '_p' || to_char((clock_timestamp() at time zone 'UTC')::date + p_offset, 'YYYYMMDD')
$$;
create function pg_temp.partitions(p_table text) returns text[] language sql as $$
    select array_agg(i.inhrelid::regclass::text order by i.inhrelid::regclass::text)
    from pg_inherits i where i.inhparent = p_table::regclass
$$;
-- the maintenance at p_now, now rather than in a minute, as the owner (as the claim runs it:
-- the partitions it makes are the owner's)
create function pg_temp.maintain(p_now timestamptz) returns void language plpgsql as $$
begin
    update durable.history_state set checked_at = null;
    set role durable_owner;
    perform durable._history_partitions(p_now);
    reset role;
end;
$$;

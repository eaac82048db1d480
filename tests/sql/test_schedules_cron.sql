-- durable.cron_next: every field form, the macros, Vixie's day rule, the time zones
-- (New York and Berlin's DST, Sydney's southern-hemisphere DST, Kolkata's half-hour
-- offset, UTC), the DST rules (a wall time in the spring-forward gap fires once, at the
-- end of the gap; a repeated one once, at its first occurrence), Feb 29, and the errors.
-- (tests/python/test_cron_oracle.py compares it with croniter over thousands of cases.)
select plan(53);

\ir helpers/errors.sql

create function pg_temp.nxt(p_cron text, p_after text, p_tz text default 'UTC') returns timestamptz
language sql as $$ select durable.cron_next(p_cron, p_tz, p_after::timestamptz) $$;

-- successive firings, as UTC text
create function pg_temp.series(p_cron text, p_after text, p_n integer, p_tz text default 'UTC') returns text[]
language plpgsql as $$
declare
    v_at timestamptz := p_after::timestamptz;
    v text[] := '{}';
begin
    for i in 1..p_n loop
        v_at := durable.cron_next(p_cron, p_tz, v_at);
        v := v || to_char(v_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI');
    end loop;
    return v;
end;
$$;

-- the fields
select is(pg_temp.nxt('* * * * *', '2026-01-01 00:00:00+00'), '2026-01-01 00:01:00+00', 'every minute: the next whole minute, strictly after');
select is(pg_temp.nxt('* * * * *', '2026-01-01 00:00:30.5+00'), '2026-01-01 00:01:00+00', 'every minute from a fraction of one');
select is(pg_temp.series('*/15 * * * *', '2026-01-01 00:07:00+00', 3), array['2026-01-01 00:15', '2026-01-01 00:30', '2026-01-01 00:45'], 'a step */15');
select is(pg_temp.series('1-30/10 * * * *', '2026-01-01 00:00:00+00', 4), array['2026-01-01 00:01', '2026-01-01 00:11', '2026-01-01 00:21', '2026-01-01 01:01'], 'a range with a step 1-30/10');
select is(pg_temp.series('5/20 * * * *', '2026-01-01 00:00:00+00', 4), array['2026-01-01 00:05', '2026-01-01 00:25', '2026-01-01 00:45', '2026-01-01 01:05'], 'a start with a step 5/20: to the field''s end');
select is(pg_temp.series('0,30 9-10 * * *', '2026-01-01 00:00:00+00', 5), array['2026-01-01 09:00', '2026-01-01 09:30', '2026-01-01 10:00', '2026-01-01 10:30', '2026-01-02 09:00'], 'lists and ranges');
select is(pg_temp.series('0 0 1 jan,Jul *', '2026-02-01 00:00:00+00', 2), array['2026-07-01 00:00', '2027-01-01 00:00'], 'month names, any case');
select is(pg_temp.series('0 0 * FEB-mar/1 *', '2026-03-30 00:00:00+00', 2), array['2026-03-31 00:00', '2027-02-01 00:00'], 'a range of month names');
select is(pg_temp.series('0 12 * * MON-fri', '2026-03-06 13:00:00+00', 2), array['2026-03-09 12:00', '2026-03-10 12:00'], 'weekday names: Friday after noon, then Monday');
select is(pg_temp.nxt('0 0 * * 7', '2026-03-02 00:00:00+00'), '2026-03-08 00:00:00+00', '7 is Sunday');
select is(pg_temp.nxt('0 0 * * 0', '2026-03-02 00:00:00+00'), '2026-03-08 00:00:00+00', '0 is Sunday');
select is(pg_temp.series('0 0 * * 5-7', '2026-03-05 00:00:00+00', 3), array['2026-03-06 00:00', '2026-03-07 00:00', '2026-03-08 00:00'], 'a range to 7: Friday to Sunday');
select is(pg_temp.nxt('  0   0  1 * *  ', '2026-03-02 00:00:00+00'), '2026-04-01 00:00:00+00', 'extra whitespace');

-- the day rule (Vixie): either when neither day field starts with *, else both
select is(pg_temp.series('0 0 13 * fri', '2026-03-01 00:00:00+00', 3), array['2026-03-06 00:00', '2026-03-13 00:00', '2026-03-20 00:00'], 'day 13 OR a Friday');
select is(pg_temp.series('0 0 1-31 * fri', '2026-03-01 00:00:00+00', 2), array['2026-03-02 00:00', '2026-03-03 00:00'], '1-31 is restricted: with a weekday, every day');
select is(pg_temp.series('0 0 */2 * mon', '2026-03-01 00:00:00+00', 2), array['2026-03-09 00:00', '2026-03-23 00:00'], '*/2 starts with *: odd days that are Mondays (both)');
select is(pg_temp.series('0 0 * * mon', '2026-03-01 00:00:00+00', 2), array['2026-03-02 00:00', '2026-03-09 00:00'], 'a day of month of *: the weekday only');

-- the macros
select is(pg_temp.nxt('@yearly', '2026-03-01 00:00:00+00'), '2027-01-01 00:00:00+00', '@yearly');
select is(pg_temp.nxt('@annually', '2026-03-01 00:00:00+00'), '2027-01-01 00:00:00+00', '@annually');
select is(pg_temp.nxt('@monthly', '2026-03-01 00:00:00+00'), '2026-04-01 00:00:00+00', '@monthly');
select is(pg_temp.nxt('@weekly', '2026-03-01 00:00:00+00'), '2026-03-08 00:00:00+00', '@weekly: Sundays at midnight');
select is(pg_temp.nxt('@daily', '2026-03-01 00:00:00+00'), '2026-03-02 00:00:00+00', '@daily');
select is(pg_temp.nxt('@MIDNIGHT', '2026-03-01 00:00:00+00'), '2026-03-02 00:00:00+00', '@midnight, any case');
select is(pg_temp.nxt('@hourly', '2026-03-01 00:59:59.999+00'), '2026-03-01 01:00:00+00', '@hourly');

-- February 29
select is(pg_temp.series('0 0 29 2 *', '2026-03-01 00:00:00+00', 2), array['2028-02-29 00:00', '2032-02-29 00:00'], 'Feb 29: leap years');
select is(pg_temp.nxt('0 0 29 2 *', '2097-01-01 00:00:00+00'), '2104-02-29 00:00:00+00', 'Feb 29 across 2100 (not a leap year): eight years on');
select is(pg_temp.nxt('0 0 29 2 */7', '2026-01-01 00:00:00+00'), '2032-02-29 00:00:00+00', 'Feb 29 that is a Sunday (both day fields, *-started): 2032');

-- time zones
select is(pg_temp.nxt('0 9 * * *', '2026-01-15 00:00:00+00', 'America/New_York'), '2026-01-15 14:00:00+00', 'New York in winter: UTC-5');
select is(pg_temp.nxt('0 9 * * *', '2026-07-15 00:00:00+00', 'America/New_York'), '2026-07-15 13:00:00+00', 'New York in summer: UTC-4');
select is(pg_temp.nxt('0 9 * * *', '2026-01-15 00:00:00+00', 'Europe/Berlin'), '2026-01-15 08:00:00+00', 'Berlin in winter: UTC+1');
select is(pg_temp.nxt('0 9 * * *', '2026-07-15 00:00:00+00', 'Europe/Berlin'), '2026-07-15 07:00:00+00', 'Berlin in summer: UTC+2');
select is(pg_temp.nxt('0 9 * * *', '2026-01-15 00:00:00+00', 'Australia/Sydney'), '2026-01-15 22:00:00+00', 'Sydney in January (its summer): UTC+11');
select is(pg_temp.nxt('0 9 * * *', '2026-07-15 00:00:00+00', 'Australia/Sydney'), '2026-07-15 23:00:00+00', 'Sydney in July: UTC+10');
select is(pg_temp.nxt('0 9 * * *', '2026-07-15 00:00:00+00', 'Asia/Kolkata'), '2026-07-15 03:30:00+00', 'Kolkata: UTC+5:30');
select is(pg_temp.nxt('0 * * * *', '2026-07-15 00:00:00+00', 'Asia/Kolkata'), '2026-07-15 00:30:00+00', 'Kolkata hourly: on the half hour UTC');

-- DST: spring forward (a 02:30 schedule runs once, at the end of the gap), fall back
select is(pg_temp.series('30 2 * * *', '2026-03-07 12:00:00+00', 3, 'America/New_York'),
          array['2026-03-08 07:00', '2026-03-09 06:30', '2026-03-10 06:30'],
          'New York, spring forward (March 8): 02:30 does not exist, it fires once at 03:00 EDT (07:00 UTC), then 02:30 EDT');
select is(pg_temp.series('*/20 * * * *', '2026-03-08 06:30:00+00', 4, 'America/New_York'),
          array['2026-03-08 06:40', '2026-03-08 07:00', '2026-03-08 07:20', '2026-03-08 07:40'],
          'every 20 minutes across the gap: 01:40 EST, then 02:00, 02:20, 02:40 and 03:00 fall on 03:00 EDT once');
select is(pg_temp.series('30 1 * * *', '2026-10-31 12:00:00+00', 2, 'America/New_York'),
          array['2026-11-01 05:30', '2026-11-02 06:30'],
          'New York, fall back (November 1): 01:30 occurs twice, it fires once at its first occurrence (EDT)');
select is(pg_temp.series('*/30 * * * *', '2026-11-01 05:00:00+00', 4, 'America/New_York'),
          array['2026-11-01 05:30', '2026-11-01 07:00', '2026-11-01 07:30', '2026-11-01 08:00'],
          'every 30 minutes across the repeated hour: 01:00 and 01:30 once (EDT), then 02:00 EST');
select is(pg_temp.nxt('30 1 * * *', '2026-11-01 06:10:00+00', 'America/New_York'), '2026-11-02 06:30:00+00',
          'from inside the repeated hour (01:10 EST): the day''s 01:30 has fired already');
select is(pg_temp.series('30 2 * * *', '2026-03-28 12:00:00+00', 2, 'Europe/Berlin'),
          array['2026-03-29 01:00', '2026-03-30 00:30'], 'Berlin, spring forward (March 29): 02:30 fires at 03:00 CEST');
select is(pg_temp.nxt('30 2 * * *', '2026-10-24 12:00:00+00', 'Europe/Berlin'), '2026-10-25 00:30:00+00',
          'Berlin, fall back (October 25): 02:30 at its first occurrence, CEST');
select is(pg_temp.series('30 2 * * *', '2026-10-03 12:00:00+00', 2, 'Australia/Sydney'),
          array['2026-10-03 16:00', '2026-10-04 15:30'], 'Sydney, spring forward (October 4): 02:30 fires at 03:00 AEDT');
select is(pg_temp.nxt('30 2 * * *', '2026-04-04 12:00:00+00', 'Australia/Sydney'), '2026-04-04 15:30:00+00',
          'Sydney, fall back (April 5): 02:30 at its first occurrence, AEDT');

-- errors
select is(pg_temp.error_of($$select durable.cron_next('* * * *', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'four fields: DU030');
select is(pg_temp.error_of($$select durable.cron_next('60 * * * *', 'UTC', now())$$) ->> 'message',
          'durable: bad cron expression ''60 * * * *'': minute item ''60'' has a value outside 0-59', 'a minute of 60: DU030, which says what');
select is(pg_temp.error_of($$select durable.cron_next('0 0 * * 8', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'a weekday of 8: DU030');
select is(pg_temp.error_of($$select durable.cron_next('0 0 * foo *', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'an unknown name: DU030');
select is(pg_temp.error_of($$select durable.cron_next('5-1 * * * *', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'a backward range: DU030');
select is(pg_temp.error_of($$select durable.cron_next('*/0 * * * *', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'a step of 0: DU030');
select is(pg_temp.error_of($$select durable.cron_next('@often', 'UTC', now())$$) ->> 'sqlstate', 'DU030', 'an unknown macro: DU030');
select is(pg_temp.error_of($$select durable.cron_next('0 0 * * *', 'Mars/Olympus', now())$$) ->> 'sqlstate', 'DU031', 'an unknown time zone: DU031');
select is(pg_temp.error_of($$select durable.cron_next('0 0 30 2 *', 'UTC', now())$$) ->> 'sqlstate', 'DU033',
          'February 30 never fires: DU033, at once');

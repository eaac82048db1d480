-- schedules.sql: cron schedules, and the cron evaluation they use (durable.cron_next).
--
-- ## Cron
-- Five fields, minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or JAN-DEC)
-- day-of-week (0-7 or SUN-SAT, 0 and 7 both Sunday), each a comma list of items: `*`, a
-- value, a range `a-b`, and any of these with a step (`*/15`, `1-30/5`, `5/10`: from 5 to
-- the field's end). Names are case-insensitive. Macros: @yearly (@annually), @monthly,
-- @weekly, @daily (@midnight), @hourly. The day rule is Vixie cron's: when both the
-- day-of-month and the day-of-week are restricted, a day matches when EITHER does; a field
-- is restricted unless it starts with `*` (as in Vixie cron: `*/2` is not restricted and
-- `1-31` is); otherwise a day must match both. An expression that can never fire
-- (`0 0 30 2 *`, `0 0 31 4,6 mon`) is refused (DU033), so the search always ends; it
-- looks at most 50 years ahead (a February 29 that must be a Monday comes every 28 years
-- or so, and the search returns null past that horizon).
--
-- The expression is matched against the wall clock of the schedule's time zone (an IANA
-- name). Around daylight-saving changes:
-- * a wall time that does not exist (the spring-forward gap: 02:30 in New York on the
--   second Sunday of March) fires once, at the first instant after the gap (03:00 local);
--   every time of the gap falls on that instant, and fires once there;
-- * a wall time that occurs twice (the fall-back hour) fires once, at its first
--   occurrence (01:30 daylight time); the repeated hour fires nothing again.
-- The search steps by month, day, hour and minute, over the values each field allows, so
-- it takes a few dozen steps whatever the expression (measured in the README).
--
-- ## Schedules
-- A schedule belongs to one queue (named within it) and enqueues task_name with its input
-- and enqueue options at each tick. No daemon: the claim's maintenance (durable._reclaim)
-- takes the due schedules of its queue (SKIP LOCKED: two claimers never tick one schedule
-- twice, and a schedule row being changed is ticked by the next claim), enqueues through
-- durable._create_tasks with the idempotency key schedule:<name>:<tick in UTC>, so each
-- tick enqueues exactly once, and moves next_run_at to the first tick after now.
-- durable.next_wake includes the queue's next tick, so an idle worker claims then.
-- Ticks missed while nobody claimed (catch_up): 'once' (default) enqueues the latest due
-- tick only; 'skip' enqueues it only when it is at most catch_up_grace seconds late
-- (default 60); 'all' enqueues every missed tick, the latest catch_up_max (default 10).

-- One field of a cron expression as a bit mask of the values it allows.
create or replace function durable._cron_field(
    p_field text, p_min integer, p_max integer, p_names text[], p_what text, p_cron text
)
returns bigint
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_mask bigint := 0::bigint;
    v_item text;
    m text[];
    v_lo integer;
    v_hi integer;
    v_step integer;
    v_end integer := least(p_max, p_min + 59);
    v_bad text;
    v integer;
begin
    foreach v_item in array string_to_array(p_field, ',') loop
        m := regexp_match(v_item, '^(?:(\*)|([0-9]{1,2}|[a-z]{3})(?:-([0-9]{1,2}|[a-z]{3}))?)(?:/([0-9]{1,2}))?$');
        if m is null then
            raise exception 'durable: bad cron expression %: % item %', durable._quote(p_cron), p_what, durable._quote(v_item)
                using errcode = 'DU030',
                      hint = 'an item is *, a value, a range a-b, each optionally with a step /n';
        end if;
        -- a value: a number, or a name (p_names[1] is the field's first value)
        v_bad := null;
        if m[1] is not null then
            -- the day of week's * is 0-6 (7 is Sunday again)
            v_lo := p_min;
            v_hi := case when p_what = 'day-of-week' then 6 else p_max end;
        else
            v_lo := coalesce(array_position(p_names, m[2]) + p_min - 1, case when m[2] ~ '^[0-9]' then m[2]::integer end);
            v_hi := case
                when m[3] is not null then coalesce(array_position(p_names, m[3]) + p_min - 1,
                                                    case when m[3] ~ '^[0-9]' then m[3]::integer end)
                when m[4] is not null then case when p_what = 'day-of-week' then 6 else p_max end
                else v_lo
            end;
            if v_lo is null or v_hi is null then
                v_bad := 'an unknown name';
            elsif v_lo < p_min or v_hi > p_max or v_lo > p_max or v_hi < p_min then
                v_bad := format('a value outside %s-%s', p_min, p_max);
            elsif v_lo > v_hi then
                v_bad := 'a range whose start is after its end';
            end if;
        end if;
        v_step := coalesce(m[4]::integer, 1);
        if v_bad is null and (v_step < 1 or v_step > v_end - p_min + 1) then
            v_bad := format('a step outside 1-%s', v_end - p_min + 1);
        end if;
        if v_bad is not null then
            raise exception 'durable: bad cron expression %: % item % has %',
                durable._quote(p_cron), p_what, durable._quote(v_item), v_bad
                using errcode = 'DU030';
        end if;
        if v_step = 1 then
            -- bits v_lo..v_hi at once (a loop over 60 minutes costs more than the rest)
            v_mask := v_mask | (((1::bigint << (v_hi + 1)) - 1) # ((1::bigint << v_lo) - 1));
        else
            v := v_lo;
            while v <= v_hi loop
                v_mask := v_mask | (1::bigint << v);
                v := v + v_step;
            end loop;
        end if;
    end loop;
    return v_mask;
end;
$$;

comment on function durable._cron_field(text, integer, integer, text[], text, text) is
'Internal: one field of a cron expression (a comma list of *, values, ranges and steps; names from p_names) as a bit mask of the values p_min..p_max it allows. DU030 when malformed.';

-- A cron expression as five bit masks: minutes, hours, days of month, months, days of
-- week (bit 0 Sunday); then whether the day-of-month and the day-of-week fields start
-- with * (1) or not (0).
create or replace function durable._cron_parse(p_cron text)
returns bigint[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_text text := lower(btrim(coalesce(p_cron, '')));
    v_fields text[];
    v_masks bigint[];
    v_dow bigint;
    v_month integer;
    v_first_day integer;
begin
    if length(v_text) > 1000 then
        raise exception 'durable: bad cron expression: longer than 1,000 characters' using errcode = 'DU030';
    end if;
    v_text := case v_text
        when '@yearly' then '0 0 1 1 *'
        when '@annually' then '0 0 1 1 *'
        when '@monthly' then '0 0 1 * *'
        when '@weekly' then '0 0 * * 0'
        when '@daily' then '0 0 * * *'
        when '@midnight' then '0 0 * * *'
        when '@hourly' then '0 * * * *'
        else v_text
    end;
    v_fields := regexp_split_to_array(v_text, '\s+');
    if cardinality(v_fields) <> 5 or v_text = '' then
        raise exception 'durable: bad cron expression %: it needs 5 fields (minute hour day-of-month month day-of-week) or a macro, got %',
            durable._quote(p_cron), case when v_text = '' then 0 else cardinality(v_fields) end
            using errcode = 'DU030',
                  hint = 'macros: @yearly @annually @monthly @weekly @daily @midnight @hourly';
    end if;
    -- (a field that is * is every value: no call, the common case)
    v_masks := array[
        case when v_fields[1] = '*' then 1152921504606846975
             else durable._cron_field(v_fields[1], 0, 59, '{}', 'minute', p_cron) end,
        case when v_fields[2] = '*' then 16777215
             else durable._cron_field(v_fields[2], 0, 23, '{}', 'hour', p_cron) end,
        case when v_fields[3] = '*' then 4294967294
             else durable._cron_field(v_fields[3], 1, 31, '{}', 'day-of-month', p_cron) end,
        case when v_fields[4] = '*' then 8190
             else durable._cron_field(
                 v_fields[4], 1, 12,
                 array['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'],
                 'month', p_cron) end
    ];
    v_dow := case when v_fields[5] = '*' then 127
                  else durable._cron_field(v_fields[5], 0, 7, array['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'],
                                           'day-of-week', p_cron) end;
    -- 7 is Sunday, as 0
    if v_dow & 128 <> 0 then
        v_dow := (v_dow & 127) | 1;
    end if;
    v_masks := v_masks || v_dow;
    v_masks := v_masks || array[case when v_fields[3] like '*%' then 1 else 0 end::bigint,
                                case when v_fields[5] like '*%' then 1 else 0 end::bigint];
    -- never firing: days that must match the day of month (and the day of week, which
    -- every date of the month has in some year), none of which any of the months has
    -- (February has 29 days, in leap years)
    if v_masks[6] = 1 or v_masks[7] = 1 then
        v_first_day := 1;
        while (v_masks[3] >> v_first_day) & 1 = 0 loop
            v_first_day := v_first_day + 1;
        end loop;
        v_month := 1;
        while v_month <= 12
            and ((v_masks[4] >> v_month) & 1 = 0
                 or v_first_day > case when v_month = 2 then 29 when v_month in (4, 6, 9, 11) then 30 else 31 end) loop
            v_month := v_month + 1;
        end loop;
        if v_month > 12 then
            raise exception 'durable: cron expression % never fires: none of its months has day %',
                durable._quote(p_cron), v_first_day
                using errcode = 'DU033';
        end if;
    end if;
    return v_masks;
end;
$$;

comment on function durable._cron_parse(text) is
'Internal: a cron expression (5 fields or a macro) as five bit masks: minutes, hours, days of month, months, days of week (bit 0 Sunday), then 1 when the day-of-month field starts with * (else 0), and the same for the day-of-week field. DU030 when malformed, DU033 when it can never fire.';

-- Raises DU031 unless PostgreSQL knows the time zone.
create or replace function durable._check_tz(p_tz text)
returns void
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if p_tz is null or p_tz = '' or length(p_tz) > 100 then
        raise exception 'durable: unknown time zone %', durable._quote(p_tz)
            using errcode = 'DU031', hint = 'give an IANA name, e.g. UTC, Europe/Berlin, America/New_York';
    end if;
    begin
        perform timestamptz '2000-01-01 00:00:00+00' at time zone p_tz;
    exception when others then
        raise exception 'durable: unknown time zone %', durable._quote(p_tz)
            using errcode = 'DU031', hint = 'give an IANA name, e.g. UTC, Europe/Berlin, America/New_York';
    end;
end;
$$;

comment on function durable._check_tz(text) is
'Internal: raises DU031 unless PostgreSQL knows the time zone p_tz.';

-- The instant a wall time of a time zone fires at: its only instant; the first of two
-- (the fall-back hour); the end of the gap for a wall time that does not exist.
create or replace function durable._cron_instant(p_local timestamp, p_tz text)
returns timestamptz
language plpgsql
stable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_utc timestamptz := p_local at time zone 'UTC';
    -- the zone's offsets (local minus UTC) a day before and a day after
    v_off_before interval := ((v_utc - interval '1 day') at time zone p_tz) - (v_utc - interval '1 day') at time zone 'UTC';
    v_off_after interval := ((v_utc + interval '1 day') at time zone p_tz) - (v_utc + interval '1 day') at time zone 'UTC';
    v_first timestamptz;
    v_second timestamptz;
    v_lo bigint;
    v_hi bigint;
    v_mid bigint;
begin
    if v_off_before = v_off_after then
        return v_utc - v_off_before;
    end if;
    v_first := v_utc - v_off_before;
    v_second := v_utc - v_off_after;
    if (v_first at time zone p_tz) = p_local then
        -- the first occurrence of a repeated wall time, or the only one
        if (v_second at time zone p_tz) = p_local then
            return least(v_first, v_second);
        end if;
        return v_first;
    elsif (v_second at time zone p_tz) = p_local then
        return v_second;
    end if;
    -- in the gap: the transition, between the two readings (binary search, in seconds)
    v_lo := extract(epoch from least(v_first, v_second))::bigint;
    v_hi := extract(epoch from greatest(v_first, v_second))::bigint;
    while v_hi - v_lo > 1 loop
        v_mid := (v_lo + v_hi) / 2;
        if (to_timestamp(v_mid) at time zone p_tz) - (to_timestamp(v_mid) at time zone 'UTC') = v_off_after then
            v_hi := v_mid;
        else
            v_lo := v_mid;
        end if;
    end loop;
    return to_timestamp(v_hi);
end;
$$;

comment on function durable._cron_instant(timestamp, text) is
'Internal: the instant a wall time of time zone p_tz fires at: its instant; the first of its two instants when it occurs twice (fall-back); the first instant after the gap when it does not exist (spring-forward).';

-- (the cron evaluation: see the top of this file)
create or replace function durable.cron_next(p_cron text, p_tz text, p_after timestamptz)
returns timestamptz
language plpgsql
stable
parallel safe
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_masks bigint[] := durable._cron_parse(p_cron);
    v_minutes bigint := v_masks[1];
    v_hours bigint := v_masks[2];
    v_doms bigint := v_masks[3];
    v_months bigint := v_masks[4];
    v_dows bigint := v_masks[5];
    -- Vixie's day rule: either day field when neither starts with *, else both
    v_either boolean := v_masks[6] = 0 and v_masks[7] = 0;
    v_any_dow boolean := v_masks[5] = 127;
    v_start timestamp;
    v_y integer;
    v_mo integer;
    v_d integer;
    v_h integer;
    v_mi integer;
    v_last_year integer;
    v_days integer;
    v_dow integer;
    v_at timestamptz;
begin
    perform durable._check_tz(p_tz);
    if p_after is null then
        raise exception 'durable: cron_next needs an instant to start after' using errcode = 'DU001';
    end if;
    if p_after >= '9990-01-01 00:00:00+00'::timestamptz or p_after < '1900-01-01 00:00:00+00'::timestamptz then
        raise exception 'durable: cron_next starts between 1900 and 9990, got %', p_after using errcode = 'DU001';
    end if;
    -- the first whole minute of wall time after p_after's (a wall time at or before it is at
    -- or before it, or a repeated one whose first occurrence is)
    v_start := date_trunc('minute', p_after at time zone p_tz) + interval '1 minute';
    v_y := extract(year from v_start)::integer;
    v_mo := extract(month from v_start)::integer;
    v_d := extract(day from v_start)::integer;
    v_h := extract(hour from v_start)::integer;
    v_mi := extract(minute from v_start)::integer;
    -- the horizon: an expression that can fire at all fires within it
    v_last_year := v_y + 50;
    while v_y <= v_last_year loop
        -- the month
        if (v_months >> v_mo) & 1 = 0 then
            while v_mo <= 12 and (v_months >> v_mo) & 1 = 0 loop
                v_mo := v_mo + 1;
            end loop;
            if v_mo > 12 then
                v_y := v_y + 1;
                v_mo := 1;
            end if;
            v_d := 1;
            v_h := 0;
            v_mi := 0;
            continue;
        end if;
        -- the day
        v_days := case
            when v_mo = 2 then case when v_y % 4 = 0 and (v_y % 100 <> 0 or v_y % 400 = 0) then 29 else 28 end
            when v_mo in (4, 6, 9, 11) then 30
            else 31
        end;
        if v_d > v_days then
            v_mo := v_mo + 1;
            if v_mo > 12 then
                v_y := v_y + 1;
                v_mo := 1;
            end if;
            v_d := 1;
            v_h := 0;
            v_mi := 0;
            continue;
        end if;
        if v_either or (v_doms >> v_d) & 1 = 0 or not v_any_dow then
            v_dow := extract(dow from make_date(v_y, v_mo, v_d))::integer;
            if not (case
                when v_either then (v_doms >> v_d) & 1 = 1 or (v_dows >> v_dow) & 1 = 1
                else (v_doms >> v_d) & 1 = 1 and (v_dows >> v_dow) & 1 = 1
            end) then
                v_d := v_d + 1;
                v_h := 0;
                v_mi := 0;
                continue;
            end if;
        end if;
        -- the hour
        if (v_hours >> v_h) & 1 = 0 then
            while v_h < 24 and (v_hours >> v_h) & 1 = 0 loop
                v_h := v_h + 1;
            end loop;
            v_mi := 0;
            if v_h = 24 then
                v_d := v_d + 1;
                v_h := 0;
                continue;
            end if;
        end if;
        -- the minute
        while v_mi < 60 and (v_minutes >> v_mi) & 1 = 0 loop
            v_mi := v_mi + 1;
        end loop;
        if v_mi = 60 then
            v_h := v_h + 1;
            v_mi := 0;
            if v_h = 24 then
                v_d := v_d + 1;
                v_h := 0;
            end if;
            continue;
        end if;
        v_at := durable._cron_instant(make_timestamp(v_y, v_mo, v_d, v_h, v_mi, 0), p_tz);
        if v_at > p_after then
            return v_at;
        end if;
        -- a wall time already past (the repeated hour, the gap's end): the next minute
        v_mi := v_mi + 1;
        if v_mi = 60 then
            v_h := v_h + 1;
            v_mi := 0;
            if v_h = 24 then
                v_d := v_d + 1;
                v_h := 0;
            end if;
        end if;
    end loop;
    return null;
end;
$$;

comment on function durable.cron_next(text, text, timestamptz) is
'The first firing of cron expression p_cron strictly after p_after, on the wall clock of time zone p_tz. Five fields (minute hour day-of-month month day-of-week: *, lists, ranges, steps, JAN-DEC and SUN-SAT names, 0 and 7 Sunday; when neither day field starts with * a day matches when either does, else when both do) or a macro (@yearly @annually @monthly @weekly @daily @midnight @hourly); null when it does not fire within 50 years. A wall time that does not exist (spring-forward gap) fires once, at the first instant after the gap; one that occurs twice (fall-back) fires once, at its first occurrence. Errors: DU001 (p_after null or outside 1900-9990), DU030 malformed expression, DU031 unknown time zone, DU033 an expression that never fires (e.g. 0 0 30 2 *).';

-- Keys accepted in the options of a schedule.
create or replace function durable._schedule_option_keys()
returns text[]
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array['tz', 'input', 'enqueue_options', 'catch_up', 'catch_up_max', 'catch_up_grace', 'paused'];
end;
$$;

comment on function durable._schedule_option_keys() is
'Internal: the keys the options of durable.create_schedule may hold.';

-- The idempotency key of one tick of a schedule.
create or replace function durable._tick_key(p_name text, p_tick timestamptz)
returns text
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return 'schedule:' || p_name || ':' || to_char(p_tick at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
end;
$$;

comment on function durable._tick_key(text, timestamptz) is
'Internal: the idempotency key of the task a schedule enqueues for one tick: schedule:<name>:<tick in UTC, ISO 8601>.';

create or replace function durable.create_schedule(
    p_name text, p_queue text, p_task_name text, p_cron text, p_options jsonb default '{}'::jsonb
)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_queue durable.queues;
    v_now timestamptz := durable.current_time();
    v_tz text;
    v_input jsonb;
    v_enqueue jsonb;
    v_catch_up text;
    v_next timestamptz;
begin
    perform durable._check_name(p_queue, 'queue');
    perform durable._require(p_queue, array['producer'], 'create schedules');
    v_queue := durable._queue(p_queue);
    perform durable._check_name(p_name, 'schedule name');
    if length(p_name) > 200 then
        raise exception 'durable: a schedule name is at most 200 characters, got %', length(p_name)
            using errcode = 'DU001';
    end if;
    if p_options is null or jsonb_typeof(p_options) <> 'object' then
        raise exception 'durable: schedule options must be a JSON object' using errcode = 'DU001';
    end if;
    perform durable._check_keys(p_options, durable._schedule_option_keys(), 'schedule options');
    v_tz := coalesce(durable._opt_text(p_options, 'tz', 100), 'UTC');
    if not exists (select 1 from pg_timezone_names z where z.name = v_tz) then
        raise exception 'durable: unknown time zone %', durable._quote(v_tz)
            using errcode = 'DU031', hint = 'give an IANA name, e.g. UTC, Europe/Berlin, America/New_York';
    end if;
    v_input := coalesce(p_options -> 'input', '{}'::jsonb);
    v_enqueue := coalesce(p_options -> 'enqueue_options', '{}'::jsonb);
    if jsonb_typeof(v_enqueue) <> 'object' then
        raise exception 'durable: option "enqueue_options" must be a JSON object' using errcode = 'DU001';
    end if;
    if v_enqueue ?| array['idempotency_key', 'run_at', 'debounce'] then
        raise exception 'durable: a schedule sets its tasks'' idempotency_key and run_at itself (and a tick is never debounced); remove them from enqueue_options'
            using errcode = 'DU001', hint = 'use delay to start each tick''s task later';
    end if;
    -- the task name, input and enqueue options, checked as an enqueue checks them
    perform durable._task_row(
        v_queue, p_task_name, v_input,
        v_enqueue || jsonb_build_object('idempotency_key', durable._tick_key(p_name, v_now)), v_now
    );
    v_catch_up := coalesce(durable._opt_text(p_options, 'catch_up'), 'once');
    if v_catch_up not in ('skip', 'once', 'all') then
        raise exception 'durable: option "catch_up" must be skip, once or all, got %', durable._quote(v_catch_up)
            using errcode = 'DU001';
    end if;
    v_next := durable.cron_next(p_cron, v_tz, v_now);
    insert into durable.schedules as s (
        queue, name, task_name, cron, tz, input, enqueue_options, catch_up, catch_up_max, catch_up_grace,
        paused, next_run_at, created_at, updated_at
    )
    values (
        p_queue, p_name, p_task_name, p_cron, v_tz, v_input, v_enqueue, v_catch_up,
        coalesce(durable._opt_number(p_options, 'catch_up_max', 1, 1000, true)::integer, 10),
        coalesce(durable._opt_number(p_options, 'catch_up_grace', 1, 31536000), 60),
        coalesce(durable._opt_bool(p_options, 'paused'), false), v_next, v_now, v_now
    )
    on conflict (queue, name) do update
        set task_name = excluded.task_name, cron = excluded.cron, tz = excluded.tz, input = excluded.input,
            enqueue_options = excluded.enqueue_options, catch_up = excluded.catch_up,
            catch_up_max = excluded.catch_up_max, catch_up_grace = excluded.catch_up_grace,
            paused = excluded.paused, next_run_at = excluded.next_run_at, last_error = null,
            updated_at = excluded.updated_at;
    -- a worker idle until its next wake-up learns of the new tick
    perform durable._notify(p_queue, v_queue.options);
    return v_next;
end;
$$;

comment on function durable.create_schedule(text, text, text, text, jsonb) is
'Creates schedule p_name on queue p_queue: at each firing of cron expression p_cron (see durable.cron_next) the claims of the queue enqueue task p_task_name once. Creating an existing name replaces its definition (cron, task, options; the next tick is computed again from now). Options: tz (IANA name, default UTC), input (JSON object, default {}), enqueue_options (as durable.enqueue''s, checked now; not idempotency_key nor run_at, which the schedule sets), catch_up for ticks missed while nobody claimed (once: the latest only, the default; skip: the latest only when at most catch_up_grace seconds late, default 60; all: each, the latest catch_up_max, default 10), paused (default false). Needs producer on the queue. Returns the next tick. Errors: DU001, DU002, DU003, DU030, DU031, DU033, 42501.';

-- Locks a schedule, raising DU032 when there is none.
create or replace function durable._locked_schedule(p_queue text, p_name text)
returns durable.schedules
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    s durable.schedules;
begin
    select * into s from durable.schedules x where x.queue = p_queue and x.name = p_name for update;
    if not found then
        raise exception 'durable: no schedule % on queue %', durable._quote(p_name), durable._quote(p_queue)
            using errcode = 'DU032';
    end if;
    return s;
end;
$$;

comment on function durable._locked_schedule(text, text) is
'Internal: locks and returns the schedule, or raises DU032 when the queue has no schedule of that name.';

create or replace function durable.pause_schedule(p_name text, p_queue text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    s durable.schedules;
begin
    perform durable._require(p_queue, array['producer', 'operator'], 'pause schedules');
    s := durable._locked_schedule(p_queue, p_name);
    if s.paused then
        return false;
    end if;
    update durable.schedules x set paused = true, updated_at = durable.current_time()
    where x.queue = p_queue and x.name = p_name;
    return true;
end;
$$;

comment on function durable.pause_schedule(text, text) is
'Pauses a schedule: no tick is enqueued until it is resumed. Returns false when it was already paused. Needs producer or operator on the queue. Errors: DU032, 42501.';

create or replace function durable.resume_schedule(p_name text, p_queue text)
returns timestamptz
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    s durable.schedules;
    v_now timestamptz := durable.current_time();
    v_next timestamptz;
begin
    perform durable._require(p_queue, array['producer', 'operator'], 'resume schedules');
    s := durable._locked_schedule(p_queue, p_name);
    if not s.paused then
        return s.next_run_at;
    end if;
    -- the ticks of the pause are not caught up: the next tick is the first after now
    v_next := durable.cron_next(s.cron, s.tz, v_now);
    update durable.schedules x set paused = false, next_run_at = v_next, updated_at = v_now
    where x.queue = p_queue and x.name = p_name;
    perform durable._notify(p_queue);
    return v_next;
end;
$$;

comment on function durable.resume_schedule(text, text) is
'Resumes a paused schedule from now: the ticks that fell during the pause are not enqueued. Returns the next tick (a running schedule: its next tick, unchanged). Needs producer or operator on the queue. Errors: DU032, 42501.';

create or replace function durable.delete_schedule(p_name text, p_queue text)
returns boolean
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    perform durable._require(p_queue, array['producer', 'operator'], 'delete schedules');
    delete from durable.schedules x where x.queue = p_queue and x.name = p_name;
    return found;
end;
$$;

comment on function durable.delete_schedule(text, text) is
'Deletes a schedule (the tasks it enqueued stay). Returns false when the queue has no schedule of that name. Needs producer or operator on the queue. Errors: 42501.';

create or replace function durable.list_schedules(p_queue text default null)
returns table (
    queue text,
    name text,
    task_name text,
    cron text,
    tz text,
    input jsonb,
    enqueue_options jsonb,
    catch_up text,
    catch_up_max integer,
    catch_up_grace double precision,
    paused boolean,
    next_run_at timestamptz,
    last_tick_at timestamptz,
    last_task_id uuid,
    last_error jsonb,
    ticks bigint,
    created_at timestamptz,
    updated_at timestamptz
)
language plpgsql
stable
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if p_queue is not null then
        perform durable._require(p_queue, durable._readers(), 'read schedules');
    end if;
    return query
    select s.queue, s.name, s.task_name, s.cron, s.tz, s.input, s.enqueue_options, s.catch_up, s.catch_up_max,
           s.catch_up_grace, s.paused, s.next_run_at, s.last_tick_at, s.last_task_id, s.last_error, s.ticks,
           s.created_at, s.updated_at
    from durable.schedules s
    where (p_queue is null or s.queue = p_queue)
      and durable._allowed(s.queue, durable._readers())
    order by s.queue, s.name;
end;
$$;

comment on function durable.list_schedules(text) is
'The schedules of queue p_queue (every queue the caller may read when null), by queue and name: definition, paused, next_run_at, the last tick enqueued (last_tick_at, last_task_id), last_error (why the last tick could not enqueue, null when it could) and ticks (how many tasks it enqueued). Errors: 42501.';

-- The ticks of one schedule due by p_now that its catch-up policy enqueues, oldest first,
-- and its next tick after p_now.
create or replace function durable._due_ticks(
    s durable.schedules, p_now timestamptz, out ticks timestamptz[], out next_at timestamptz
)
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_keep integer := case when s.catch_up = 'all' then s.catch_up_max else 1 end;
    v_window interval;
    v_at timestamptz := s.next_run_at;
    v_n integer := 0;
begin
    ticks := '{}';
    -- on time or a little late: step from the due tick
    while v_at is not null and v_at <= p_now and v_n < 200 loop
        ticks := ticks || v_at;
        v_at := durable.cron_next(s.cron, s.tz, v_at);
        v_n := v_n + 1;
    end loop;
    if v_at is not null and v_at <= p_now then
        -- far behind: the last ticks are found in the shortest window before now that holds
        -- enough of them (a schedule fires at least every eight years)
        foreach v_window in array array[interval '1 hour', interval '1 day', interval '32 days',
                                        interval '400 days', interval '9 years'] loop
            ticks := '{}';
            v_at := durable.cron_next(s.cron, s.tz, greatest(p_now - v_window, s.next_run_at - interval '1 microsecond'));
            while v_at <= p_now loop
                ticks := ticks || v_at;
                v_at := durable.cron_next(s.cron, s.tz, v_at);
            end loop;
            exit when cardinality(ticks) >= v_keep;
        end loop;
    end if;
    next_at := v_at;
    ticks := ticks[greatest(1, cardinality(ticks) - v_keep + 1):];
    if s.catch_up = 'skip' and cardinality(ticks) > 0
        and ticks[cardinality(ticks)] < p_now - make_interval(secs => s.catch_up_grace) then
        ticks := '{}';
    end if;
end;
$$;

comment on function durable._due_ticks(durable.schedules, timestamptz) is
'Internal: the ticks of a due schedule that its catch-up policy enqueues at p_now (once: the latest; skip: the latest if at most catch_up_grace seconds late; all: the latest catch_up_max), oldest first, and its first tick after p_now.';

-- The claim's piece: enqueues the due ticks of the queue's schedules, each once.
create or replace function durable._tick_schedules(p_queue text, p_limit integer)
returns integer
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_now timestamptz := durable.current_time();
    v_queue durable.queues;
    s durable.schedules;
    v_due record;
    v_ids uuid[];
    v_count integer := 0;
    v_state text;
    v_message text;
begin
    -- (one probe of schedules_due_idx when nothing is due)
    for s in
        select * from durable.schedules x
        where x.queue = p_queue and not x.paused and x.next_run_at <= v_now
        order by x.name
        limit p_limit
        for update skip locked
    loop
        if v_queue is null then
            v_queue := durable._queue(p_queue);
        end if;
        v_due := durable._due_ticks(s, v_now);
        begin
            v_ids := case when cardinality(v_due.ticks) > 0 then durable._create_tasks(
                v_queue,
                array(select durable._task_row(
                              v_queue, s.task_name, s.input,
                              s.enqueue_options || jsonb_build_object('idempotency_key', durable._tick_key(s.name, t.at)),
                              v_now)
                      from unnest(v_due.ticks) with ordinality as t (at, ord)
                      order by t.ord)
            ) else '{}'::uuid[] end;
            update durable.schedules x
            set next_run_at = v_due.next_at,
                last_tick_at = coalesce(v_due.ticks[cardinality(v_due.ticks)], x.last_tick_at),
                last_task_id = coalesce(v_ids[cardinality(v_ids)], x.last_task_id),
                last_error = null,
                ticks = x.ticks + cardinality(v_ids)
            where x.queue = s.queue and x.name = s.name;
            v_count := v_count + cardinality(v_ids);
        exception when others then
            -- a tick that cannot enqueue (the queue's options changed under its enqueue
            -- options, say) must not stop the claim: it is recorded, and the schedule moves on
            get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
            update durable.schedules x
            set next_run_at = v_due.next_at,
                last_error = jsonb_build_object('sqlstate', v_state, 'message', v_message, 'at', v_now)
            where x.queue = s.queue and x.name = s.name;
        end;
    end loop;
    return v_count;
end;
$$;

comment on function durable._tick_schedules(text, integer) is
'Internal: the claim''s piece for schedules (durable._reclaim calls it first): takes up to p_limit due schedules of the queue with SKIP LOCKED, enqueues their due ticks per their catch-up policy through durable._create_tasks (idempotency key schedule:<name>:<tick>: each tick once), and moves next_run_at to the first tick after now. A tick that cannot enqueue is recorded in last_error and skipped. Returns how many tasks it created (or found).';

grant execute on function durable.cron_next(text, text, timestamptz)
to durable_reader, durable_worker, durable_producer, durable_operator;
grant execute on function durable.create_schedule(text, text, text, text, jsonb) to durable_producer;
grant execute on function durable.pause_schedule(text, text) to durable_producer, durable_operator;
grant execute on function durable.resume_schedule(text, text) to durable_producer, durable_operator;
grant execute on function durable.delete_schedule(text, text) to durable_producer, durable_operator;
grant execute on function durable.list_schedules(text) to durable_reader;

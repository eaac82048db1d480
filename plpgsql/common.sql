-- common.sql: the clock, ids, limits and option parsing shared by every verb.
--
-- ## The model in one page
--
-- A *queue* holds *tasks*. `durable.enqueue` inserts a task `pending` with a `run_at`.
-- `durable.claim` moves ready tasks of one queue to `running` in one statement
-- (SELECT ... FOR UPDATE SKIP LOCKED, then UPDATE), handing each a fresh *lease token*
-- and a lease expiry. Every later call of the worker on that attempt (heartbeat,
-- complete, fail, release, and the durable-task verbs) presents the token; a token that
-- is no longer the task's live lease is rejected with SQLSTATE DU010 (DU011 when the
-- task was cancelled) and changes nothing. That is the fence against zombie workers.
--
-- A lease that runs out is not an error of the task: the next claim on the queue
-- reclaims a bounded number of expired leases, counts them in `lost_leases` (a cap of
-- its own, `max_lost_leases`) and makes the task claimable again at once. A failure
-- reported by the worker (`durable.fail`) or an attempt that outlives its `timeout`
-- counts in `failures` against `max_attempts` and is retried after the task's backoff.
--
-- Every ended attempt leaves one row in `durable.attempts`; the task row holds only
-- the current state. Status changes are checked by a trigger (see finish.sql). A task
-- that reaches a final status (completed, failed, cancelled) leaves `durable.tasks`, which
-- holds the live tasks only, for the archive `durable.finished_tasks`, partitioned by day
-- (durable._finish_tasks, finish.sql; retention.sql drops a day of it).
--
-- All times come from `durable.current_time()`: the database clock, or the test clock
-- `durable.fake_now` when a session sets it (in a test database only; 'shared' is the
-- database's shared test clock, plpgsql/test_clock.sql).
--
-- ## Plans
-- Two costs of PL/pgSQL that the hot paths (claim, checkpoint, complete) avoid:
-- * A SQL-language helper that is not inlined (none is: each has SET search_path) is
--   parsed and planned again in every transaction at every call site, about 25 us each;
--   so the small helpers called from PL/pgSQL are PL/pgSQL themselves.
-- * PostgreSQL plans a statement with parameters anew on every call while it judges the
--   generic plan costlier than a custom one, which for the claim and the completion
--   statements is always; the functions marked force_generic_plan use the generic plans
--   (the same index scans). Measured: enqueue, claim, heartbeat and complete_many of one
--   task, 4.5 -> 3.4 ms.
-- * A generic plan is made once per session, from the statistics of that moment: one
--   made while a table or a day's partition of events was still small (a new partition,
--   a fresh database, ANALYZE run before the load) scans it whole at every call, for the
--   life of the connection (measured: a checkpoint or a durable completion reading every
--   event of the day to find a task's last one). The functions marked enable_seqscan =
--   off (durable.checkpoint, durable.checkpoint_many, durable._history,
--   durable.complete_many) look their rows up by key whatever the statistics say;
--   durable.claim, with enable_bitmapscan off too, walks durable.ready in claim order
--   from the floor (a plan from an empty table's statistics sorted every row of it).
--
-- ## SQLSTATEs (class DU), the stable error contract
-- Listed, all of them, in one place: the table "Errors (SQLSTATEs)" of README.md (DU001
-- invalid argument ... DU021 history gap); durable/errors.py maps each to an exception.

-- The database clock, or, in a database marked for testing only, the test clock.
create or replace function durable.current_time()
returns timestamptz
language plpgsql
stable
parallel safe
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_fake text := current_setting('durable.fake_now', true);
    v_test boolean;
    v_offset interval;
begin
    -- (a plain expression first: PL/pgSQL evaluates it without the executor, where one
    -- with a sub-select costs a query, about 20 us, at every call)
    if v_fake is null or v_fake = '' then
        return clock_timestamp();
    end if;
    -- any session can set durable.fake_now: it moves the clock only where the owner
    -- marked the database as a test database (durable.settings, see security.sql)
    select s.test_clock, s.test_clock_offset into v_test, v_offset from durable.settings s;
    if not coalesce(v_test, false) then
        return clock_timestamp();
    end if;
    -- 'shared': the database's shared test clock, which the test clock verbs move
    -- (plpgsql/test_clock.sql); any other value is the time itself
    if v_fake = 'shared' then
        return clock_timestamp() + v_offset;
    end if;
    return v_fake::timestamptz;
end;
$$;

comment on function durable.current_time() is
'The clock every durable verb uses: clock_timestamp(). In a test database (durable.settings.test_clock, set by the owner, e.g. durable migrate --test-clock) the setting durable.fake_now, when a session sets it, replaces it (tests move time with set_config(''durable.fake_now'', ...)); the value ''shared'' means the shared test clock of the database, clock_timestamp() + durable.settings.test_clock_offset, which durable.advance_test_clock and durable.skip_test_clock move; any other database ignores durable.fake_now.';

-- Whether the running statement began its transaction: a claim alone in its transaction, as
-- workers make it (an autocommit call: its transaction starts with the statement's first
-- protocol message, microseconds before the statement's own). The claim's maintenance
-- takes locks that others wait for until its commit only then (retention.sql's DDL,
-- ready.sql's raise): a claim inside a longer transaction would hold them to its end.
-- A BEGIN sent just before (within 5 ms) counts as the same.
create or replace function durable._alone_in_transaction()
returns boolean
language plpgsql
stable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return statement_timestamp() - transaction_timestamp() < interval '5 milliseconds';
end;
$$;

comment on function durable._alone_in_transaction() is
'Internal: true when the running statement began its transaction (within 5 ms): a claim alone in its transaction, as workers make it.';

-- The largest JSON payload (input, output, error, event result) accepted, in bytes.
create or replace function durable.max_payload_bytes()
returns integer
language plpgsql
immutable
parallel safe
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return 1048576;
end;
$$;

comment on function durable.max_payload_bytes() is
'Largest JSON payload (task input, output, error, step result) accepted, in bytes: 1 MiB. Larger ones fail with DU003.';

-- A time-ordered uuid (version 7 layout): index-friendly primary keys on PG 15 and 18.
create or replace function durable.uuidv7()
returns uuid
language plpgsql
volatile
parallel safe
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    -- microseconds since the epoch: 48 bits of milliseconds, then the version (7) and 12
    -- bits of the fraction of the millisecond (RFC 9562, method 3): ids created one after
    -- the other in one millisecond still sort in creation order, which the lock order
    -- (plpgsql/README.md: a task created now sorts after the tasks that exist) relies on
    v_us bigint := (extract(epoch from clock_timestamp()) * 1000000)::bigint;
begin
    return encode(
        substring(int8send(v_us / 1000) from 3)
        || int2send((28672 + (v_us % 1000) * 4096 / 1000)::smallint)
        -- random bits, with the variant bits of gen_random_uuid()
        || substring(uuid_send(gen_random_uuid()) from 9),
        'hex'
    )::uuid;
end;
$$;

comment on function durable.uuidv7() is
'A time-ordered uuid (version 7 layout): 48 bits of Unix time in milliseconds, then 12 bits of the fraction of the millisecond, then random bits; new task ids land at the right edge of their index and sort in creation order down to the microsecond.';

-- p_count uuidv7() ids in one statement, in creation order (one call for a batch: a call
-- of durable.uuidv7(), a SECURITY DEFINER function, costs about 10 us).
create or replace function durable._uuidv7s(p_count integer)
returns uuid[]
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return array(
        select encode(
                   substring(int8send(u.us / 1000) from 3)
                   || int2send((28672 + (u.us % 1000) * 4096 / 1000)::smallint)
                   || substring(uuid_send(gen_random_uuid()) from 9),
                   'hex'
               )::uuid
        from (
            select i, (extract(epoch from clock_timestamp()) * 1000000)::bigint as us
            from generate_series(1, p_count) as i
        ) as u
        order by u.i
    );
end;
$$;

comment on function durable._uuidv7s(integer) is
'Internal: p_count ids as durable.uuidv7() makes them, in one statement, in creation order.';

-- A time-ordered uuid larger than p_after: a child's id is larger than its parent's, so
-- that the lock order (oldest task first, see plpgsql/README.md) puts parents before
-- their children. uuidv7() already is, unless both fall in one millisecond.
create or replace function durable._uuidv7_after(p_after uuid)
returns uuid
language plpgsql
volatile
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_id uuid := durable.uuidv7();
    v_ms bigint;
begin
    if v_id > p_after then
        return v_id;
    end if;
    -- the millisecond after p_after's, with fresh random bits
    v_ms := ('x' || lpad(left(replace(p_after::text, '-', ''), 12), 16, '0'))::bit(64)::bigint + 1;
    return encode(
        set_bit(
            set_bit(
                overlay(uuid_send(gen_random_uuid()) placing substring(int8send(v_ms) from 3) from 1 for 6),
                52, 1
            ),
            53, 1
        ),
        'hex'
    )::uuid;
end;
$$;

comment on function durable._uuidv7_after(uuid) is
'Internal: a uuidv7 larger than p_after (the next millisecond''s when the clock has not moved past it): children get ids larger than their parents''.';

-- Raises DU003 when a payload is over the limit.
create or replace function durable._check_payload(p_value jsonb, p_what text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if pg_column_size(p_value) > durable.max_payload_bytes() then
        raise exception 'durable: % is % bytes, over the limit of % bytes',
            p_what, pg_column_size(p_value), durable.max_payload_bytes()
            using errcode = 'DU003';
    end if;
end;
$$;

comment on function durable._check_payload(jsonb, text) is
'Internal: raises DU003 when a JSON payload is larger than durable.max_payload_bytes().';

-- Raises DU003 when a reason (cancel, release) is longer than 2,000 characters.
create or replace function durable._check_reason(p_reason text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if length(p_reason) > 2000 then
        raise exception 'durable: a reason is at most 2000 characters, got %', length(p_reason)
            using errcode = 'DU003';
    end if;
end;
$$;

comment on function durable._check_reason(text) is
'Internal: raises DU003 when a reason (of a cancel, a release) is longer than 2,000 characters.';

-- Raises DU001 unless every key of an options object is one of the allowed ones.
create or replace function durable._check_keys(p_options jsonb, p_allowed text[], p_what text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_unknown text[];
begin
    if p_options is null or jsonb_typeof(p_options) <> 'object' then
        raise exception 'durable: % must be a JSON object, got %',
            p_what, coalesce(jsonb_typeof(p_options), 'null')
            using errcode = 'DU001';
    end if;
    -- (a plain expression first, which PL/pgSQL evaluates without a query: the options
    -- without the allowed keys are empty)
    if p_options - p_allowed = '{}'::jsonb then
        return;
    end if;
    select array_agg(durable._quote(k) order by k) into v_unknown
    from jsonb_object_keys(p_options) as k
    where k <> all(p_allowed);
    if v_unknown is not null then
        raise exception 'durable: unknown key(s) % in %',
            array_to_string(v_unknown[1:5], ', ') || case when cardinality(v_unknown) > 5
                then format(' and %s more', cardinality(v_unknown) - 5) else '' end,
            p_what
            using errcode = 'DU001',
                  hint = format('allowed keys: %s', array_to_string(p_allowed, ', '));
    end if;
end;
$$;

comment on function durable._check_keys(jsonb, text[], text) is
'Internal: raises DU001 when the options are not an object or hold a key outside the allowed list.';

-- A numeric option within bounds, or null when absent (JSON null counts as absent).
create or replace function durable._opt_number(
    p_options jsonb, p_key text, p_min double precision, p_max double precision,
    p_integer boolean default false
)
returns double precision
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_value jsonb := p_options -> p_key;
    v_number double precision;
    v_numeric numeric;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' then
        return null;
    end if;
    if jsonb_typeof(v_value) <> 'number' then
        raise exception 'durable: option "%" must be a number, got %', p_key, durable._quote(v_value::text)
            using errcode = 'DU001';
    end if;
    -- checked as numeric: a JSON number beyond double precision is out of range (DU001), not an overflow
    v_numeric := (v_value #>> '{}')::numeric;
    if p_integer and v_numeric <> trunc(v_numeric) then
        raise exception 'durable: option "%" must be a whole number, got %', p_key, durable._quote(v_value::text)
            using errcode = 'DU001';
    end if;
    if v_numeric < p_min::numeric or v_numeric > p_max::numeric then
        raise exception 'durable: option "%" must be between % and %, got %',
            p_key, p_min, p_max, durable._quote(v_value::text)
            using errcode = 'DU001';
    end if;
    v_number := round(v_numeric, 20)::double precision;
    return v_number;
end;
$$;

comment on function durable._opt_number(jsonb, text, double precision, double precision, boolean) is
'Internal: reads a numeric option, checking type and range (DU001); null when the key is absent.';

-- A string option, or null when absent.
create or replace function durable._opt_text(p_options jsonb, p_key text, p_max_length integer default 255)
returns text
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_value jsonb := p_options -> p_key;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' then
        return null;
    end if;
    if jsonb_typeof(v_value) <> 'string' or length(v_value #>> '{}') > p_max_length
        or not durable._name_ok(v_value #>> '{}') then
        raise exception 'durable: option "%" must be a string of 1 to % characters, without control or format characters or surrounding whitespace, got %',
            p_key, p_max_length, durable._quote(v_value::text)
            using errcode = 'DU001';
    end if;
    return v_value #>> '{}';
end;
$$;

comment on function durable._opt_text(jsonb, text, integer) is
'Internal: reads a string option (a name by durable._name_ok''s rules, at most p_max_length characters; DU001 otherwise); null when absent.';

-- A boolean option, or null when absent.
create or replace function durable._opt_bool(p_options jsonb, p_key text)
returns boolean
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_value jsonb := p_options -> p_key;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' then
        return null;
    end if;
    if jsonb_typeof(v_value) <> 'boolean' then
        raise exception 'durable: option "%" must be true or false, got %', p_key, durable._quote(v_value::text)
            using errcode = 'DU001';
    end if;
    return (v_value #>> '{}')::boolean;
end;
$$;

comment on function durable._opt_bool(jsonb, text) is
'Internal: reads a boolean option (DU001 when it is another JSON type); null when absent.';

-- A trace context option (README, "Tracing"): a JSON object of at most 8 carrier fields
-- (W3C traceparent, tracestate), each a name of at most 64 characters holding a string,
-- the whole at most 512 bytes as JSON text; null when absent, JSON null or {}.
create or replace function durable._opt_carrier(p_options jsonb, p_key text)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_value jsonb := p_options -> p_key;
begin
    if v_value is null or jsonb_typeof(v_value) = 'null' or v_value = '{}'::jsonb then
        return null;
    end if;
    if jsonb_typeof(v_value) <> 'object'
        or octet_length(v_value::text) > 512
        or (select count(*) from jsonb_object_keys(v_value)) > 8
        or exists (
            select 1 from jsonb_each(v_value) as f (k, v)
            where jsonb_typeof(f.v) <> 'string' or length(f.k) > 64 or not durable._name_ok(f.k)
        ) then
        raise exception 'durable: option "%" must be a JSON object of at most 8 string fields (such as traceparent, tracestate), at most 512 bytes, got %',
            p_key, durable._quote(left(v_value::text, 200))
            using errcode = 'DU001';
    end if;
    return v_value;
end;
$$;

comment on function durable._opt_carrier(jsonb, text) is
'Internal: reads a trace context option (a JSON object of at most 8 string fields named by durable._name_ok''s rules, at most 512 bytes; DU001 otherwise); null when absent or empty.';

-- Whether a text is a valid name (queue, task name, worker, event name or key,
-- concurrency or idempotency key): 1 to 255 characters, no control or format characters
-- (tab, newline, zero-width, bidi overrides, BOM, ...), no surrounding whitespace.
create or replace function durable._name_ok(p_value text)
returns boolean
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    return p_value is not null and length(p_value) between 1 and 255
        and p_value !~ (
            -- C0 and C1 controls, DEL, soft hyphen and the other format characters (Cf)
            '[\u0001-\u001f\u007f-\u009f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u180e\u200b-\u200f'
            || '\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000e0001\U000e0020-\U000e007f]'
            -- whitespace at either end
            || '|^[\s\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]|[\s\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]$'
        );
end;
$$;

comment on function durable._name_ok(text) is
'Internal: whether a name (queue, task name, worker, event name or key, concurrency or idempotency key) is 1 to 255 characters without control or format characters (tab, newline, zero-width, bidi overrides, BOM) and without whitespace at either end.';

-- What an error message shows of a text the caller sent: quoted, at most 100 characters.
create or replace function durable._quote(p_value text)
returns text
language plpgsql
immutable
parallel safe
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if p_value is null then
        return 'null';
    end if;
    if length(p_value) > 100 then
        return quote_literal(left(p_value, 100)) || format('... (%s characters)', length(p_value));
    end if;
    return quote_literal(p_value);
end;
$$;

comment on function durable._quote(text) is
'Internal: a caller''s text as an error message shows it: quoted, cut to its first 100 characters (with its length).';

-- Checks a name argument (see durable._name_ok).
create or replace function durable._check_name(p_value text, p_what text)
returns void
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
begin
    if not durable._name_ok(p_value) then
        raise exception 'durable: % must be 1 to 255 characters, without control or format characters or surrounding whitespace, got %',
            p_what, durable._quote(p_value)
            using errcode = 'DU001';
    end if;
end;
$$;

comment on function durable._check_name(text, text) is
'Internal: raises DU001 unless a name (queue, task name, worker, event name or key) is valid (durable._name_ok).';

-- Normalises a backoff policy to its full form, checking every field.
create or replace function durable._backoff_policy(p_backoff jsonb)
returns jsonb
language plpgsql
immutable
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_kind text;
begin
    perform durable._check_keys(p_backoff, array['kind', 'base', 'factor', 'max', 'delay', 'jitter'], 'backoff');
    v_kind := coalesce(durable._opt_text(p_backoff, 'kind'), 'exponential');
    if v_kind = 'exponential' then
        return jsonb_build_object(
            'kind', 'exponential',
            'base', coalesce(durable._opt_number(p_backoff, 'base', 0, 86400), 1),
            'factor', coalesce(durable._opt_number(p_backoff, 'factor', 1, 100), 2),
            'max', coalesce(durable._opt_number(p_backoff, 'max', 0, 31536000), 300),
            'jitter', coalesce(durable._opt_bool(p_backoff, 'jitter'), true)
        );
    elsif v_kind = 'fixed' then
        return jsonb_build_object(
            'kind', 'fixed',
            'delay', coalesce(durable._opt_number(p_backoff, 'delay', 0, 31536000), 1),
            'jitter', coalesce(durable._opt_bool(p_backoff, 'jitter'), false)
        );
    elsif v_kind = 'none' then
        return jsonb_build_object('kind', 'none');
    end if;
    raise exception 'durable: backoff kind must be exponential, fixed or none, got %', durable._quote(v_kind)
        using errcode = 'DU001';
end;
$$;

comment on function durable._backoff_policy(jsonb) is
'Internal: checks a backoff policy ({"kind":"exponential","base":1,"factor":2,"max":300,"jitter":true}, {"kind":"fixed","delay":5}, {"kind":"none"}) and fills in defaults.';

-- Seconds to wait before the retry that follows failure number p_failures (1-based).
create or replace function durable.backoff_delay(p_backoff jsonb, p_failures integer)
returns double precision
language plpgsql
volatile
security definer
set search_path = pg_catalog, durable, pg_temp
as $$
declare
    v_delay double precision;
    v_base double precision;
    v_max double precision;
    v_exponent integer;
begin
    case p_backoff ->> 'kind'
        when 'none' then
            return 0::double precision;
        when 'fixed' then
            v_delay := (p_backoff ->> 'delay')::double precision;
        else
            v_base := (p_backoff ->> 'base')::double precision;
            v_max := (p_backoff ->> 'max')::double precision;
            v_exponent := greatest(p_failures - 1, 0);
            -- compared in log space so that a large failure count cannot overflow
            if v_base <= 0 or v_max <= 0 then
                v_delay := 0;
            elsif ln(v_base) + v_exponent * ln((p_backoff ->> 'factor')::double precision) >= ln(v_max) then
                v_delay := v_max;
            else
                v_delay := v_base * power((p_backoff ->> 'factor')::double precision, v_exponent);
            end if;
    end case;
    if (p_backoff ->> 'jitter')::boolean then
        -- "equal jitter": between half and all of the delay
        v_delay := v_delay / 2 + random() * v_delay / 2;
    end if;
    return v_delay;
end;
$$;

comment on function durable.backoff_delay(jsonb, integer) is
'Seconds to wait before retrying after failure number p_failures under a normalised backoff policy: exponential is base * factor^(n-1) capped at max, fixed is delay, none is 0; jitter draws between half and all of it.';

grant execute on function durable.current_time() to durable_worker, durable_reader;
grant execute on function durable.max_payload_bytes() to durable_worker, durable_reader;
grant execute on function durable.uuidv7() to durable_worker, durable_reader;
grant execute on function durable.backoff_delay(jsonb, integer) to durable_worker, durable_reader;

"""durable.cron_next against croniter, a well-known Python cron library, as an oracle.

Thousands of random expressions (every field form: ``*``, values, ranges, steps ``*/n``,
``a-b/n`` and ``a/n``, lists, JAN-DEC and SUN-SAT names in any case, 7 for Sunday, the
macros) at random instants in random zones, then the same near the daylight-saving
transitions of several zones (New York, Berlin, Sydney, Lord Howe's half-hour shift,
Santiago, Chatham's 45-minute offset, Kolkata, UTC), then chains of firings (each
``after`` the previous firing, to check "strictly after"). Each batch is one SQL round
trip (``unnest`` of arrays).

How the oracle gets the documented semantics out of croniter:

* croniter runs on *naive local wall time* (no zone), from the wall-clock minute of
  ``after`` in the zone: it enumerates the wall times the expression matches. Each wall
  time is mapped to an instant with zoneinfo by the documented DST rules, applied here
  explicitly (croniter's own zone handling is not used): a wall time that exists once is
  its instant; one that occurs twice (fall-back) is its first occurrence (``fold=0``);
  one that does not exist (spring-forward gap) is the first instant after the gap (the
  transition, found by bisection on the zone's UTC offset). The first of these instants
  strictly after ``after`` is the expected answer.
* The day rule is Vixie cron's: either day field matches when neither the day-of-month
  nor the day-of-week field starts with ``*``, else both must (croniter's ``day_or``
  is set accordingly: croniter on its own treats ``*/2`` as restricted).
* croniter reads a range whose two ends are equal (``11-11``, ``12-DEC``, ``7-7/1``) as
  ``*``; the oracle hands it the single value instead (``for_croniter``).
* Days of month above 28 are generated only with every month (``0 0 30 2 *`` never
  fires, and cron_next refuses it: tests/sql/test_schedules_cron.sql).

The sizes are in ``SIZES`` (asserted, so the report's numbers are the ones run).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from croniter import croniter  # type: ignore[import-untyped]

SEED = 17
#: (expressions, instants per expression) of each part
SIZES = {"random": (2000, 4), "dst": (1500, 4), "chains": (400, 6)}
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Chatham",
    "Asia/Kolkata",
]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MACROS = ["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"]


def _value(rng: random.Random, lo: int, hi: int, names: Sequence[str], base: int) -> tuple[int, str]:
    """A value in lo..hi, as a number or (names[v - base]) a name in any case."""
    v = rng.randint(lo, hi)
    if names and rng.random() < 0.4 and v - base < len(names):
        name = names[v - base]
        return v, rng.choice([name, name.upper(), name.capitalize()])
    return v, str(v)


def _item(rng: random.Random, lo: int, hi: int, names: Sequence[str], top: int) -> str:
    """One non-* item of a field whose values are lo..hi (top: the largest value a
    range may end with, 7 for the day of week)."""
    kind = rng.random()
    size = hi - lo + 1
    if kind < 0.4:
        return _value(rng, lo, top, names, lo)[1]
    if kind < 0.65:
        a, ta = _value(rng, lo, top, names, lo)
        tb = _value(rng, a, top, names, lo)[1]
        return f"{ta}-{tb}"
    if kind < 0.85:
        a, ta = _value(rng, lo, top, names, lo)
        b = rng.randint(a, top)
        return f"{ta}-{b}/{rng.randint(1, max(1, size // 2))}"
    a = rng.randint(lo, hi)
    return f"{a}/{rng.randint(1, max(1, size // 2))}"


def _field(rng: random.Random, lo: int, hi: int, names: Sequence[str] = (), top: int | None = None) -> str:
    kind = rng.random()
    if kind < 0.35:
        return "*"
    if kind < 0.5:
        return f"*/{rng.randint(1, hi - lo + 1)}"
    n = 1 if kind < 0.8 else rng.randint(2, 4)
    return ",".join(_item(rng, lo, hi, names, hi if top is None else top) for _ in range(n))


def random_expression(rng: random.Random, dense: bool = False) -> str:
    """A random valid 5-field expression (or a macro); dense: every day, the early hours
    (where the transitions are) and minute lists that fall in the gap."""
    if rng.random() < 0.04:
        return rng.choice(MACROS)
    minute = _field(rng, 0, 59)
    hour = _field(rng, 0, 23)
    if dense:
        hour = rng.choice(["*", "0-4", "1,2,3", "2", "1-3/1", "*/2", hour])
        if rng.random() < 0.6:
            return f"{minute} {hour} * * *"
    month = _field(rng, 1, 12, MONTHS)
    dom = _field(rng, 1, 28)
    if month == "*" and rng.random() < 0.3:
        dom = rng.choice(["29", "30", "31", "29-31", "15,31", "*/10"])
    dow = _field(rng, 0, 6, DAYS, top=7)
    return f"{minute} {hour} {dom} {month} {dow}"


def _offset(zone: ZoneInfo, at: datetime) -> timedelta:
    off = at.astimezone(zone).utcoffset()
    assert off is not None
    return off


def fire_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall time fires at, by the documented DST rules."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        if second.astimezone(zone).replace(tzinfo=None) == wall:
            return min(first, second)
        return first
    if second.astimezone(zone).replace(tzinfo=None) == wall:
        return second
    # in the gap: the transition lies between the two readings
    lo, hi = int(min(first, second).timestamp()), int(max(first, second).timestamp())
    after_gap = _offset(zone, datetime.fromtimestamp(hi, UTC))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(zone, datetime.fromtimestamp(mid, UTC)) == after_gap:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _number(token: str, names: Sequence[str], base: int) -> int:
    return names.index(token) + base if token in names else int(token)


def for_croniter(expr: str) -> str:
    """The expression with each range whose ends are equal written as its one value."""
    fields = expr.lower().split()
    if len(fields) != 5:
        return expr.lower()
    named = {3: (MONTHS, 1), 4: (DAYS, 0)}
    out = []
    for i, field in enumerate(fields):
        names, base = named.get(i, ((), 0))
        items = []
        for item in field.split(","):
            bounds = item.split("/")[0].split("-")
            if len(bounds) == 2 and _number(bounds[0], names, base) == _number(bounds[1], names, base):
                item = bounds[0]
            items.append(item)
        out.append(",".join(items))
    return " ".join(out)


def expected_next(expr: str, tz: str, after: datetime) -> datetime:
    zone = ZoneInfo(tz)
    start = after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
    fields = expr.split()
    day_or = len(fields) == 5 and not (fields[2].startswith("*") or fields[4].startswith("*"))
    it = croniter(for_croniter(expr), start, day_or=day_or)
    for _ in range(5000):
        wall: datetime = it.get_next(datetime)
        at = fire_instant(wall, zone)
        if at > after:
            return at
    raise AssertionError(f"no firing found for {expr!r} in {tz} after {after}")


def transitions(tz: str, years: range) -> list[datetime]:
    """The instants (to the second) where the zone's UTC offset changes."""
    zone = ZoneInfo(tz)
    found = []
    day = datetime(years.start, 1, 1, tzinfo=UTC)
    end = datetime(years.stop, 1, 1, tzinfo=UTC)
    while day < end:
        nxt = day + timedelta(days=1)
        if _offset(zone, day) != _offset(zone, nxt):
            lo, hi = int(day.timestamp()), int(nxt.timestamp())
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, datetime.fromtimestamp(mid, UTC)) == _offset(zone, day):
                    lo = mid
                else:
                    hi = mid
            found.append(datetime.fromtimestamp(hi, UTC))
        day = nxt
    return found


def random_instant(rng: random.Random) -> datetime:
    at = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 40 * 365 * 86400))
    kind = rng.random()
    if kind < 0.3:
        return at  # on a whole second
    if kind < 0.5:
        return at.replace(second=0)  # on a whole minute
    return at + timedelta(microseconds=rng.randint(1, 999999))


def cron_next_many(
    conn: psycopg.Connection[Any], cases: Sequence[tuple[str, str, datetime]]
) -> list[datetime | None]:
    rows = conn.execute(
        "select durable.cron_next(u.e, u.z, u.a)"
        " from unnest(%s::text[], %s::text[], %s::timestamptz[]) with ordinality as u (e, z, a, ord)"
        " order by u.ord",
        ([c[0] for c in cases], [c[1] for c in cases], [c[2] for c in cases]),
    ).fetchall()
    return [r[0] for r in rows]


def check(conn: psycopg.Connection[Any], cases: Sequence[tuple[str, str, datetime]]) -> list[datetime]:
    got = cron_next_many(conn, cases)
    wanted = [expected_next(*c) for c in cases]
    wrong = [(c, g, w) for c, g, w in zip(cases, got, wanted, strict=True) if g != w]
    assert not wrong, f"{len(wrong)} of {len(cases)} differ, e.g. (expr, tz, after), got, wanted: {wrong[:5]}"
    return wanted


def test_random_expressions_at_random_instants(db_url: str) -> None:
    rng = random.Random(SEED)
    n_expr, n_at = SIZES["random"]
    cases = []
    for _ in range(n_expr):
        expr, tz = random_expression(rng), rng.choice(ZONES)
        cases += [(expr, tz, random_instant(rng)) for _ in range(n_at)]
    with psycopg.connect(db_url, autocommit=True) as conn:
        check(conn, cases)
    assert len(cases) == n_expr * n_at == 8000


def test_instants_near_daylight_saving_transitions(db_url: str) -> None:
    rng = random.Random(SEED + 1)
    near = {tz: transitions(tz, range(2020, 2036)) for tz in ZONES if tz not in ("UTC", "Asia/Kolkata")}
    assert all(len(t) >= 20 for t in near.values()), {tz: len(t) for tz, t in near.items()}
    n_expr, n_at = SIZES["dst"]
    cases = []
    for _ in range(n_expr):
        expr, tz = random_expression(rng, dense=True), rng.choice(list(near))
        for _ in range(n_at):
            at = rng.choice(near[tz]) + timedelta(seconds=rng.randint(-3 * 3600, 3 * 3600))
            if rng.random() < 0.3:
                at = at.replace(second=0)
            cases.append((expr, tz, at))
    with psycopg.connect(db_url, autocommit=True) as conn:
        check(conn, cases)
    assert len(cases) == n_expr * n_at == 6000


def test_chains_of_firings(db_url: str) -> None:
    """Each instant is the previous firing: the next one is strictly after it."""
    rng = random.Random(SEED + 2)
    n_expr, n_steps = SIZES["chains"]
    starts = []
    for i in range(n_expr):
        tz = ZONES[i % len(ZONES)]
        trans = transitions(tz, range(2026, 2027)) if tz not in ("UTC", "Asia/Kolkata") else []
        at = (rng.choice(trans) - timedelta(hours=2)) if trans else random_instant(rng)
        starts.append((random_expression(rng, dense=i % 2 == 0), tz, at))
    cases = starts
    with psycopg.connect(db_url, autocommit=True) as conn:
        for _ in range(n_steps):
            nexts = check(conn, cases)
            cases = [(e, tz, at) for (e, tz, _), at in zip(cases, nexts, strict=True)]
    assert len(starts) * n_steps == 2400

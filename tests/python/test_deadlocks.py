"""A randomized deadlock test: sessions run random mixes of batch verbs on overlapping rows.

Eight threads run random verb calls for a bounded time (``DURABLE_DEADLOCK_SECONDS``,
default 20) on three queues: a plain one, a limited round_robin one and one with the
strategy cancel_in_progress. Worker verbs go through the worker role, the others through
the client role (producer and operator). Every call is a transaction of its own
(autocommit): whatever deadlocks, deadlocks inside one verb against another.

The rows overlap on purpose:

* durable tasks (``node``) spawn children across the queues (one ``durable.spawn`` per
  child, as ``ctx.spawn`` does), which spawn their own; each then waits for its children
  (``durable.wait_children``), for an event key (``durable.wait_event``), or for nothing;
* claimed attempts go into one pool shared by every thread, so ``complete_many`` batches
  (shuffled: children of several parents, at times tasks of another thread's batch) and
  ``fail`` race each other, the advances of the same tasks, and the claims that reclaim
  their leases (1 or 2 s; some claims run on the test clock a few seconds ahead, so they
  reclaim every lease about to run out);
* ``enqueue_many`` batches draw their idempotency keys from one small pool that moves on
  now and then, shuffled (two batches insert the same fresh keys in different orders),
  their concurrency keys from three (round_robin tags, cancel strategies) and the debounce
  keys of some leaves from three (a batch updates the pending leaf of a key, or creates it);
* ``cancel`` hits roots and children of trees whose nodes complete, fail, spawn and wait;
* ``emit_event`` targets the queues' active keys and the keys tasks wait for; a child and
  its own children often wait for one key (the child's "family" key);
* ``create_queue`` switches the limited queue between round_robin and queue (leaving
  round_robin rewrites the tags of its unfinished tasks) and changes the cancel queue's
  key limit and strategy, while claims reclaim there;
* pile-ups force the races the random mix meets too rarely: a session holds one task row
  for a few milliseconds (the superuser, FOR UPDATE SKIP LOCKED: it never waits, so it is
  never part of a deadlock) while two calls that need it start at once (an emit of a
  family's key and a cancel of its tree; completions of a parent's children and a cancel
  of the parent; two batches with children of two parents in opposite orders; a claim
  that reclaims and an option change of its queue; or any two). When it lets go, the
  order in which each call takes its other locks meets the other's. One more thread
  does the same with single rows all along, in the background.

Any DU error (DU001..DU022: a lease lost, an invalid transition, a call after a
non-determinism...) is an acceptable outcome of a race, and so is a non-determinism (a
verb's ``{"nondeterminism": ...}`` answer, which fails the task: two threads advanced one
task differently, or a completion of an attempt that did not present its history). A
deadlock (40P01) is not, not one, nor is any other error: a lock wait longer than ``lock_timeout``
(55P03) or a statement that outlives ``statement_timeout`` (57014) counts as a hang, and
so does a thread that does not stop. The run must also have done real work (completions,
cancels, emits that woke tasks, parents woken by their children, reclaimed leases, option
changes, idempotent enqueues), and it must end with no lost wake-up: no task still
waiting for children that all ended, or for an event key that was emitted.

The seed (``DURABLE_DEADLOCK_SEED``, else random) is printed and named in the failure;
the interleavings are not reproducible, the random choices are. Which operations
deadlocked is reported from the pids in the error's detail, matched to what each session
was running at the time, with where the victim waited.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import re
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg.types.json import Jsonb

PLAIN = "fz_plain"
LIMITED = "fz_rr"
CANCELLING = "fz_cancel"
QUEUES = (PLAIN, LIMITED, CANCELLING)
QUEUE_OPTIONS: dict[str, dict[str, Any]] = {
    PLAIN: {"max_attempts": 2, "max_lost_leases": 1, "backoff": {"kind": "none"}, "timeout": 3},
    LIMITED: {
        "max_attempts": 2,
        "max_lost_leases": 1,
        "backoff": {"kind": "none"},
        "concurrency_limit": 12,
        "concurrency_key_limit": 4,
        "concurrency_strategy": "round_robin",
    },
    CANCELLING: {
        "max_attempts": 2,
        "max_lost_leases": 1,
        "backoff": {"kind": "none"},
        "concurrency_strategy": "cancel_in_progress",
        "concurrency_key_limit": 2,
    },
}
LIMITED_QUEUES = (LIMITED, CANCELLING)
CONCURRENCY_KEYS = ("ck0", "ck1", "ck2")
#: debounce keys of some leaves (enqueue_many)
DEBOUNCE_KEYS = ("dk0", "dk1", "dk2")

THREADS = 8
RUN_SECONDS = float(os.environ.get("DURABLE_DEADLOCK_SECONDS", "20"))
#: a lock wait this long is a hang (55P03), not a race; a statement this long too (57014)
LOCK_TIMEOUT = "15s"
STATEMENT_TIMEOUT = "30s"
#: after the run, how long the threads get to finish their last call
JOIN_SECONDS = 45.0
#: claimed tasks kept in the shared pool at most; claims pause above it
POOL_LIMIT = 120
#: event keys waited for at once per queue (children and grandchildren share them)
ACTIVE_KEYS = 3
#: idempotency keys of one generation of the shared pool
IDEMPOTENCY_KEYS = 10

#: (operation, weight)
OPERATIONS: tuple[tuple[str, int], ...] = (
    ("claim", 18),
    ("claim_ahead", 1),
    ("advance", 22),
    ("complete_many", 16),
    ("fail", 3),
    ("enqueue_many", 12),
    ("cancel", 8),
    ("emit_event", 6),
    ("create_queue", 4),
    ("pileup", 6),
)

#: what a race may legitimately answer: the durable SQLSTATEs (class DU)
ACCEPTED_CLASS = "DU"
DEADLOCK = "40P01"
HANGS = {"55P03": "lock_timeout", "57014": "statement_timeout"}


# ------------------------------------------------------------------ the plans of durable tasks


def make_plan(rng: random.Random, depth: int, queue: str) -> dict[str, Any]:
    """What a ``node`` task does: spawn these children (queue, concurrency key, their own
    plans), then wait for them, for an event key, or for nothing."""
    spawn: list[dict[str, Any]] = []
    if depth == 0:
        count = rng.randint(2, 5)
    elif depth == 1:
        count = rng.choice((0, 1, 1, 2))
    else:
        count = 0
    for _ in range(count):
        if depth == 1 and rng.random() < 0.7:
            child_queue = queue  # grandchildren mostly share their parent's queue, so its event keys
        else:
            child_queue = rng.choices(QUEUES, weights=(4, 3, 3))[0]
        spec: dict[str, Any] = {"q": child_queue, "plan": make_plan(rng, depth + 1, child_queue)}
        if child_queue in LIMITED_QUEUES:
            spec["ck"] = rng.choice(CONCURRENCY_KEYS)
        spawn.append(spec)
    if depth == 0:
        wait = rng.choices(("children", "event", "none"), weights=(7, 2, 1))[0]
    elif spawn:
        wait = rng.choices(("children", "event", "none"), weights=(3, 6, 1))[0]
    else:
        wait = rng.choices(("event", "none"), weights=(7, 3))[0]
    return {"depth": depth, "spawn": spawn, "wait": wait}


@dataclass
class Held:
    """A claimed attempt in the shared pool: what its code has done so far."""

    task_id: uuid.UUID
    token: uuid.UUID
    queue: str
    durable: bool
    plan: dict[str, Any] | None
    #: events recorded in its history (the next call is seq = events + 1)
    events: int
    spawned: list[uuid.UUID]
    waited: bool
    expires: float

    def ready(self) -> bool:
        """Whether its code has nothing left to do but complete."""
        if not self.durable or self.plan is None:
            return True
        return len(self.spawned) >= len(self.plan["spawn"]) and (self.waited or self.plan["wait"] == "none")


def held_from_claim(row: tuple[Any, ...], queue: str, lease: float, ahead: float) -> Held:
    task_id, token, is_durable, task_input, history = row
    events = list(history or [])
    plan = task_input.get("plan") if isinstance(task_input, dict) else None
    spawned = [uuid.UUID(e["result"]["task_id"]) for e in events if e["kind"] == "spawn"]
    waited = any(e["kind"] in ("wait", "children") for e in events)
    return Held(
        task_id=task_id,
        token=token,
        queue=queue,
        durable=bool(is_durable),
        plan=plan,
        events=len(events),
        spawned=spawned,
        waited=waited,
        expires=time.monotonic() + ahead + lease,
    )


def presented(h: Held, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the code of ``h`` did at its recorded events, as ``durable.replay_check`` takes it:
    its spawns (the plan's, in order), then its wait (for the children it spawned, or for the
    key it drew)."""
    assert h.plan is not None
    calls: list[dict[str, Any]] = []
    spawns = 0
    for e in history:
        call = {"seq": e["seq"], "kind": e["kind"], "name": e["name"]}
        if e["kind"] == "spawn":
            spec = h.plan["spawn"][spawns]
            call |= {"queue": spec["q"], "input": {"plan": spec["plan"]}}
            spawns += 1
        elif e["kind"] == "children":
            call["children"] = [str(c) for c in h.spawned[:spawns]]
        calls.append(call)
    return calls


# ------------------------------------------------------------------ what every thread shares


@dataclass
class Failure:
    """A call that ended in an error no race explains (or a deadlock)."""

    op: str
    pid: int
    at: float
    sqlstate: str | None
    message: str
    detail: str
    where: str


@dataclass
class World:
    """The state shared by the threads (under ``lock``) and what they counted."""

    seed: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: dict[uuid.UUID, Held] = field(default_factory=dict)
    #: nodes of the trees by depth (0 roots, 1 children, 2 grandchildren), most recent last
    nodes: dict[int, list[uuid.UUID]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    #: child -> parent, for the spawns this test made
    parent_of: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)
    #: (task, queue, key) of the latest waits for an event that suspended
    waiters: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)
    keys: dict[str, list[str]] = field(default_factory=dict)
    key_serial: int = 0
    idempotency_generation: int = 0
    #: per backend pid: (start, end or None, operation) of every call, for the deadlock report
    calls: dict[int, list[tuple[float, float | None, str]]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    #: seconds spent in calls, by operation
    seconds: dict[str, float] = field(default_factory=dict)
    accepted: Counter[str] = field(default_factory=Counter)
    deadlocks: list[Failure] = field(default_factory=list)
    unexpected: list[Failure] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for queue in QUEUES:
            self.keys[queue] = [self._new_key(queue) for _ in range(ACTIVE_KEYS)]

    def _new_key(self, queue: str) -> str:
        self.key_serial += 1
        return f"{queue}:ev{self.key_serial}"

    def count(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    # the pool of claimed attempts

    def add_held(self, entries: list[Held]) -> None:
        with self.lock:
            for entry in entries:
                self.held[entry.task_id] = entry

    def pick_held(self, rng: random.Random, k: int, ready: bool | None) -> list[Held]:
        """Up to k attempts of the pool (copies), ready to complete or not (None: either)."""
        with self.lock:
            now = time.monotonic()
            for task_id in [t for t, h in self.held.items() if h.expires < now - 3]:
                del self.held[task_id]  # long lost: a claim reclaims it
            # mostly attempts whose lease still runs (the others answer lease_lost)
            live = rng.random() < 0.85
            pool = [
                h
                for h in self.held.values()
                if (ready is None or h.ready() == ready) and (not live or h.expires > now + 0.2)
            ]
            chosen = rng.sample(pool, min(k, len(pool)))
            return [dataclasses.replace(h, spawned=list(h.spawned)) for h in chosen]

    def update_held(self, entry: Held) -> None:
        """What a call recorded; the furthest state wins (two threads may advance one task)."""
        with self.lock:
            current = self.held.get(entry.task_id)
            if current is None or current.token != entry.token or current.events > entry.events:
                return
            self.held[entry.task_id] = entry

    def drop_held(self, task_ids: list[uuid.UUID]) -> None:
        with self.lock:
            for task_id in task_ids:
                self.held.pop(task_id, None)

    def pool_size(self) -> int:
        with self.lock:
            return len(self.held)

    # the trees

    def add_nodes(self, depth: int, task_ids: list[uuid.UUID], parent: uuid.UUID | None = None) -> None:
        with self.lock:
            nodes = self.nodes[min(depth, 2)]
            nodes.extend(task_ids)
            del nodes[:-200]
            if parent is not None:
                for task_id in task_ids:
                    self.parent_of[task_id] = parent

    def add_waiter(self, task_id: uuid.UUID, queue: str, key: str) -> None:
        with self.lock:
            self.waiters.append((task_id, queue, key))
            del self.waiters[:-50]

    def parent(self, task_id: uuid.UUID) -> uuid.UUID | None:
        with self.lock:
            return self.parent_of.get(task_id)

    def family(self, rng: random.Random) -> tuple[uuid.UUID, str, str] | None:
        """(parent, queue, key): a task that waits for a key one of its children waits for."""
        with self.lock:
            waiting = set(self.waiters)
            families = [
                (parent, queue, key)
                for child, queue, key in self.waiters
                if (parent := self.parent_of.get(child)) is not None and (parent, queue, key) in waiting
            ]
            return rng.choice(families) if families else None

    def held_children(self, rng: random.Random, parents: int) -> list[tuple[uuid.UUID, list[Held]]]:
        """Up to ``parents`` parents with children in the pool, ready to complete, each with
        those children (copies)."""
        with self.lock:
            now = time.monotonic()
            by_parent: dict[uuid.UUID, list[Held]] = {}
            for h in self.held.values():
                parent = self.parent_of.get(h.task_id)
                if parent is not None and h.ready() and h.expires > now + 0.2:
                    by_parent.setdefault(parent, []).append(dataclasses.replace(h, spawned=list(h.spawned)))
            chosen = rng.sample(sorted(by_parent), min(parents, len(by_parent)))
            return [(p, by_parent[p]) for p in chosen]

    def block_target(self, rng: random.Random) -> uuid.UUID | None:
        """A task row worth holding: a parent (children end through it), a task waiting for an
        event (emits and cancels lock it), or an attempt of the pool."""
        with self.lock:
            which = rng.random()
            if which < 0.4 and self.parent_of:
                return rng.choice(list(self.parent_of.values())[-100:])
            if which < 0.7 and self.waiters:
                return rng.choice(self.waiters)[0]
            return rng.choice(list(self.held)) if self.held else None

    def cancel_target(self, rng: random.Random) -> uuid.UUID | None:
        """A root or a child of a tree, at times the parent or grandparent of a task that
        waits for an event (a cancel of its tree then races the emit that wakes it)."""
        with self.lock:
            if self.waiters and rng.random() < 0.3:
                task_id = rng.choice(self.waiters)[0]
                for _ in range(rng.choice((1, 2))):
                    task_id = self.parent_of.get(task_id, task_id)
                return task_id
            depth = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
            recent = self.nodes[depth][-40:] or self.nodes[0][-40:]
            return rng.choice(recent) if recent else None

    # event keys

    def wait_key(self, rng: random.Random, task_id: uuid.UUID, depth: int, queue: str) -> str:
        """The key a task waits for: often its family's (a child's own key, which that
        child's children wait for too, as an approval of a subtree would be), else one of
        the queue's active keys."""
        with self.lock:
            if depth == 1 and rng.random() < 0.5:
                return f"family:{task_id}"
            parent = self.parent_of.get(task_id)
            if depth == 2 and parent is not None and rng.random() < 0.7:
                return f"family:{parent}"
            return rng.choice(self.keys[queue])

    def emit_key(self, rng: random.Random) -> tuple[str, str]:
        """A queue and a key that tasks of the queue may wait for: at times one a task waits
        for now, else one of the queue's active keys."""
        with self.lock:
            if self.waiters and rng.random() < 0.25:
                _, queue, key = rng.choice(self.waiters)
                return queue, key
            queue = rng.choices(QUEUES, weights=(4, 3, 3))[0]
            return queue, rng.choice(self.keys[queue])

    def emitted(self, rng: random.Random, queue: str, key: str) -> None:
        """After an emit: its waiters are woken; an emitted key is a latch (later waits for it
        do not suspend), so an active key is replaced by a fresh one, half the time."""
        with self.lock:
            self.waiters = [w for w in self.waiters if w[1:] != (queue, key)]
            keys = self.keys[queue]
            if key in keys and rng.random() < 0.5:
                keys[keys.index(key)] = self._new_key(queue)

    def idempotency_keys(self, rng: random.Random, k: int) -> list[str]:
        """k keys of the current generation of the shared pool, in a random order; the pool
        moves on a quarter of the time, so that fresh keys are inserted concurrently."""
        with self.lock:
            generation = self.idempotency_generation
            if rng.random() < 0.25:
                self.idempotency_generation += 1
        return [f"idem-{generation}-{i}" for i in rng.sample(range(IDEMPOTENCY_KEYS), k)]

    # calls, for the report

    def call_started(self, pid: int, op: str) -> None:
        with self.lock:
            self.calls.setdefault(pid, []).append((time.monotonic(), None, op))

    def call_ended(self, pid: int) -> None:
        with self.lock:
            start, _, op = self.calls[pid][-1]
            end = time.monotonic()
            self.calls[pid][-1] = (start, end, op)
            self.seconds[op] = self.seconds.get(op, 0.0) + end - start

    def op_of(self, pid: int, at: float) -> str:
        """The call session ``pid`` was making at ``at`` (its partner in a deadlock stays
        blocked until the victim's error, so that call ends no sooner than that)."""
        for start, end, op in self.calls.get(pid, []):
            if start <= at and (end is None or end >= at - 0.05):
                return op
        return f"pid {pid} (not a session of this test)" if pid not in self.calls else f"pid {pid} (?)"


# ------------------------------------------------------------------ one thread

#: the operations a client-role connection runs (the others: the worker role)
CLIENT_OPS = ("enqueue_many", "cancel", "emit_event", "create_queue")


def sort_out(world: World, op: str, pid: int, exc: psycopg.Error) -> None:
    """Counts an error a race explains (a DU SQLSTATE); records any other, deadlocks apart."""
    state = exc.sqlstate
    if state is not None and state.startswith(ACCEPTED_CLASS):
        with world.lock:
            world.accepted[f"{op}: {state}"] += 1
        return
    diag = exc.diag
    context = diag.context or ""
    # what it waited for (the context's first line: 'while locking tuple (0,5) in relation
    # "tasks"'), then the innermost functions
    waited = re.sub(r" \(\d+,\d+\)", "", context.splitlines()[0]) if context.startswith("while ") else ""
    functions = re.findall(r"PL/pgSQL function (\S+?)(?:\(.*?\))? line (\d+)", context)
    where = " < ".join(f"{name} line {line}" for name, line in functions[:3]) or context[:200]
    failure = Failure(
        op=op,
        pid=pid,
        at=time.monotonic(),
        sqlstate=state,
        message=diag.message_primary or str(exc),
        detail=diag.message_detail or "",
        where=f"{waited}: {where}" if waited else where,
    )
    with world.lock:
        (world.deadlocks if state == DEADLOCK else world.unexpected).append(failure)


class Session(threading.Thread):
    """One thread: random operations until the deadline, each one verb call in a transaction
    of its own; two connections of each role (a pile-up runs two calls at once) and one of
    the superuser (to hold the row a pile-up gathers on)."""

    def __init__(self, world: World, index: int, urls: dict[str, str], deadline: float) -> None:
        super().__init__(name=f"fuzz-{index}", daemon=True)
        self.world = world
        self.rng = random.Random(world.seed * 1000 + index)
        self.urls = urls
        self.deadline = deadline
        self.current = ""
        self.workers: list[psycopg.Connection[Any]] = []
        self.clients: list[psycopg.Connection[Any]] = []

    def run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                for _ in range(2):
                    self.workers.append(stack.enter_context(connect(self.urls["worker"])))
                    self.clients.append(stack.enter_context(connect(self.urls["client"])))
                self.admin = stack.enter_context(connect(self.urls["admin"]))
                names = [op for op, _ in OPERATIONS]
                weights = [w for _, w in OPERATIONS]
                while time.monotonic() < self.deadline:
                    op = self.resolve(self.rng.choices(names, weights=weights)[0])
                    if op == "pileup":
                        self.pileup()
                    else:
                        self.call(op, 0, self.rng, {})
        except Exception:
            with self.world.lock:
                self.world.harness_errors.append(
                    f"{self.name} during {self.current}: {traceback.format_exc()}"
                )

    def resolve(self, op: str) -> str:
        """The operation to run: a claim when there is nothing to advance, a completion
        when the pool is full."""
        if op == "advance" and not self.world.pick_held(self.rng, 1, ready=False):
            op = "claim"
        if op in ("claim", "claim_ahead") and self.world.pool_size() >= POOL_LIMIT:
            op = "complete_many"
        return op

    def call(self, op: str, slot: int, rng: random.Random, args: dict[str, Any]) -> None:
        """Runs one operation on the connection ``slot`` of its role; sorts out its error."""
        self.current = op
        conn = (self.clients if op in CLIENT_OPS else self.workers)[slot]
        pid = conn.info.backend_pid
        self.world.call_started(pid, op)
        try:
            getattr(self, f"op_{op}")(conn, rng, **args)
            self.world.count(f"{op}: ok")
        except psycopg.Error as exc:
            if conn.broken or conn.closed:
                raise
            sort_out(self.world, op, pid, exc)
        finally:
            self.world.call_ended(pid)

    # -------------------------------------------------------------- pile-ups

    def pileup(self) -> None:
        """Two calls at once on rows they share, queued behind a row this session holds for a
        few milliseconds (FOR UPDATE SKIP LOCKED: the holder never waits, so it is never part
        of a deadlock): when it lets go, whatever order each call takes its other locks in
        meets the other's. This is how a race is forced, not a sleep that hides one: the
        calls run on while it sleeps, and nothing waits for their results."""
        scenario, target, calls = self.plan_pileup(self.rng)
        if target is None or not calls:
            return
        helpers: list[threading.Thread] = []
        with self.admin.transaction():
            held = self.admin.execute(
                "select 1 from durable.tasks where task_id = %s for update skip locked", (target,)
            ).fetchone()
            if held is None:
                return  # another call has the row: no pile-up this time
            for slot, (op, args) in enumerate(calls):
                rng = random.Random(self.rng.random())
                helpers.append(
                    threading.Thread(target=self.helper, args=(op, slot, rng, args), name=f"{self.name}-{op}")
                )
            for helper in helpers:
                helper.start()
            time.sleep(self.rng.uniform(0.02, 0.05))
        for helper in helpers:
            helper.join(JOIN_SECONDS)
            if helper.is_alive():
                raise RuntimeError(f"pile-up {scenario}: {helper.name} did not end in {JOIN_SECONDS:g} s")
        self.world.count(f"pile-up: {scenario}")

    def helper(self, op: str, slot: int, rng: random.Random, args: dict[str, Any]) -> None:
        try:
            self.call(op, slot, rng, args)
        except Exception:
            with self.world.lock:
                self.world.harness_errors.append(f"{self.name} pile-up {op}: {traceback.format_exc()}")

    def plan_pileup(
        self, rng: random.Random
    ) -> tuple[str, uuid.UUID | None, list[tuple[str, dict[str, Any]]]]:
        """(scenario, the row to hold, the two calls)."""
        world = self.world
        scenario = rng.choice(
            ("emit x cancel", "complete x cancel", "complete x complete", "claim x options")
        )
        calls: list[tuple[str, dict[str, Any]]] = []
        target: uuid.UUID | None = None
        if scenario == "emit x cancel":
            # a task and its own child waiting for one key: the emit wakes (locks) both, a
            # cancel of the tree cancels (locks) both (on the code before issue 10, in
            # opposite orders)
            family = world.family(rng)
            if family is not None:
                parent, queue, key = family
                target = parent
                calls = [
                    ("emit_event", {"queue": queue, "key": key}),
                    ("cancel", {"target": rng.choice((parent, world.parent(parent) or parent))}),
                ]
        elif scenario == "complete x cancel":
            # children of a parent complete while a cancel of its tree runs
            children = world.held_children(rng, 1)
            if children:
                parent, batch = children[0]
                target = parent
                calls = [
                    ("complete_many", {"batch": batch + world.pick_held(rng, 3, ready=True)}),
                    ("cancel", {"target": rng.choice((parent, world.parent(parent) or parent))}),
                ]
        elif scenario == "complete x complete":
            # two batches with children of the same parents, in opposite orders
            children = world.held_children(rng, 2)
            if len(children) == 2:
                (p1, b1), (p2, b2) = children
                target = rng.choice((p1, p2))
                first = b1[: len(b1) // 2 + 1] + b2[: len(b2) // 2 + 1]
                second = b2[len(b2) // 2 + 1 :] + b1[len(b1) // 2 + 1 :]
                calls = [
                    ("complete_many", {"batch": first}),
                    ("complete_many", {"batch": second or first[::-1]}),
                ]
        else:
            # an option change of the limited queue while a claim there reclaims leases
            running = [h for h in world.pick_held(rng, 20, ready=None) if h.queue == LIMITED]
            if running:
                target = running[0].task_id
                calls = [("claim_ahead", {"queue": LIMITED}), ("create_queue", {"queue": LIMITED})]
        if target is None:
            scenario = "any"
            target = world.block_target(rng)
            names = [op for op, _ in OPERATIONS if op not in ("pileup", "advance")]
            weights = [w for op, w in OPERATIONS if op not in ("pileup", "advance")]
            calls = [(op, {}) for op in rng.choices(names, weights=weights, k=2)]
        rng.shuffle(calls)
        return scenario, target, calls

    # -------------------------------------------------------------- the operations

    def op_claim(
        self, conn: psycopg.Connection[Any], rng: random.Random, ahead: float = 0.0, queue: str | None = None
    ) -> None:
        queue = queue or rng.choice(QUEUES)
        lease = rng.choice((1, 2, 2))
        claim: LiteralString = (
            "select task_id, lease_token, durable, input, history from durable.claim(%s, %s, %s, %s)"
        )
        params = (queue, self.name, rng.randint(1, 6), lease)
        if ahead:
            # the test clock, a few seconds ahead for this claim only: it reclaims every
            # lease that runs out before then (set_config is local to the transaction)
            with conn.transaction():
                conn.execute(
                    "select set_config('durable.fake_now',"
                    " (clock_timestamp() + make_interval(secs => %s))::text, true)",
                    (ahead,),
                )
                rows = conn.execute(claim, params).fetchall()
        else:
            rows = conn.execute(claim, params).fetchall()
        held = [held_from_claim(row, queue, lease, ahead) for row in rows]
        self.world.add_held(held)
        self.world.count("claimed", len(rows))
        # a re-run presents its recorded events before its next call; now and then one does
        # not (its next call then raises DU022, its completion fails it as a non-determinism)
        for h, row in zip(held, rows, strict=True):
            if h.events and rng.random() < 0.9:
                self.replay_check(conn, h, list(row[4]))

    def replay_check(self, conn: psycopg.Connection[Any], h: Held, history: list[dict[str, Any]]) -> None:
        try:
            row = conn.execute(
                "select durable.replay_check(%s, %s, %s)", (h.task_id, h.token, Jsonb(presented(h, history)))
            ).fetchone()
        except psycopg.Error as exc:
            if conn.broken or conn.closed or not (exc.sqlstate or "").startswith(ACCEPTED_CLASS):
                raise
            self.world.drop_held([h.task_id])
            self.world.count(f"replay_check: {exc.sqlstate}")
            return
        assert row is not None
        if "nondeterminism" in row[0]:
            self.nondeterminism(h, "replay_check")
        else:
            self.world.count("replay checked")

    def nondeterminism(self, h: Held, op: str) -> None:
        """A verb answered {"nondeterminism": ...}: it failed the task."""
        self.world.drop_held([h.task_id])
        self.world.count(f"{op}: nondeterminism")

    def op_claim_ahead(
        self, conn: psycopg.Connection[Any], rng: random.Random, queue: str | None = None
    ) -> None:
        self.op_claim(conn, rng, ahead=rng.uniform(1.5, 3.0), queue=queue)

    def op_advance(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        """Up to three calls of a durable task's code: its next spawns, then its wait."""
        picked = self.world.pick_held(rng, 1, ready=False)
        if not picked:
            return
        h = picked[0]
        assert h.plan is not None
        spawns: list[dict[str, Any]] = h.plan["spawn"]
        try:
            for _ in range(3):
                seq = h.events + 1
                if len(h.spawned) < len(spawns):
                    spec = spawns[len(h.spawned)]
                    # children before the backlog of new roots, so that trees progress
                    options: dict[str, Any] = {"durable": True, "priority": 5 * (h.plan["depth"] + 1)}
                    if "ck" in spec:
                        options["concurrency_key"] = spec["ck"]
                    row = conn.execute(
                        "select durable.spawn(%s, %s, %s, %s, 'node', %s, %s)",
                        (h.task_id, h.token, seq, spec["q"], Jsonb({"plan": spec["plan"]}), Jsonb(options)),
                    ).fetchone()
                    assert row is not None
                    if "nondeterminism" in row[0]:
                        self.nondeterminism(h, "spawn")
                        return
                    child = uuid.UUID(row[0]["result"]["task_id"])
                    h.spawned.append(child)
                    h.events = seq
                    self.world.add_nodes(h.plan["depth"] + 1, [child], parent=h.task_id)
                    self.world.count("spawned")
                elif h.plan["wait"] == "children" and not h.waited:
                    row = conn.execute(
                        "select durable.wait_children(%s, %s, %s, %s::uuid[])",
                        (h.task_id, h.token, seq, h.spawned),
                    ).fetchone()
                    assert row is not None
                    if self.suspended(h, row[0], "children"):
                        return
                elif h.plan["wait"] == "event" and not h.waited:
                    key = self.world.wait_key(rng, h.task_id, h.plan["depth"], h.queue)
                    row = conn.execute(
                        "select durable.wait_event(%s, %s, %s, %s, %s::float8)",
                        (h.task_id, h.token, seq, key, rng.uniform(3.0, 8.0)),
                    ).fetchone()
                    assert row is not None
                    if self.suspended(h, row[0], "event"):
                        self.world.add_waiter(h.task_id, h.queue, key)
                        return
                else:
                    break
        except psycopg.Error as exc:
            if exc.sqlstate in ("DU010", "DU011", "DU004"):
                self.world.drop_held([h.task_id])
            raise
        finally:
            self.world.update_held(h)

    def suspended(self, h: Held, result: dict[str, Any], kind: str) -> bool:
        """Whether the wait ended the attempt: it suspended, or it failed the task."""
        if "nondeterminism" in result:
            self.nondeterminism(h, kind)
            return True
        if result.get("suspended"):
            self.world.drop_held([h.task_id])
            self.world.count(f"suspended for {kind}")
            return True
        h.events += 1
        h.waited = True
        return False

    def op_complete_many(
        self, conn: psycopg.Connection[Any], rng: random.Random, batch: list[Held] | None = None
    ) -> None:
        """A batch of completions in a random order: children of several parents, and now
        and then an attempt whose code is not done (completed all the same when it presented
        its history, else failed: nondeterminism)."""
        if batch is None:
            batch = self.world.pick_held(rng, rng.randint(2, 10), ready=True)
            if rng.random() < 0.2:
                batch += self.world.pick_held(rng, 1, ready=None)
            rng.shuffle(batch)
        if not batch:
            return
        rows = conn.execute(
            "select task_id, ok, reason from durable.complete_many(%s::uuid[], %s::uuid[])",
            ([h.task_id for h in batch], [h.token for h in batch]),
        ).fetchall()
        # whatever the answer, the attempt is over (completed, failed, or no longer ours)
        self.world.drop_held([h.task_id for h in batch])
        self.world.count("completed", sum(1 for _, ok, _ in rows if ok))
        for _, ok, reason in rows:
            if not ok:
                self.world.count(f"complete_many rejected: {reason}")

    def op_fail(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        picked = self.world.pick_held(rng, 1, ready=None)
        if not picked:
            return
        h = picked[0]
        self.world.drop_held([h.task_id])
        conn.execute(
            "select * from durable.fail(%s, %s, %s, %s)",
            (h.task_id, h.token, Jsonb({"type": "Fuzz", "message": "failed on purpose"}), rng.random() < 0.5),
        )
        self.world.count("failed")

    def op_enqueue_many(self, conn: psycopg.Connection[Any], rng: random.Random) -> None:
        """Roots and plain tasks, with idempotency keys of the shared pool in a random order."""
        queue = rng.choices(QUEUES, weights=(45, 30, 25))[0]
        size = rng.randint(4, 12)
        keys = self.world.idempotency_keys(rng, min(size, IDEMPOTENCY_KEYS))
        specs: list[dict[str, Any]] = []
        for i in range(size):
            options: dict[str, Any] = {}
            if i < len(keys) and rng.random() < 0.8:
                options["idempotency_key"] = keys[i]
            if queue in LIMITED_QUEUES:
                options["concurrency_key"] = rng.choice(CONCURRENCY_KEYS)
            if rng.random() < 0.5:
                options["durable"] = True
                specs.append(
                    {"task_name": "node", "input": {"plan": make_plan(rng, 0, queue)}, "options": options}
                )
            else:
                if "idempotency_key" not in options and rng.random() < 0.3:
                    # leaves only: a debounce key is held by a task of one name
                    options["debounce"] = {"key": rng.choice(DEBOUNCE_KEYS), "delay": 0}
                specs.append({"task_name": "leaf", "input": {"i": i}, "options": options})
        rng.shuffle(specs)
        rows = conn.execute(
            "select task_id from durable.enqueue_many(%s, %s)", (queue, Jsonb(specs))
        ).fetchall()
        ids = [row[0] for row in rows]
        self.world.add_nodes(0, [ids[i] for i, spec in enumerate(specs) if spec["task_name"] == "node"])
        self.world.count("enqueued specs", len(specs))
        self.world.count("enqueued keyed specs", sum(1 for s in specs if "idempotency_key" in s["options"]))
        debounced = {ids[i] for i, s in enumerate(specs) if "debounce" in s["options"]}
        self.world.count("debounced specs", sum(1 for s in specs if "debounce" in s["options"]))
        self.world.count("debounced tasks returned", len(debounced))

    def op_cancel(
        self, conn: psycopg.Connection[Any], rng: random.Random, target: uuid.UUID | None = None
    ) -> None:
        target = target or self.world.cancel_target(rng)
        if target is None:
            return
        row = conn.execute("select durable.cancel(%s, 'fuzz')", (target,)).fetchone()
        if row is not None and row[0]:
            self.world.count("cancelled")

    def op_emit_event(
        self,
        conn: psycopg.Connection[Any],
        rng: random.Random,
        queue: str | None = None,
        key: str | None = None,
    ) -> None:
        if queue is None or key is None:
            queue, key = self.world.emit_key(rng)
        row = conn.execute(
            "select durable.emit_event(%s, %s, %s)", (queue, key, Jsonb({"by": self.name}))
        ).fetchone()
        assert row is not None
        self.world.emitted(rng, queue, key)
        self.world.count("woken by emits", int(row[0]))
        if row[0] >= 2:
            self.world.count("emits that woke several")

    def op_create_queue(
        self, conn: psycopg.Connection[Any], rng: random.Random, queue: str | None = None
    ) -> None:
        queue = queue or rng.choices(QUEUES, weights=(15, 60, 25))[0]
        options: dict[str, Any]
        if queue == LIMITED:
            options = {"concurrency_strategy": rng.choice(("round_robin", "queue"))}
        elif queue == CANCELLING:
            options = {
                "concurrency_key_limit": rng.choice((1, 2, 3)),
                "concurrency_strategy": rng.choice(
                    ("cancel_in_progress", "cancel_in_progress", "cancel_newest")
                ),
            }
        else:
            options = {"max_lost_leases": rng.choice((0, 1, 2))}
        conn.execute("select durable.create_queue(%s, %s)", (queue, Jsonb(options)))


@contextlib.contextmanager
def connect(url: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection whose lock waits and statements are bounded: a hang fails."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"set lock_timeout = '{LOCK_TIMEOUT}'")
        conn.execute(f"set statement_timeout = '{STATEMENT_TIMEOUT}'")
        yield conn


class Blocker(threading.Thread):
    """Holds one task row at a time for a few milliseconds, as a slow transaction would: the
    calls that want the row queue up behind it, and whatever order they take their other
    locks in meets the others' when it lets go. It takes the row with SKIP LOCKED and waits
    for nothing while it holds it, so it is never part of a deadlock itself."""

    def __init__(self, world: World, admin_url: str, deadline: float) -> None:
        super().__init__(name="fuzz-blocker", daemon=True)
        self.world = world
        self.rng = random.Random(world.seed * 1000 + 999)
        self.admin_url = admin_url
        self.deadline = deadline
        self.current = "blocker"

    def run(self) -> None:
        try:
            with connect(self.admin_url) as conn:
                pid = conn.info.backend_pid
                while time.monotonic() < self.deadline:
                    target = self.world.block_target(self.rng)
                    if target is not None:
                        self.world.call_started(pid, "blocker")
                        try:
                            with conn.transaction():
                                conn.execute(
                                    "select 1 from durable.tasks where task_id = %s for update skip locked",
                                    (target,),
                                )
                                time.sleep(self.rng.uniform(0.005, 0.03))
                        except psycopg.Error as exc:
                            sort_out(self.world, "blocker", pid, exc)
                        finally:
                            self.world.call_ended(pid)
                    time.sleep(self.rng.uniform(0.0, 0.02))
        except Exception:
            with self.world.lock:
                self.world.harness_errors.append(f"{self.name}: {traceback.format_exc()}")


# ------------------------------------------------------------------ the report


def report(world: World, extra: list[str]) -> str:
    lines = [f"seed {world.seed} (DURABLE_DEADLOCK_SEED={world.seed} reruns the same random choices)"]
    lines.append(f"deadlocks (40P01): {len(world.deadlocks)}")
    pairs: Counter[str] = Counter()
    for d in world.deadlocks:
        pids = {int(p) for p in re.findall(r"[Pp]rocess (\d+)", d.detail)} - {d.pid}
        partners = sorted(world.op_of(p, d.at) for p in pids)
        locks = sorted(set(re.findall(r"waits for \w+ on ([a-z ]+?) [\d\[]", d.detail)))
        pairs[f"{d.op} (victim, at {d.where}) x {' x '.join(partners) or '?'} [{', '.join(locks)}]"] += 1
    lines += [f"  {n:4d}  {what}" for what, n in pairs.most_common()]
    # PostgreSQL's own account of each: the processes, their locks and statements
    lines += [f"        {line}" for d in world.deadlocks[:3] for line in d.detail.splitlines()]
    lines.append(f"unexpected errors: {len(world.unexpected)}")
    kinds: Counter[str] = Counter(
        f"{u.op}: {u.sqlstate} {HANGS.get(u.sqlstate or '', '')} {u.message[:160]} (at {u.where})"
        for u in world.unexpected
    )
    lines += [f"  {n:4d}  {what}" for what, n in kinds.most_common()]
    lines += [f"harness error: {e}" for e in world.harness_errors]
    lines += extra
    lines.append("counts: " + ", ".join(f"{k} {v}" for k, v in sorted(world.counts.items())))
    lines.append("seconds in calls: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(world.seconds.items())))
    lines.append("accepted DU errors: " + ", ".join(f"{k} {v}" for k, v in sorted(world.accepted.items())))
    return "\n".join(lines)


def test_random_batch_verbs_on_overlapping_rows_never_deadlock(
    conn: psycopg.Connection[Any], admin_url: str, db_url: str, worker_url: str
) -> None:
    seed = int(os.environ.get("DURABLE_DEADLOCK_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"deadlock fuzz: seed {seed}, {THREADS} threads, {RUN_SECONDS:g} s")
    world = World(seed=seed)
    rng = random.Random(seed)
    dbname = conn.info.dbname
    # deadlocks are found whatever the timeout; a short one only frees their victims sooner
    conn.execute(f"alter database \"{dbname}\" set deadlock_timeout = '200ms'".encode())

    with psycopg.connect(db_url, autocommit=True) as client:
        for queue, options in QUEUE_OPTIONS.items():
            client.execute("select durable.create_queue(%s, %s)", (queue, Jsonb(options)))
        for queue in (PLAIN, LIMITED, CANCELLING):
            specs = [
                {
                    "task_name": "node",
                    "input": {"plan": make_plan(rng, 0, queue)},
                    "options": {"durable": True}
                    | ({"concurrency_key": rng.choice(CONCURRENCY_KEYS)} if queue in LIMITED_QUEUES else {}),
                }
                for _ in range(8)
            ]
            rows = client.execute(
                "select task_id from durable.enqueue_many(%s, %s)", (queue, Jsonb(specs))
            ).fetchall()
            world.add_nodes(0, [row[0] for row in rows])

    deadline = time.monotonic() + RUN_SECONDS
    urls = {"worker": worker_url, "client": db_url, "admin": admin_url}
    sessions: list[Session | Blocker] = [Session(world, i, urls, deadline) for i in range(THREADS)]
    sessions.append(Blocker(world, admin_url, deadline))
    for s in sessions:
        s.start()
    for s in sessions:
        s.join(max(0.0, deadline + JOIN_SECONDS - time.monotonic()))
    hung = [
        f"{s.name} still in {s.current} {JOIN_SECONDS:g} s after the end" for s in sessions if s.is_alive()
    ]

    attempts = dict(
        conn.execute("select outcome, count(*) from durable.attempts group by outcome").fetchall()
    )
    # the maintenance pass every claim starts with: it wakes a parent whose last child
    # found the parent's row locked (a child never waits for its parent), as the next
    # claim of the parent's queue does in a deployment
    conn.execute("select durable.reclaim(q.queue, 10000) from durable.queues q")
    statuses = dict(conn.execute("select status, count(*) from durable.all_tasks group by status").fetchall())
    row = conn.execute(
        """
        select
            (select count(*) from durable.events e
             where e.kind = 'children'
               and exists (select 1 from durable.attempts a
                           where a.task_id = e.task_id and a.outcome = 'suspended'
                             and a.ended_at <= e.recorded_at)),
            (select count(*) from durable.all_tasks where idempotency_key is not null),
            (select count(*) from durable.all_tasks
             where error ->> 'message' like 'parent task % was cancelled'),
            (select array_agg(p.task_id) from durable.all_tasks p
             where p.status = 'waiting' and p.wait_kind = 'children'
               and not exists (select 1 from durable.all_tasks c
                               where c.task_id = any(p.wait_children)
                                 and c.status not in ('completed', 'failed', 'cancelled'))),
            (select array_agg(p.task_id) from durable.all_tasks p
             join durable.event_values v on v.queue = p.queue and v.key = p.wait_key
             where p.status = 'waiting' and p.wait_kind = 'event' and v.emitted_at is not null)
        """
    ).fetchone()
    assert row is not None
    children_wakes, keyed_tasks, cascaded, lost_children, lost_events = row
    idempotent_hits = world.counts["enqueued keyed specs"] - keyed_tasks
    reclaimed = attempts.get("lease_expired", 0) + attempts.get("timed_out", 0)
    extra = [
        f"attempts by outcome: {attempts}",
        f"tasks by status: {statuses}",
        f"parents woken by their children: {children_wakes}; cancels cascaded to {cascaded} descendants;"
        f" idempotent enqueues (a key already taken): {idempotent_hits}",
    ]
    if hung:
        extra += [f"HUNG: {h}" for h in hung]
    if lost_children:
        extra.append(f"LOST WAKE-UP: waiting for children that all ended: {lost_children}")
    if lost_events:
        extra.append(f"LOST WAKE-UP: waiting for an emitted event key: {lost_events}")
    text = report(world, extra)
    print(text)

    assert world.harness_errors == [], text
    assert hung == [], text
    # The code before the lock order of plpgsql/README.md deadlocked 130 to 160 times a run
    assert world.deadlocks == [], text
    assert len(world.unexpected) == 0, text
    assert not lost_children and not lost_events, text
    # the run did real work, so it cannot pass for doing nothing
    work = {
        "completions": world.counts["completed"] >= 20,
        "cancels": world.counts["cancelled"] >= 3,
        "tasks woken by emits": world.counts["woken by emits"] >= 1,
        "parents woken by their children": children_wakes >= 1,
        "reclaimed leases": reclaimed >= 1,
        "option changes": world.counts["create_queue: ok"] >= 1,
        "idempotent enqueues": idempotent_hits >= 1,
        # (a key's specs of one batch, or of batches while its task waited, made one task)
        "debounced enqueues": world.counts["debounced specs"] > world.counts["debounced tasks returned"],
    }
    assert all(work.values()), f"too little work: {[k for k, ok in work.items() if not ok]}\n{text}"

"""The history checker: a chaos run's record in, proof or refutation out. Pure.

For each workload stream, the gap users saw (the RTO: from the fault, or the
last success after it, to the next success; the longest such wait) and what
was lost (the RPO: acknowledged keys missing from the final read); and, from
the mongo samples, the longest time no member answered as writable primary.
Then the invariants: nothing acknowledged lost, at most one host answering
for the VIP in any sample, never two galera primary components at once, and
every cluster healthy again within the scenario's bound.

Time the client host itself did not run (the workload's heartbeat woke late: the lab's
shared cores, not the cluster) is left out of every gap and answer time, and
reported apart as the client's longest stall.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from hastack.workload.history import (
    AMQP,
    API_PREFIX,
    API_SERVERS,
    DB,
    MONGO,
    MONGO_PRIMARY,
    STREAMS,
    VIP,
    GaleraSample,
    History,
    Op,
    Stall,
)

# Galera samples closer than this are compared as simultaneous.
GALERA_WINDOW_S = 0.5
# How long a server's build may still be running after nova acknowledged it (measured in the lab:
# ACTIVE 4.5 s after the create; three times that).
BUILD_S = 15.0
_LOSS_NAMES = {DB: "acknowledged database commits", AMQP: "confirmed messages", MONGO: "majority-acknowledged writes",
               API_SERVERS: "servers nova accepted (each ACTIVE at the end)"}


@dataclass(frozen=True)
class StreamResult:
    stream: str
    attempted: int
    acked: int
    rto_s: float | None  # None: no success after the fault
    lost: tuple[str, ...] = ()
    # How long the acknowledged ops begun after the fault took (95th percentile): beside the gap, it
    # tells a service that answered slowly from one that did not answer.
    p95_s: float | None = None


@dataclass(frozen=True)
class Invariant:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Judgement:
    streams: tuple[StreamResult, ...]
    invariants: tuple[Invariant, ...]
    # The client's longest stall after the fault (None: its record has no heartbeat); not in any gap.
    stall_s: float | None = None

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)


def stalled(a: float, b: float, stalls: Sequence[Stall]) -> float:
    """How much of the time from a to b the client itself did not run (its stalls never overlap)."""
    return sum(max(0.0, min(b, s.t1) - max(a, s.t0)) for s in stalls)


def rto(ops: list[Op], fault_at: float, stalls: Sequence[Stall] = ()) -> float | None:
    """Longest wait, after the fault, between one acknowledged op and the next."""
    return longest_wait([o.t1 for o in ops if o.ok], fault_at, stalls)


def took(o: Op, stalls: Sequence[Stall] = ()) -> float:
    """How long an op took while the client ran."""
    return o.t1 - o.t0 - stalled(o.t0, o.t1, stalls)


def p95(ops: list[Op], fault_at: float, stalls: Sequence[Stall] = ()) -> float | None:
    """95th percentile of how long the acknowledged ops begun after the fault took (nearest rank)."""
    times = sorted(took(o, stalls) for o in ops if o.ok and o.t0 >= fault_at)
    return times[max(0, math.ceil(0.95 * len(times)) - 1)] if times else None


def longest_wait(times: list[float], fault_at: float, stalls: Sequence[Stall] = ()) -> float | None:
    """Longest wait, after the fault, between one good moment and the next, the client's own stalls
    left out; None if none came after it."""
    done = sorted(times)
    before = [t for t in done if t <= fault_at]
    after = [t for t in done if t > fault_at]
    if not after:
        return None
    last, worst = (before[-1] if before else fault_at), 0.0
    for t in after:
        start = max(last, fault_at)
        worst = max(worst, t - start - stalled(start, t, stalls))
        last = t
    return worst


def longest_stall(stalls: Sequence[Stall], fault_at: float) -> float:
    """The client's longest stall (the part after the fault)."""
    return max((s.t1 - max(s.t0, fault_at) for s in stalls if s.t1 > fault_at), default=0.0)


def split_brains(samples: tuple[GaleraSample, ...]) -> list[tuple[float, tuple[str, ...], tuple[str, ...]]]:
    """Moments when two primary components with no member in common existed."""
    windows: dict[int, list[GaleraSample]] = defaultdict(list)
    for s in samples:
        if s.primary and s.members:
            windows[int(s.t / GALERA_WINDOW_S)].append(s)
    found = []
    for _, group in sorted(windows.items()):
        for a, b in combinations(group, 2):
            if not set(a.members) & set(b.members):
                found.append((min(a.t, b.t), a.members, b.members))
    return found


def judge(h: History, fault_at: float, healed_at: float | None, bound_s: float, *, quiet: bool = False,
          fenced: tuple[str, ...] = ()) -> Judgement:
    """The record judged; `quiet`: a fault nothing may react to (`fenced`: hosts the power switch cut meanwhile)."""
    by_stream: dict[str, list[Op]] = defaultdict(list)
    for o in h.ops:
        by_stream[o.stream].append(o)
    streams, invariants = [], []
    for name in (*STREAMS, *sorted(s for s in by_stream if s.startswith(API_PREFIX))):
        ops = by_stream.get(name, [])
        if not ops:
            continue
        acked = {o.key for o in ops if o.ok and o.key}
        lost: tuple[str, ...] = ()
        if name in _LOSS_NAMES:
            back = h.readback.get(name)
            if back is None or not back.complete:
                why = back.error if back else "no final read"
                invariants.append(Invariant(f"{name}: read back", False, f"could not read back: {why}"))
            else:
                # A server whose build was in flight when the fault hit, or that was accepted before the
                # clusters healed, may end in ERROR or stay building: nova acknowledges a create before
                # its conductor, scheduler and compute have run, and retries none of them.
                window = _in_flight(ops, fault_at, healed_at) if name == API_SERVERS else set()
                lost = tuple(sorted(acked - back.keys - window))
                failed = sorted((acked & window) - back.keys)
                detail = f"{len(acked)} {_LOSS_NAMES[name]}, {len(lost)} missing" + (
                    f": {_states(lost, back.states)}" if lost else "")
                if failed:
                    detail += (f"; {len(failed)} accepted while the fault was on, not ACTIVE (nova does not retry "
                               f"an interrupted build): {_states(failed, back.states)}")
                invariants.append(Invariant(f"{name}: nothing lost", not lost, detail))
        streams.append(StreamResult(name, len(ops), sum(o.ok for o in ops), rto(ops, fault_at, h.stalls), lost,
                                    p95(ops, fault_at, h.stalls)))
    if h.mongo:
        # The server's side of the mongo gap: no member answering as writable primary. The client's
        # gap adds its own wait on the dead primary's socket and its driver's rediscovery.
        primary = [s.t for s in h.mongo if s.writable]
        streams.append(StreamResult(MONGO_PRIMARY, len(h.mongo), len(primary),
                                    longest_wait(primary, fault_at, h.stalls)))

    invariants += _invariants(h, fault_at, healed_at, bound_s)
    if quiet:
        invariants += _quiet(h, fault_at, fenced)
    # A record from before the heartbeat (no samples at all) says nothing of the client's stalls.
    stall = longest_stall(h.stalls, fault_at) if h.stalls or h.ops else None
    return Judgement(tuple(streams), tuple(invariants), stall)


def spared_fences(fenced: tuple[str, ...], spared: frozenset[str]) -> Invariant:
    """`spared`: the computes the fault left alone (all but the one a compute fault hits). None is ever
    fenced: with instance HA a fence evacuates every server on it (seen once in the lab: a
    controller's ring loss, then the compute's connection failed to start on each other member, and
    pacemaker fenced it)."""
    cut = sorted(set(fenced) & spared)
    return Invariant("no healthy compute fenced", not cut,
                     f"the power switch cut {', '.join(cut)}" if cut else f"{', '.join(sorted(spared))} never fenced")


# A quiet fault: a database commit, publish, mongo write or VIP connect slower than this is a stall. A
# healthy one takes milliseconds, but the lab's two cores carry five hosts: with no fault at all
# (link1-loss's run, the cut left out) the slowest of ~6,700 writes in 3 runs took 0.84 s with the
# client in its own CPU group, and 1.0-1.7 s (6-10 a run) before it had one, when 1 s was this
# bound. A reaction to the fault costs more than 2 s and fails operations too (a VIP move, a writer
# failover). API calls are judged on failures only: a busy API answers in over a second.
QUIET_SLOW_S = 2.0
_STALLS = frozenset({DB, AMQP, MONGO, VIP})


def _quiet(h: History, fault_at: float, fenced: tuple[str, ...]) -> list[Invariant]:
    """Nothing reacted: nobody fenced, the VIP answered from one holder throughout, no operation failed,
    no write or VIP connect stalled."""
    out = [Invariant("no fence", not fenced, f"fenced: {', '.join(fenced)}" if fenced else "nobody fenced")]
    if h.vip:
        holders = sorted({m for s in h.vip for m in s.macs})
        unanswered = sum(1 for s in h.vip if s.t > fault_at and not s.macs)
        out.append(Invariant("vip: never moved", len(holders) == 1,
                             f"answered by {', '.join(holders) or 'nobody'} ({unanswered} samples after the fault "
                             "unanswered: the VIP stream's gap says whether clients noticed)"))
    after = [o for o in h.ops if o.t0 >= fault_at]
    bad = [o for o in after if not o.ok or (o.stream in _STALLS and took(o, h.stalls) > QUIET_SLOW_S)]
    detail = (f"{len(after)} operations after the fault, {len(bad)} failed (or, writes and VIP connects, slower "
              f"than {QUIET_SLOW_S:g} s)")
    if bad:
        first = bad[0]
        detail += (f" (first: {first.stream} at +{first.t0 - fault_at:.2f} s, {took(first, h.stalls):.2f} s"
                   + (f": {first.error}" if first.error else "") + ")")
    out.append(Invariant("no operation failed or stalled", not bad, detail))
    return out


def _in_flight(ops: list[Op], fault_at: float, healed_at: float | None) -> set[str]:
    """Servers acknowledged within BUILD_S before the fault, or after it and before the clusters healed."""
    end = healed_at if healed_at is not None else float("inf")
    return {o.key for o in ops if o.ok and o.key and fault_at - BUILD_S <= o.t1 <= end}


def _states(keys: tuple[str, ...] | list[str], states: dict[str, str], most: int = 5) -> str:
    return ", ".join(f"{k} ({states.get(k, 'gone')})" for k in keys[:most])


def _invariants(h: History, fault_at: float, healed_at: float | None, bound_s: float) -> list[Invariant]:
    """What must hold whatever the streams' gaps: one VIP holder, one primary component, clean APIs, healed."""
    invariants: list[Invariant] = []
    if h.vip:
        multi = [s for s in h.vip if len(s.macs) > 1]
        none = sum(1 for s in h.vip if not s.macs)
        detail = f"{len(h.vip)} ARP samples, {none} unanswered, {len(multi)} with two or more holders"
        if multi:
            detail += f" (first at +{multi[0].t - fault_at:.2f} s: {', '.join(multi[0].macs)})"
        invariants.append(Invariant("vip: at most one holder", not multi, detail))
    if h.galera:
        brains = split_brains(h.galera)
        detail = (f"{len(h.galera)} samples; " + (f"two primary components at +{brains[0][0] - fault_at:.2f} s: "
                                                  f"{brains[0][1]} and {brains[0][2]}" if brains else "never two"))
        invariants.append(Invariant("galera: one primary component", not brains, detail))
    api = [o for o in h.ops if o.stream.startswith(API_PREFIX)]
    if api and healed_at is not None:
        # Once status says every cluster (the APIs among them) is healthy, a client sees no error.
        late = [o for o in api if not o.ok and o.t0 > healed_at]
        detail = (f"{len(api)} API calls, {len(late)} failed after status said healthy"
                  + (f" (first: {late[0].stream} at +{late[0].t0 - fault_at:.2f} s: {late[0].error})" if late else ""))
        invariants.append(Invariant("api: no error once healthy", not late, detail))
    if healed_at is None:
        invariants.append(Invariant("healthy again", False, f"not every cluster healthy within {bound_s:.0f} s"))
    else:
        took = healed_at - fault_at
        invariants.append(Invariant("healthy again", took <= bound_s, f"every cluster healthy {took:.1f} s after "
                                    f"the fault (bound {bound_s:.0f} s)"))
    return invariants

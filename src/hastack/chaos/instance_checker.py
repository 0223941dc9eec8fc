"""Instance HA scenarios judged from the record: the pinned servers' samples, nova's evacuation
records and the power switch's fences of their compute. Pure.

A server is "on two hosts" when nova shows it on another compute while its own compute still ran:
the compute runs until the switch cuts it, so any sighting elsewhere before the fence is one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from hastack.chaos.checker import Invariant
from hastack.workload.history import INSTANCES, History, InstanceSample

# nova's created_at and the switch's log are both to the second: a request in the fence's own
# second may have come after it; one a whole second earlier did not.
CLOCK_S = 1.0


@dataclass(frozen=True)
class InstanceJudgement:
    invariants: tuple[Invariant, ...]
    evacuated_s: float | None  # fault to every server ACTIVE on another compute; None: not all were
    # Where that time went: the fault to the switch's cut of the compute (pacemaker noticing and
    # fencing), and to nova's first evacuation record (to the second: nova's created_at). None: never.
    fenced_s: float | None = None
    asked_s: float | None = None


def _by_server(h: History, since: float) -> dict[str, list[InstanceSample]]:
    out: dict[str, list[InstanceSample]] = defaultdict(list)
    for s in sorted(h.instances, key=lambda s: s.t):
        if s.t >= since:
            out[s.server].append(s)
    return out


def _moved(h: History, fault_at: float, fence: float | None, bound_s: float) -> tuple[list[Invariant], float | None]:
    host, samples = h.instance_host, _by_server(h, fault_at)
    arrived: dict[str, float] = {}
    for name in h.instance_names:
        first = next((s.t for s in samples.get(name, []) if s.status == "ACTIVE" and s.host and s.host != host),
                     None)
        last = samples[name][-1] if samples.get(name) else None
        if first is not None and last is not None and last.status == "ACTIVE" and last.host != host:
            arrived[name] = first
    missing = sorted(set(h.instance_names) - set(arrived))
    took = max(arrived.values()) - fault_at if arrived and not missing else None
    ok = took is not None and took <= bound_s
    detail = (f"{len(arrived)}/{len(h.instance_names)} ACTIVE on another compute" +
              (f", the last {took:.1f} s after the fault" if took is not None else "") +
              (f"; not: {', '.join(f'{n} ({_last(samples.get(n))})' for n in missing)}" if missing else ""))
    out = [Invariant(f"instances: every one ACTIVE elsewhere within {bound_s:.0f} s", ok, detail)]
    # Never on two hosts: no sighting away from its compute before the switch cut it.
    early = sorted({s.server for ss in samples.values() for s in ss
                    if s.host and s.host != host and (fence is None or s.t < fence)})
    out.append(Invariant("instances: never on two hosts", not early,
                         f"seen on another compute before {host} was fenced: {', '.join(early)}" if early
                         else f"none seen elsewhere before {host} was fenced"))
    asked_early = sorted(e.server for e in h.evacuations if fence is None or e.t < fence - CLOCK_S)
    out.append(Invariant("no evacuation before the fence", not asked_early,
                         (f"asked before the switch fenced {host}: {', '.join(asked_early)}" if fence is not None
                          else f"{host} was never fenced, yet evacuations were asked: {', '.join(asked_early)}")
                         if asked_early else f"{len(h.evacuations)} evacuation(s), each after the fence"))
    return out, took


def _stayed(h: History, fault_at: float, fenced: bool) -> list[Invariant]:
    host, samples = h.instance_host, _by_server(h, fault_at)
    away = sorted({s.server for ss in samples.values() for s in ss if s.host != host})
    unwell = sorted(n for n in h.instance_names if not samples.get(n) or samples[n][-1].status != "ACTIVE")
    return [Invariant(f"instances: every one stayed ACTIVE on {host}", not away and not unwell,
                      f"moved: {', '.join(away) or 'none'}; not ACTIVE at the end: "
                      f"{', '.join(f'{n} ({_last(samples.get(n))})' for n in unwell) or 'none'}"),
            Invariant("no evacuation", not h.evacuations,
                      f"{len(h.evacuations)} evacuation(s): " + ", ".join(e.server for e in h.evacuations)
                      if h.evacuations else "nothing evacuated"),
            Invariant(f"{host} not fenced", not fenced, f"the switch cut {host}" if fenced else "no fence")]


def _last(samples: list[InstanceSample] | None) -> str:
    if not samples:
        return "never sampled"
    s = samples[-1]
    return f"{s.status} on {s.host or 'no host'}" + (f", {s.task}" if s.task else "")


def judge_instances(h: History, fault_at: float, fences: tuple[float, ...], *, move: bool,
                    bound_s: float) -> InstanceJudgement:
    """`fences`: when the switch cut the servers' compute, on the run's clock; `move`: the fault is one
    instance HA must act on (the compute lost), not one it must leave alone (nova-compute restarted)."""
    back = h.readback.get(INSTANCES)
    read: list[Invariant] = []
    if back is None or not back.complete:
        read = [Invariant("instances: evacuations read back", False,
                          f"nova's record not read: {back.error if back else 'no final read'}")]
    after = sorted(f for f in fences if f >= fault_at - CLOCK_S)
    fenced_s = after[0] - fault_at if after else None
    asked_s = min(e.t for e in h.evacuations) - fault_at if h.evacuations else None
    if move:
        invariants, took = _moved(h, fault_at, after[0] if after else None, bound_s)
        return InstanceJudgement(tuple(read + invariants), took, fenced_s, asked_s)
    return InstanceJudgement(tuple(read + _stayed(h, fault_at, bool(after))), None, fenced_s, asked_s)

"""Pacemaker repair: a resource held stopped by a failure on record is cleaned up, once. Pure.

Pacemaker recovers most failures by itself: a failed monitor restarts the
resource, a VIP whose start failed moves elsewhere. A failed *start* is
different: the node is out for that resource until the failure expires
(the CIB's failure-timeout) or someone cleans it up. CI saw it after a power
cut: haproxy failed its start on one controller at load 45, and the clone
stayed stopped there while every cluster was whole. `hastack recover`
cleans up such a failure once the clusters it needs are back, and says so;
if the same start fails again after the cleanup, the cause is still there
and a person must look: it refuses with pacemaker's reason.

What is left alone: a failure whose resource runs again (pacemaker
recovered it), a failure on a node that is offline (fencing and the node's
return handle it), a resource stopped with no failure on record
(pacemaker's own decision: a ban, a node down, an ordering). While crm_mon
shows a resource FAILED (pacemaker is stopping or restarting it), it waits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from hastack.components.pacemaker import PacemakerState, ResourceState
from hastack.recovery.decision import Action as _Action
from hastack.recovery.decision import Decision as _Decision
from hastack.recovery.decision import Outcome


@dataclass(frozen=True)
class EvidenceRow:
    node: str
    online: bool
    failed: str  # "RESOURCE TASK: reason" per failure on record there, "-" without


class Step(Enum):
    CLEANUP = "cleanup"  # crm_resource --cleanup --resource R --node N: pacemaker starts it again


@dataclass(frozen=True)
class Cleanup(_Action[Step]):
    """`cleanup haproxy on ctl2`: the resource (a clone by its instance's id) on one node."""

    resource: str = ""

    def __str__(self) -> str:
        return f"{self.step.value} {self.resource} on {self.node}"


Decision = _Decision[Cleanup, EvidenceRow]


def _stopped(mon: PacemakerState, resource: str, node: str) -> bool:
    """The resource does not run where it should: a clone's instance is not on `node`, or a primitive
    runs nowhere."""
    mine = [r for r in mon.resources if resource in (r.id, r.clone)]
    if not mine:
        return False  # a resource the CIB no longer has
    if any(r.clone for r in mine):
        return node not in mon.where(resource)
    return not mon.where(resource)


def _recovering(mon: PacemakerState) -> tuple[ResourceState, ...]:
    """What crm_mon shows FAILED: pacemaker is stopping or restarting it now."""
    return tuple(r for r in mon.resources if r.failed)


def settled(mon: PacemakerState, cleaned: Iterable[Cleanup]) -> bool:
    """After the cleanups: each resource runs again, or its start failed again (the next look refuses)."""
    failed = {(f.resource, f.node) for f in mon.failures if f.task == "start"}
    busy = {r.id for r in _recovering(mon)}  # a failure's resource is the primitive's id, a clone's too
    return all((c.resource, c.node) in failed or (not _stopped(mon, c.resource, c.node) and c.resource not in busy)
               for c in cleaned)


def decide(mon: PacemakerState | None, members: Iterable[str], cleaned: frozenset[tuple[str, str]] = frozenset(),
           *, patient: bool = True) -> Decision:
    """`members`: the spec's corosync nodes; `cleaned`: (resource, node) pairs this recovery cleaned up already."""
    names = tuple(members)
    if mon is None:
        why = "no member's pacemaker answers (crm_mon)"
        return Decision(Outcome.WAIT if patient else Outcome.REFUSE, why)
    online = set(mon.online())
    ev = tuple(EvidenceRow(n, n in online, "; ".join(f"{f.resource} {f.task}: {f.reason or f.status}"
                                                      for f in mon.failures if f.node == n) or "-") for n in names)
    if mon.has_quorum is not True:
        return Decision(Outcome.WAIT if patient else Outcome.REFUSE, "the members have no quorum yet", (), ev)
    busy = sorted({f"{r.clone or r.id} on {', '.join(r.nodes) or '?'}" for r in _recovering(mon)})
    if busy:  # pacemaker is stopping or restarting it now: what is left once it is done is the question
        return Decision(Outcome.WAIT, "pacemaker is recovering " + "; ".join(busy), (), ev)
    stuck = [f for f in mon.failures if f.task == "start" and f.node in online and _stopped(mon, f.resource, f.node)]
    again = [f for f in stuck if (f.resource, f.node) in cleaned]
    if again:
        f = again[0]
        return Decision(Outcome.REFUSE, f"{f.resource} failed to start on {f.node} again after a cleanup "
                        f"({f.reason or f.status}): its cause is still there; see `journalctl` for it on {f.node}, "
                        f"then `crm_resource --cleanup --resource {f.resource} --node {f.node}`", (), ev)
    if stuck:
        todo = tuple(dict.fromkeys(Cleanup(Step.CLEANUP, f.node, resource=f.resource) for f in stuck))
        return Decision(Outcome.REPAIR, "held stopped by a failed start: " + ", ".join(
            f"{f.resource} on {f.node} ({f.reason or f.status})" for f in stuck), todo, ev)
    return Decision(Outcome.HEALTHY, "no failed start holds a resource stopped", (), ev)

"""MongoDB replica set repair: members started again. Pure.

A replica set elects on its own once a majority of voters run; what it
cannot do is start a mongod that is down. Changes to the set's configuration
(a member's priority, settings, members) are in components/mongo_config.py,
shared with deploy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from hastack.components.mongodb import ReplSet
from hastack.recovery.decision import Action as _Action
from hastack.recovery.decision import Decision as _Decision
from hastack.recovery.decision import Outcome


@dataclass(frozen=True)
class NodeFacts:
    name: str
    reachable: bool = True
    unit: str = "inactive"  # systemd ActiveState of mongod
    error: str = ""


@dataclass(frozen=True)
class EvidenceRow:
    node: str
    reachable: bool
    unit: str
    member: str  # its state as the replica set sees it



class Step(Enum):
    START = "start"  # reset-failed + start mongod: the set elects by itself once a majority runs


Action = _Action[Step]


# The decider's answer: its steps and evidence rows, typed as galera's and rabbitmq's are.
Decision = _Decision[Action, EvidenceRow]


def decide(nodes: tuple[NodeFacts, ...], rs: ReplSet | None, ports: Mapping[str, str], *,
           patient: bool = False) -> Decision:
    """`nodes` are the hosts of members and arbiter; `ports` maps a host to its member name (host:port).
    `patient`: hosts that do not answer may be booting: wait for them rather than refuse."""
    seen = {m.name: m for m in rs.members} if rs else {}
    ev = tuple(EvidenceRow(n.name, n.reachable, n.unit if n.reachable else "unreachable",
                           seen[ports[n.name]].state if ports.get(n.name) in seen else "-") for n in nodes)
    start = tuple(n.name for n in nodes if n.reachable and n.unit in ("inactive", "failed"))
    if start:
        return Decision(Outcome.REPAIR, f"mongod is down on {', '.join(start)}",
                        tuple(Action(Step.START, n) for n in start), ev)
    if rs is not None and rs.healthy():
        return Decision(Outcome.HEALTHY, f"primary {rs.primary}; every member healthy", (), ev)
    if not any(n.reachable for n in nodes):
        if patient:
            return Decision(Outcome.WAIT, "no member answers yet: waiting for "
                            + ", ".join(n.name for n in nodes) + " (booting?)", (), ev)
        return Decision(Outcome.REFUSE, "no member can be reached", (), ev)
    return Decision(Outcome.WAIT, "every reachable mongod runs; waiting for "
                    + ("an election" if rs is None or rs.primary is None else "members to catch up"), (), ev)

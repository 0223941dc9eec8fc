"""Bringing a RabbitMQ cluster back together after an outage or a partition. Pure.

After every node stopped, each one waits at boot for the peers it last saw
(Mnesia's table wait): started together they find each other; if the peers
never come, they give up and systemd reports them failed. The decider reads
each node's unit state and cluster view and says which nodes to start,
restart or force-boot, with the evidence; it waits while nodes are booting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hastack.components.rabbitmq import RabbitCluster
from hastack.recovery.decision import Action as _Action
from hastack.recovery.decision import Decision as _Decision
from hastack.recovery.decision import Outcome


@dataclass(frozen=True)
class NodeFacts:
    name: str  # host name; the Erlang node is rabbit@name
    reachable: bool = True
    unit: str = "inactive"  # systemd ActiveState: active, activating, deactivating, failed, inactive
    view: RabbitCluster | None = None  # cluster_status from this node, when it answered
    error: str = ""
    # The unit is active and the Erlang VM answers, but the rabbit app neither runs nor
    # boots: a restart inside the VM failed (seen after a pause_minority resume raced
    # its peer's boot). Nothing in RabbitMQ retries it.
    stalled: bool = False

    @property
    def node(self) -> str:
        return f"rabbit@{self.name}"

    @property
    def serving(self) -> bool:
        return self.view is not None and self.node in self.view.serving

    @property
    def down(self) -> bool:
        return self.unit in ("inactive", "failed")


class Step(Enum):
    START = "start"  # reset-failed + start the unit
    RESTART = "restart"  # a node on the wrong side of a partition, or stalled
    FORCE_BOOT = "force-boot"  # rabbitmqctl force_boot: start without waiting for the peers
    FORGET = "forget"  # forget_cluster_node: a node that is gone for good


Action = _Action[Step]


@dataclass(frozen=True)
class EvidenceRow:
    node: str
    reachable: bool
    unit: str
    serving: bool
    sees: str  # running nodes in its view
    partitions: str
    note: str = ""



# The decider's answer: its steps (Action) and evidence rows.
Decision = _Decision[Action, EvidenceRow]


def _short(nodes: tuple[str, ...]) -> str:
    return ", ".join(n.removeprefix("rabbit@") for n in nodes) or "-"


def evidence(nodes: tuple[NodeFacts, ...]) -> tuple[EvidenceRow, ...]:
    return tuple(EvidenceRow(n.name, n.reachable, (n.unit + (" (app stopped)" if n.stalled else ""))
                             if n.reachable else "unreachable", n.serving,
                             _short(n.view.running) if n.view else "-",
                             _short(n.view.partitions) if n.view else "-", n.error) for n in nodes)


def decide(nodes: tuple[NodeFacts, ...], *, force: bool = False, forget: tuple[str, ...] = (),
           patient: bool = False) -> Decision:
    """What brings the nodes `nodes` (spec order) back into one cluster.

    `forget` names nodes gone for good: removed from the cluster by a node
    that serves. `force` allows a force-boot while a node cannot be reached;
    `patient` waits for such a node instead (it may be booting).
    """
    ev = evidence(nodes)
    names = [n.name for n in nodes]
    unknown = [f for f in forget if f not in names]
    if unknown:
        return Decision(Outcome.REFUSE, f"{', '.join(unknown)}: not rabbitmq nodes ({', '.join(names)})", (), ev)
    present = tuple(n for n in nodes if n.name not in forget)
    serving = [n for n in present if n.serving]
    if serving:
        return _beside_serving(present, serving, forget, ev)
    return _nothing_serves(present, force=force, patient=patient, ev=ev)


def _beside_serving(present: tuple[NodeFacts, ...], serving: list[NodeFacts], forget: tuple[str, ...],
                    ev: tuple[EvidenceRow, ...]) -> Decision:
    """Some node serves: heal a partition, restart the stalled, start the stopped, forget the gone."""
    want = {n.node for n in present}
    views = [n.view for n in present if n.view is not None]
    anchor = serving[0]
    assert anchor.view is not None
    acts: list[Action] = []
    if forget:
        members = set(anchor.view.disk_nodes) | set(anchor.view.ram_nodes)
        acts += [Action(Step.FORGET, f"rabbit@{f}", on=anchor.name) for f in forget if f"rabbit@{f}" in members]
    # A partition: the side that serves the most nodes stays; the other side restarts and rejoins.
    if any(v.partitions for v in views):
        sides = sorted({tuple(sorted(set(v.running) & want)) for v in views}, key=lambda s: (-len(s), s))
        if set(sides[0]) == want and len(sides) == 1:
            return _partition_on_record(present, anchor, acts, ev)
        keep = set(sides[0])
        acts += [Action(Step.RESTART, n.name) for n in present if n.reachable and n.node not in keep]
        return Decision(Outcome.REPAIR, f"partitioned: {' | '.join(_short(s) for s in sides)}; "
                        f"{_short(sides[0])} stays, the rest restart and rejoin", tuple(acts), ev)
    acts += [Action(Step.RESTART, n.name) for n in present if n.reachable and n.stalled]
    acts += [Action(Step.START, n.name) for n in present if n.reachable and n.down]
    if acts:
        return Decision(Outcome.REPAIR, f"{_short(tuple(sorted(n.node for n in serving)))} serve; "
                        + ", ".join(str(a) for a in acts), tuple(acts), ev)
    if all(set(v.running) == want and set(v.serving) == want for v in views) and len(views) == len(present):
        return Decision(Outcome.HEALTHY, f"{len(want)} nodes running, no partitions", (), ev)
    return Decision(Outcome.WAIT, "nodes still booting: "
                    + _short(tuple(sorted(want - set(anchor.view.serving)))), (), ev)


def _partition_on_record(present: tuple[NodeFacts, ...], anchor: NodeFacts, acts: list[Action],
                         ev: tuple[EvidenceRow, ...]) -> Decision:
    """Every node sees every other, yet some still list a partition: it healed (the links came back,
    the Erlang connections with them) and a node keeps its record until it restarts, reported as
    partitioned for good. Seen after repeated management cuts in the lab, where the partition rule
    had every node on the side that stays and so restarted none, round after round. One node that
    holds the record restarts per round, not the one that serves first while another could: two of
    three down at once leave the third a minority, which pause_minority pauses (seen: nothing served
    until a round restarted it too)."""
    held = [n for n in present if n.reachable and n.view is not None and n.view.partitions]
    first = next((n for n in held if n.name != anchor.name), held[0])
    acts.append(Action(Step.RESTART, first.name))
    return Decision(Outcome.REPAIR, "every node sees every other; a healed partition is still on record on "
                    f"{', '.join(n.name for n in held)}: restart {first.name} to clear it (one a round)",
                    tuple(acts), ev)


def _nothing_serves(present: tuple[NodeFacts, ...], *, force: bool, patient: bool,  # noqa: PLR0911
                    ev: tuple[EvidenceRow, ...]) -> Decision:
    """Nothing serves: start, restart or force-boot so that the nodes boot together."""
    # Nothing serves. Nodes that boot wait for the peers they last saw: start those.
    stalled = [n for n in present if n.reachable and n.stalled]
    booting = [n for n in present if n.reachable and not n.down and not n.stalled]
    down = [n for n in present if n.reachable and n.down]
    unreachable = [n.name for n in present if not n.reachable]
    if stalled:  # restarted together with the stopped ones, so that they boot together
        acts = [Action(Step.RESTART, n.name) for n in stalled] + [Action(Step.START, n.name) for n in down]
        return Decision(Outcome.REPAIR, f"nothing serves; {', '.join(n.name for n in stalled)}: the Erlang VM "
                        "runs but the rabbit app neither runs nor boots (a failed restart): "
                        + ", ".join(str(a) for a in acts), tuple(acts), ev)
    if booting and down:
        return Decision(Outcome.REPAIR, f"{', '.join(n.name for n in booting)} wait for peers that are down: "
                        f"start {', '.join(n.name for n in down)}", tuple(Action(Step.START, n.name) for n in down),
                        ev)
    if booting:  # they find each other, or give up (a failed unit) and are force-booted next time
        return Decision(Outcome.WAIT, f"{', '.join(n.name for n in booting)} booting, waiting for "
                        + ("each other" if not unreachable else ", ".join(unreachable)), (), ev)
    # Before "nothing answers at all": after a power loss every host may still be booting on a loaded machine.
    if unreachable and patient:
        return Decision(Outcome.WAIT, f"nothing serves; waiting for {', '.join(unreachable)} to answer (booting?)",
                        (), ev)
    if not down:
        return Decision(Outcome.REFUSE, "no rabbitmq node can be reached", (), ev)
    if unreachable and not force:
        return Decision(Outcome.REFUSE, f"nothing serves and {', '.join(unreachable)} cannot be reached: the "
                        "others wait for it. Bring it back, or --force to force-boot without it", (), ev)
    # Every reachable node stopped (gave up waiting): force-boot the first, then start the rest.
    first = down[0]
    acts = [Action(Step.FORCE_BOOT, first.name), Action(Step.START, first.name)]
    acts += [Action(Step.START, n.name) for n in down if n is not first]
    return Decision(Outcome.REPAIR, f"no node serves and none is booting: force-boot {first.name} "
                    "(quorum queues keep their data in every member's log), then start the others",
                    tuple(acts), ev)

"""Which galera node to bootstrap after an outage, and in what order the rest rejoin. Pure.

The facts come from `grastate.dat`, `galera_recovery` (mariadbd
--wsrep-recover) and wsrep status; the decision is a list of steps plus the
evidence table it was made from. It refuses rather than guesses: a node that
cannot be read may hold the latest commits, and two histories (different
cluster UUIDs) need a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hastack.components.galera import GaleraState, GraState, Position
from hastack.recovery.decision import Action as _Action
from hastack.recovery.decision import Decision as _Decision
from hastack.recovery.decision import Outcome


@dataclass(frozen=True)
class NodeFacts:
    name: str
    reachable: bool = True
    running: bool = False  # mariadbd has a process
    state: GaleraState | None = None  # wsrep status, when it answered SQL
    grastate: GraState | None = None
    recovered: Position | None = None  # from --wsrep-recover, read only when not running
    starting_s: float | None = None  # how long its unit has been starting or queued to start; None: neither
    # How long this recovery has seen it run with no sign of life: no SQL answer, no state-transfer bytes arriving.
    silent_s: float = 0.0
    error: str = ""  # why something could not be read

    @property
    def primary(self) -> bool:
        return self.state is not None and self.state.primary

    @property
    def started(self) -> bool:
        """mariadbd runs, or its unit is starting (its own --wsrep-recover runs before mariadbd does)."""
        return self.running or self.starting_s is not None

    def position(self) -> Position | None:
        """The last commit this node holds, from the best source available."""
        if self.state is not None and self.state.cluster_state_uuid and self.state.last_committed >= 0:
            return Position(self.state.cluster_state_uuid, self.state.last_committed)
        if self.grastate is not None and self.grastate.seqno >= 0:
            return Position(self.grastate.uuid, self.grastate.seqno)
        return self.recovered

    def source(self) -> str:
        if self.state is not None and self.state.cluster_state_uuid and self.state.last_committed >= 0:
            return "wsrep status"
        if self.grastate is not None and self.grastate.seqno >= 0:
            return "grastate.dat"
        return "wsrep-recover" if self.recovered else "-"


class Step(Enum):
    READ = "read"  # stop a mariadbd that runs without answering, to read its position
    STOP = "stop"  # stop a mariadbd waiting outside any primary component, or stalled joining one
    MARK_SAFE = "mark-safe"  # safe_to_bootstrap: 1 in grastate.dat
    BOOTSTRAP = "bootstrap"  # galera_new_cluster
    JOIN = "join"  # start mariadb; it joins the primary component (IST or SST)
    GARBD = "garbd"  # (re)start the arbitrator once a primary component exists


Action = _Action[Step]


@dataclass(frozen=True)
class EvidenceRow:
    node: str
    reachable: bool
    running: bool
    state: str
    uuid: str
    seqno: int | None
    source: str
    safe_to_bootstrap: bool | None
    note: str = ""



# The decider's answer: its steps (Action) and evidence rows.
Decision = _Decision[Action, EvidenceRow]


def evidence(nodes: tuple[NodeFacts, ...], chosen: str | None = None) -> tuple[EvidenceRow, ...]:
    rows = []
    for n in nodes:
        pos = n.position()
        state = (f"{n.state.cluster_status}/{n.state.local_state}" if n.state is not None
                 else (f"running, no answer{f' for {n.silent_s:.0f} s' if n.silent_s >= 1 else ''}" if n.running
                       else "stopped"))
        rows.append(EvidenceRow(
            n.name, n.reachable, n.running, state if n.reachable else "unreachable",
            pos.uuid if pos else (n.grastate.uuid if n.grastate else "-"), pos.seqno if pos else None,
            n.source(), n.grastate.safe_to_bootstrap if n.grastate else None,
            "chosen" if n.name == chosen else n.error))
    return tuple(rows)


# A joiner answers no SQL while it receives a snapshot (SST; the donor shows Donor/Desynced all
# that time) and bytes arrive on its transfer connections. Neither, for this long: it is wedged.
STALL_S = 120.0
DONATING = "Donor/Desynced"


def decide(nodes: tuple[NodeFacts, ...], *, writer: str, arbitrator: str | None = None,
           force: bool = False, choose: str | None = None, patient: bool = False,
           grace_s: float = 45.0, stall_s: float = STALL_S) -> Decision:
    """The recovery for the galera nodes `nodes` (in spec order).

    `force` proceeds without the nodes that cannot be read; `choose` names
    the bootstrap node instead of the most advanced one, and needs `force`
    when another node holds later commits. `patient`: a node that cannot be
    read yet may still be booting, so wait for it rather than refuse.
    `grace_s`: how long a starting node is left to find its peers on its own.
    `stall_s`: how long a node may show no sign of life (as seen by this
    recovery) beside a primary component with no donor before it is restarted.
    """
    names = [n.name for n in nodes]
    if choose is not None and choose not in names:
        return Decision(Outcome.REFUSE, f"{choose} is not a galera node ({', '.join(names)})", (),
                        evidence(nodes))
    garbd = (Action(Step.GARBD, arbitrator),) if arbitrator else ()
    if any(n.primary for n in nodes):
        return _beside_primary(nodes, garbd, stall_s)
    not_yet = _not_readable_yet(nodes, force=force, patient=patient, grace_s=grace_s)
    if not_yet is not None:
        return not_yet
    known = _positions(nodes, force=force, choose=choose)
    if not isinstance(known, dict):  # a refusal
        return known
    return _bootstrap(nodes, known, garbd, writer=writer, force=force, choose=choose)


def _beside_primary(nodes: tuple[NodeFacts, ...], garbd: tuple[Action, ...], stall_s: float) -> Decision:
    """A primary component runs: every other node rejoins it, or is left to finish joining."""
    primary = [n for n in nodes if n.primary]
    # A node that answers outside the primary component is restarted; one
    # that runs without answering yet is joining (an SST): left alone.
    astray = [n for n in nodes if n.reachable and n.running and n.state is not None and not n.primary]
    down = [n for n in nodes if n.reachable and not n.running]
    silent = [n for n in nodes if n.reachable and n.running and n.state is None]
    donating = any(n.state is not None and n.state.local_state == DONATING for n in primary)
    stalled = [] if donating else [n for n in silent if n.silent_s >= stall_s]
    joining = [n.name for n in silent if n not in stalled]
    restart = [*astray, *stalled]
    acts = [Action(Step.STOP, n.name) for n in restart]
    acts += [Action(Step.JOIN, n.name) for n in [*restart, *down]]
    size = max(n.state.cluster_size for n in primary if n.state)
    # The arbitrator is (re)started only when the component lacks a member it should have.
    garbd = garbd if size < len(nodes) + 1 else ()
    if acts:
        why = "".join(f"; {n.name} ran {n.silent_s:.0f} s answering nothing and receiving nothing, no "
                      "member donating: wedged, restarted" for n in stalled)
        return Decision(Outcome.REJOIN, f"a primary component (size {size}) runs on "
                        f"{', '.join(n.name for n in primary)}; "
                        f"{', '.join(n.name for n in [*restart, *down])} rejoin it{why}", (*acts, *garbd),
                        evidence(nodes))
    if joining:
        return Decision(Outcome.WAIT, f"{', '.join(joining)} joining the primary component (size {size})",
                        (), evidence(nodes))
    return Decision(Outcome.HEALTHY, f"every reachable node is in the primary component (size {size})",
                    garbd, evidence(nodes))


def _not_readable_yet(nodes: tuple[NodeFacts, ...], *, force: bool, patient: bool, grace_s: float
                      ) -> Decision | None:
    """No primary component: wait, refuse or read first while a node's position cannot be known."""
    unreadable = [n for n in nodes if not n.reachable]
    if unreadable and patient:
        return Decision(Outcome.WAIT, f"no primary component; waiting for {', '.join(n.name for n in unreadable)} "
                        "to answer (booting?)", (), evidence(nodes))
    if unreadable and not force:
        return Decision(Outcome.REFUSE, f"no primary component, and {', '.join(n.name for n in unreadable)} "
                        "cannot be read: it may hold the latest commits. Bring it back, or run with --force "
                        "to bootstrap from the others (commits only it holds are lost)", (), evidence(nodes))
    # A node whose unit is starting is starting whether or not mariadbd has a process yet: the unit's
    # own --wsrep-recover runs first (14 s in a cold boot of every lab host). Taken for stopped, it was
    # left running while another node was bootstrapped, and restored its old primary component with
    # a third: two primary components (the three-controller lab's power-loss, 8967681).
    blind = [n for n in nodes if n.reachable and n.started and n.position() is None]
    # A node starting after a crash waits for its last primary component's
    # members (pc.recovery): when they all come back, galera restores it by
    # itself, with no node chosen. Give that its chance before stopping them.
    young = [n.name for n in nodes if n.reachable and n.starting_s is not None and n.starting_s < grace_s]
    if young:
        return Decision(Outcome.WAIT, f"no primary component yet; {', '.join(young)} starting (under "
                        f"{grace_s:.0f} s): pc.recovery may restore it by itself", (), evidence(nodes))
    if blind:
        return Decision(Outcome.READ, f"no primary component; {', '.join(n.name for n in blind)} run without "
                        "answering, so their position cannot be read: stop them, then decide",
                        tuple(Action(Step.READ, n.name) for n in blind), evidence(nodes))
    unknown = [n for n in nodes if n.reachable and n.position() is None and n.grastate is not None
               and n.grastate.has_history]
    if unknown and not force:
        return Decision(Outcome.REFUSE, f"the position of {', '.join(n.name for n in unknown)} cannot be read "
                        "(seqno -1 and --wsrep-recover failed); it may hold the latest commits. Read its error "
                        "log, or run with --force to bootstrap from the others", (), evidence(nodes))
    return None


def _positions(nodes: tuple[NodeFacts, ...], *, force: bool, choose: str | None) -> dict[str, Position] | Decision:
    """The readable nodes' last commits, in one history (the operator's, when they differ), or a refusal."""
    known = {n.name: p for n in nodes if n.reachable and (p := n.position()) is not None and p.uuid.strip("0-")}
    if not known:
        return Decision(Outcome.REFUSE, "no node holds galera history: this is a first deploy "
                        "(`hastack deploy`), not a recovery", (), evidence(nodes))
    if choose is not None and choose not in known:
        return Decision(Outcome.REFUSE, f"{choose} has no readable position; it cannot be bootstrapped",
                        (), evidence(nodes))
    histories = sorted({p.uuid for p in known.values()})
    if len(histories) > 1:
        if choose is None or not force:
            by = ", ".join(f"{u}: {', '.join(n for n, p in known.items() if p.uuid == u)}" for u in histories)
            return Decision(Outcome.REFUSE, f"the nodes hold different histories ({by}); choosing one discards "
                            "the other: a person decides, with --bootstrap NODE --force", (), evidence(nodes))
        # The operator chose a history: the other nodes join it by a full state transfer.
        known = {n: p for n, p in known.items() if p.uuid == known[choose].uuid}
    return known


def _bootstrap(nodes: tuple[NodeFacts, ...], known: dict[str, Position], garbd: tuple[Action, ...], *,
               writer: str, force: bool, choose: str | None) -> Decision:
    """The node with the most commits (or the operator's) starts a new primary component; the others join it."""
    names = [n.name for n in nodes]
    by_name = {n.name: n for n in nodes}

    def rank(name: str) -> tuple[int, bool, bool, int]:
        # Most commits first; on a tie, the node galera itself marked safe, then the writer.
        gra = by_name[name].grastate
        return known[name].seqno, bool(gra and gra.safe_to_bootstrap), name == writer, -names.index(name)

    best = max(known, key=rank)
    target = choose or best
    behind = known[best].seqno - known[target].seqno
    if behind > 0 and not force:
        return Decision(Outcome.REFUSE, f"{target} is {behind} transaction(s) behind {best}: "
                        "bootstrapping it loses them; --force if that is meant", (), evidence(nodes))
    chosen = by_name[target]
    readable = [n for n in nodes if n.reachable]
    # Every other node stopped before the new primary component exists, a starting one too: left to
    # start, it may restore its old component (pc.recovery) beside the new one.
    acts = [Action(Step.STOP, n.name) for n in readable if n.started]
    if not (chosen.grastate and chosen.grastate.safe_to_bootstrap):
        acts.append(Action(Step.MARK_SAFE, chosen.name))
    acts.append(Action(Step.BOOTSTRAP, chosen.name))
    acts += [Action(Step.JOIN, n.name) for n in readable if n is not chosen]
    why = (f"no primary component; {target} holds the most commits (seqno {known[target].seqno}, "
           f"{chosen.source()})" if target == best else f"no primary component; {target} chosen by the operator")
    return Decision(Outcome.BOOTSTRAP, why, (*acts, *garbd), evidence(nodes, chosen.name), chosen.name)

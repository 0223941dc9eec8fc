"""`hastack recover`: gather facts over SSH, decide (pure), show the evidence, act, look again.

Patroni's loop, bounded: each round reads every node afresh and the decider
says what to do next; a round acts only on what it just saw. The loop ends
when every cluster is whole, when a decider refuses (the evidence says why),
or when the time bound runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import asyncssh

from hastack.common.poll import PollTimeout, until_async
from hastack.common.progress import Progress
from hastack.components import mongo_config
from hastack.components.fact import shell
from hastack.components.galera import GRASTATE, GRASTATE_PATH, RUNNING, TRANSFER, GaleraState, Silent, parse_recovered
from hastack.components.galera import STATUS as WSREP
from hastack.components.mongodb import set_hosts
from hastack.components.pacemaker import MON, PacemakerState
from hastack.components.rabbitmq import BOOT_STATE, CLUSTER
from hastack.components.systemd import unit_age
from hastack.credentials.model import Secrets
from hastack.hosts.fleet import Access, reachable
from hastack.hosts.mongo import MongoLogin, mongo_client, replset
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError, SshHost
from hastack.recovery import galera, mongodb, pacemaker, rabbitmq
from hastack.recovery.decision import COMPONENTS, Component, Outcome
from hastack.spec.model import Spec

# Between two looks while nodes boot or join on their own.
POLL_S = 2.0


class RecoverError(Exception):
    pass


@dataclass
class Round:
    """One look and what was done about it: the evidence, kept for the report."""

    component: str
    outcome: str
    reason: str
    actions: list[str]
    evidence: list[dict[str, Any]]
    at_s: float


@dataclass
class Report:
    rounds: list[Round] = field(default_factory=list)
    healthy: dict[str, bool] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.refused and all(self.healthy.values())


async def _unit(h: SshHost, unit: str) -> str:
    res = await h.run(["systemctl", "show", "-p", "ActiveState", "--value", unit], check=False, timeout=15)
    return res.stdout.strip() or "unknown"


# -- galera --------------------------------------------------------------------------------------------

# Per galera node that runs without answering: since when it has shown no sign of life (no SQL
# answer, no state-transfer bytes arriving), and the transfer byte count last seen.
Quiet = dict[str, tuple[float, int | None]]


async def galera_facts(spec: Spec, hosts: dict[str, SshHost], unreachable: dict[str, str], quiet: Quiet,
                       ) -> tuple[galera.NodeFacts, ...]:
    """`quiet` is kept across looks by the caller (see Quiet)."""

    async def one(name: str) -> galera.NodeFacts:
        if name in unreachable:
            return galera.NodeFacts(name, reachable=False, error=unreachable[name])
        h = hosts[name]
        running = await probe(h, RUNNING)
        age = await probe(h, unit_age("mariadb"))
        state = None
        if running:
            state = await _wsrep(h)
        gra = await probe(h, GRASTATE)
        recovered, error = None, ""
        if not running and age.starting_s is None and gra is not None and gra.has_history and gra.seqno < 0:
            # The last commit InnoDB holds: mariadbd --wsrep-recover, as the unit's own start does (never
            # beside that start: two of them on one data directory).
            res = await h.run(["galera_recovery"], check=False, timeout=300)
            recovered = parse_recovered(res.stdout)
            if recovered is None:
                error = "wsrep-recover failed: " + (res.stderr.strip().splitlines() or ["no output"])[-1][:200]
        silent_s = 0.0
        if running and state is None:
            fed = await probe(h, TRANSFER)
            now = time.monotonic()
            since, seen = quiet.get(name, (now, fed))
            since = now if fed != seen else since  # bytes arrived since the last look: it is being fed
            quiet[name] = (since, fed)
            silent_s = now - since
        else:
            quiet.pop(name, None)
        return galera.NodeFacts(name, True, running, state, gra, recovered, error=error, starting_s=age.starting_s,
                                silent_s=silent_s)

    return tuple(await asyncio.gather(*(one(n.name) for n in spec.galera_nodes())))


async def _galera_primary_size(h: SshHost) -> int | None:
    st = await _wsrep(h)
    return st.cluster_size if st is not None and st.primary and st.local_state == "Synced" else None


async def _wsrep(h: SshHost) -> GaleraState | None:
    try:
        return await probe(h, WSREP)
    except Silent:  # running, answering nothing: the transfer bytes tell a joiner from a wedge
        return None


async def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    # A probe's transport error inside a wait: the next poll tries again.
    try:
        return await until_async(check, timeout, 0.5, retry_on=(HostError, asyncssh.Error, OSError))
    except PollTimeout:
        raise RecoverError(f"timed out after {timeout:.0f} s waiting for {what}") from None


async def apply_galera(spec: Spec, d: galera.Decision, hosts: dict[str, SshHost], progress: Progress) -> None:
    expected = len(spec.galera_nodes()) + (1 if spec.galera.arbitrator else 0)
    for a in d.actions:
        h = hosts.get(a.node)
        if h is None:
            raise RecoverError(f"{a.node}: not reachable for `{a}`")
        if a.step in (galera.Step.STOP, galera.Step.READ):
            # A decision made without a primary component is seconds old: if one formed meanwhile,
            # stop nothing and look again. (Beside a primary, STOP is a rejoin's first half.)
            members = [hosts[n.name] for n in spec.galera_nodes() if n.name in hosts]
            if d.outcome is not Outcome.REJOIN and any(
                    await asyncio.gather(*(_galera_primary_size(m) for m in members))):
                progress("galera: a primary component formed meanwhile; deciding again")
                return
            progress(f"galera: {a}")
            # A mariadbd waiting for a primary component ignores SIGTERM for a minute or more (measured);
            # it serves nothing and holds no open transaction, so KILL after 10 s is safe (InnoDB recovers).
            await h.run(shell("timeout 10 systemctl stop mariadb || { systemctl kill -s KILL mariadb; "
                              "systemctl stop mariadb; }"), check=False, timeout=60)
            continue
        progress(f"galera: {a}")
        if a.step is galera.Step.MARK_SAFE:
            await h.run(["sed", "-i", "s/^safe_to_bootstrap:.*/safe_to_bootstrap: 1/", GRASTATE_PATH], timeout=15)
        elif a.step is galera.Step.BOOTSTRAP:
            await h.run(shell("systemctl reset-failed mariadb; galera_new_cluster"), timeout=300)
            await _until(functools.partial(_galera_primary_size, h), 120, f"{a.node} to form a primary component")
        elif a.step is galera.Step.JOIN:
            # One at a time: each may need a state transfer from a donor.
            await h.run(shell("systemctl reset-failed mariadb; systemctl start mariadb"), timeout=900)
            await _until(functools.partial(_galera_primary_size, h), 600,
                         f"{a.node} to be Synced in the primary component")
        elif a.step is galera.Step.GARBD:
            members = [hosts[n.name] for n in spec.galera_nodes() if n.name in hosts]
            size = next((s for s in await asyncio.gather(*(_galera_primary_size(m) for m in members)) if s), None)
            if size is not None and size < expected:
                await h.run(shell("systemctl reset-failed garb; systemctl restart garb"), timeout=60)
                await _until(functools.partial(_size_at_least, members[0], expected), 60,
                             f"garbd on {a.node} in the cluster")


async def _size_at_least(h: SshHost, n: int) -> bool:
    size = await _galera_primary_size(h)
    return size is not None and size >= n


# -- rabbitmq ------------------------------------------------------------------------------------------

async def rabbit_facts(spec: Spec, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> tuple[
        rabbitmq.NodeFacts, ...]:
    async def one(name: str) -> rabbitmq.NodeFacts:
        if name in unreachable:
            return rabbitmq.NodeFacts(name, reachable=False, error=unreachable[name])
        h = hosts[name]
        unit = await _unit(h, "rabbitmq-server")
        view, error, stalled = None, "", False
        if unit == "active":
            try:
                view = await probe(h, CLUSTER)
            except HostError as exc:
                error = (exc.result.stderr.strip().splitlines() or ["cluster_status failed"])[-1][:200]
            if view is None or f"rabbit@{name}" not in view.serving:
                with contextlib.suppress(HostError):  # an RPC error: no sign either way
                    stalled = await probe(h, BOOT_STATE) == (False, False)
        return rabbitmq.NodeFacts(name, True, unit, view, error, stalled)

    return tuple(await asyncio.gather(*(one(n.name) for n in spec.rabbit_nodes())))


async def apply_rabbit(d: rabbitmq.Decision, hosts: dict[str, SshHost], progress: Progress) -> None:
    # Starts do not block: a booting node waits for its peers, so they must boot together.
    commands = {rabbitmq.Step.START: shell("systemctl reset-failed rabbitmq-server; systemctl start --no-block "
                                           "rabbitmq-server"),
                rabbitmq.Step.RESTART: ("systemctl", "restart", "--no-block", "rabbitmq-server"),
                rabbitmq.Step.FORCE_BOOT: ("rabbitmqctl", "force_boot")}
    for a in d.actions:
        progress(f"rabbitmq: {a}")
        if a.step is rabbitmq.Step.FORGET:
            await hosts[a.on].run(["rabbitmqctl", "forget_cluster_node", a.node], timeout=120)
        else:
            await hosts[a.node].run(commands[a.step], timeout=120)


# -- mongodb -------------------------------------------------------------------------------------------

async def mongo_facts(spec: Spec, secrets: Secrets, hosts: dict[str, SshHost], unreachable: dict[str, str]
                      ) -> tuple[tuple[mongodb.NodeFacts, ...], Any]:
    names = list(set_hosts(spec))

    async def one(name: str) -> mongodb.NodeFacts:
        if name in unreachable:
            return mongodb.NodeFacts(name, reachable=False, error=unreachable[name])
        return mongodb.NodeFacts(name, True, await _unit(hosts[name], "mongod"))

    facts = tuple(await asyncio.gather(*(one(n) for n in names)))
    rs = None
    for n in [m.name for _, m in spec.mongo_members()]:
        if n in hosts and n not in unreachable:
            try:
                rs = await replset(hosts[n], MongoLogin.of(spec, secrets))
                if rs.primary:
                    break
            except Exception:  # a member that does not answer yet: ask the next
                continue
    return facts, rs


# -- the loop: one reconcile protocol for every cluster ------------------------------------------------

Show = Callable[[Round], None]
Act = Callable[[dict[str, SshHost]], Awaitable[None]]


@dataclass(frozen=True)
class Options:
    """What the operator said: go on without unreadable nodes, the node to bootstrap, nodes gone for good."""

    force: bool = False
    bootstrap: str | None = None
    forget: tuple[str, ...] = ()
    stall_s: float = galera.STALL_S


@dataclass
class Context:
    """One recovery run: what every look needs. `quiet` is kept across looks (see Quiet)."""

    spec: Spec
    secrets: Secrets
    progress: Progress
    options: Options
    quiet: Quiet = field(default_factory=dict)
    patient: bool = True  # hosts that do not answer may be booting: wait for them
    cleaned: set[tuple[str, str]] = field(default_factory=set)  # (resource, node) cleaned up in this run


@dataclass(frozen=True)
class Look:
    """A component's facts, decided: the outcome, why, the steps, the evidence, and what carries them out."""

    outcome: Outcome
    reason: str
    actions: tuple[str, ...]
    evidence: list[dict[str, Any]]
    act: Act | None = None


class Next(Enum):
    DONE = "done"  # whole, refused or out of time: the report says which
    AGAIN = "again"  # it acted: look again at once
    LATER = "later"  # nothing to do yet: look again after POLL_S


def _rows(evidence: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(r) for r in evidence]


async def look_galera(ctx: Context, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Look:
    o, spec = ctx.options, ctx.spec
    facts = await galera_facts(spec, hosts, unreachable, ctx.quiet)
    d = galera.decide(facts, writer=spec.galera_writer().name, arbitrator=spec.galera.arbitrator, force=o.force,
                      choose=o.bootstrap, patient=ctx.patient, stall_s=o.stall_s)
    act: Act | None = (lambda hs: apply_galera(spec, d, hs, ctx.progress)) if d.actions else None
    return Look(d.outcome, d.reason, tuple(str(a) for a in d.actions), _rows(d.evidence), act)


async def look_rabbitmq(ctx: Context, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Look:
    facts = await rabbit_facts(ctx.spec, hosts, unreachable)
    d = rabbitmq.decide(facts, force=ctx.options.force, forget=ctx.options.forget, patient=ctx.patient)
    act: Act | None = (lambda hs: apply_rabbit(d, hs, ctx.progress)) if d.actions else None
    return Look(d.outcome, d.reason, tuple(str(a) for a in d.actions), _rows(d.evidence), act)


async def look_mongodb(ctx: Context, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Look:
    facts, rs = await mongo_facts(ctx.spec, ctx.secrets, hosts, unreachable)
    d = mongodb.decide(facts, rs, set_hosts(ctx.spec), patient=ctx.patient)
    act: Act | None = (lambda hs: apply_mongo(d, hs, ctx.progress)) if d.actions else None
    return Look(d.outcome, d.reason, tuple(str(a) for a in d.actions), _rows(d.evidence), act)


async def apply_mongo(d: mongodb.Decision, hosts: dict[str, SshHost], progress: Progress) -> None:
    for a in d.actions:  # START only: the set elects by itself once a majority runs
        progress(f"mongodb: {a}")
        await hosts[a.node].run(shell("systemctl reset-failed mongod; systemctl start --no-block mongod"), timeout=60)


# -- pacemaker -----------------------------------------------------------------------------------------

# After a cleanup, how long pacemaker gets to start the resource again (or fail it again) before the
# next look: a start is bounded by its op timeout (30 s).
CLEANED_WAIT_S = 45.0


async def pacemaker_view(spec: Spec, hosts: dict[str, SshHost]) -> tuple[PacemakerState | None, str]:
    """crm_mon as the first member that answers shows it, and which member that was."""
    for node in spec.corosync_nodes():
        if node.name in hosts:
            with contextlib.suppress(HostError, asyncssh.Error, OSError):
                return await probe(hosts[node.name], MON, timeout=30), node.name
    return None, ""


async def look_pacemaker(ctx: Context, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Look:
    members = [n.name for n in ctx.spec.corosync_nodes()]
    mon, via = await pacemaker_view(ctx.spec, hosts)
    d = pacemaker.decide(mon, members, frozenset(ctx.cleaned), patient=ctx.patient)
    act: Act | None = (lambda hs: apply_pacemaker(ctx, d, hs[via])) if d.actions else None
    return Look(d.outcome, d.reason, tuple(str(a) for a in d.actions), _rows(d.evidence), act)


async def apply_pacemaker(ctx: Context, d: pacemaker.Decision, member: SshHost) -> None:
    """Each failure cleaned up (remembered: a second one is the decider's refusal), then a bounded wait
    until each resource runs on its node again or fails there again."""
    for a in d.actions:
        ctx.progress(f"pacemaker: {a}")
        await member.run(["crm_resource", "--cleanup", "--resource", a.resource, "--node", a.node], timeout=60)
        ctx.cleaned.add((a.resource, a.node))

    # Until the transition the cleanup started is over: seen in the lab, crm_mon showed the instance on
    # its node while its start was under way, and a look then took a start about to fail for a success.
    t0 = time.monotonic()
    await member.run(["crm_resource", "--wait", "--timeout", f"{CLEANED_WAIT_S:.0f}s"], check=False,
                     timeout=CLEANED_WAIT_S + 15)

    async def settled() -> bool | None:
        return True if pacemaker.settled(await probe(member, MON, timeout=30), d.actions) else None

    with contextlib.suppress(PollTimeout):  # the next look says what it sees either way
        await until_async(settled, max(POLL_S, CLEANED_WAIT_S - (time.monotonic() - t0)), POLL_S,
                          retry_on=(HostError, asyncssh.Error, OSError))


LOOKS: dict[Component, Callable[[Context, dict[str, SshHost], dict[str, str]], Awaitable[Look]]] = {
    Component.GALERA: look_galera, Component.RABBITMQ: look_rabbitmq, Component.MONGODB: look_mongodb,
    Component.PACEMAKER: look_pacemaker}


def _enabled(spec: Spec, comp: Component) -> bool:
    if comp is Component.PACEMAKER:
        return spec.vip_manager.runs_pacemaker and bool(spec.corosync_nodes())
    nodes = {Component.GALERA: spec.galera_nodes(), Component.RABBITMQ: spec.rabbit_nodes(),
             Component.MONGODB: spec.mongo_members()}[comp]
    return bool(nodes)  # each is empty when its section is disabled


@dataclass
class _Run:
    """The loop's own state: the report it fills, its clock and what it showed last."""

    ctx: Context
    access: Access
    show: Show
    report: Report
    t0: float
    deadline: float

    def record(self, comp: Component, outcome: str, reason: str, *, actions: tuple[str, ...] = (),
               evidence: list[dict[str, Any]] | None = None, last: tuple[str, str] | None = None) -> None:
        rnd = Round(comp.value, outcome, reason, list(actions), evidence or [], round(time.monotonic() - self.t0, 1))
        if (outcome, reason) != last:  # a wait that saw nothing new is not shown again
            self.report.rounds.append(rnd)
            self.show(rnd)

    def end(self, comp: Component, healthy: bool, refused: str = "") -> Next:
        self.report.healthy[comp.value] = healthy
        if refused:
            self.report.refused[comp.value] = refused
        return Next.DONE


async def _round(run: _Run, comp: Component, last: tuple[str, str] | None) -> Next:
    """One look at `comp` (facts, decision), shown unless it says what the last one did, then its act."""
    async with reachable(run.ctx.spec, run.access, timeout=5) as (hosts, unreachable):
        look = await LOOKS[comp](run.ctx, hosts, unreachable)
        run.record(comp, look.outcome.value, look.reason, actions=look.actions, evidence=look.evidence, last=last)
        if look.outcome is Outcome.REFUSE:
            return run.end(comp, False, look.reason)
        if look.outcome is Outcome.HEALTHY and look.act is None:
            return run.end(comp, True)
        if time.monotonic() > run.deadline:
            return run.end(comp, False, f"not whole after {run.deadline - run.t0:.0f} s: {look.reason}")
        if look.act is None:
            return Next.LATER
        await look.act(hosts)
        return run.end(comp, True) if look.outcome is Outcome.HEALTHY else Next.AGAIN


async def recover(spec: Spec, secrets: Secrets, access: Access, progress: Progress, show: Show, *,
                  only: tuple[str, ...] = COMPONENTS, options: Options = Options(), timeout: float = 600,
                  host_grace: float = 60) -> Report:
    """Each cluster in turn (galera, rabbitmq, mongodb): look, decide, act, until whole or refused.

    `host_grace`: for this long, a host that does not answer is waited for (it may be booting);
    after it, a decider that needs the host refuses unless `options.force`."""
    t0 = time.monotonic()
    run = _Run(Context(spec, secrets, progress, options), access, show, Report(), t0, t0 + timeout)
    for comp in (c for c in Component if c.value in only and _enabled(spec, c)):
        last: tuple[str, str] | None = None
        while True:
            run.ctx.patient = time.monotonic() - t0 < host_grace
            try:
                step = await _round(run, comp, last)
            except (HostError, asyncssh.Error, OSError, RecoverError) as exc:
                # A host that fails mid-step is a fact for the next look, not the end of recovery.
                reason = f"{type(exc).__name__}: {exc}"[:500]
                run.record(comp, "error", reason)
                step = Next.LATER  # look again shortly, not at once
                if time.monotonic() > run.deadline:
                    step = run.end(comp, False, f"not whole after {timeout:.0f} s: {reason}")
            if step is Next.DONE:
                break
            last = run.report.rounds[-1].outcome, run.report.rounds[-1].reason
            if step is Next.LATER:
                await asyncio.sleep(POLL_S)
    run.report.seconds = time.monotonic() - t0
    return run.report


# -- mongodb priority (the guide's rs.reconfig) ------------------------------------------------------

@dataclass(frozen=True)
class PriorityChange:
    member: str
    before: dict[str, float]  # member -> priority
    after: dict[str, float]
    version: int
    primary: str


async def set_mongo_priority(spec: Spec, secrets: Secrets, access: Access, node: str, priority: float
                             ) -> PriorityChange:
    """Change one member's priority through the primary: config read, changed (pure, checked), sent."""
    names = set_hosts(spec)
    if node not in names:
        raise RecoverError(f"{node} is not a mongodb member or arbiter ({', '.join(names)})")
    login = MongoLogin.of(spec, secrets)
    async with reachable(spec, access, timeout=5) as (hosts, _):
        primary = None
        for n in names:
            if n in hosts:
                with contextlib.suppress(Exception):  # any member that answers says who the primary is
                    primary = (await replset(hosts[n], login)).primary
                    if primary:
                        break
        by_member = {m: h for h, m in names.items()}
        if primary is None or by_member.get(primary) not in hosts:
            raise RecoverError("no writable primary to reconfigure through: `hastack recover` first")
        async with mongo_client(hosts[by_member[primary]], login, timeout_ms=5000) as client:
            config = (await asyncio.to_thread(client.admin.command, "replSetGetConfig"))["config"]
            try:
                new = mongo_config.with_priority(config, names[node], priority)
            except mongo_config.PriorityError as exc:
                raise RecoverError(str(exc)) from exc
            await asyncio.to_thread(client.admin.command, "replSetReconfig", new)
    return PriorityChange(names[node], {m["host"]: m.get("priority", 1) for m in config["members"]},
                          {m["host"]: m.get("priority", 1) for m in new["members"]}, new["version"], primary)

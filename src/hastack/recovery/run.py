"""`hastack recover`: gather facts over SSH, decide (pure), show the evidence, act, look again.

Patroni's loop, bounded: each round reads every node afresh and the decider
says what to do next; a round acts only on what it just saw. The loop ends
when every cluster is whole, when a decider refuses (the evidence says why),
or when the time bound runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncssh

from hastack.common.poll import PollTimeout, until_async
from hastack.common.progress import Progress
from hastack.components import mongo_config
from hastack.components.fact import shell
from hastack.components.galera import GRASTATE, GRASTATE_PATH, RUNNING, TRANSFER, GaleraState, Silent, parse_recovered
from hastack.components.galera import STATUS as WSREP
from hastack.components.rabbitmq import BOOT_STATE, CLUSTER
from hastack.components.systemd import unit_age
from hastack.credentials.model import Secrets
from hastack.hosts.fleet import Access, reachable
from hastack.hosts.mongo import mongo_client, replset
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError, SshHost
from hastack.recovery import galera, mongodb, rabbitmq
from hastack.recovery.decision import Outcome
from hastack.render.mongodb import PORT as MONGO_PORT
from hastack.spec.model import Spec

COMPONENTS = ("galera", "rabbitmq", "mongodb")
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
        if not running and gra is not None and gra.has_history and gra.seqno < 0:
            # The last commit InnoDB holds: mariadbd --wsrep-recover, as the unit's own start does.
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

def mongo_hosts(spec: Spec) -> dict[str, str]:
    """Host -> the member name the replica set knows it by."""
    port = MONGO_PORT
    names = {n.name: f"{n.address}:{port}" for _, n in spec.mongo_members()}
    if spec.mongodb.arbiter:
        arb = spec.node(spec.mongodb.arbiter)
        names[arb.name] = f"{arb.address}:{port}"
    return names


async def mongo_facts(spec: Spec, secrets: Secrets, hosts: dict[str, SshHost], unreachable: dict[str, str]
                      ) -> tuple[tuple[mongodb.NodeFacts, ...], Any]:
    names = list(mongo_hosts(spec))

    async def one(name: str) -> mongodb.NodeFacts:
        if name in unreachable:
            return mongodb.NodeFacts(name, reachable=False, error=unreachable[name])
        return mongodb.NodeFacts(name, True, await _unit(hosts[name], "mongod"))

    facts = tuple(await asyncio.gather(*(one(n) for n in names)))
    rs = None
    for n in [m.name for _, m in spec.mongo_members()]:
        if n in hosts and n not in unreachable:
            try:
                rs = await replset(hosts[n], secrets["mongodb_admin_password"])
                if rs.primary:
                    break
            except Exception:  # a member that does not answer yet: ask the next
                continue
    return facts, rs


# -- the loop ------------------------------------------------------------------------------------------

Show = Callable[[Round], None]
Act = Callable[[dict[str, SshHost]], Any]
# outcome, reason, actions, evidence rows, and what carries the actions out (None: nothing to do)
Look = tuple[str, str, list[str], list[dict[str, Any]], Act | None]


async def recover(spec: Spec, secrets: Secrets, access: Access, progress: Progress, show: Show, *,
                  only: tuple[str, ...] = COMPONENTS, force: bool = False, bootstrap: str | None = None,
                  forget: tuple[str, ...] = (), timeout: float = 600, host_grace: float = 60,
                  stall_s: float = galera.STALL_S) -> Report:
    """`host_grace`: for this long, a host that does not answer is waited for (it may be booting);
    after it, a decider that needs the host refuses unless `force`."""
    report = Report()
    t0 = time.monotonic()
    deadline = t0 + timeout
    wanted = [c for c in COMPONENTS if c in only and _enabled(spec, c)]
    quiet: Quiet = {}
    for comp in wanted:
        last: tuple[str, str] | None = None
        while True:
            try:
                done = await _round(comp, spec, secrets, access, progress, show, report, t0, deadline, last,
                                    force=force, bootstrap=bootstrap, forget=forget,
                                    patient=time.monotonic() - t0 < host_grace, quiet=quiet, stall_s=stall_s)
            except (HostError, asyncssh.Error, OSError, RecoverError) as exc:
                # A host that fails mid-step is a fact for the next look, not the end of recovery.
                rnd = Round(comp, "error", f"{type(exc).__name__}: {exc}"[:500], [], [],
                            round(time.monotonic() - t0, 1))
                report.rounds.append(rnd)
                show(rnd)
                done = False  # look again shortly, not at once
                if time.monotonic() > deadline:
                    report.refused[comp] = f"not whole after {timeout:.0f} s: {rnd.reason}"
                    report.healthy[comp] = False
                    break
            if done is True:
                break
            last = report.rounds[-1].outcome, report.rounds[-1].reason
            if done is False:
                await asyncio.sleep(POLL_S)
    report.seconds = time.monotonic() - t0
    return report


async def _round(comp: str, spec: Spec, secrets: Secrets, access: Access, progress: Progress,  # noqa: PLR0917
                 show: Show, report: Report, t0: float, deadline: float, last: tuple[str, str] | None, *,
                 force: bool, bootstrap: str | None, forget: tuple[str, ...], patient: bool,
                 quiet: Quiet, stall_s: float) -> bool | None:
    """One look at `comp`, shown unless it says what the last one did, and its act.

    True: the component is done (whole, refused or out of time; the report says which);
    None: it acted, look again at once; False: nothing to do yet, look again shortly.
    """
    async with reachable(spec, access, timeout=5) as (hosts, unreachable):
        outcome, reason, actions, ev, act = await _look(comp, spec, secrets, hosts, unreachable, progress,
                                                        force=force, bootstrap=bootstrap, forget=forget,
                                                        patient=patient, quiet=quiet, stall_s=stall_s)
        rnd = Round(comp, outcome, reason, actions, ev, round(time.monotonic() - t0, 1))
        if (outcome, reason) != last:  # a wait that saw nothing new is not shown again
            report.rounds.append(rnd)
            show(rnd)
        if outcome == "refuse":
            report.refused[comp] = reason
            report.healthy[comp] = False
            return True
        if outcome == "healthy" and not actions:
            report.healthy[comp] = True
            return True
        if time.monotonic() > deadline:
            report.refused[comp] = f"not whole after {deadline - t0:.0f} s: {reason}"
            report.healthy[comp] = False
            return True
        if act is None:
            return False
        await act(hosts)
        if outcome == "healthy":
            report.healthy[comp] = True
            return True
        return None


def _enabled(spec: Spec, comp: str) -> bool:
    if comp == "galera":
        return spec.galera.enabled and bool(spec.galera_nodes())
    if comp == "rabbitmq":
        return spec.rabbitmq.enabled and bool(spec.rabbit_nodes())
    return spec.mongodb.enabled and bool(spec.mongo_members())


async def _look(comp: str, spec: Spec, secrets: Secrets, hosts: dict[str, SshHost],  # noqa: PLR0917
                unreachable: dict[str, str], progress: Progress, *, force: bool, bootstrap: str | None,
                forget: tuple[str, ...], patient: bool, quiet: Quiet, stall_s: float) -> Look:
    """Facts, decision, evidence and the act for one component. Acting is left to the caller."""
    import dataclasses

    def rows(ev: tuple[Any, ...]) -> list[dict[str, Any]]:
        return [dataclasses.asdict(r) for r in ev]

    if comp == "galera":
        gf = await galera_facts(spec, hosts, unreachable, quiet)
        gd = galera.decide(gf, writer=spec.galera_writer().name, arbitrator=spec.galera.arbitrator, force=force,
                           choose=bootstrap, patient=patient, stall_s=stall_s)
        act = (lambda hs: apply_galera(spec, gd, hs, progress)) if gd.actions else None
        return gd.outcome.value, gd.reason, [str(a) for a in gd.actions], rows(gd.evidence), act
    if comp == "rabbitmq":
        rf = await rabbit_facts(spec, hosts, unreachable)
        rd = rabbitmq.decide(rf, force=force, forget=forget, patient=patient)
        act = (lambda hs: apply_rabbit(rd, hs, progress)) if rd.actions else None
        return rd.outcome.value, rd.reason, [str(a) for a in rd.actions], rows(rd.evidence), act
    mf, rs = await mongo_facts(spec, secrets, hosts, unreachable)
    md = mongodb.decide(mf, rs, mongo_hosts(spec))

    async def start(hs: dict[str, SshHost]) -> None:
        for n in md.actions:
            progress(f"mongodb: start {n}")
            await hs[n].run(shell("systemctl reset-failed mongod; systemctl start --no-block mongod"), timeout=60)

    return (md.outcome.value, md.reason, [f"start {n}" for n in md.actions], rows(md.evidence),
            start if md.actions else None)


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
    names = mongo_hosts(spec)
    if node not in names:
        raise RecoverError(f"{node} is not a mongodb member or arbiter ({', '.join(names)})")
    password = secrets["mongodb_admin_password"]
    async with reachable(spec, access, timeout=5) as (hosts, _):
        primary = None
        for n in names:
            if n in hosts:
                with contextlib.suppress(Exception):  # any member that answers says who the primary is
                    primary = (await replset(hosts[n], password)).primary
                    if primary:
                        break
        by_member = {m: h for h, m in names.items()}
        if primary is None or by_member.get(primary) not in hosts:
            raise RecoverError("no writable primary to reconfigure through: `hastack recover` first")
        async with mongo_client(hosts[by_member[primary]], password=password, timeout_ms=5000) as client:
            config = (await asyncio.to_thread(client.admin.command, "replSetGetConfig"))["config"]
            try:
                new = mongo_config.with_priority(config, names[node], priority)
            except mongo_config.PriorityError as exc:
                raise RecoverError(str(exc)) from exc
            await asyncio.to_thread(client.admin.command, "replSetReconfig", new)
    return PriorityChange(names[node], {m["host"]: m.get("priority", 1) for m in config["members"]},
                          {m["host"]: m.get("priority", 1) for m in new["members"]}, new["version"], primary)

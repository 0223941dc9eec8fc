"""The galera phase: bootstrap (never over an outage), joiners one by one, rolling restarts, garbd, leavers."""

from __future__ import annotations

from dataclasses import dataclass

from hastack.components import galera
from hastack.components.fact import shell
from hastack.components.galera import GaleraState
from hastack.components.galera import leavers as find_leavers
from hastack.deploy.context import (
    GALERA_SQL,
    DeployContext,
    DeployError,
    wait_for,
)
from hastack.deploy.plan import Phase
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError
from hastack.render.galera import GARBD, GARBD_DROPIN

# Socket activation would hold galera's port before mariadbd binds its own address.
GALERA_SOCKETS = ("mariadb.socket", "mariadb-extra.socket")


async def galera_state(ctx: DeployContext, host: str) -> GaleraState | None:
    if not await ctx.active(host, "mariadb"):
        return None
    try:
        return await probe(ctx.h(host), galera.STATUS)
    except galera.Silent:  # running, answering nothing yet: not a state to act on
        return None


CNF = "/etc/mysql/mariadb.conf.d/60-galera.cnf"


@dataclass(frozen=True)
class Plan:
    """What the galera phase does, from what the nodes showed. Pure (see plan)."""

    synced: tuple[str, ...]  # in the primary component and Synced already
    join: tuple[str, ...]  # started one at a time (each may need a state transfer), then waited on
    restart: tuple[str, ...]  # a rolling restart for a changed my.cnf, the node the others joined last
    defer: tuple[str, ...]  # a changed my.cnf on the only node: left to a maintenance window


def plan(nodes: list[str], states: dict[str, GaleraState | None], primary: str, cnf_changed: set[str]) -> Plan:
    synced = tuple(n for n in nodes if (st := states.get(n)) is not None and st.primary
                   and st.local_state == "Synced")
    stale = sorted((n for n in synced if n in cnf_changed), key=lambda n: n == primary)
    alone = len(nodes) < 2  # restarting the only node would be a full outage
    return Plan(synced, tuple(n for n in nodes if n not in synced), () if alone else tuple(stale),
                tuple(stale) if alone else ())


async def apply(ctx: DeployContext, phase: Phase) -> None:
    nodes = [n.name for n in ctx.spec.galera_nodes()]
    await ctx.gather([ctx.h(n).run(["systemctl", "disable", "--now", "--quiet", *GALERA_SOCKETS], check=False)
                      for n in nodes])
    states = dict(zip(nodes, await ctx.gather([galera_state(ctx, n) for n in nodes]), strict=True))
    primary = await _primary(ctx, nodes, states)
    todo = plan(nodes, states, primary, {n for n in nodes if ctx.file_changed(n, CNF)})
    members = {n for n, st in states.items() if st is not None and st.primary} | {primary}
    # Joiners one at a time: each SST takes the donor out of rotation while it runs.
    for node in todo.join:
        if node not in members:  # a member that is not Synced yet (a donor) is only waited for
            ctx.progress(f"galera: {node} joins (state transfer)")
            await ctx.ensure_running(node, "mariadb")
        await wait_synced(ctx, node)
    for node in todo.defer:
        ctx.report.changed(node, f"{CNF} changed: restart mariadb in a maintenance window")
    for node in todo.restart:  # each synced again before the next
        ctx.progress(f"galera: {node} restarts for its new configuration")
        await ctx.ensure_running(node, "mariadb", restart_if=True)
        await wait_synced(ctx, node)
    for node in nodes:
        await ctx.h(node).run(["systemctl", "enable", "--quiet", "mariadb"])
    arb = ctx.spec.galera.arbitrator
    await galera_leavers(ctx, primary, [*nodes, *([arb] if arb else [])])
    await _whole(ctx, nodes, arb)
    if ctx.spec.galera.health_check == "http":
        await ctx.gather([ctx.ensure_running(n, "hastack-agent", restart_if=ctx.file_changed(
            n, "/etc/hastack/agent.yaml") or n in ctx.agent_installed) for n in nodes])


async def _primary(ctx: DeployContext, nodes: list[str], states: dict[str, GaleraState | None]) -> str:
    """The node in a primary component; on a first deploy, the writer, bootstrapped. Never over an outage."""
    primary = [n for n, s in states.items() if s is not None and s.primary]
    if primary:
        if ctx.file_changed(primary[0], GALERA_SQL):
            await ctx.h(primary[0]).run(shell("mariadb < {sql}", sql=GALERA_SQL))
            ctx.report.changed(primary[0], "applied galera users and databases")
        return primary[0]
    # The galera decider's own reading of grastate.dat: a node that was in a cluster has its uuid.
    grastates = await ctx.gather([probe(ctx.h(n), galera.GRASTATE) for n in nodes])
    used = [n for n, g in zip(nodes, grastates, strict=True) if g is not None and g.has_history]
    if used:
        raise DeployError(
            "no galera node is running, but " + ", ".join(used) + " hold cluster history (grastate.dat):"
            " this is an outage, not a first deploy. Choosing the node to bootstrap is "
            "`hastack recover SPEC --only galera`'s job; deploy will not guess.")
    writer = ctx.spec.galera_writer().name
    ctx.progress(f"galera: bootstrapping a new cluster on {writer}")
    try:
        await ctx.h(writer).run(["galera_new_cluster"], timeout=300)
    except HostError as exc:
        journal = await ctx.h(writer).run(["journalctl", "-u", "mariadb", "-n", "30", "--no-pager"], check=False)
        raise DeployError(f"{writer}: galera_new_cluster failed:\n{exc}\n{journal.stdout}") from exc
    await ctx.h(writer).run(shell("mariadb < {sql}", sql=GALERA_SQL))
    ctx.report.changed(writer, "bootstrapped galera and created its users")
    return writer


async def _whole(ctx: DeployContext, nodes: list[str], arb: str | None) -> None:
    """garbd running where the spec has one, and the cluster at its full size."""
    expected = len(nodes)
    if arb:
        await ctx.ensure_running(arb, "garb", restart_if=ctx.file_changed(arb, GARBD, GARBD_DROPIN))
        expected += 1

    async def sized() -> int | None:
        st = await galera_state(ctx, nodes[0])
        return st.cluster_size if st and st.cluster_size == expected else None

    try:
        await wait_for(sized, 120, f"galera cluster size {expected}")
    except DeployError as exc:
        if not arb:
            raise
        journal = await ctx.h(arb).run(["journalctl", "-u", "garb", "-n", "15", "--no-pager"], check=False)
        raise DeployError(f"{exc}\n{arb}: garbd's journal:\n{journal.stdout}") from exc


async def galera_leavers(ctx: DeployContext, anchor: str, members: list[str]) -> None:
    """Nodes the spec took out of galera leave it cleanly, after every joiner is synced:
    a clean shutdown shrinks the cluster (and its quorum) without an eviction."""
    st = await galera_state(ctx, anchor)
    if st is None:
        return
    gone, unknown = find_leavers(st.incoming, {str(n.address): n.name for n in ctx.spec.nodes}, members)
    if unknown:
        raise DeployError(f"galera nodes outside the spec are in the cluster ({', '.join(unknown)}): "
                          "add them to the spec, or stop mariadb on them")
    for host in gone:
        ctx.progress(f"galera: {host} leaves the cluster (no longer a galera node in the spec)")
        await ctx.h(host).run(["systemctl", "disable", "--now", "--quiet", "mariadb"], timeout=300)
        # Its health agent too, where there is one (an http galera check).
        await ctx.h(host).run(["systemctl", "disable", "--now", "--quiet", "hastack-agent"], check=False)
        ctx.report.changed(host, "stopped mariadb (and its health agent): left the galera cluster")


async def wait_synced(ctx: DeployContext, node: str) -> None:
    async def synced() -> bool | None:
        st = await galera_state(ctx, node)
        return True if st and st.primary and st.local_state == "Synced" else None

    await wait_for(synced, 600, f"galera on {node} to be Synced in the primary component")

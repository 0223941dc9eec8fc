"""The galera phase: bootstrap (never over an outage), joiners one by one, rolling restarts, garbd, leavers."""

from __future__ import annotations

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


async def apply(ctx: DeployContext, phase: Phase) -> None:
    nodes = [n.name for n in ctx.spec.galera_nodes()]
    writer = ctx.spec.galera_writer().name
    await ctx.gather([ctx.h(n).run(["systemctl", "disable", "--now", "--quiet", *GALERA_SOCKETS], check=False)
                       for n in nodes])
    states = dict(zip(nodes, await ctx.gather([galera_state(ctx, n) for n in nodes]), strict=True))
    primary = [n for n, s in states.items() if s is not None and s.primary]
    if not primary:
        # The galera decider's own reading of grastate.dat: a node that was in a cluster has its uuid.
        grastates = await ctx.gather([probe(ctx.h(n), galera.GRASTATE) for n in nodes])
        used = [n for n, g in zip(nodes, grastates, strict=True) if g is not None and g.has_history]
        if used:
            raise DeployError(
                "no galera node is running, but " + ", ".join(used) + " hold cluster history (grastate.dat):"
                " this is an outage, not a first deploy. Choosing the node to bootstrap is "
                "`hastack recover SPEC --only galera`'s job; deploy will not guess.")
        ctx.progress(f"galera: bootstrapping a new cluster on {writer}")
        try:
            await ctx.h(writer).run(["galera_new_cluster"], timeout=300)
        except HostError as exc:
            journal = await ctx.h(writer).run(["journalctl", "-u", "mariadb", "-n", "30", "--no-pager"],
                                               check=False)
            raise DeployError(f"{writer}: galera_new_cluster failed:\n{exc}\n{journal.stdout}") from exc
        await ctx.h(writer).run(shell("mariadb < {sql}", sql=GALERA_SQL))
        ctx.report.changed(writer, "bootstrapped galera and created its users")
        primary = [writer]
    elif ctx.file_changed(primary[0], GALERA_SQL):
        await ctx.h(primary[0]).run(shell("mariadb < {sql}", sql=GALERA_SQL))
        ctx.report.changed(primary[0], "applied galera users and databases")
    # Joiners one at a time: each SST takes the donor out of rotation while it runs.
    synced = []
    for node in nodes:
        st = states.get(node)
        if st is not None and st.primary and st.local_state == "Synced":
            synced.append(node)
            continue
        if node not in primary:
            ctx.progress(f"galera: {node} joins (state transfer)")
            await ctx.ensure_running(node, "mariadb")
        await wait_synced(ctx, node)
    # A changed my.cnf on a running node: a rolling restart, each node synced again before the
    # next, the node the others joined last. Never the only node: that would be a full outage.
    cnf = "/etc/mysql/mariadb.conf.d/60-galera.cnf"
    stale = sorted((n for n in synced if ctx.file_changed(n, cnf)), key=lambda n: n == primary[0])
    for node in stale:
        if len(nodes) < 2:
            ctx.report.changed(node, f"{cnf} changed: restart mariadb in a maintenance window")
            continue
        ctx.progress(f"galera: {node} restarts for its new configuration")
        await ctx.ensure_running(node, "mariadb", restart_if=True)
        await wait_synced(ctx, node)
    for node in nodes:
        await ctx.h(node).run(["systemctl", "enable", "--quiet", "mariadb"])
    arb = ctx.spec.galera.arbitrator
    await galera_leavers(ctx, primary[0], [*nodes, *([arb] if arb else [])])
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
    if ctx.spec.galera.health_check == "http":
        await ctx.gather([ctx.ensure_running(n, "hastack-agent", restart_if=ctx.file_changed(
            n, "/etc/hastack/agent.yaml") or n in ctx.agent_installed) for n in nodes])


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

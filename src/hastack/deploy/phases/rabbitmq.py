"""The rabbitmq phase: nodes started in order, joiners given quorum queue members, leavers taken out; the
watch that restarts a node left paused."""

from __future__ import annotations

from hastack.components import rabbitmq
from hastack.components.rabbitmq import RabbitCluster, conf_needs_restart, membership_changes
from hastack.deploy.context import (
    DeployContext,
    wait_for,
)
from hastack.deploy.plan import Phase
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError
from hastack.render.rabbitmq import CONF as RABBIT_CONF
from hastack.render.rabbitmq import TLS_FILES, WATCH


async def rabbit_view(ctx: DeployContext, host: str) -> RabbitCluster | None:
    try:
        return await probe(ctx.h(host), rabbitmq.CLUSTER)
    except HostError:  # not running, or not answering yet
        return None


async def apply(ctx: DeployContext, phase: Phase) -> None:
    nodes = list(phase.hosts)
    want = {f"rabbit@{n}" for n in nodes}
    running = [n for n, up in zip(nodes, await ctx.gather([ctx.active(n, "rabbitmq-server") for n in nodes]),
                                  strict=True) if up]
    before = await rabbit_view(ctx, running[0]) if running else None
    cfg = ("/etc/rabbitmq/rabbitmq-env.conf", "/etc/rabbitmq/enabled_plugins",
           "/var/lib/rabbitmq/.erlang.cookie", "/etc/rabbitmq/definitions.json", *TLS_FILES)
    # One by one: the first forms the cluster; each next one finds it by classic peer discovery.
    for node in nodes:
        conf = ctx.file_changed(node, RABBIT_CONF) and conf_needs_restart(
            ctx.before.get(node, {}).get(RABBIT_CONF, ""), ctx.tree[node][RABBIT_CONF].content.decode())
        await ctx.ensure_running(node, "rabbitmq-server", restart_if=conf or ctx.file_changed(node, *cfg))

    async def clustered(exact: bool) -> RabbitCluster | None:
        view = await rabbit_view(ctx, nodes[0])
        return view if view is not None and view.complete(want, exact) else None

    # 450 s: a node that joins while its only peer is paused (pause_minority in a
    # two-node cluster) may need a second start (the unit retries after 180 s).
    view = await wait_for(lambda: clustered(False), 450, f"rabbitmq nodes {', '.join(sorted(want))} in one cluster")
    joined, leaving = membership_changes(want, before, view)
    # Joiners get a member of every quorum queue before any leaver takes its members
    # away: a queue never has fewer copies than before.
    for node in joined:
        await ctx.h(nodes[0]).run(["rabbitmq-queues", "grow", node, "all"], timeout=300)
        ctx.report.changed(node.removeprefix("rabbit@"), "added a member of every quorum queue")
    for node in leaving:
        await rabbit_leave(ctx, nodes[0], node)
    await wait_for(lambda: clustered(True), 120, f"rabbitmq cluster of exactly {', '.join(sorted(want))}")
    # The watch once the cluster is whole (a leaver's was stopped before its app).
    for node in nodes:
        await ctx.ensure_running(node, WATCH, restart_if=node in ctx.agent_installed)


async def rabbit_leave(ctx: DeployContext, anchor: str, node: str) -> None:
    """A node the spec no longer lists leaves: its quorum queue members first (while a majority
    of each queue is up), then the node itself; reset, so it could join again later."""
    host = node.removeprefix("rabbit@")
    ctx.progress(f"rabbitmq: {node} leaves the cluster (no longer a rabbitmq node in the spec)")
    await ctx.h(anchor).run(["rabbitmq-queues", "shrink", node], timeout=300)
    if host in ctx.hosts and await ctx.active(host, "rabbitmq-server"):
        h = ctx.h(host)
        # Its watch first: it would start again the app stopped here on purpose.
        await h.run(["systemctl", "disable", "--now", "--quiet", WATCH], timeout=120, check=False)
        await h.run(["rabbitmqctl", "stop_app"], timeout=300)
        await h.run(["rabbitmqctl", "reset"], timeout=300)
        await h.run(["systemctl", "disable", "--now", "--quiet", "rabbitmq-server"], timeout=300)
        ctx.report.changed(host, "left the rabbitmq cluster and stopped rabbitmq-server")
    else:  # gone, or stopped: the cluster forgets it
        await ctx.h(anchor).run(["rabbitmqctl", "forget_cluster_node", node], timeout=120)
        ctx.report.changed(anchor, f"forgot {node}")

"""The CIB phase: pacemaker's configuration loaded when it changed; the VIP, haproxy and fencing running."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

from hastack.agent.evacuator import CONFIG as EVACUATOR_CONFIG
from hastack.components import pacemaker
from hastack.components.pacemaker import PacemakerState, remote_strays, strays
from hastack.deploy.context import (
    CIB_PATH,
    DeployContext,
    DeployError,
    wait_for,
)
from hastack.deploy.phases.remote import UNIT as REMOTE_UNIT
from hastack.deploy.plan import Phase
from hastack.hosts.probe import probe
from hastack.render import haproxy
from hastack.render.pacemaker import EVACUATOR, managed_vips


@dataclass(frozen=True)
class CibPlan:
    """What the phase changes: the configuration replaced (why), and the haproxies to reload."""

    load: str | None  # why the configuration is loaded; None: it runs as rendered
    reload_haproxy: tuple[str, ...]


def plan(desired: bytes, live_resources: str | None, cib_changed: bool,
         haproxy_changed: Mapping[str, bool]) -> CibPlan:
    """Pure. `live_resources`: the running CIB's resources section (None: unreadable);
    `haproxy_changed`: per haproxy node that runs haproxy, whether its haproxy.cfg changed.

    Primitives are compared both ways: a resource the spec no longer has (the VIP, when keepalived
    takes it over) must go even if an earlier, failed deploy already pushed the file."""
    want = {el.get("id") for el in ET.fromstring(desired).iter("primitive")}
    have = {el.get("id") for el in ET.fromstring(live_resources).iter("primitive")} if live_resources else set()
    diff = [f"+{i}" for i in sorted(map(str, want - have))] + [f"-{i}" for i in sorted(map(str, have - want))]
    load = None
    if diff:
        load = "resources differ: " + ", ".join(diff)
    elif cib_changed:
        load = "the rendered CIB changed"
    # Pacemaker reloads haproxy only when told.
    return CibPlan(load, tuple(n for n, changed in haproxy_changed.items() if changed))


async def pacemaker_forget(ctx: DeployContext, anchor: str, mon: PacemakerState) -> None:
    """Nodes pacemaker still knows that the spec no longer has as members: removed from the CIB
    once they are offline. One still online is a member the spec does not know: refuse."""
    offline, online = strays(mon, [n.name for n in ctx.spec.corosync_nodes()])
    if online:
        raise DeployError(f"pacemaker nodes outside the spec are online ({', '.join(online)}): add them to "
                          "corosync.nodes, or stop pacemaker and corosync on them")
    for name in offline:
        await forget_node(ctx, anchor, name)


async def forget_node(ctx: DeployContext, anchor: str, name: str) -> None:
    """A node (member or remote) out of pacemaker's node list and status."""
    await ctx.h(anchor).run(["crm_node", "--remove", name, "--force"], timeout=120)
    ctx.report.changed(anchor, f"removed {name} from pacemaker's node list")


async def pacemaker_ready(ctx: DeployContext, hosts: tuple[str, ...]) -> PacemakerState:
    """Waits for a DC with every one of `hosts` online; what crm_mon on the first one then shows."""
    first, want = ctx.h(hosts[0]), set(hosts)

    async def ready() -> PacemakerState | None:
        mon = await probe(first, pacemaker.MON)
        return mon if any(n.is_dc for n in mon.nodes) and set(mon.online()) >= want else None

    return await wait_for(ready, 180, "pacemaker to elect a DC with every node online")


async def _restart_evacuator(ctx: DeployContext, host: str) -> None:
    """Instance HA's evacuator runs the code and config this deploy installed: pacemaker restarts it
    (where it runs) when either changed under it."""
    nodes = [n.name for n in ctx.spec.evacuator_nodes()]
    if not any(n in ctx.agent_installed or ctx.file_changed(n, EVACUATOR_CONFIG) for n in nodes):
        return
    if not (await probe(ctx.h(host), pacemaker.MON)).where(EVACUATOR):
        return  # not started yet (a first deploy, a CIB just loaded): it starts with what is installed
    await ctx.h(host).run(["crm_resource", "--restart", "--resource", EVACUATOR, "--timeout", "60s"], timeout=120)
    ctx.report.changed(host, "restarted the evacuator (its code or config changed)")


async def apply(ctx: DeployContext, phase: Phase) -> None:
    # phase.hosts[0] is the first corosync node: the one pacemaker_ready asked.
    mon = await pacemaker_ready(ctx, tuple(n.name for n in ctx.spec.corosync_nodes()))
    host = phase.hosts[0]
    h = ctx.h(host)
    await pacemaker_forget(ctx, host, mon)
    desired = ctx.tree[host][CIB_PATH].content
    live = await h.run(["cibadmin", "--query", "--scope", "resources"], check=False)
    # Whether haproxy runs is asked only where its configuration changed: nothing to reload elsewhere.
    changed = [n.name for n in ctx.spec.haproxy_nodes() if ctx.file_changed(n.name, *haproxy.RELOAD_ON)]
    running = await ctx.gather([ctx.active(n, "haproxy") for n in changed])
    todo = plan(desired, live.stdout if live.rc == 0 else None,
                any(ctx.file_changed(n, CIB_PATH) for n in phase.hosts),
                {n: True for n, up in zip(changed, running, strict=True) if up})
    if todo.load is not None:
        configuration = ET.tostring(ET.fromstring(desired).find("configuration"))  # type: ignore[arg-type]
        await h.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
                    input=configuration.decode())
        ctx.report.changed(host, f"loaded the CIB configuration ({todo.load})")
    for node in todo.reload_haproxy:
        await ctx.h(node).run(["systemctl", "reload", "haproxy"])
        ctx.report.changed(node, "reloaded haproxy")
    await _restart_evacuator(ctx, host)
    vips = {v.name for v in managed_vips(ctx.spec)}

    async def placed() -> bool | None:
        mon = await probe(h, pacemaker.MON)
        # Every resource, fence devices too: a deploy ends with the cluster
        # running what it configured, not with part of it still starting.
        waiting = [f"vip-{v}" for v in vips if not mon.where(f"vip-{v}")]
        waiting += [f"haproxy on {n.name}" for n in ctx.spec.haproxy_nodes()
                    if n.name not in mon.where("haproxy-clone")]
        waiting += mon.stopped()
        waiting += [f"pacemaker_remote on {n.name}" for n in ctx.spec.remote_nodes() if n.name not in mon.online()]
        if waiting:
            raise ValueError("not running yet: " + ", ".join(dict.fromkeys(waiting)))
        return True

    await wait_for(placed, 180, "pacemaker to start the VIP, haproxy on every haproxy node and every resource"
                   + (", with every compute online" if ctx.spec.remote_nodes() else ""))
    await remote_leavers(ctx, host, remote_strays(mon, [n.name for n in ctx.spec.remote_nodes()]))


async def remote_leavers(ctx: DeployContext, anchor: str, gone: tuple[str, ...]) -> None:
    """Computes pacemaker watched as remote nodes that the spec no longer has as such. The CIB just
    loaded has no connection to them any more: once pacemaker has closed it (so nothing takes the
    closing for a lost host and fences it), pacemaker_remote stops there and stays off, and pacemaker
    forgets the node, as `pcs cluster node remove-remote` does."""
    if not gone:
        return
    h = ctx.h(anchor)

    async def closed() -> bool | None:
        mon = await probe(h, pacemaker.MON)
        still = [n.name for n in mon.nodes if n.remote and n.online and n.name in gone]
        if still:
            raise ValueError(f"still connected: {', '.join(still)}")
        return True

    await wait_for(closed, 120, f"pacemaker to close its connection to {', '.join(gone)}")
    for name in gone:
        if name in ctx.hosts:  # a host still in the spec, no longer watched by instance HA
            await ctx.h(name).run(["systemctl", "disable", "--now", "--quiet", REMOTE_UNIT], timeout=120)
            ctx.report.changed(name, f"stopped {REMOTE_UNIT}: no longer watched by instance HA")
        await forget_node(ctx, anchor, name)

"""The corosync phase: members leave or join, the rest reload or restart as the change needs; quorum."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hastack.components import corosync
from hastack.components.corosync import conf_change
from hastack.deploy.context import (
    COROSYNC_AUTHKEY,
    COROSYNC_CONF,
    DeployContext,
    wait_for,
)
from hastack.deploy.plan import Phase
from hastack.hosts.probe import probe


@dataclass(frozen=True)
class Restarts:
    """How the running members take a new configuration: one reload for all, restarts for some."""

    reload: tuple[str, str] | None  # (the member that runs `corosync-cfgtool -R`, why)
    restart: dict[str, str]  # member -> why


def plan(running: Mapping[str, bool], before: Mapping[str, str], new: Mapping[str, str],
         conf_changed: set[str], authkey_changed: set[str]) -> Restarts:
    """Pure: per running member whose corosync.conf changed, reload or restart (conf_change says which);
    a new authkey always restarts. A renumbering never gets here: the files phase refused it."""
    changes = {h: conf_change(before.get(h, ""), new[h]) for h in new if running.get(h) and h in conf_changed}
    restart = {h: c.reason for h, c in changes.items() if c.kind in ("restart", "refuse")}
    restart |= {h: "a new authkey" for h in new if running.get(h) and h in authkey_changed and h not in restart}
    reload = [h for h, c in changes.items() if c.kind == "reload" and h not in restart]
    return Restarts((reload[0], changes[reload[0]].reason) if reload else None, restart)


async def apply(ctx: DeployContext, phase: Phase) -> None:
    await corosync_leavers(ctx, phase.hosts)
    running = dict(zip(phase.hosts, await ctx.gather([ctx.active(h, "corosync") for h in phase.hosts]),
                       strict=True))
    todo = plan(running, {h: ctx.before.get(h, {}).get(COROSYNC_CONF, "") for h in phase.hosts},
                {h: ctx.tree[h][COROSYNC_CONF].content.decode() for h in phase.hosts},
                {h for h in phase.hosts if ctx.file_changed(h, COROSYNC_CONF)},
                {h for h in phase.hosts if ctx.file_changed(h, COROSYNC_AUTHKEY)})
    if todo.reload:
        # Every running node has the new file already (the files phase): one call reloads them all,
        # before a new member starts, so the others know it when it knocks. Pacemaker keeps running.
        host, why = todo.reload
        ctx.progress(f"corosync: reloading the configuration on every node ({why})")
        await ctx.h(host).run(["corosync-cfgtool", "-R"])
        ctx.report.changed(host, f"reloaded corosync.conf on every node ({why})")
    for h, why in sorted(todo.restart.items()):
        ctx.progress(f"corosync: {h} restarts ({why})")
    restart = set(todo.restart)

    async def start(host: str) -> None:
        await ctx.ensure_running(host, "corosync", restart_if=host in restart)
        await ctx.ensure_running(host, "pacemaker")

    await ctx.gather([start(h) for h in phase.hosts])
    first = ctx.h(phase.hosts[0])
    want = set(phase.hosts)

    async def quorate() -> bool | None:
        q = await probe(first, corosync.QUORUM)
        return True if q.quorate and set(q.names) >= want else None

    await wait_for(quorate, 120, f"corosync quorum with {', '.join(sorted(want))}")
    # Pacemaker's DC election (up to dc-deadtime, 20 s) runs meanwhile;
    # the cib phase waits for it, after the databases have formed.


async def corosync_leavers(ctx: DeployContext, members: tuple[str, ...]) -> None:
    """Spec hosts that run corosync but are no longer members leave first, cleanly, as
    `pcs cluster node remove` does: pacemaker stops there (its resources move away and the
    others see a clean shutdown, so nobody fences it), then corosync; both stay disabled.
    Only then do the members reload a nodelist without it."""
    others = [n.name for n in ctx.spec.nodes if n.name not in members]
    up = await ctx.gather([ctx.active(h, "corosync") for h in others])
    for host in (h for h, running in zip(others, up, strict=True) if running):
        ctx.progress(f"corosync: {host} leaves the cluster (no longer a corosync node in the spec)")
        await ctx.h(host).run(["systemctl", "disable", "--now", "--quiet", "pacemaker"], timeout=600)
        await ctx.h(host).run(["systemctl", "disable", "--now", "--quiet", "corosync"], timeout=120)
        ctx.report.changed(host, "stopped pacemaker and corosync: left the cluster")

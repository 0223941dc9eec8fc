"""The keepalived phase: VRRP (and haproxy without pacemaker) running, one holder per VIP."""

from __future__ import annotations

from hastack.components import network
from hastack.deploy.context import (
    DeployContext,
    wait_for,
)
from hastack.deploy.plan import Phase
from hastack.hosts.probe import probe
from hastack.render import haproxy, keepalived


async def apply(ctx: DeployContext, phase: Phase) -> None:
    for host in phase.hosts:
        if not ctx.spec.vip_manager.runs_pacemaker:  # else haproxy is pacemaker's (the CIB phase)
            await ctx.ensure_running(host, "haproxy",
                                      restart_if=ctx.file_changed(host, *haproxy.RELOAD_ON))
        # The gate first: keepalived reads its verdicts as it starts.
        await ctx.ensure_running(host, keepalived.GATE, restart_if=host in ctx.agent_installed)
        await ctx.ensure_running(host, "keepalived", restart_if=ctx.file_changed(host, keepalived.CONF))

    async def held() -> bool | None:
        found = await ctx.gather([probe(ctx.h(n), network.ADDRESSES) for n in phase.hosts])
        addrs = dict(zip(phase.hosts, found, strict=True))
        wrong = [f"{v.name} on {len(holders)} hosts" for v in ctx.spec.vips
                 if len(holders := [n for n, a in addrs.items() if v.address in a]) != 1]
        if wrong:
            raise ValueError("; ".join(wrong))
        return True

    await wait_for(held, 60, "keepalived to give each VIP exactly one holder")

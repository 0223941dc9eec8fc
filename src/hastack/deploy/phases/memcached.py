"""The memcached phase: memcached running on each of its nodes."""

from __future__ import annotations

from hastack.deploy.context import (
    DeployContext,
)
from hastack.deploy.plan import Phase


async def apply(ctx: DeployContext, phase: Phase) -> None:
    await ctx.gather([ctx.ensure_running(h, "memcached", restart_if=ctx.file_changed(h, "/etc/memcached.conf"))
                       for h in phase.hosts])

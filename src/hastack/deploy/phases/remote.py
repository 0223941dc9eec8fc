"""The remote phase: pacemaker_remote running on every compute, with the cluster's key.

Started before the CIB names the computes: a connection pacemaker cannot make at once is retried,
but a compute seen once and then lost is fenced, so it must be there from the first look.
"""

from __future__ import annotations

from hastack.deploy.context import DeployContext
from hastack.deploy.plan import Phase

UNIT = "pacemaker_remote"


async def apply(ctx: DeployContext, phase: Phase) -> None:
    # Never restarted by deploy: a restart drops pacemaker's connection and gets the compute fenced.
    # (The key is generated once and kept; changing it is a planned restart of every compute, not done.)
    await ctx.gather([ctx.ensure_running(h, UNIT, restart_if=False) for h in phase.hosts])

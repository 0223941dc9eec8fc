"""Apply the deploy phases over SSH, in order. Each phase probes first and acts only where needed.

Idempotent by construction: every action is guarded by a fact (a file's
hash, a unit's state, the live cluster's membership), and the report lists
what changed. A second deploy on a healthy cluster reports nothing changed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import asyncssh
import pymongo.errors

from hastack.common.errors import described
from hastack.deploy.context import DeployContext, DeployError, Report
from hastack.deploy.phases import (
    agent,
    cib,
    corosync,
    files,
    galera,
    keepalived,
    memcached,
    mongodb,
    openstack,
    rabbitmq,
    remote,
)
from hastack.deploy.plan import Phase, PhaseKey, phases
from hastack.hosts.ssh import HostError

APPLY: dict[PhaseKey, Callable[[DeployContext, Phase], Awaitable[None]]] = {
    PhaseKey.FILES: files.apply, PhaseKey.AGENT: agent.apply, PhaseKey.COROSYNC: corosync.apply,
    PhaseKey.GALERA: galera.apply, PhaseKey.RABBITMQ: rabbitmq.apply, PhaseKey.MONGODB: mongodb.apply,
    PhaseKey.MEMCACHED: memcached.apply, PhaseKey.REMOTE: remote.apply, PhaseKey.CIB: cib.apply,
    PhaseKey.KEEPALIVED: keepalived.apply, PhaseKey.OPENSTACK: openstack.apply,
}


async def run(ctx: DeployContext, only: tuple[PhaseKey, ...] = ()) -> Report:
    """Every phase of the spec in order (or only those named); the report of what changed."""
    for phase in phases(ctx.spec):
        if only and phase.key not in only:
            continue
        t0 = time.monotonic()
        ctx.progress(f"{phase.key}: {phase.what} [{', '.join(phase.hosts)}]")
        ctx.report.phase = phase.key
        try:
            await APPLY[phase.key](ctx, phase)
        except (pymongo.errors.PyMongoError, asyncssh.Error, OSError, HostError) as exc:
            # Name the step; the operator needs where it broke, not a traceback.
            raise DeployError(f"phase {phase.key} on {', '.join(phase.hosts)}: {described(exc)}") from exc
        ctx.report.timings[phase.key] = ctx.report.timings.get(phase.key, 0.0) + time.monotonic() - t0
    if not only:  # every phase acted on what it was owed; a partial deploy may not have
        await ctx.settle()
    return ctx.report

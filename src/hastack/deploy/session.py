"""One deploy: secrets, render, connect, then the phases (or, dry, the plan and the file diff)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping

from hastack.common.progress import Progress
from hastack.credentials.model import Secrets
from hastack.deploy.context import DeployContext, Report
from hastack.deploy.plan import Phase, phases
from hastack.deploy.run import run
from hastack.hosts.files import Change, diff, file_fact
from hastack.hosts.fleet import Access, connected
from hastack.hosts.probe import probe
from hastack.hosts.ssh import SshHost
from hastack.render import render_all
from hastack.render.files import Tree
from hastack.spec.model import Spec


async def deploy(spec: Spec, secrets: Secrets, access: Access, progress: Progress) -> Report:
    tree = render_all(spec, secrets)
    async with connected(spec, access) as hosts:
        return await run(DeployContext(spec, secrets, tree, hosts, progress))


async def dry_run(spec: Spec, secrets: Secrets, access: Access) -> tuple[tuple[Phase, ...], dict[str, dict[str, str]]]:
    """The phases, and per host what each rendered file would undergo (read-only)."""
    tree = render_all(spec, secrets)
    async with connected(spec, access) as hosts:
        diffs = await asyncio.gather(*(_file_diff(hosts[h], tree) for h in hosts))
    return phases(spec), dict(zip(hosts, diffs, strict=True))


async def _file_diff(host: SshHost, tree: Tree) -> dict[str, str]:
    files = tree.get(host.name, {})
    out: dict[str, str] = {}
    for path, f in sorted(files.items()):
        change = diff(f, await probe(host, file_fact(path)))
        if change is not Change.NONE:
            out[path] = change.value
    return out


def summary(report: Report) -> Mapping[str, object]:
    return {"changed": bool(report.changes), "changes": [dataclasses.asdict(c) for c in report.changes],
            "phase_seconds": {k: round(v, 2) for k, v in report.timings.items()}}

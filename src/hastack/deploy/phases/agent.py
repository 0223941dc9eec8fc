"""The agent phase: hastack's agent bundle (galera health; instance HA's evacuator; keepalived's checks;
the RabbitMQ and mongo watches) where it is not current."""

from __future__ import annotations

from hastack.components.fact import shell
from hastack.deploy import bundle as agent_bundle
from hastack.deploy.context import (
    DeployContext,
    DeployError,
)
from hastack.deploy.plan import Phase
from hastack.hosts.place import put
from hastack.render.files import RenderedFile


async def apply(ctx: DeployContext, phase: Phase) -> None:
    bundle = agent_bundle.build_bundle()

    async def install(host: str) -> None:
        h = ctx.h(host)
        stamp = await h.run(["cat", agent_bundle.STAMP], check=False)
        if agent_bundle.STAMP in await ctx.read_owed(host):  # installed by a deploy that did not restart it
            ctx.agent_installed.add(host)
        if stamp.stdout.strip() != bundle.sha256:
            await ctx.owe(host, agent_bundle.STAMP)
            ver = await h.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"])
            remote = tuple(int(x) for x in ver.stdout.split())
            if remote != bundle.python:
                raise DeployError(f"{host}: python3 is {remote}, the agent bundle is built for "
                                  f"{bundle.python}; install a matching python3 there")
            await put(h, RenderedFile("/opt/hastack/bundle.tar.gz", bundle.data, 0o644))
            await h.run(shell("rm -rf {root} && mkdir -p {root} && tar -xzf {tgz} -C {root} && rm {tgz}",
                              root=agent_bundle.ROOT, tgz="/opt/hastack/bundle.tar.gz"))
            for path, module in agent_bundle.LAUNCHED:
                await put(h, RenderedFile(path, agent_bundle.launcher_body(module), 0o755))
            await h.run(shell("echo {sha} > {stamp}", sha=bundle.sha256, stamp=agent_bundle.STAMP))
            ctx.report.changed(host, "installed the hastack agent")
            ctx.agent_installed.add(host)
        # Started in the galera phase, once mariadb runs; restarted here if its config moved.

    await ctx.gather([install(h) for h in phase.hosts])

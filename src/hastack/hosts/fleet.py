"""Every host of a spec over SSH at once: who answered, and why the others did not."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from hastack.common.errors import described
from hastack.hosts.ssh import SshHost
from hastack.spec.model import Spec


@dataclass(frozen=True)
class Access:
    key: Path
    known_hosts: Path  # every host's key is checked against it (hosts/trust.py)
    user: str = "root"


@contextlib.asynccontextmanager
async def connected(spec: Spec, access: Access) -> AsyncIterator[dict[str, SshHost]]:
    """Every host connected, or ConnectionError naming the first that is not."""
    async with reachable(spec, access) as (hosts, unreachable):
        if unreachable:
            name, why = next(iter(unreachable.items()))
            raise ConnectionError(f"{name}: {why}")
        yield hosts


@contextlib.asynccontextmanager
async def reachable(spec: Spec, access: Access, timeout: float = 10
                    ) -> AsyncIterator[tuple[dict[str, SshHost], dict[str, str]]]:
    """Connect to every host in parallel; yield those that answered and, per other host, why not."""
    hosts = {n.name: SshHost(n.name, str(n.address), str(access.key), known_hosts=str(access.known_hosts),
                             user=access.user, connect_timeout=timeout)
             for n in spec.nodes}
    unreachable: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        async def enter(h: SshHost) -> None:
            try:
                await stack.enter_async_context(h)
            except asyncssh.HostKeyNotVerifiable:
                unreachable[h.name] = (f"{h.address}'s host key is not recorded in {access.known_hosts}, or differs "
                                       "from it: check it, then `hastack trust SPEC` records a new host")
            except (TimeoutError, OSError, asyncssh.Error) as exc:
                unreachable[h.name] = f"cannot reach {access.user}@{h.address} over SSH: {described(exc)}"

        await asyncio.gather(*(enter(h) for h in hosts.values()))
        yield {n: h for n, h in hosts.items() if n not in unreachable}, unreachable

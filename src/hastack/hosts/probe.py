"""Reading a fact on a host: run its command, parse what it printed. The one way the shell reads state."""

from __future__ import annotations

from typing import Protocol, TypeVar

from hastack.components.fact import Fact, FactFailed
from hastack.hosts.ssh import HostError, Result

T = TypeVar("T")


class Runner(Protocol):
    """What a probe needs of a host: an SshHost, or a test's fake that replays recorded output."""

    name: str

    async def run(self, argv: tuple[str, ...], check: bool = True, timeout: float = 300) -> Result: ...


async def probe(host: Runner, fact: Fact[T], timeout: float | None = None) -> T:
    """The fact as `host` shows it now; HostError (naming host, command and output) if it cannot be read.

    `timeout` tightens the fact's own bound (status answers within its budget)."""
    res = await host.run(fact.argv, check=False, timeout=min(fact.timeout, timeout or fact.timeout))
    try:
        return fact.parse(res.rc, res.stdout)
    except FactFailed:
        raise HostError(host.name, fact.command, res) from None

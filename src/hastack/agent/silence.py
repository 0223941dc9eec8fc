"""Which peers' hosts have gone silent: the watches' shared sense of a host that lost its network.

A host is silent when a TCP connect to it gets no answer at all within 1.5 s: a refused connect
is an answer (the host is there, its daemon is not), and so is an accepted one. The watches count
silent looks in a row per host; one answer starts the count again. A host counts as lost after
MISSES silent looks while some other peer answered: when every peer is silent, the one cut off is
this host, and whatever it did would only disturb the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

# Long enough for the kernel's one resend of a lost SYN (after 1 s): with link-loss's 10% of frames
# dropped each way, a 1 s wait would take ~1 connect in 5 (a SYN or its answer lost once) for silence.
CONNECT_TIMEOUT_S = 1.5
MISSES = 2


@dataclass(frozen=True)
class Silence:
    """How many looks in a row each peer host has been silent, as of the last look."""

    misses: Mapping[str, int] = field(default_factory=dict)
    answering: frozenset[str] = frozenset()

    def after(self, hosts: Iterable[str], silent: Iterable[str]) -> Silence:
        quiet = frozenset(silent)
        peers = frozenset(hosts)
        return Silence({h: self.misses.get(h, 0) + 1 if h in quiet else 0 for h in peers}, peers - quiet)

    def lost(self, host: str, misses: int = MISSES) -> bool:
        """`host` has been silent `misses` looks in a row while another peer answered."""
        return self.misses.get(host, 0) >= misses and bool(self.answering - {host})


Answer = Literal["accepted", "refused", "silent"]


async def knock(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> Answer:
    """A TCP connect to `host`: accepted, refused (the host is there, the daemon is not) or silent."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except ConnectionRefusedError:
        return "refused"
    except (OSError, TimeoutError):
        return "silent"
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return "accepted"


async def silent_hosts(hosts: Iterable[str], port: int) -> frozenset[str]:
    """The hosts that did not answer on `port`, all asked at once."""
    peers = sorted(set(hosts))
    said = await asyncio.gather(*(knock(h, port) for h in peers))
    return frozenset(h for h, a in zip(peers, said, strict=True) if a == "silent")


def to_next_tick(now: float, not_before: float, grid: float) -> float:
    """Seconds from `now` (wall clock) to the first multiple of `grid` at or after `not_before`: watches on
    hosts whose clocks agree look at the same instants, so they see a peer go silent, and act, together."""
    return max(0.0, math.ceil(max(now, not_before) / grid) * grid - now)

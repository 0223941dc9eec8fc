"""Network namespaces holding given addresses: a host's network identity, nothing more.

Used to run a component's own validator (corosync -t, a rabbit or mongod
boot) against the rendered config with the node's real addresses, without
rewriting the config and without touching the machine's own network.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from hastack.common.poll import until

PREFIX = "hst-"


@dataclass(frozen=True)
class Netns:
    name: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], timeout: float = 60, env: dict[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, env=env, cwd=cwd)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def netns(label: str, addresses: Sequence[str] = ()) -> Iterator[Netns]:
    """A fresh namespace with loopback up and `addresses` (/32) on it; removed on exit."""
    name = f"{PREFIX}{label}-{os.getpid()}"[:32]
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        for addr in addresses:
            _ip("-n", name, "addr", "add", f"{addr}/32", "dev", "lo")
        yield Netns(name)
    finally:
        end_processes(name)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=30)


def _pids(name: str) -> list[int]:
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, timeout=30, check=False)
    return [int(p) for p in res.stdout.split()]


def end_processes(name: str, grace: float = 10.0) -> None:
    """End what still runs in the namespace (daemons a validator left, like epmd).

    Only processes inside this namespace, which this module created, are touched.
    """
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if until(lambda: not _pids(name), grace):
            return

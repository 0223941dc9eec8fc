"""The chaos delay line on real veths and a real bridge: two namespaces, one spliced.

The lab's hosts sit on bridges through veths; this is the same wiring at its
smallest, so the splice commands, the line's packet sockets (offloaded TCP
segments, checksums left to fill) and its undo are checked against the kernel.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import hastack.chaos.run as chaos_run
from hastack.chaos.run import delay_line
from hastack.chaos.scenarios import SCENARIOS
from hastack.lab.layout import HostIf, LabHost, Layout, Link
from tests.integration.conftest import Daemons, wait_until

pytestmark = pytest.mark.integration
PROBE = str(Path(__file__).with_name("linkprobe.py"))
NET = IPv4Network("10.252.7.0/24")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


def master(ifname: str) -> str | None:
    res = ip("-j", "link", "show", ifname, check=False)
    return json.loads(res.stdout)[0].get("master") if res.returncode == 0 else None


@pytest.fixture
def wire() -> Iterator[Layout]:
    """Hosts a and b, each a namespace with a veth on one bridge, as `lab up` wires them."""
    tag = f"dl{os.getpid() % 1000:03d}"
    bridge = f"hs{tag}-br0"
    hosts = tuple(LabHost(name, n, (HostIf(0, "eth0", f"hs{tag}-{n}m", NET[n + 1]),))
                  for n, name in enumerate(("a", "b")))
    lay = Layout("delayline", tag, (Link(0, NET, bridge, NET[254]),), hosts, f"hs{tag}-a", "", IPv4Address(NET[1]))
    ip("link", "add", bridge, "type", "bridge")
    ip("link", "set", bridge, "up")
    try:
        for h in hosts:
            port = h.interfaces[0].outside
            ip("netns", "add", f"hs{tag}-{h.name}")
            ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", f"hs{tag}-{h.name}")
            ip("link", "set", port, "master", bridge, "up")
            ip("-n", f"hs{tag}-{h.name}", "addr", "add", f"{h.address}/24", "dev", "eth0")
            ip("-n", f"hs{tag}-{h.name}", "link", "set", "eth0", "up")
            ip("-n", f"hs{tag}-{h.name}", "link", "set", "lo", "up")
        yield lay
    finally:
        for h in hosts:
            for name in (h.interfaces[0].outside, f"{h.interfaces[0].outside}s"):
                ip("link", "del", name, check=False)
            ip("netns", "del", f"hs{tag}-{h.name}", check=False)
        ip("link", "del", bridge, check=False)


def probe(lay: Layout, size: int = 8 << 20) -> dict[str, object]:
    res = subprocess.run(["ip", "netns", "exec", f"hs{lay.tag}-a", sys.executable, PROBE, "probe",
                          str(lay.host("b").address), str(size)], capture_output=True, text=True, timeout=120,
                         check=True)
    out: dict[str, object] = json.loads(res.stdout)
    return out


def test_the_line_delays_both_ways_keeps_every_byte_and_is_undone(wire: Layout, daemons: Daemons) -> None:
    daemons.spawn(["ip", "netns", "exec", f"hs{wire.tag}-b", sys.executable, PROBE, "serve"])
    before = probe(wire)
    assert before["intact"] and float(before["rtt_ms"]) < 20, before  # type: ignore[arg-type]

    scenario = dataclasses.replace(SCENARIOS["link-latency"], delay_ms=40)
    port = wire.host("a").interfaces[0].outside
    said: list[str] = []
    undo = delay_line(scenario, wire, "a", said.append)
    try:
        assert master(port) is None and master(f"{port}s") == wire.links[0].bridge
        during = probe(wire)
    finally:
        undo()
    # 40 ms each way: every round trip at least 80 ms longer; a bulk TCP stream of offloaded
    # segments arrives whole (a checksum left unfilled would stall it).
    assert 80 <= float(during["rtt_ms"]) < 80 + 200, during  # type: ignore[arg-type]
    assert during["intact"] and during["bytes"] == 8 << 20, during
    assert said and said[0].startswith("delay line: frames out:"), said
    assert master(port) == wire.links[0].bridge and ip("link", "show", f"{port}s", check=False).returncode != 0
    after = probe(wire)
    assert after["intact"] and float(after["rtt_ms"]) < 20, after  # type: ignore[arg-type]


def test_a_line_left_running_undoes_the_splice_itself(wire: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chaos run killed mid-fault must not leave a host cut off: the line's own bound restores it."""
    monkeypatch.setattr(chaos_run, "DELAY_MARGIN_S", 0.0)
    scenario = dataclasses.replace(SCENARIOS["link-latency"], duration_s=1.0)
    port = wire.host("a").interfaces[0].outside
    undo = delay_line(scenario, wire, "a", lambda _: None)
    try:
        assert master(port) is None
        wait_until(lambda: master(port) == wire.links[0].bridge, 20, "the line to put the veth back")
        wait_until(lambda: ip("link", "show", f"{port}s", check=False).returncode != 0, 20,
                   "the line to remove its veth pair")
    finally:
        undo()

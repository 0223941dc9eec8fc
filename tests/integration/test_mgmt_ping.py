"""The management network's look, by the real programs that take it: pacemaker's ping agent with the
rendered parameters and the VRRP gate's fping, each against targets in a namespace whose nftables
decide which echo requests are lost. Two tries of 0.5 s: a lost first try is not a lost network, and a
network that is gone is still known in about a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hastack.agent.vrrp_gate import fping
from hastack.lab.pingnet import PingNet, pingnet
from hastack.render.pacemaker import PING_ATTRIBUTE, build_cib
from hastack.spec.model import Spec
from tests.helpers import variant
from tests.integration.conftest import require

AGENT = Path("/usr/lib/ocf/resource.d/pacemaker/ping")
NODE = "ctl1"
# A lost network is known after two tries of 0.5 s; the rest is the agent's shell and fping's start.
GONE_WITHIN_S = 1.6


@pytest.fixture(scope="module")
def spec() -> Spec:
    return variant(timing={"profile": "fast"})


@pytest.fixture
def net(spec: Spec) -> Iterator[PingNet]:
    node = spec.node(NODE)
    with pingnet("ping", str(node.address), spec.ping_targets(node), spec.networks.management.prefixlen) as net:
        yield net


def _agent_look(spec: Spec, net: PingNet, tmp_path: Path) -> tuple[int, float]:
    """Pacemaker's ping agent started with NODE's rendered parameters: the count it hands the attribute
    manager, and how long it took."""
    if not AGENT.exists():
        require("pacemakerd")  # the agent comes with pacemaker: fails, naming what to install
    ping = next(p for p in build_cib(spec).iter("primitive") if p.get("type") == "ping")
    params = {nv.get("name"): nv.get("value") for ia in ping.iter("instance_attributes") for nv in ia.iter("nvpair")
              if ia.find("rule") is None or ia.get("id") == f"mgmt-ping-ia-{NODE}"}
    # attrd_updater stands in for the cluster's attribute manager (no cluster here): it records its arguments.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    args = tmp_path / "attrd.args"
    args.unlink(missing_ok=True)
    (bin_dir / "attrd_updater").write_text(f"#!/bin/sh\nprintf '%s ' \"$@\" >> {args}\n")
    (bin_dir / "attrd_updater").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "OCF_ROOT": "/usr/lib/ocf", "HA_RSCTMP": str(tmp_path),
           "OCF_RESOURCE_INSTANCE": "mgmt-ping", "OCF_RESKEY_CRM_meta_interval": "1000",
           **{f"OCF_RESKEY_{k}": v for k, v in params.items() if k and v is not None}}
    started = time.monotonic()
    res = net.node.run([str(AGENT), "start"], env=env, timeout=60)
    took = time.monotonic() - started
    assert res.returncode == 0, res.stdout + res.stderr
    name, attribute, update, count = args.read_text().split()[:4]
    assert (name, attribute, update) == ("-n", PING_ATTRIBUTE, "-B")
    return int(count), took


def test_the_ping_agent_counts_a_target_whose_first_try_was_lost(spec: Spec, net: PingNet, tmp_path: Path) -> None:
    net.drop_first()
    count, _ = _agent_look(spec, net, tmp_path)
    # Every target answered its second try; the counters show each first try was lost (one try of 1 s,
    # the settings before, counted 0 here).
    assert count == len(net.targets)
    assert net.requests() == dict.fromkeys(net.targets, 2)


def test_the_ping_agent_finds_a_lost_network_in_two_tries_within_a_second(
        spec: Spec, net: PingNet, tmp_path: Path) -> None:
    net.drop_all()
    count, took = _agent_look(spec, net, tmp_path)
    assert count == 0
    assert took < GONE_WITHIN_S, f"the agent took {took:.2f} s to find no target"
    assert net.requests() == dict.fromkeys(net.targets, 2)


def test_the_vrrp_gate_passes_on_second_tries_and_fails_a_lost_network_within_a_second(net: PingNet) -> None:
    net.drop_first()
    passed, _ = net.look(fping(net.targets))
    assert passed
    assert all(n >= 2 for n in net.requests().values())  # fping -x stops once one target answered
    net.drop_all()
    passed, took = net.look(fping(net.targets))
    assert not passed
    assert took < GONE_WITHIN_S, f"the gate's fping took {took:.2f} s to find no target"
    assert net.requests() == dict.fromkeys(net.targets, 2)

"""corosync parses the rendered config; pacemaker's scheduler places the rendered CIB."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

from hastack.components.pacemaker import PacemakerState, parse_crm_mon
from hastack.lab.netns import netns
from hastack.render.corosync import link_addresses
from hastack.render.pacemaker import PING_ATTRIBUTE
from hastack.spec.load import load_spec
from hastack.spec.model import Role
from tests.helpers import SEED, THREE, variant
from tests.integration.conftest import Rendered, render_to, require


def _conf_with_local_key(r: Rendered, host: str, tmp: Path) -> Path:
    conf = r.path(host, "/etc/corosync/corosync.conf").read_text()
    key = r.path(host, "/etc/corosync/authkey")
    out = tmp / f"corosync-{host}.conf"
    out.write_text(conf.replace("keyfile: /etc/corosync/authkey", f"keyfile: {key}"))
    return out


def test_corosync_accepts_the_config_on_every_member(rendered: Rendered, tmp_path: Path) -> None:
    corosync = require("corosync")
    for node in rendered.spec.corosync_nodes():
        conf = _conf_with_local_key(rendered, node.name, tmp_path)
        # corosync -t finds the local node by its ring addresses: give the
        # namespace exactly this node's addresses.
        with netns("coro", link_addresses(rendered.spec, node)) as ns:
            res = ns.run([corosync, "-t", "-c", str(conf)])
        assert res.returncode == 0, f"{node.name}: {res.stdout}{res.stderr}"


def test_corosync_test_mode_really_parses(rendered: Rendered, tmp_path: Path) -> None:
    corosync = require("corosync")
    node = rendered.spec.corosync_nodes()[0]
    conf = _conf_with_local_key(rendered, node.name, tmp_path)
    with netns("coro", ["10.99.0.1"]) as ns:  # not a member's address
        res = ns.run([corosync, "-t", "-c", str(conf)])
    assert res.returncode != 0 and "No valid name found for local host" in res.stdout + res.stderr
    broken = tmp_path / "broken.conf"
    broken.write_text(conf.read_text().replace("transport: knet", "transport: knet\n    token: soon"))
    with netns("coro", link_addresses(rendered.spec, node)) as ns:
        res = ns.run([corosync, "-t", "-c", str(broken)])
    assert res.returncode != 0


def _simulate(cib: Path, out: Path, *args: str) -> list[str]:
    """One transition of the scheduler on `cib` (with `args` injected), executed by the simulator into
    `out`: its summary lines ("Fence (reboot) compute1 '...'", "Recover compute1 ( ctl1 -> ctl2 )")."""
    res = subprocess.run([require("crm_simulate"), "-x", str(cib), *args, "-S", "-O", str(out)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = res.stdout.split("Transition Summary:", 1)[-1].split("Executing Cluster Transition", 1)[0]
    return [" ".join(ln.split()) for ln in summary.splitlines() if ln.strip().startswith("*")]


def _crm_mon(cib: Path) -> PacemakerState:
    res = subprocess.run([require("crm_mon"), "-1", "--output-as=xml"], capture_output=True, text=True,
                         timeout=60, check=False, env={**os.environ, "CIB_file": str(cib)})
    assert res.returncode == 0, res.stderr
    return parse_crm_mon(res.stdout)


def _reach(cib: Path, node: str, targets: int) -> None:
    """What the ping clone would record on `node`: how many management targets answered (the
    simulator runs no agent, so the attribute is set as the agent sets it, a transient one)."""
    res = subprocess.run([require("crm_attribute"), "--node", node, "--name", PING_ATTRIBUTE, "--update",
                          str(targets), "--lifetime", "reboot"], capture_output=True, text=True, timeout=60,
                         check=False, env={**os.environ, "CIB_file": str(cib)})
    assert res.returncode == 0, res.stderr


def _all_up(r: Rendered, tmp: Path) -> Path:
    cib = r.path(r.spec.corosync.nodes[0], "/etc/hastack/cib.xml")
    booted, up = tmp / "booted.xml", tmp / "up.xml"
    args = [a for n in r.spec.corosync.nodes for a in ("-u", n)]
    _simulate(cib, booted, *args, "-q", "1")
    for node in r.spec.haproxy.nodes:  # every haproxy node reaches its management network
        _reach(booted, node, len(r.spec.ping_targets(r.spec.node(node))))
    _simulate(booted, up)
    return up


def test_cib_verifies_and_places_resources(rendered: Rendered, tmp_path: Path) -> None:
    spec = rendered.spec
    up = _all_up(rendered, tmp_path)
    res = subprocess.run([require("crm_verify"), "--xml-file", str(up), "-V"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr  # no error and no warning
    state = _crm_mon(up)
    assert set(state.online()) == set(spec.corosync.nodes)
    assert state.stonith_enabled and state.no_quorum_policy == "stop"
    [holder] = state.where("vip-internal")
    assert holder == (spec.pacemaker.vip_preferred_node or holder)
    assert holder in spec.haproxy.nodes
    assert sorted(state.where("haproxy-clone")) == sorted(spec.haproxy.nodes)
    for node in spec.corosync.nodes:
        assert state.where(f"fence-{node}") not in ((), (node,)), f"fence-{node} must run, and not on {node}"
    assert not any(r.failed for r in state.resources)


def test_vip_moves_to_a_survivor_never_to_the_voting_node(tmp_path: Path) -> None:
    r = render_to(load_spec(SEED), tmp_path / "out")
    up = _all_up(r, tmp_path)
    assert _crm_mon(up).where("vip-internal") == ("ctl1",)
    failed = tmp_path / "failed.xml"
    _simulate(up, failed, "-f", "ctl1")
    state = _crm_mon(failed)
    assert "ctl1" not in state.online()
    assert state.where("vip-internal") == ("ctl2",)
    assert state.where("haproxy-clone") == ("ctl2",)


def test_vip_leaves_a_holder_that_reaches_nobody_and_stays_off_an_unknown_one(tmp_path: Path) -> None:
    r = render_to(load_spec(SEED), tmp_path / "out")
    up = _all_up(r, tmp_path)
    assert _crm_mon(up).where("vip-internal") == ("ctl1",)
    # ctl1 lost its clients' network, its rings up: still a member, no longer a VIP holder.
    _reach(up, "ctl1", 0)
    cut = tmp_path / "cut.xml"
    _simulate(up, cut)
    state = _crm_mon(cut)
    assert "ctl1" in state.online() and state.where("vip-internal") == ("ctl2",)
    assert sorted(state.where("haproxy-clone")) == ["ctl1", "ctl2"]  # haproxy stays; only the address moves
    # Nobody known to reach the network (before the first ping): the VIP waits rather than guess.
    booted = tmp_path / "unknown.xml"
    _simulate(r.path("ctl1", "/etc/hastack/cib.xml"), booted, *[a for n in r.spec.corosync.nodes for a in ("-u", n)],
              "-q", "1")
    assert _crm_mon(booted).where("vip-internal") == ()


def test_crm_verify_rejects_a_broken_cib(tmp_path: Path) -> None:
    r = render_to(load_spec(SEED), tmp_path / "out")
    cib = r.path("ctl1", "/etc/hastack/cib.xml").read_text()
    broken = tmp_path / "broken.xml"
    broken.write_text(cib.replace('with-rsc="haproxy-clone"', 'with-rsc="no-such-resource"'))
    res = subprocess.run([require("crm_verify"), "--xml-file", str(broken)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0


def test_instance_ha_watches_every_compute_from_the_members(tmp_path: Path) -> None:
    """With instance HA each compute is a pacemaker_remote node: its connection runs on a member,
    its fence device too, and it runs none of the members' resources; the evacuator runs once."""
    r = render_to(variant(THREE, instance_ha={"enabled": True}), tmp_path / "out")
    computes = [n.name for n in r.spec.with_role(Role.COMPUTE)]
    booted = tmp_path / "booted.xml"  # the members up: the scheduler starts every connection
    _simulate(r.path("ctl1", "/etc/hastack/cib.xml"), booted,
              *[a for n in r.spec.corosync.nodes for a in ("-u", n)], "-q", "1")
    res = subprocess.run([require("crm_verify"), "--xml-file", str(booted), "-VVV"], capture_output=True, text=True,
                         timeout=60, check=False)
    # No error; the one warning is the simulator's: it starts a connection but never hears from the
    # remote node behind it, so it calls that node unclean (a live cluster hears pacemaker_remoted).
    warnings = [ln for ln in res.stderr.splitlines() if "warning:" in ln]
    assert res.returncode in (0, 78) and "error" not in res.stderr.lower(), res.stderr
    assert warnings and all(any(f" {c} " in w for c in computes) for w in warnings), warnings
    state = _crm_mon(booted)
    for name in computes:
        assert state.where(name)[0] in r.spec.corosync.nodes, state.where(name)  # the connection
        assert state.where(f"fence-{name}")[0] in r.spec.corosync.nodes
    for rid in ("haproxy-clone", "mgmt-ping-clone", "time-sync-clone", "vip-internal"):
        assert not set(state.where(rid)) & set(computes), (rid, state.where(rid))
    # No clone keeps an instance "Stopped" for a compute it may not run on (deploy waits for none).
    assert "time-sync-clone" not in state.stopped() and "haproxy-clone" not in state.stopped()
    # (Each connection has a rule keeping it off a member that lost the management network; it must
    # not keep it off one whose reach is unknown: above, the connections started before any ping.)
    [evacuator] = state.where("evacuator")  # one copy, on a controller
    assert evacuator in [n.name for n in r.spec.evacuator_nodes()]
    # One key on every member and every compute: pacemaker_remote's TLS needs the same bytes.
    keys = {r.path(h, "/etc/pacemaker/authkey").read_bytes() for h in (*r.spec.corosync.nodes, *computes)}
    assert len(keys) == 1 and len(keys.pop()) == 256


def _computes_connected(r: Rendered, tmp: Path) -> Path:
    """`_all_up` with every compute's connection started too, as in a running cluster. The simulator
    fences the computes at the first start (it never hears from their pacemaker_remoted) and records
    them as cluster nodes; that record is dropped so their connections start as they do in a lab."""
    members = list(r.spec.corosync.nodes)
    booted = tmp / "booted.xml"
    _simulate(r.path(members[0], "/etc/hastack/cib.xml"), booted, *[a for n in members for a in ("-u", n)], "-q", "1")
    tree = ET.parse(booted)
    root = tree.getroot()
    for parent in (root.find("configuration/nodes"), root.find("status")):
        assert parent is not None
        for el in [e for e in parent if e.get("uname") not in members]:
            parent.remove(el)
    tree.write(booted)
    for node in r.spec.haproxy.nodes:  # every haproxy node reaches its management network
        _reach(booted, node, len(r.spec.ping_targets(r.spec.node(node))))
    up = booted
    for i in range(4):
        nxt = tmp / f"settled{i}.xml"
        if not _simulate(up, nxt):
            return nxt
        up = nxt
    raise AssertionError("the scheduler did not settle")


def test_a_connection_lost_by_a_cut_off_member_moves_without_fencing_the_compute(tmp_path: Path) -> None:
    """Pacemaker's own scheduler on the rendered CIB. A member that lost the management network (its
    reach 0) while its poke to compute1 was in flight: the poke times out, and the connection only
    moves; with pacemaker's default (fence at a failed monitor) the healthy compute was fenced, as in
    the lab. (A compute no member reaches is still fenced, once its connection failed to start on every
    other member: the lab's compute-crash and compute-isolation scenarios check that; the simulator
    does not apply fail counts to a connection, so it retries the same member for ever.)"""
    r = render_to(variant(THREE, instance_ha={"enabled": True}, timing={"profile": "fast"}), tmp_path / "out")
    up = _computes_connected(r, tmp_path)
    state = _crm_mon(up)
    assert {"compute1", "compute2"} <= set(state.online())
    [holder] = state.where("compute1")
    monitor = f"compute1_monitor_{r.spec.timing.pacemaker_monitor_s * 1000}"

    # The member holding compute1's connection cut off from the management network, its poke unanswered.
    cut = tmp_path / "cut.xml"
    shutil.copy(up, cut)
    _reach(cut, holder, 0)
    actions = _simulate(cut, tmp_path / "moved.xml", "-i", f"{monitor}@{holder}=1")
    assert not [a for a in actions if a.startswith("* Fence")], actions
    [recover] = [a for a in actions if a.startswith("* Recover compute1")]
    assert f"( {holder} -> " in recover, recover
    assert "compute1" in _crm_mon(tmp_path / "moved.xml").online()
    # The same with pacemaker's default for a connection's monitor: the healthy compute is fenced.
    default = tmp_path / "default.xml"
    default.write_text(cut.read_text().replace(' on-fail="restart"', ""))
    actions = _simulate(default, tmp_path / "fenced.xml", "-i", f"{monitor}@{holder}=1")
    assert [a for a in actions if a.startswith("* Fence (reboot) compute1")], actions

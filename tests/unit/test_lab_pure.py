"""The lab's pure parts: layout, boot files, the power switch's routes, fencing for the lab, the fence agent."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import resources
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hastack.common.poll import until
from hastack.lab import power, runtime
from hastack.lab.fence import AGENT, lab_fencing
from hastack.lab.layout import FENCE_AGENT_PATH, POWER_PORT, POWER_TOKEN_PATH, Layout, boot_files, layout
from hastack.lab.power import Route, Switch, route
from hastack.lab.runtime import LabDirs, load_state
from hastack.spec.load import load_spec
from hastack.workload.smoke import target
from tests.helpers import SEED, THREE, secrets_for, variant

AGENT_SCRIPT = resources.files("hastack.lab") / "fence_hastack_lab"


def test_layout_names_fit_and_are_stable() -> None:
    spec = load_spec(THREE)
    lay = layout(spec)
    assert lay == layout(load_spec(THREE))
    names = [link.bridge for link in lay.links] + [i.outside for h in lay.hosts for i in h.interfaces]
    names += [lay.client_veth]
    assert all(len(n) <= 15 for n in names) and len(set(names)) == len(names)
    assert len(lay.links) == 3  # management + the two heartbeat rings
    ctl1 = lay.host("ctl1")
    assert [i.inside for i in ctl1.interfaces] == ["eth0", "hb1", "hb2"]
    assert ctl1.address == IPv4Address("10.77.0.11")
    assert lay.management.gateway == IPv4Address("10.77.0.254")
    assert lay.client_address == IPv4Address("10.77.0.253")
    assert lay.client_address not in {h.address for h in lay.hosts}


def test_bridge_macs_are_fixed_unicast_and_distinct() -> None:
    macs = [link.mac for link in layout(load_spec(THREE)).links]
    assert macs == [link.mac for link in layout(load_spec(THREE)).links]
    assert len(set(macs)) == len(macs)
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert len(mac.split(":")) == 6 and first & 0x02 and not first & 0x01  # locally administered, unicast


def test_seed_layout_has_every_node() -> None:
    spec = load_spec(SEED)
    assert {h.name for h in layout(spec).hosts} == {n.name for n in spec.nodes}


def test_boot_files_keep_secrets_private() -> None:
    lay = layout(load_spec(THREE))
    files = boot_files(lay, lay.host("ctl2"), "ssh-ed25519 AAAA test", "tok3n", "#!/usr/bin/python3\n")
    assert files["/etc/hostname"].body == "ctl2\n"
    assert "10.77.0.13 ctl3" in files["/etc/hosts"].body
    assert files[POWER_TOKEN_PATH].mode == 0o600 and files["/root/.ssh/authorized_keys"].mode == 0o600
    assert files[FENCE_AGENT_PATH].mode == 0o755
    assert "Address=10.77.1.12/24" in files["/etc/systemd/network/10-hb1.network"].body


@pytest.mark.parametrize(("method", "path", "want"), [
    ("GET", "/hosts", Route("list")),
    ("GET", "/hosts/ctl1", Route("status", "ctl1")),
    ("POST", "/hosts/ctl1/reboot", Route("reboot", "ctl1")),
    ("POST", "/hosts/ctl1/off?x=1", Route("off", "ctl1")),
    ("POST", "/hosts/nosuch/off", None),
    ("GET", "/hosts/ctl1/off", None),
    ("POST", "/hosts/ctl1/explode", None),
    ("DELETE", "/hosts/ctl1", None),
])
def test_power_routes(method: str, path: str, want: Route | None) -> None:
    assert route(method, path, ("ctl1", "ctl2")) == want


def test_lab_fencing_keeps_delays_and_only_fenced_nodes() -> None:
    seed = load_spec(SEED)
    first = seed.nodes[0]
    assert first.fence is not None
    # A two-node tie-breaker delay on one node, a node without a device.
    nodes = (first.model_copy(update={"fence": first.fence.model_copy(update={"delay": 10})}),
             *(n.model_copy(update={"fence": None}) if n.name == "compute2" else n for n in seed.nodes[1:]))
    spec = seed.model_copy(update={"nodes": nodes})
    lab = lab_fencing(spec, layout(spec))
    for before, after in zip(spec.nodes, lab.nodes, strict=True):
        if before.fence is None:
            assert after.fence is None
            continue
        assert after.fence is not None and after.fence.agent == AGENT
        assert after.fence.delay == before.fence.delay
        assert after.fence.params == {"ip": str(layout(spec).management.gateway), "ipport": str(POWER_PORT)}
    assert lab.nodes[0].fence is not None and lab.nodes[0].fence.delay == 10
    assert next(n for n in lab.nodes if n.name == "compute2").fence is None


def run_agent(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(AGENT_SCRIPT), *args], input=stdin, capture_output=True, text=True,
                          timeout=30, check=False)


def test_agent_metadata_is_what_pacemaker_reads() -> None:
    res = run_agent("-o", "metadata")
    assert res.returncode == 0
    root = ET.fromstring(res.stdout)
    assert root.get("name") == "fence_hastack_lab"
    params = {p.get("name") for p in root.iter("parameter")}
    assert {"action", "ip", "ipport", "plug"} <= params  # "plug": pacemaker passes the target as plug=
    assert {a.get("name") for a in root.iter("action")} >= {"on", "off", "reboot", "status", "monitor", "metadata"}


def test_agent_refuses_without_target_or_switch() -> None:
    assert run_agent(stdin="action=off\nip=127.0.0.1\n").returncode == 1  # no plug
    assert run_agent(stdin="action=monitor\n").returncode == 1  # no ip
    assert run_agent(stdin="action=validate-all\nip=127.0.0.1\nplug=ctl1\n").returncode == 0


def test_agent_reports_an_unreachable_switch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = tmp_path / "token"
    token.write_text("t\n")
    # Port 9 on loopback: nothing listens; the agent must fail, not claim success.
    res = run_agent(stdin=f"action=off\nip=127.0.0.1\nipport=9\nplug=ctl1\ntoken_file={token}\n")
    assert res.returncode == 1 and "ctl1" in res.stderr


def test_smoke_target_follows_the_spec() -> None:
    spec = load_spec(THREE)
    t = target(spec, secrets_for(spec), "hastack_admin")
    assert t.vip == "10.77.0.10"
    assert set(t.galera_nodes) == {"ctl1", "ctl2", "ctl3"}
    # Quorum-queue clients list every node (transport_url), not the VIP, unless the spec says so.
    assert t.rabbit_hosts == ("10.77.0.11", "10.77.0.12", "10.77.0.13")
    assert t.mongo_replset == "rs0" and len(t.mongo_members) == 3
    # The OpenStack calls wait longer than the database clients: a slow answer is not an outage.
    assert (t.client_timeout_s, t.api_timeout_s) == (3.0, 10.0)
    fast = target(variant(timing={"profile": "fast", "api_timeout_ms": 7000}), secrets_for(spec), "hastack_admin")
    assert (fast.client_timeout_s, fast.api_timeout_s) == (1.0, 7.0)


class _RecordingSwitch(Switch):
    """The switch's decisions without hosts: power actions are recorded."""

    def __init__(self, lay: Layout, dirs: LabDirs) -> None:
        super().__init__(lay, dirs)
        self.calls: list[tuple[str, str]] = []

    def off(self, host: str) -> None:
        self.calls.append(("off", host))

    def on(self, host: str) -> None:
        self.calls.append(("on", host))

    def power(self, host: str) -> str:
        return "unknown"


def test_reboot_powers_on_later_unless_an_off_follows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(power, "POST_SECONDS", 0.05)
    sw = _RecordingSwitch(layout(load_spec(THREE)), LabDirs(tmp_path))
    sw.act(Route("reboot", "ctl1"))
    sw._pending["ctl1"].join(5)
    assert sw.calls == [("off", "ctl1"), ("on", "ctl1")]
    assert load_state(LabDirs(tmp_path)).fenced.keys() == {"ctl1"}

    sw.calls.clear()
    sw.act(Route("reboot", "ctl2"))
    timer = sw._pending["ctl2"]
    sw.act(Route("off", "ctl2"))  # the fencer's "off" wins over the earlier reboot's "on"
    timer.join(5)
    assert sw.calls == [("off", "ctl2"), ("off", "ctl2")]
    assert "ctl2" not in sw._pending
    state = load_state(LabDirs(tmp_path))  # both cuts of ctl2 on record, the last one also as `fenced`
    assert len(state.fences["ctl2"]) == 2 and state.fences["ctl2"][-1] == state.fenced["ctl2"]


def test_each_host_has_its_own_power_credential_and_computes_have_none() -> None:
    from hastack.lab.layout import fencers, host_token

    lay = layout(load_spec(THREE))
    assert fencers(lay) == {"ctl1", "ctl2", "ctl3"}  # on the heartbeat rings; compute1 and compute2 are not
    tokens = {h: host_token("master", h) for h in ("ctl1", "ctl2")}
    assert tokens["ctl1"] != tokens["ctl2"] and host_token("other", "ctl1") != tokens["ctl1"]
    assert power.caller(tokens["ctl2"], "master", fencers(lay)) == "ctl2"
    assert power.caller(host_token("master", "compute1"), "master", fencers(lay)) is None
    assert power.caller("master", "master", fencers(lay)) is None  # the lab's secret itself opens nothing
    compute = boot_files(lay, lay.host("compute1"), "ssh-ed25519 AAAA test", None, "#!/usr/bin/python3\n")
    assert POWER_TOKEN_PATH not in compute


def test_the_switch_answers_its_hosts_only_and_drops_silent_callers(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import http.client
    import socket
    import threading

    from hastack.lab.layout import host_token

    monkeypatch.setattr(power, "REQUEST_TIMEOUT_S", 1.0)
    lay = layout(load_spec(THREE))
    sw = _RecordingSwitch(lay, LabDirs(tmp_path))
    server = power.BoundedServer(("127.0.0.1", 0), power._handler(sw, "master"), workers=2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def post(token: str, path: str, wait: bool = True) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        # A worker is released just after its reply is sent: with two workers, wait for them to let go.
        assert not wait or until(lambda: server.active < 2, 5, every=0.01)
        conn.request("POST", path, headers={"Authorization": f"Bearer {token}"})
        status = conn.getresponse().status
        conn.close()
        return status

    try:
        assert post(host_token("master", "compute1"), "/hosts/ctl1/off") == 401  # a compute may power nothing
        assert post("master", "/hosts/ctl1/off") == 401
        assert sw.calls == []
        assert post(host_token("master", "ctl2"), "/hosts/ctl1/off") == 200 and sw.calls == [("off", "ctl1")]
        # Two callers that connect and say nothing hold both workers: a third is turned away at once...
        assert until(lambda: server.active == 0, 5, every=0.01)  # the requests above have let go
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        assert until(lambda: server.active == 2, 5, every=0.01)  # both taken in
        with pytest.raises(ConnectionError):  # reset, broken pipe or closed: turned away
            post(host_token("master", "ctl3"), "/hosts/ctl1/on", wait=False)
        # ...until the handler's timeout ends them (the server closes: recv sees the end), bounded.
        for s in idle:
            s.settimeout(5)
            assert s.recv(1) == b""
            s.close()
        assert until(lambda: server.active == 0, 5, every=0.01)  # their workers are free again
        assert post(host_token("master", "ctl3"), "/hosts/ctl1/on") == 200 and sw.calls[-1] == ("on", "ctl1")
    finally:
        server.shutdown()
        server.server_close()


def test_a_lab_state_from_before_the_cuts_were_kept_still_says_the_last_one(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"hosts": {"ctl1": 42}, "fenced": {"ctl1": 7.5}}')
    state = load_state(LabDirs(tmp_path))
    assert state.fenced == {"ctl1": 7.5} and state.fences == {"ctl1": [7.5]}


def test_a_power_cut_takes_the_links_down_before_it_kills_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed first, a loaded host's kernel answered ARP for the VIP for 0.6 s beside the backup that
    had taken it (chaos host-crash: two holders). The links go dark in one batch, then the kill."""
    host = layout(load_spec(THREE)).host("ctl1")
    done: list[str] = []
    links = {i.outside for i in host.interfaces}
    monkeypatch.setattr(runtime, "_link_exists", lambda name: name in links)

    def batch(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        done.append(f"{' '.join(argv[:3])}: {str(kw['input']).count('down')} down")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def kill(pid: int, timeout: float = 10) -> bool:
        done.append(f"kill {pid}")
        return True

    def delete(*argv: str, check: bool = True) -> None:
        done.append(" ".join(argv))
        links.discard(argv[-1])

    monkeypatch.setattr(subprocess, "run", batch)
    monkeypatch.setattr(runtime, "kill_host", kill)
    monkeypatch.setattr(runtime, "sh", delete)
    monkeypatch.setattr(runtime, "until", lambda *a, **kw: None)
    runtime.power_cut(4242, host)
    assert done[:2] == [f"ip -force -batch: {len(host.interfaces)} down", "kill 4242"]
    assert sorted(done[2:]) == sorted(f"ip link del {i.outside}" for i in host.interfaces)


def test_a_power_cut_goes_on_when_its_links_will_not_go_down(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A fence is a power cut: a failed `ip link set down` must not leave the host running (the switch
    would answer that the fence failed while the host kept its VIP); the kill and the deletion go on."""
    host = layout(load_spec(THREE)).host("ctl2")
    links = {i.outside for i in host.interfaces}
    killed: list[int] = []
    monkeypatch.setattr(runtime, "_link_exists", lambda name: name in links)
    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: subprocess.CompletedProcess(argv, 2, "", "RTNETLINK"))

    def kill(pid: int, timeout: float = 10) -> bool:
        killed.append(pid)
        return True

    monkeypatch.setattr(runtime, "kill_host", kill)
    monkeypatch.setattr(runtime, "sh", lambda *argv, check=True: links.discard(argv[-1]))
    monkeypatch.setattr(runtime, "until", lambda *a, **kw: None)
    runtime.power_cut(4243, host)
    assert killed == [4243] and not links
    assert "ctl2: taking the links down failed: RTNETLINK; cutting the power anyway" in capsys.readouterr().err

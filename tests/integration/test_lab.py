"""The whole lab, end to end, as a user drives it: `hastack lab up`, then checks from the client host.

The example spec runs under its own cluster name and networks, so the test
never touches a lab a developer has up. Every wait is on real state and
bounded; `lab down` runs at the end whatever happened.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hastack.lab.layout import layout
from hastack.lab.runtime import LabDirs, load_state
from hastack.spec.load import load_spec
from tests.helpers import THREE

pytestmark = [pytest.mark.integration, pytest.mark.lab]

CLUSTER = "labtest"
# The installed command, as a user runs it.
HASTACK = [str(Path(sys.executable).parent / "hastack")]


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HASTACK, *args], capture_output=True, text=True, timeout=timeout, check=False)


def cli_json(*args: str, timeout: float = 600) -> tuple[int, dict[str, Any]]:
    res = cli(*args, "--json", timeout=timeout)
    try:
        return res.returncode, json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`hastack {' '.join(args)} --json` printed no JSON (exit {res.returncode}):\n"
                    f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def wait_healthy(spec: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rc, status = cli_json("status", str(spec), timeout=120)
        if rc == 0 and status["healthy"]:
            return status
        if time.monotonic() > deadline:
            bad = [c for c in status["components"] if not c["healthy"]]
            pytest.fail(f"not healthy within {timeout:.0f} s: {json.dumps(bad, indent=1)}")
        time.sleep(2)


def ssh(dirs: LabDirs, address: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    opts = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-q"]
    return subprocess.run(["ssh", "-i", str(dirs.key), *opts, f"root@{address}", command],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("systemd-nspawn") is None or shutil.which("debootstrap") is None:
        pytest.fail("the lab needs systemd-nspawn and debootstrap: run scripts/setup")
    text = THREE.read_text().replace("cluster: openstack", f"cluster: {CLUSTER}").replace("10.77.", "10.79.")
    spec = tmp_path_factory.mktemp("lab") / "cluster.yaml"
    spec.write_text(text)
    try:
        res = cli("lab", "up", str(spec), timeout=1500)
        assert res.returncode == 0, (f"lab up failed (exit {res.returncode}):\n"
                                     f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
        assert "every component healthy" in res.stdout
        yield spec
    finally:
        cli("lab", "down", str(spec), timeout=300)


def test_status_reports_every_cluster_healthy(lab: Path) -> None:
    rc, status = cli_json("status", str(lab))
    assert rc == 0 and status["healthy"]
    rows = {c["component"]: c for c in status["components"]}
    assert set(rows) == {"hosts", "corosync", "pacemaker", "vip", "galera", "rabbitmq", "mongodb", "haproxy"}
    facts = status["facts"]
    assert sorted(m["name"] for m in facts["quorum"]["members"]) == ["ctl1", "ctl2", "ctl3"]
    assert {len(v) for v in facts["links"].values()} == {4}  # 2 peers x 2 knet links, from every node
    fences = [r for r in facts["pacemaker"]["resources"] if r["agent"] == "stonith:fence_hastack_lab"]
    assert len(fences) == 3 and all(r["active"] for r in fences)  # fencing on, devices running
    assert {s["cluster_size"] for s in facts["galera"].values()} == {3}
    assert sorted(facts["rabbit"]["running"]) == ["rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"]
    assert sorted(m["state"] for m in facts["mongo"]["members"]) == ["PRIMARY", "SECONDARY", "SECONDARY"]
    vip_holders = [h["host"] for h in status["hosts"] if h["vips"] != "-"]
    assert len(vip_holders) == 1


def test_smoke_from_the_client_host(lab: Path) -> None:
    rc, smoke = cli_json("lab", "smoke", str(lab))
    assert rc == 0 and smoke["ok"], smoke
    checks = {c["name"]: c for c in smoke["checks"]}
    assert checks["galera"]["evidence"]["read_back"] == {"ctl1": True, "ctl2": True, "ctl3": True}
    assert checks["rabbitmq"]["evidence"]["confirmed"] and checks["rabbitmq"]["evidence"]["queue_type"] == "quorum"
    assert list(checks["mongodb"]["evidence"]["read_on_secondaries"].values()) == [True, True]


def test_second_deploy_changes_nothing(lab: Path) -> None:
    rc, report = cli_json("deploy", str(lab))
    assert rc == 0 and report["ok"]
    assert report["changed"] is False, report["changes"]


def test_fencing_powers_a_host_off_and_it_rejoins(lab: Path) -> None:
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    before = load_state(dirs).hosts["ctl2"]
    res = ssh(dirs, str(spec.node("ctl1").address), "stonith_admin --reboot ctl2 --timeout 90")
    assert res.returncode == 0, res.stderr
    assert "reboot ctl2 by" in dirs.power_log.read_text()
    wait_healthy(lab, 240)
    assert load_state(dirs).hosts["ctl2"] != before  # a new container: the old one was powered off


def test_wiped_host_is_brought_back_by_deploy(lab: Path) -> None:
    res = cli("lab", "wipe", "ctl3", str(lab), timeout=300)
    assert res.returncode == 0, res.stderr
    rc, report = cli_json("deploy", str(lab), timeout=900)
    assert rc == 0 and report["ok"], report
    assert any(c.startswith("ctl3: started mariadb") for c in report["changes"])
    wait_healthy(lab, 240)
    rc, smoke = cli_json("lab", "smoke", str(lab))
    assert rc == 0 and smoke["ok"], smoke


def test_lab_down_leaves_nothing(lab: Path) -> None:
    spec = load_spec(lab)
    lay = layout(spec)
    dirs = LabDirs.of(spec.cluster)
    pids = [*load_state(dirs).hosts.values(), load_state(dirs).power]
    res = cli("lab", "down", str(lab), timeout=300)
    assert res.returncode == 0, res.stderr
    assert not dirs.root.exists()
    assert not [n for n in Path("/sys/class/net").iterdir() if n.name.startswith(f"hs{lay.tag}")]
    assert not Path("/run/netns", lay.client_netns).exists()
    assert str(dirs.root) not in Path("/proc/mounts").read_text()
    assert not [p for p in pids if p and running(p)]


def running(pid: int) -> bool:
    """Alive, not a zombie: an ended process whose parent (here, PID 1) has yet to reap it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status

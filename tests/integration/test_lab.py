"""The whole lab, end to end, as a user drives it: `hastack lab up`, then checks from the client host.

The example spec runs under its own cluster name and networks, so the test
never touches a lab a developer has up. Every wait is on real state and
bounded; `lab down` runs at the end whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from hastack.agent.rabbit_watch import GRACE_S
from hastack.chaos.scenarios import SCENARIOS
from hastack.components.corosync import QUORUM, parse_quorum
from hastack.components.pacemaker import MON, PacemakerState, parse_crm_mon
from hastack.credentials.store import secrets_path
from hastack.lab.cpu import CpuGroups
from hastack.lab.layout import layout
from hastack.lab.runtime import LabDirs, load_state
from hastack.render.openstack_run import FLAVOR, IMAGE, api_reads, catalog_names, log_path, vip_url
from hastack.render.pacemaker import FAILURE_TIMEOUT_S, REMOTE_PORT, remote_waits
from hastack.render.rabbitmq import WATCH
from hastack.spec.catalog import daemons_for, daemons_on, endpoints_for
from hastack.spec.load import load_spec
from hastack.spec.model import Role, VipManager
from tests.helpers import SEED, THREE

pytestmark = [pytest.mark.integration, pytest.mark.lab]

# The fast tier (`scripts/test`, CI) runs the three-controller lab through the tests marked
# `fast`; `scripts/test --full` runs every test on every lab. docs/testing.md says why each
# fast test is there.
fast = pytest.mark.fast


@dataclass(frozen=True)
class Case:
    example: Path
    cluster: str
    net: str  # replaces the example's 10.77.
    fence: str  # the host fenced
    wipe: str  # the host wiped and redeployed
    replace: str  # the data member replaced by compute1 in galera, rabbitmq and mongodb, then put back
    edits: tuple[tuple[str, str], ...] = ()  # text replaced in the example
    # A host with ring links that is not a corosync member: it joins corosync and leaves again.
    ring_spare: str = ""
    wedge: str = ""  # a galera node made to hang (SIGSTOP) for `hastack recover` to restart
    # Recovery and membership tests depend on the topology, not on the VIP manager or the timing
    # profile: a lab sharing another's topology leaves them to it (CI's time limit). A wiped host
    # is not among them: with keepalived it comes back as a VRRP peer.
    topology_of: str = ""
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.example.stem

    @property
    def marker(self) -> str:
        """The marker that selects this lab's tests (`-m three_controller`)."""
        return self.id.replace("-", "_")


ALL_FIVE = "services: [keystone, glance, nova, placement, neutron]"
ALL_EIGHT = "services: [keystone, glance, nova, placement, neutron, cinder, heat, horizon]"
# Instance HA on (the examples leave it off): computes as pacemaker_remote nodes, the evacuator.
IHA = ("\npacemaker:\n", "\ninstance_ha: {enabled: true}\npacemaker:\n")
CASES = [Case(THREE, "labtest", "10.79.", fence="ctl2", wipe="ctl3", replace="ctl3", ring_spare="compute1",
              edits=(("    address: 10.77.0.21\n",
                      "    address: 10.77.0.21\n    heartbeat: [10.77.1.21, 10.77.2.21]\n"), IHA)),
         # The guide's topology: two data nodes and a voting node; the wiped
         # data node comes back by SST from the only other one.
         # It runs every OpenStack service hastack deploys (the examples list five): cinder, heat and
         # horizon in the smoke (horizon's login in Chromium), status and every chaos scenario.
         Case(SEED, "labseed", "10.81.", fence="ctl2", wipe="ctl2", replace="ctl2", wedge="ctl1",
              edits=((ALL_FIVE, ALL_EIGHT),)),
         # Sub-second VIP failover: VRRP gated by corosync's quorum, fencing by pacemaker, the
         # fast timing profile; every scenario must hold its invariants with it too.
         Case(THREE, "labfast", "10.85.", fence="ctl3", wipe="ctl2", replace="ctl2", name="fast-keepalived-quorum",
              topology_of="three-controller",
              edits=(("vip_manager: pacemaker", "vip_manager: keepalived-quorum"),
                     ("profile: default", "profile: fast"), IHA))]
# The installed command, as a user runs it.
HASTACK = [str(Path(sys.executable).parent / "hastack")]


# Commands that reach real hosts take --lab to mean this machine's lab (its power switch, key and host keys).
LAB_COMMANDS = ("status", "deploy", "recover", "mongo")


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    lab = ["--lab"] if args and args[0] in LAB_COMMANDS else []
    return subprocess.run([*HASTACK, *args, *lab], capture_output=True, text=True, timeout=timeout, check=False)


def cli_json(*args: str, timeout: float = 600) -> tuple[int, dict[str, Any]]:
    res, data = cli_json_run(*args, timeout=timeout)
    return res.returncode, data


def cli_json_run(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """The run (its stderr holds the progress lines) and the JSON it printed."""
    res = cli(*args, "--json", timeout=timeout)
    try:
        return res, json.loads(res.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"`hastack {' '.join(args)} --json` printed no JSON (exit {res.returncode}):\n"
                    f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def told(report: dict[str, Any]) -> str:
    """A failed command's report in full: pytest cuts a non-string assertion message to a line (a deploy's
    error with the unit's journal came out as "...o start hastack-rabbit-watch.service")."""
    return report["error"] if isinstance(report.get("error"), str) else json.dumps(report, indent=1)[-6000:]


def changes_of(report: dict[str, Any]) -> list[str]:
    """deploy --json's change records as `HOST: what` lines (each also names its phase)."""
    assert all(set(c) == {"host", "phase", "what"} and c["phase"] for c in report["changes"]), report["changes"]
    return [f"{c['host']}: {c['what']}" for c in report["changes"]]


def wait_healthy(spec: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        rc, status = cli_json("status", str(spec), timeout=120)
        if rc == 0 and status["healthy"]:
            return status
        if time.monotonic() > deadline:
            bad = [c for c in status["components"] if not c["healthy"]]
            pytest.fail(f"not healthy within {timeout:.0f} s: {json.dumps(bad, indent=1)}\n"
                        f"{evidence(spec, [c['component'] for c in bad])}")
        time.sleep(2)


def evidence(spec_path: Path, components: list[str], lines: int = 12) -> str:
    """What a failed lab test leaves behind for whoever reads CI's output: the power switch's log
    (did fencing reach it?) and the tail of each sick component's journal on each of its hosts."""
    spec = load_spec(spec_path)
    dirs = LabDirs.of(spec.cluster)
    log = dirs.power_log
    out = ["power switch:", *(log.read_text().splitlines()[-15:] if log.exists() else ["(no power log)"])]
    garbd = [spec.node(spec.galera.arbitrator)] if spec.galera.arbitrator else []
    mongo_arbiter = [spec.node(spec.mongodb.arbiter)] if spec.mongodb.arbiter else []
    units = {"galera": ("mariadb garb", [*spec.galera_nodes(), *garbd]),
             "rabbitmq": ("rabbitmq-server", list(spec.rabbit_nodes())),
             "mongodb": ("mongod", [n for _, n in spec.mongo_members()] + mongo_arbiter),
             "pacemaker": ("pacemaker", list(spec.corosync_nodes())),
             "corosync": ("corosync", list(spec.corosync_nodes())),
             "haproxy": ("haproxy", list(spec.haproxy_nodes())),
             "vip": ("keepalived" if spec.vip_manager is not VipManager.PACEMAKER else "pacemaker",
                     list(spec.haproxy_nodes()))}
    daemons = daemons_for(spec.openstack.services)
    units["openstack"] = (" ".join(d.unit for d in daemons), list(spec.with_role(Role.CONTROLLER)))
    units["instance-ha"] = ("hastack-evacuator", list(spec.evacuator_nodes()))
    for comp in components:
        unit, nodes = units.get(comp, ("", []))
        flags = " ".join(f"-u {u}" for u in unit.split())
        # An API's own log says why it answers 500 or not at all; systemd's journal only that it ran.
        logs = " ".join(log_path(d) for d in daemons) if comp == "openstack" else ""
        command = f"journalctl {flags} -n {lines} --no-pager -o short-precise"
        if logs:
            command += f"; systemctl is-active {' '.join(d.unit for d in daemons)}; tail -n {lines} {logs}"
        for n in nodes:
            try:
                res = ssh(dirs, str(n.address), command, timeout=20)
                text = res.stdout.strip() or res.stderr.strip()
            except subprocess.TimeoutExpired:
                text = "(no answer in 20 s)"
            out += [f"--- {comp}: {n.name}: journalctl {flags}", text]
    return "\n".join(out)


def smoked(spec: Path) -> dict[str, Any]:
    """`lab smoke`, passed; a failed check is shown whole (pytest cuts a long assertion value short),
    with haproxy's journal and the VIP manager's on each node: a failed call through the VIP passed them.
    A failed API or horizon check adds each OpenStack service's state and log: which one hung."""
    rc, smoke = cli_json("lab", "smoke", str(spec))
    if rc != 0 or not smoke["ok"]:
        bad = [c for c in smoke.get("checks", []) if not c["ok"]]
        apis = ["openstack"] if any(c["name"] in ("openstack", "horizon") for c in bad) else []
        pytest.fail(f"lab smoke failed (exit {rc}):\n{json.dumps(bad or smoke, indent=1)}\n"
                    f"{evidence(spec, ['haproxy', 'vip', *apis])}")
    return smoke


def pacemaker_state(dirs: LabDirs, address: str) -> PacemakerState:
    """crm_mon as the member at `address` sees the cluster, parsed as status parses it."""
    res = ssh(dirs, address, MON.command)
    assert res.returncode == 0, res.stderr
    return parse_crm_mon(res.stdout)


def ssh(dirs: LabDirs, address: str, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    # The keys the lab recorded as it created (or wiped) each host: checked here as deploy checks them.
    opts = ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={dirs.known_hosts}", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5", "-q"]
    return subprocess.run(["ssh", "-i", str(dirs.key), *opts, f"root@{address}", command],
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module", params=[pytest.param(c, marks=getattr(pytest.mark, c.marker)) for c in CASES],
                ids=[c.id for c in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    c: Case = request.param
    return c


def topology_test(case: Case) -> None:
    """Skips a recovery/membership test on a lab whose topology another lab's run covers."""
    if case.topology_of:
        pytest.skip(f"{case.id}: the {case.topology_of} lab runs this on the same topology; "
                    "this lab is there for its VIP manager and timing profile")


@pytest.fixture(scope="module")
def lab(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if shutil.which("systemd-nspawn") is None or shutil.which("debootstrap") is None:
        pytest.fail("the lab needs systemd-nspawn and debootstrap: run scripts/setup")
    text = case.example.read_text().replace("cluster: openstack", f"cluster: {case.cluster}")
    for old, new in case.edits:
        assert old in text, f"{case.example} has no {old!r} to replace"
        text = text.replace(old, new)
    spec = tmp_path_factory.mktemp(case.cluster) / "cluster.yaml"
    spec.write_text(text.replace("10.77.", case.net))
    try:
        res = cli("lab", "up", str(spec), timeout=1500)
        if res.returncode != 0:
            # Before `lab down` takes the power log and the journals with it: a lab up once failed with
            # "SSH connection closed" in the openstack phase, and nothing left said whether a host was fenced.
            pytest.fail(f"lab up failed (exit {res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}\n"
                        f"{evidence(spec, ['corosync', 'pacemaker', 'openstack'], lines=40)}")
        assert "every component healthy" in res.stdout
        # Where the time went, as bench/lab_up.py reads it; kept in the JUnit XML of the module's first test.
        print(next((ln for ln in res.stdout.splitlines() if ln.startswith("lab up: ")), "no `lab up:` line"))
        assert re.search(r"^lab up: \d+ s: hosts \d+ s, deploy \d+ s, smoke \d+ s, status \d+ s; deploy phases: "
                         r"files \d+ s, agent \d+ s, .*openstack \d+ s", res.stdout, re.M), res.stdout[-2000:]
        yield spec
    finally:
        cli("lab", "down", str(spec), timeout=300)


@fast
def test_status_reports_every_cluster_healthy(lab: Path) -> None:
    rc, status = cli_json("status", str(lab))
    assert rc == 0 and status["healthy"]
    rows = {c["component"]: c for c in status["components"]}
    assert set(rows) == {"hosts", "corosync", "pacemaker", "vip", "galera", "rabbitmq", "mongodb", "haproxy",
                         "openstack", *(["instance-ha"] if load_spec(lab).remote_nodes() else [])}
    facts = status["facts"]
    # Every API hastack runs: each backend up on every haproxy, and read through the VIP with a token.
    reads = facts["openstack"]["apis"]
    ours = load_spec(lab)
    assert set(reads) == set(api_reads(ours)) and {"keystone", "glance", "placement", "neutron", "nova"} <= set(reads)
    assert all(r["status"] == 200 for r in reads.values()), reads
    # Every frontend of what runs (the five: keystone, glance, placement, neutron, nova's API, metadata and
    # console proxy), on every controller, in every haproxy.
    backends = (len(endpoints_for(ours.openstack.services)) * len(ours.with_role(Role.CONTROLLER))
                * len(ours.haproxy_nodes()) * len(ours.vips))
    assert rows["openstack"]["summary"].startswith(f"API backends up {backends}/{backends};")
    # Every OpenStack daemon, API or not, running where it belongs (systemd's view, each host).
    placed = {n.name: daemons_on(ours.openstack.services, n.has(Role.CONTROLLER), n.has(Role.COMPUTE))
              for n in ours.nodes}
    assert facts["daemons"] == {h: {d.unit: "active" for d in ds} for h, ds in placed.items() if ds}
    spec = load_spec(lab)
    voters = sorted(n.name for n in spec.corosync_nodes())
    assert sorted(m["name"] for m in facts["quorum"]["members"]) == voters
    # Every peer on both knet links (the guide's two rings), from every node.
    assert {len(v) for v in facts["links"].values()} == {2 * (len(voters) - 1)}
    fences = [r for r in facts["pacemaker"]["resources"] if r["agent"] == "stonith:fence_hastack_lab"]
    # Fencing on, a device running for every member and every compute pacemaker watches.
    assert len(fences) == len(voters) + len(spec.remote_nodes()) and all(r["active"] for r in fences)
    # Data nodes plus garbd where the spec has one: three votes either way.
    assert {s["cluster_size"] for s in facts["galera"].values()} == {3}
    assert sorted(facts["rabbit"]["running"]) == sorted(f"rabbit@{n.name}" for n in spec.rabbit_nodes())
    states = sorted(m["state"] for m in facts["mongo"]["members"])
    assert states == (["ARBITER", "PRIMARY", "SECONDARY"] if spec.mongodb.arbiter else
                      ["PRIMARY", "SECONDARY", "SECONDARY"])
    vip_holders = [h["host"] for h in status["hosts"] if h["vips"] != "-"]
    assert len(vip_holders) == 1


@fast
def test_smoke_from_the_client_host(lab: Path) -> None:
    smoke = smoked(lab)
    checks = {c["name"]: c for c in smoke["checks"]}
    spec = load_spec(lab)
    assert checks["galera"]["evidence"]["read_back"] == {n.name: True for n in spec.galera_nodes()}
    assert checks["rabbitmq"]["evidence"]["confirmed"] and checks["rabbitmq"]["evidence"]["queue_type"] == "quorum"
    secondaries = checks["mongodb"]["evidence"]["read_on_secondaries"]
    assert len(secondaries) == len(spec.mongo_members()) - 1 and all(secondaries.values())
    image = checks["openstack"]["evidence"]
    assert image["uploaded"] == image["downloaded"] == 1 << 20
    # A server booted on a compute (nova's fake driver), then deleted.
    assert image["compute"] in {n.name for n in spec.with_role(Role.COMPUTE)}, image
    if "horizon" not in spec.openstack.services:
        return
    # horizon through the VIP in a real browser: logged in as the admin, the page kept as a PNG.
    horizon = checks["horizon"]["evidence"]
    assert "/auth/login" not in horizon["url"] and horizon["url"].startswith(vip_url(spec, "horizon").rsplit(":", 1)[0])
    assert Path(horizon["screenshot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@fast
def test_the_openstack_client_reaches_the_cloud_through_the_vip(lab: Path) -> None:
    res = cli("lab", "client", "--spec", str(lab), "--", "openstack", "endpoint", "list", "-f", "json", timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    endpoints = json.loads(res.stdout)
    vip = str(load_spec(lab).vips[0].address)
    names = catalog_names(load_spec(lab))
    assert {e["Service Name"] for e in endpoints} == set(names)
    assert len(endpoints) == 3 * len(names) and all(f"//{vip}:" in e["URL"] for e in endpoints)
    clouds = LabDirs.of(load_spec(lab).cluster).root / "clouds.yaml"
    assert clouds.stat().st_mode & 0o777 == 0o600
    # A server from deploy's flavor and image, as a user would make one (fake driver, no network).
    name = f"client-{os.getpid()}"
    made = cli("lab", "client", "--spec", str(lab), "--", "openstack", "server", "create", "--flavor", FLAVOR,
               "--image", IMAGE, "--nic", "none", "--wait", "-f", "json", name, timeout=300)
    try:
        assert made.returncode == 0, made.stderr[-2000:]
        server = json.loads(made.stdout)
        assert server["status"] == "ACTIVE", server
    finally:
        gone = cli("lab", "client", "--spec", str(lab), "--", "openstack", "server", "delete", "--wait", name,
                   timeout=300)
    assert gone.returncode == 0, gone.stderr[-2000:]


@fast
def test_second_deploy_changes_nothing(lab: Path) -> None:
    rc, report = cli_json("deploy", str(lab))
    assert rc == 0 and report["ok"]
    assert report["changed"] is False, changes_of(report)


@fast
def test_deploy_with_other_secrets_refuses_and_changes_nothing(lab: Path, case: Case, tmp_path: Path) -> None:
    topology_test(case)
    copy = tmp_path / "copied.yaml"  # the same spec elsewhere: a new copied.secrets.yaml is generated
    copy.write_text(lab.read_text())
    res = cli("deploy", str(copy))
    assert res.returncode != 0 and "other secrets" in res.stdout + res.stderr, res.stdout[-2000:]
    assert "rabbitmq_erlang_cookie" in res.stdout + res.stderr  # it names what differs
    rc, report = cli_json("deploy", str(lab))  # the cluster still runs with, and on, its own secrets
    assert rc == 0 and report["changed"] is False, changes_of(report)


def test_a_timing_change_reloads_corosync_without_restarting_it(lab: Path) -> None:
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    voters = spec.corosync_nodes()

    def pids() -> dict[str, str]:
        return {n.name: ssh(dirs, str(n.address), "pidof corosync pacemakerd").stdout.strip() for n in voters}

    def runtime_token() -> set[str]:
        cmd = "corosync-cmapctl -g runtime.config.totem.token"
        return {ssh(dirs, str(n.address), cmd).stdout.rsplit("=", 1)[-1].strip() for n in voters}

    before = pids()
    data = yaml.safe_load(lab.read_text())
    data.setdefault("timing", {})["corosync_token_ms"] = spec.timing.corosync_token_ms + 500  # seed has none
    retimed = lab.with_name("retimed.yaml")
    retimed.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy2(secrets_path(lab), secrets_path(retimed))  # the same cluster, the same secrets
    try:
        for target in (retimed, lab):  # there and back
            rc, report = cli_json("deploy", str(target))
            assert rc == 0 and any("reloaded corosync.conf" in c for c in changes_of(report)), changes_of(report)
            want = load_spec(target).timing.effective_token_ms(len(voters))
            assert runtime_token() == {str(want)}
            assert pids() == before  # neither corosync nor pacemaker restarted anywhere
        wait_healthy(lab, 120)
    finally:
        retimed.unlink()
        secrets_path(retimed).unlink(missing_ok=True)


def test_an_image_outlives_the_controller_that_stored_it(lab: Path, tmp_path: Path) -> None:
    """Uploaded through the VIP, the image is downloaded through the VIP while the controller whose
    glance wrote it is powered off: the store is shared (in the lab, one directory bound into every
    controller; in production, NFS, Ceph or Swift)."""
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    data = os.urandom(1 << 20)
    (tmp_path / "in.raw").write_bytes(data)

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return cli("lab", "client", "--spec", str(lab), "--", "openstack", *args, timeout=120)

    made = client("image", "create", "--file", str(tmp_path / "in.raw"), "--disk-format", "raw",
                  "--container-format", "bare", "hastack-outlives", "-f", "json")
    assert made.returncode == 0, made.stderr[-2000:]
    image = json.loads(made.stdout)["id"]
    controllers = list(spec.with_role(Role.CONTROLLER))

    glance_log = next(log_path(d) for d in daemons_for(["glance"]))

    def served(request: str) -> list[str]:
        """The controllers whose glance logged `request` for the image (in its own log file)."""
        return [n.name for n in controllers if ssh(dirs, str(n.address), f"grep -q '{request} /v2/images/{image}/file' "
                                                   f"{glance_log}").returncode == 0]

    try:
        stored_by = served("PUT")
        assert len(stored_by) == 1, stored_by
        other = next(n for n in controllers if n.name != stored_by[0])
        res = ssh(dirs, str(other.address), f"stonith_admin --reboot {stored_by[0]} --timeout 90")
        assert res.returncode == 0, res.stderr
        # While it boots again: a backend haproxy has not marked down yet may fail one try.
        deadline, saved = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            saved = client("image", "save", "--file", str(tmp_path / "out.raw"), image)
            if saved.returncode == 0:
                break
            time.sleep(1)
        assert saved is not None and saved.returncode == 0, saved.stderr[-2000:] if saved else ""
        assert (tmp_path / "out.raw").read_bytes() == data
        assert f"reboot {stored_by[0]} by" in dirs.power_log.read_text()
        readers = served("GET")
        assert readers and stored_by[0] not in readers, readers  # another controller's glance served it
    finally:
        client("image", "delete", image)
        wait_healthy(lab, 300)


@pytest.mark.parametrize("scenario", [pytest.param("compute-crash", marks=fast), "compute-isolation",
                                      "compute-service-crash"])
def test_instance_ha_fences_before_it_evacuates(lab: Path, scenario: str) -> None:
    """Instance HA under the chaos workload, two servers pinned on a compute first: lost (power cut, or
    every link cut while it runs on), it is fenced by pacemaker (a pacemaker_remote node with its own
    device) before any evacuation, and its servers are rebuilt on the other compute; nova-compute alone
    killed, systemd restarts it and nothing is fenced or moved. Judged from nova's own record."""
    spec = load_spec(lab)
    if not spec.remote_nodes():
        pytest.skip(f"{lab.name}: instance_ha is off in this lab's spec")
    wait_healthy(lab, 240)  # chaos refuses a sick cluster: a test before that left one fails itself, not this
    res, report = cli_json_run("chaos", scenario, str(lab), timeout=900)
    print(res.stderr)
    failed = {i["name"]: i["detail"] for i in report.get("judgement", {}).get("invariants", []) if not i["ok"]}
    if res.returncode or not report.get("ok"):
        _, status = cli_json("status", str(lab), timeout=120)
        sick = [c["component"] for c in status["components"] if not c["healthy"]]
        pytest.fail(f"{failed}\n{res.stderr[-8000:]}\n{evidence(lab, [*sick, 'instance-ha'])}")
    names = {i["name"] for i in report["judgement"]["invariants"]}
    target = report["target"]
    assert target in {n.name for n in spec.remote_nodes()}
    if scenario == "compute-service-crash":
        assert {f"instances: every one stayed ACTIVE on {target}", "no evacuation", f"{target} not fenced"} <= names
        assert report["evacuated_s"] is None
    else:
        bound = SCENARIOS[scenario].evacuate_bound_s
        assert {f"instances: every one ACTIVE elsewhere within {bound:.0f} s", "instances: never on two hosts",
                "no evacuation before the fence", "healthy again"} <= names
        assert report["evacuated_s"] is not None
    wait_healthy(lab, 240)


def test_fencing_powers_a_host_off_and_it_rejoins(lab: Path, case: Case) -> None:
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    before = load_state(dirs).hosts[case.fence]
    res = ssh(dirs, str(spec.node("ctl1").address), f"stonith_admin --reboot {case.fence} --timeout 90")
    assert res.returncode == 0, res.stderr
    assert f"reboot {case.fence} by" in dirs.power_log.read_text()
    wait_healthy(lab, 240)
    assert load_state(dirs).hosts[case.fence] != before  # a new container: the old one was powered off


def test_a_failed_start_is_cleaned_up_by_recover_or_retried_by_pacemaker(lab: Path) -> None:
    """A failed start is final on its node until the failure expires (the CIB's failure-timeout)
    or someone cleans it up.

    CI saw haproxy fail its start on one controller after a power cut (load 45); without a
    failure timeout the clone stayed stopped there for good. Here a systemd drop-in makes the
    start fail. While it is there, `recover` cleans up once and refuses when the start fails
    again; once it is gone, `recover` cleans up and haproxy runs; and with nobody's help,
    pacemaker starts it again itself when the failure expires.
    """
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    node = spec.haproxy_nodes()[-1]
    address = str(node.address)
    dropin = "/etc/systemd/system/haproxy.service.d/hastack-test-fail.conf"

    def mon() -> PacemakerState:
        return pacemaker_state(dirs, address)

    def runs_there(state: PacemakerState) -> bool:
        return node.name in state.where("haproxy-clone")

    def fail_its_start() -> None:
        res = ssh(dirs, address, f"mkdir -p {Path(dropin).parent} && printf '[Service]\\nExecStartPre=/bin/false\\n' "
                                 f"> {dropin} && systemctl daemon-reload && systemctl stop haproxy")
        assert res.returncode == 0, res.stderr
        deadline = time.monotonic() + 120
        while True:  # failed, and stopped by pacemaker (until then crm_mon shows it FAILED on the node)
            state = mon()
            if not runs_there(state) and any(f.task == "start" and f.node == node.name and f.resource == "haproxy"
                                             for f in state.failures):
                break
            assert time.monotonic() < deadline, f"no failed start of haproxy on {node.name} in 120 s: {state}"
            time.sleep(2)

    def mend() -> None:
        res = ssh(dirs, address, f"rm -f {dropin} && systemctl daemon-reload")
        assert res.returncode == 0, res.stderr

    try:
        fail_its_start()
        rc, refused = cli_json("recover", str(lab), "--only", "pacemaker", timeout=300)
        assert rc != 0 and f"haproxy failed to start on {node.name} again after a cleanup" in refused["refused"].get(
            "pacemaker", ""), refused
        assert not runs_there(mon())
        mend()
        rc, report = cli_json("recover", str(lab), "--only", "pacemaker", timeout=300)
        assert rc == 0 and report["ok"], told(report)
        assert [r["actions"] for r in report["rounds"] if r["outcome"] == "repair"] == [
            [f"cleanup haproxy on {node.name}"]], report["rounds"]
        assert runs_there(mon())  # recover waited for it

        fail_its_start()
        mend()
        # Nobody cleans it up: pacemaker itself starts it once the failure expires and rechecks.
        deadline = time.monotonic() + FAILURE_TIMEOUT_S + 90
        while not runs_there(state := mon()):
            assert time.monotonic() < deadline, f"haproxy not started again on {node.name}: {state}"
            time.sleep(2)
    finally:
        ssh(dirs, address, f"rm -f {dropin} && systemctl daemon-reload")
    wait_healthy(lab, 240)


def test_a_compute_drops_the_connection_of_a_member_gone_silent(lab: Path, case: Case) -> None:
    """pacemaker_remoted tells every client of each operation's result, a dead member's connection
    included, and once that socket's buffer is full it retries the send in a loop and accepts nothing:
    a compute whose connection holder had died failed every other member's start, and pacemaker fenced
    it. Here the holder's traffic with compute1 is dropped on the bridge (the member as good as dead to
    it: no reset, no FIN); the connection moves, compute1 is probed again (results sent to every
    client), and compute1 must drop the dead socket within the TCP user timeout hastack renders (the
    poke's wait), never fenced."""
    spec = load_spec(lab)
    if not spec.remote_nodes():
        pytest.skip(f"{lab.name}: instance_ha is off in this lab's spec")
    topology_test(case)
    wait_healthy(lab, 240)
    dirs = LabDirs.of(spec.cluster)
    compute = spec.remote_nodes()[0]
    member = str(spec.node("ctl1").address)
    fenced_before = load_state(dirs).fenced.get(compute.name)
    poke_s, _ = remote_waits(spec)

    def holder() -> str:
        return ",".join(pacemaker_state(dirs, member).where(compute.name))

    def dead_sockets(peer: str) -> str:
        res = ssh(dirs, str(compute.address), f"ss -Htn state established '( sport = :{REMOTE_PORT} )' dst {peer}")
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    old = holder()
    assert old and "," not in old, f"{compute.name}'s connection runs on {old or 'no member'}"
    old_address = str(spec.node(old).address)
    table = f"hastack_test_{layout(spec).tag}"
    rules = [f"add table bridge {table}",
             f"add chain bridge {table} hold {{ type filter hook forward priority 0 ; policy accept ; }}",
             f"add rule bridge {table} hold ip saddr {compute.address} ip daddr {old_address} tcp sport {REMOTE_PORT} "
             "drop",
             f"add rule bridge {table} hold ip saddr {old_address} ip daddr {compute.address} tcp dport {REMOTE_PORT} "
             "drop"]
    try:
        subprocess.run(["nft", "-f", "-"], input="\n".join(rules) + "\n", text=True, check=True, timeout=30)
        deadline = time.monotonic() + 120
        while (now := holder()) in ("", old):
            assert time.monotonic() < deadline, f"{compute.name}'s connection still on {old} after 120 s"
            time.sleep(1)
        # The new connection was announced to every client, the dead socket included (unacknowledged from
        # then on), and so is every probe's result.
        moved = time.monotonic()
        seen = bool(dead_sockets(old_address))
        res = ssh(dirs, member, f"crm_resource --refresh --node {compute.name}")
        assert res.returncode == 0, res.stderr
        deadline = moved + poke_s + 30
        while left := dead_sockets(old_address):
            assert time.monotonic() < deadline, (
                f"{compute.name} still holds {old}'s dead connection {time.monotonic() - moved:.0f} s after the "
                f"connection moved to {now} (TCP user timeout {poke_s} s):\n{left}")
            time.sleep(1)
        print(f"{compute.name} dropped {old}'s dead connection ({'seen' if seen else 'already gone'} when the "
              f"connection had moved to {now}) {time.monotonic() - moved:.1f} s after the move")
        assert holder() == now  # it stayed where it moved: compute1's pacemaker_remoted kept answering
    finally:
        subprocess.run(["nft", "delete", "table", "bridge", table], capture_output=True, check=False, timeout=30)
    wait_healthy(lab, 240)
    assert load_state(dirs).fenced.get(compute.name) == fenced_before, f"{compute.name} was fenced"


@fast
def test_a_rabbit_node_left_stopped_is_restarted_by_its_watch(lab: Path, case: Case) -> None:
    """pause_minority stops a cut-off node's rabbit app and starts it again when the majority is back;
    when that start fails nothing retries, and the node stays up serving nothing for good (the
    keepalived lab after mgmt-loss). The same state made by hand (`rabbitmqctl stop_app`): status
    calls it out, the node's watch restarts it after its grace period, and the cluster is whole again
    with nobody's help."""
    topology_test(case)
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    node = spec.rabbit_nodes()[-1]
    address = str(node.address)
    wait_healthy(lab, 240)
    mark = ssh(dirs, address, "date +%s").stdout.strip()
    res = ssh(dirs, address, "rabbitmqctl -q stop_app")
    assert res.returncode == 0, res.stderr
    stopped = time.monotonic()
    try:
        _, status = cli_json("status", str(lab))
        rabbit = next(c for c in status["components"] if c["component"] == "rabbitmq")
        # "not running" (the app stopped by hand) or "up but not serving AMQP" (paused): the watch's
        # sign for both is the same, no AMQP listener on the node.
        assert not rabbit["healthy"] and any(f"rabbit@{node.name}" in p for p in rabbit["problems"]), rabbit
        wait_healthy(lab, GRACE_S + 300)
        took = time.monotonic() - stopped
        journal = ssh(dirs, address, f"journalctl -u {WATCH} --since @{mark} --no-pager -o cat").stdout
        assert "restarting rabbitmq-server" in journal, journal
        # Not sooner than its grace: a resume that is merely slow is left to finish.
        assert took >= GRACE_S, took
        print(f"rabbit@{node.name}: stopped app, whole again after {took:.0f} s")
    finally:
        ssh(dirs, address, "rabbitmqctl -q await_startup --timeout 5 || systemctl restart rabbitmq-server",
            timeout=300)


@pytest.mark.parametrize("scenario", [pytest.param("host-crash", marks=fast), "stack-crash",
                                      "isolation", "ring-loss", "service-crash",
                                      pytest.param("mgmt-loss", marks=fast), "link1-loss",
                                      "link-loss", "link-latency", "split", "power-loss"])
def test_chaos_loses_nothing_and_heals(lab: Path, scenario: str) -> None:
    wait_healthy(lab, 240)  # chaos refuses a sick cluster: a test before that left one fails itself, not this
    # The heal bound, plus the workload's start and the read-back (each bounded by the run itself).
    res, report = cli_json_run("chaos", scenario, str(lab), timeout=SCENARIOS[scenario].heal_bound_s + 540)
    print(res.stderr)  # the run's progress, kept in the JUnit XML even when it passes
    failed = {i["name"]: i["detail"] for i in report["judgement"]["invariants"] if not i["ok"]}
    if scenario == "split" and load_spec(lab).vip_manager is VipManager.KEEPALIVED_QUORUM:
        # HA122's trade: VRRP moves the VIP in ~0.4 s, before corosync sees the split and the
        # cut-off holder drops it; a client reaching both sides sees two holders meanwhile
        # (measured: ~2 s). Everything else must hold.
        failed.pop("vip: at most one holder", None)
    elif res.returncode or not report["ok"]:
        # The run's own progress (what recover saw and did) and the sick clusters' journals.
        _, status = cli_json("status", str(lab), timeout=120)
        sick = [c["component"] for c in status["components"] if not c["healthy"]]
        pytest.fail(f"{failed}\n{res.stderr[-8000:]}\n{evidence(lab, sick)}")
    assert not failed, failed
    if scenario == "power-loss":  # `hastack recover` ran, and brought every cluster back by itself
        rec = report["recovery"]
        assert not rec["refused"] and set(rec["healthy"]) == {"galera", "rabbitmq", "mongodb", "pacemaker"}, rec
        assert all(rec["healthy"].values()), rec
    streams = {s["stream"]: s for s in report["judgement"]["streams"]}
    assert set(streams) == {"db", "amqp", "mongo", "vip", "mongo-primary", "api-token", "api-servers",
                            *(f"api-{name}" for name in api_reads(load_spec(lab)))}
    assert all(s["rto_s"] is not None and not s["lost"] for s in streams.values()), streams
    names = {i["name"] for i in report["judgement"]["invariants"]}
    assert {"db: nothing lost", "amqp: nothing lost", "mongo: nothing lost", "api-servers: nothing lost",
            "vip: at most one holder",
            "galera: one primary component", "healthy again"} <= names
    if scenario == "link1-loss":  # one ring left: nothing may react
        assert {"no fence", "vip: never moved", "no operation failed or stalled"} <= names
    wait_healthy(lab, 240)
    if scenario == "mgmt-loss":  # the VIP left the host that lost its clients' network, and stays away
        _, status = cli_json("status", str(lab))
        assert [h["host"] for h in status["hosts"] if h["vips"] != "-"] != [report["target"]], status["hosts"]


def test_mongo_priority_moves_the_primary_and_back(lab: Path, case: Case) -> None:
    """The guide's priority change (rs.reconfig): the member made most eligible takes over, then gives back."""
    topology_test(case)
    spec = load_spec(lab)
    member = {n.name: f"{n.address}:27017" for _, n in spec.mongo_members()}
    priority = {m.node: m.priority for m in spec.mongodb.members} or dict.fromkeys(member, 1.0)

    def primary() -> str | None:
        _, status = cli_json("status", str(lab))
        members = (status["facts"].get("mongo") or {}).get("members", [])  # None mid-election
        return next((m["name"] for m in members if m["state"] == "PRIMARY"), None)

    def primary_within(timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while (found := primary()) in (None, before) and time.monotonic() < deadline:
            time.sleep(1)
        return found

    before = primary()
    other = next(n for n, a in member.items() if a != before)
    rc, change = cli_json("mongo", "priority", str(lab), other, "50")
    assert rc == 0 and change["after"][member[other]] == 50, change
    assert primary_within(60) == member[other]
    rc, _ = cli_json("mongo", "priority", str(lab), other, f"{priority.get(other, 1.0):g}")
    assert rc == 0
    wait_healthy(lab, 120)


@fast
def test_recover_after_a_full_galera_shutdown(lab: Path, case: Case) -> None:
    """The guide's "bootstrap after a full shutdown": the node that stopped last holds the most commits.

    Each node is stopped in turn with a row written on the survivors in between, so
    every node holds a different last commit; deploy must refuse to guess, and
    `hastack recover` must bootstrap the last one and bring every row to every node.
    """
    topology_test(case)
    wait_healthy(lab, 240)  # deploy must refuse for galera's sake, not for a host a test before left down
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    nodes = list(spec.galera_nodes())
    addr = {n.name: str(n.address) for n in nodes}
    sql = "mariadb -N -B -e {}".format

    def on(node: str, command: str) -> str:
        res = ssh(dirs, addr[node], command)
        assert res.returncode == 0, f"{node}: {command}: {res.stderr}"
        return res.stdout.strip()

    on(nodes[0].name, sql("'CREATE DATABASE IF NOT EXISTS hastack_recover; CREATE TABLE IF NOT EXISTS "
                          "hastack_recover.t (id INT PRIMARY KEY, node VARCHAR(32))'"))
    try:
        for i, n in enumerate(nodes):
            on(n.name, sql(f"'INSERT INTO hastack_recover.t VALUES ({i}, \"{n.name}\")'"))
            on(n.name, "systemctl stop mariadb")
        last = nodes[-1].name
        if not spec.galera.arbitrator:  # with garbd still in the component, no data node left it last
            assert "safe_to_bootstrap: 1" in on(last, "cat /var/lib/mysql/grastate.dat")
        rc, refused = cli_json("deploy", str(lab))
        assert rc != 0 and "hastack recover" in refused["error"]
        rc, report = cli_json("recover", str(lab), "--only", "galera", timeout=600)
        assert rc == 0 and report["ok"], told(report)
        boot = next(r for r in report["rounds"] if r["outcome"] == "bootstrap")
        assert f"bootstrap {last}" in boot["actions"] and len(boot["evidence"]) == len(nodes)
        seqnos = {e["node"]: e["seqno"] for e in boot["evidence"]}
        assert seqnos[last] == max(seqnos.values()) and len(set(seqnos.values())) == len(nodes)
        for n in nodes:  # every row on every node
            rows = on(n.name, sql("'SET SESSION wsrep_sync_wait=1; SELECT COUNT(*) FROM hastack_recover.t'"))
            assert rows == str(len(nodes)), f"{n.name} holds {rows} rows"
    finally:
        ssh(dirs, addr[nodes[-1].name], sql("'DROP DATABASE IF EXISTS hastack_recover'"))
    wait_healthy(lab, 240)


def test_a_wedged_galera_node_is_restarted_by_recover(lab: Path, case: Case) -> None:
    """A mariadbd that runs but answers nothing, and is sent no snapshot, is stopped and started again.

    (CI once saw a node like that after a power cut: in the component, silent for 10 minutes.)
    SIGSTOP makes one: the process is there, its socket takes connections, nothing answers.
    """
    if not case.wedge:
        pytest.skip(f"{case.id}: the wedged-node repair runs on the lab whose CI run met one (seed-two-node)")
    spec = load_spec(lab)
    dirs = LabDirs.of(spec.cluster)
    address = str(spec.node(case.wedge).address)
    pid = ssh(dirs, address, "pidof mariadbd").stdout.strip()
    assert pid.isdigit(), pid
    assert ssh(dirs, address, f"kill -STOP {pid}").returncode == 0
    try:
        # What a failed test would print: checked here, where the lab is known to answer.
        text = evidence(lab, ["galera"], lines=3)
        assert text.startswith("power switch:") and f"--- galera: {case.wedge}: journalctl -u mariadb -u garb" in text
        rc, report = cli_json("recover", str(lab), "--only", "galera", "--stall", "15", timeout=600)
        assert rc == 0 and report["ok"], told(report)
        rejoin = next(r for r in report["rounds"] if r["outcome"] == "rejoin")
        assert f"stop {case.wedge}" in rejoin["actions"] and f"join {case.wedge}" in rejoin["actions"]
        assert "wedged" in rejoin["reason"], rejoin
        assert ssh(dirs, address, "pidof mariadbd").stdout.strip() not in ("", pid)
    finally:
        ssh(dirs, address, f"kill -CONT {pid} 2>/dev/null || true")
    wait_healthy(lab, 240)


def test_wiped_host_is_brought_back_by_deploy(lab: Path, case: Case) -> None:
    res = cli("lab", "wipe", case.wipe, str(lab), timeout=300)
    assert res.returncode == 0, res.stderr
    rc, report = cli_json("deploy", str(lab), timeout=900)
    assert rc == 0 and report["ok"], told(report)
    assert any(c.startswith(f"{case.wipe}: started mariadb") for c in changes_of(report))
    wait_healthy(lab, 240)
    smoked(lab)


def test_a_member_replaced_in_every_data_cluster_and_back(lab: Path, case: Case) -> None:
    """Node remove and add, as a spec change and a deploy: `case.replace` leaves galera, rabbitmq and
    mongodb and compute1 joins them (galera by state transfer from the spec's donor, rabbitmq by peer
    discovery plus a member of every quorum queue, mongodb by reconfig); then the other way."""
    topology_test(case)
    spec, old, new = load_spec(lab), case.replace, "compute1"
    data = yaml.safe_load(lab.read_text())

    def swap(names: list[str]) -> list[str]:
        return [new if n == old else n for n in names]

    galera = swap([n.name for n in spec.galera_nodes()])
    data["galera"]["nodes"] = galera
    if data["galera"].get("donor") == old:  # another backup, or none where the writer is the only one left
        others = [n for n in galera if n not in (new, spec.galera.writer)]
        data["galera"]["donor"] = others[0] if others else None
    data["rabbitmq"]["nodes"] = swap([n.name for n in spec.rabbit_nodes()])
    data["mongodb"]["members"] = [{**m, "node": new if m["node"] == old else m["node"]}
                                  for m in data["mongodb"]["members"]]
    swapped = lab.with_name("swapped.yaml")
    swapped.write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copy2(secrets_path(lab), secrets_path(swapped))
    try:
        for target, gone, joined in ((swapped, old, new), (lab, new, old)):
            rc, report = cli_json("deploy", str(target), timeout=1200)
            assert rc == 0 and report["ok"], told(report)
            changes = changes_of(report)
            for what in ("left the galera cluster", "left the rabbitmq cluster", "removed from the replica set"):
                assert any(c.startswith(f"{gone}: ") and what in c for c in changes), (what, changes)
            assert f"{joined}: added a member of every quorum queue" in changes, changes
            facts = wait_healthy(target, 240)["facts"]
            assert f"rabbit@{gone}" not in facts["rabbit"]["disk_nodes"]
            assert f"rabbit@{joined}" in facts["rabbit"]["running"]
            assert all(f"rabbit@{joined}" in q["online"] and f"rabbit@{gone}" not in q["members"]
                       for q in facts["rabbit_queues"]), facts["rabbit_queues"]
            mongo = {m["name"] for m in facts["mongo"]["members"]}
            address = {n.name: f"{n.address}:27017" for n in load_spec(target).nodes}
            assert address[joined] in mongo and address[gone] not in mongo, mongo
            rc, again = cli_json("deploy", str(target))
            assert rc == 0 and again["changed"] is False, changes_of(again)
    finally:
        swapped.unlink(missing_ok=True)
        secrets_path(swapped).unlink(missing_ok=True)


def _no_member(spec: Any, spare: str, mon: PacemakerState) -> None:
    """`spare` left the cluster: pacemaker forgot the member; with instance HA it is a compute again,
    watched (and fenced) as a pacemaker_remote node."""
    assert spare not in {n.name for n in mon.nodes if not n.remote}
    if spec.remote_nodes():
        assert spare in mon.online() and mon.where(f"fence-{spare}")
    else:
        assert spare not in {n.name for n in mon.nodes} and not mon.where(f"fence-{spare}")


def _membership_specs(lab: Path, members: list[str]) -> tuple[Path, Path]:
    """The lab's spec with instance HA off, and that with `members` in corosync: a compute that joins
    corosync is no pacemaker_remote node any more (instance HA watches computes as remote nodes, and
    refuses a compute among the members)."""
    data = yaml.safe_load(lab.read_text()) | {"instance_ha": {"enabled": False}}
    no_iha = lab.with_name("no-iha.yaml")
    no_iha.write_text(yaml.safe_dump(data, sort_keys=False))
    grown = lab.with_name("grown.yaml")
    grown.write_text(yaml.safe_dump(data | {"corosync": {**data.get("corosync", {}), "nodes": members}},
                                    sort_keys=False))
    for path in (no_iha, grown):
        shutil.copy2(secrets_path(lab), secrets_path(path))
    return no_iha, grown


def _leave_instance_ha(grown: Path, no_iha: Path, spare: str,
                       membership: Callable[[], tuple[tuple[str, ...], PacemakerState]]) -> None:
    """A compute watched as a remote node cannot become a member in the same deploy: refused; then out
    of instance HA first (pacemaker closes its connection, pacemaker_remote stops, the node is forgotten)."""
    rc, refused = cli_json("deploy", str(grown))
    assert rc != 0 and "out of instance HA" in refused["error"] and "Nothing was changed" in refused["error"]
    rc, report = cli_json("deploy", str(no_iha), timeout=1200)
    assert rc == 0 and report["ok"], told(report)
    changes = changes_of(report)
    assert f"{spare}: stopped pacemaker_remote: no longer watched by instance HA" in changes, changes
    assert any(c.endswith(f"removed {spare} from pacemaker's node list") for c in changes), changes
    _, mon = membership()
    assert not [n.name for n in mon.nodes if n.remote], mon.nodes


def test_a_corosync_member_added_and_taken_out(lab: Path, case: Case) -> None:
    """corosync and pacemaker membership by a spec change and a deploy: a host with ring links joins
    (a reload on the members, then it starts), then leaves: pacemaker and corosync stop there before the
    others reload, so it is never fenced, and pacemaker forgets it. The others keep their node ids. With
    instance HA, the host (a compute) first leaves it (turned off), and is a remote node again at the end."""
    if not case.ring_spare:
        pytest.skip("this lab has no host with spare ring links (the three-controller lab has one)")
    spec, spare = load_spec(lab), case.ring_spare
    dirs = LabDirs.of(spec.cluster)
    first, spare_addr = str(spec.corosync_nodes()[0].address), str(spec.node(spare).address)
    members = [n.name for n in spec.corosync_nodes()]
    no_iha, grown = _membership_specs(lab, [*members, spare])
    remote = bool(spec.remote_nodes())
    power_before = dirs.power_log.read_text() if dirs.power_log.exists() else ""

    def membership() -> tuple[tuple[str, ...], PacemakerState]:
        q = ssh(dirs, first, QUORUM.command)
        return parse_quorum(q.stdout).names, pacemaker_state(dirs, first)

    try:
        if remote:
            _leave_instance_ha(grown, no_iha, spare, membership)
        rc, report = cli_json("deploy", str(grown), timeout=1200)
        assert rc == 0 and report["ok"], told(report)
        assert any("reloaded corosync.conf on every node" in c for c in changes_of(report)), changes_of(report)
        names, mon = membership()
        assert sorted(names) == sorted([*members, spare]) and spare in mon.online(), (names, mon.online())
        assert mon.where(f"fence-{spare}") and spare not in mon.where("haproxy-clone")
        wait_healthy(grown, 240)

        rc, report = cli_json("deploy", str(lab), timeout=1200)
        assert rc == 0 and report["ok"], told(report)
        changes = changes_of(report)
        assert f"{spare}: stopped pacemaker and corosync: left the cluster" in changes, changes
        assert any(c.endswith(f"removed {spare} from pacemaker's node list") for c in changes), changes
        names, mon = membership()
        assert sorted(names) == sorted(members), names
        _no_member(spec, spare, mon)
        left = ssh(dirs, spare_addr, "systemctl is-active corosync pacemaker; systemctl is-enabled corosync pacemaker")
        assert left.stdout.split() == ["inactive", "inactive", "disabled", "disabled"], left.stdout
        # Nobody fenced it (nor anyone else): the power switch saw no action all along.
        power_after = dirs.power_log.read_text() if dirs.power_log.exists() else ""
        actions = [ln for ln in power_after[len(power_before):].splitlines() if " by " in ln]
        assert not actions, actions
        wait_healthy(lab, 240)
        # The spec's `nodes` reordered would renumber running members: refused before anything is pushed.
        data = yaml.safe_load(lab.read_text())
        data["nodes"][1], data["nodes"][2] = data["nodes"][2], data["nodes"][1]
        grown.write_text(yaml.safe_dump(data, sort_keys=False))
        rc, refused = cli_json("deploy", str(grown))
        assert rc != 0 and "node ids would change" in refused["error"] and "Nothing was changed" in refused["error"]
        rc, again = cli_json("deploy", str(lab))
        assert rc == 0 and again["changed"] is False, changes_of(again)
    finally:
        for path in (no_iha, grown):
            path.unlink(missing_ok=True)
            secrets_path(path).unlink(missing_ok=True)


@fast
@pytest.mark.every_part  # a part of --full ends with it too: each part checks its own teardown
def test_lab_down_leaves_nothing(lab: Path) -> None:
    spec = load_spec(lab)
    lay = layout(spec)
    dirs = LabDirs.of(spec.cluster)
    pids = [*load_state(dirs).hosts.values(), load_state(dirs).power]
    groups = CpuGroups.of(spec.cluster)
    if groups is not None:  # each host (after every reboot too) runs in its own CPU group
        assert all(pid in groups.members(groups.host(host)) for host, pid in load_state(dirs).hosts.items())
    res = cli("lab", "down", str(lab), timeout=300)
    assert res.returncode == 0, res.stderr
    assert groups is None or not (groups.top.exists() or groups.client.exists())
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

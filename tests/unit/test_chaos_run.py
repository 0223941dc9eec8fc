"""A chaos run's bookkeeping without a lab: the fault held and undone, healing seen, the record judged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hastack.chaos import run as chaos
from hastack.chaos.scenarios import SCENARIOS, Fault
from hastack.components.instance_ha import parse_state
from hastack.credentials.model import complete
from hastack.hosts.fleet import Access
from hastack.hosts.ssh import Result
from hastack.lab.cpu import CLIENT_SHARES, CpuGroups
from hastack.recovery.run import Report as RecoveryReport
from hastack.recovery.run import Round
from hastack.spec.load import load_spec
from hastack.status.model import Row
from hastack.workload.history import DB, History, Op, Readback
from tests.helpers import THREE
from tests.unit.fake_cluster import cluster, fake_reachable
from tests.unit.test_status import healthy_facts

LOSSY = next(name for name, s in SCENARIOS.items() if s.fault is Fault.LOSS)
SPEC = load_spec(THREE)
SECRETS = complete(SPEC, {})[0]
ACCESS = Access(Path("/nonexistent"), Path("/nonexistent"))


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Health answers from a script, a fault that only records, a workload that reports a history,
    CPU groups in a directory (the machine's are the lab's: a unit test made none there)."""
    world: dict[str, Any] = {"health": [True], "faults": [], "undone": 0, "progress": [], "cpu": tmp_path}
    monkeypatch.setattr(CpuGroups, "of", classmethod(
        lambda cls, cluster, mounts=None: cls(tmp_path / f"hastack-lab-{cluster}")))

    def healthy(spec: Any, secrets: Any, access: Any, bound: float = chaos.PROBE_BOUND_S
                ) -> tuple[bool, Any, tuple[Row, ...]]:
        world.setdefault("bounds", []).append((bound, world["undone"]))
        answer = world["health"].pop(0) if len(world["health"]) > 1 else world["health"][0]
        rows = (Row("galera", True, "3/3 synced"),
                Row("openstack", answer, "", () if answer else ("orchestration: HTTP 503",)))
        return answer, healthy_facts(), rows

    def fault(shot: chaos.Shot) -> chaos.Undo:
        world["faults"].append((shot.scenario.name, shot.host))

        def undo() -> None:
            world["undone"] += 1

        return undo

    class Workload:
        streams = ("db",)

        def history(self, fault_at: float | None = None) -> History:
            world["stopped_after"] = fault_at
            ops = [Op(stream=DB, key=f"k{i}", t0=float(i), t1=float(i) + 0.01, ok=True) for i in range(3)]
            return History(ops=ops, readback={DB: Readback(keys=frozenset(o.key for o in ops), complete=True)})

    @contextlib.contextmanager
    def workload(argv: list[str], payload: str, ready_s: float) -> Iterator[Workload]:
        world["argv"], world["payload"] = argv, json.loads(payload)
        yield Workload()

    monkeypatch.setattr(chaos, "_healthy", healthy)
    monkeypatch.setattr(chaos, "_workload", workload)
    for f in chaos.FAULTS:
        monkeypatch.setitem(chaos.FAULTS, f, fault)
    monkeypatch.setattr(chaos, "UNSEEN_S", 0.0)
    return world


def run(name: str, world: dict[str, Any], **changes: Any) -> chaos.RunReport:
    scenario = dataclasses.replace(SCENARIOS[name], **changes)
    return chaos.run(scenario, SPEC, SECRETS, ACCESS, world["progress"].append)


def test_the_fault_is_seen_then_healed_and_undone_once_more_at_the_end(lab: dict[str, Any]) -> None:
    lab["health"] = [True, False, False, True]  # before the fault; seen; still sick; healed
    report = run("host-crash", lab)
    assert lab["faults"] == [("host-crash", "ctl1")] and lab["undone"] == 1
    assert report.seen_s is not None and report.healed_s is not None and report.healed_s >= report.seen_s
    assert report.history_ops == 3 and report.ok
    assert any("every cluster healthy" in p for p in lab["progress"])
    assert any(p.startswith("stopped and read back in ") and p.endswith(": db 3") for p in lab["progress"]), \
        lab["progress"]
    # The workload is told when the fault came, so it goes on until every stream has succeeded since.
    assert isinstance(lab["stopped_after"], float)
    # The workload runs in the client's CPU group (four shares), inside the client host's namespace.
    client = lab["cpu"] / f"hastack-lab-{SPEC.cluster}-client"
    assert lab["argv"][:4] == [*CpuGroups(client).wrap(client, [])[:3], str(client / "cgroup.procs")]
    assert (client / "cpu.shares").read_text() == f"{CLIENT_SHARES}\n"
    assert lab["argv"][4:7] == ["ip", "netns", "exec"] and lab["argv"][7].endswith("-client")
    assert lab["payload"]["max_seconds"] == SCENARIOS["host-crash"].heal_bound_s + 120  # the workload's own bound


def test_a_fault_with_a_duration_is_undone_when_it_ends_and_again_at_the_end(lab: dict[str, Any]) -> None:
    lab["health"] = [True, False, True]
    report = run("link-loss", lab, duration_s=0.0)
    assert lab["undone"] == 2 and report.healed_s is not None  # ended, then the final undo (harmless)


def test_a_probe_while_the_fault_is_on_gets_only_the_time_left_before_its_end(lab: dict[str, Any]) -> None:
    """A probe stuck on a host that died mid-probe once kept mgmt-loss's cut on for good."""
    lab["health"] = [True, False, False, True]
    run("mgmt-loss", lab, duration_s=0.3)
    during = [b for b, undone in lab["bounds"][1:] if undone == 0]
    after = [b for b, undone in lab["bounds"][1:] if undone]
    assert during and all(b <= max(chaos.PROBE_LEAST_S, 0.3) for b in during), during
    assert after and all(b == chaos.PROBE_BOUND_S for b in after), after


def test_a_probe_that_does_not_finish_is_an_unhealthy_answer_within_its_bound(monkeypatch: pytest.MonkeyPatch
                                                                            ) -> None:
    async def stuck(*_: Any) -> Any:
        await asyncio.Event().wait()  # a session open to a host that died: never answered

    monkeypatch.setattr(chaos, "probe", stuck)
    t0 = time.monotonic()
    ok, _, rows = chaos._healthy(SPEC, SECRETS, ACCESS, 0.2)
    assert not ok and time.monotonic() - t0 < 2
    assert chaos._sickness(rows) == "status: the probe did not finish within 0.2 s"


def test_a_cluster_that_never_heals_is_judged_not_healthy(lab: dict[str, Any]) -> None:
    lab["health"] = [True, False]
    report = run("stack-crash", lab, heal_bound_s=0.2)
    assert report.healed_s is None and not report.ok
    # What stayed sick is in the run's progress: once when it changed, once at the bound.
    said = [p for p in lab["progress"] if "orchestration: HTTP 503" in p]
    assert said[0].endswith("unhealthy: openstack: orchestration: HTTP 503") and len(said) == 2, said
    assert said[-1] == "not healed within 0 s; still unhealthy: openstack: orchestration: HTTP 503"
    assert any(not i.ok and i.name == "healthy again" for i in report.judgement.invariants)


def test_a_sick_cluster_is_not_broken_further(lab: dict[str, Any]) -> None:
    lab["health"] = [False]
    with pytest.raises(chaos.ChaosError, match="not every cluster is healthy"):
        run("host-crash", lab)
    assert lab["faults"] == []


# -- the workload process and the faults' own shell ----------------------------------------------------

WORKLOAD = """
import json, sys
target = json.loads(sys.stdin.readline())
if target.get("fail"):
    print("cannot reach the VIP", file=sys.stderr, flush=True)
    sys.exit(3)
if target.get("stuck"):
    print(json.dumps({"ready": False, "streams": ["db"], "failing": {"mongo": "No primary available for writes"}}),
          flush=True)
    sys.exit(0)
print(json.dumps({"ready": True, "streams": ["db", "mq"]}), flush=True)
line = sys.stdin.readline().split()
assert line[0] == "stop" and len(line) == (2 if target.get("after") else 1), line
assert not target.get("after") or float(line[1]) == target["after"]
if target.get("garbled"):
    print("Traceback: the readback failed", file=sys.stderr, flush=True)
    print("not json", flush=True)
else:
    print(json.dumps({"ops": [], "readback": {}}), flush=True)
"""


def fake_workload(tmp_path: Path) -> list[str]:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    return [sys.executable, str(script)]


def test_the_workload_process_reports_its_streams_then_its_history_on_stop(tmp_path: Path) -> None:
    with chaos._workload(fake_workload(tmp_path), json.dumps({})) as w:
        assert w.streams == ("db", "mq")
        history = w.history()
    assert history.ops == () and w.proc.wait(5) == 0


def test_the_workload_is_told_the_fault_s_time_to_settle_on(tmp_path: Path) -> None:
    with chaos._workload(fake_workload(tmp_path), json.dumps({"after": 1234.5})) as w:
        assert w.history(1234.5).ops == ()
    assert w.proc.wait(5) == 0


def test_a_workload_that_never_gets_going_is_an_error_with_what_it_said(tmp_path: Path) -> None:
    with pytest.raises(chaos.ChaosError, match="did not get going within 90 s: no answer"), \
            chaos._workload(fake_workload(tmp_path), json.dumps({"fail": True})):
        pass


def test_a_workload_stream_that_never_succeeds_is_named_with_its_last_error(tmp_path: Path) -> None:
    with pytest.raises(chaos.ChaosError, match="never succeeded: mongo: No primary available for writes"), \
            chaos._workload(fake_workload(tmp_path), json.dumps({"stuck": True})):
        pass


def test_a_workload_with_no_history_is_an_error_quoting_its_stderr(tmp_path: Path) -> None:
    with pytest.raises(chaos.ChaosError, match="reported no history: Traceback: the readback failed"), \
            chaos._workload(fake_workload(tmp_path), json.dumps({"garbled": True})) as w:
        w.history()


def test_a_shell_sequence_stops_at_the_first_failure_and_an_undo_runs_every_step(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert chaos._sh_all((f"touch {a}", "false", f"touch {b}")) == "`false` failed: "
    assert a.exists() and not b.exists()
    chaos._sh_each(("false", f"rm {a}"))
    assert not a.exists()


def test_an_impairment_that_cannot_be_put_in_is_taken_out_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    mark = tmp_path / "rule"
    monkeypatch.setattr(type(SCENARIOS[LOSSY]), "impair_commands",
                        lambda self, lay, host, table: ((f"touch {mark}", "ls /nonexistent-hastack"), (f"rm {mark}",)))
    shot = chaos.Shot(SCENARIOS[LOSSY], SPEC, "ctl1", SECRETS, ACCESS, lambda _: None)
    with pytest.raises(chaos.ChaosError, match=r"ctl1: `ls /nonexistent-hastack` failed: .*No such file"):
        chaos._impair(shot)
    assert not mark.exists()


def test_links_that_cannot_be_cut_are_an_error_naming_the_link() -> None:
    nowhere = SPEC.model_copy(update={"cluster": "nolabofthisname"})  # no such lab: its veths do not exist
    shot = chaos.Shot(SCENARIOS["isolation"], nowhere, "ctl2", SECRETS, ACCESS, lambda _: None)
    with pytest.raises(chaos.ChaosError, match=r"ctl2: could not take \S+ down"):
        chaos._cut_links(shot)


def test_a_command_on_a_host_reports_its_exit_and_an_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    hosts = cluster(SPEC, SECRETS, ctl2={"pkill -KILL -x corosync": Result(1, "", "no process\n")})
    monkeypatch.setattr(chaos, "reachable", fake_reachable(hosts, {"ctl3": "connection refused"}))
    chaos._run_on(SPEC, ACCESS, "ctl1", ("pkill", "-KILL", "-x", "corosync"))
    with pytest.raises(chaos.ChaosError, match="ctl2: `pkill -KILL -x corosync` exited 1: no process"):
        chaos._run_on(SPEC, ACCESS, "ctl2", ("pkill", "-KILL", "-x", "corosync"))
    with pytest.raises(chaos.ChaosError, match="ctl3: connection refused"):
        chaos._run_on(SPEC, ACCESS, "ctl3", ("true",))


def test_health_is_every_verdict_of_one_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    async def probe(*_: Any) -> Any:
        return healthy_facts()

    monkeypatch.setattr(chaos, "probe", probe)
    ok, facts, rows = chaos._healthy(SPEC, SECRETS, ACCESS)
    assert ok and facts == healthy_facts() and {r.component for r in rows} >= {"galera", "rabbitmq", "haproxy"}


def test_a_scenario_that_recovers_runs_recover_once_and_keeps_its_history(
        lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[float] = []

    async def recover(spec: Any, secrets: Any, access: Any, progress: Any, show: Any, **opts: float
                      ) -> RecoveryReport:
        calls.append(opts["timeout"])
        # The run powered every host on: recover waits for a booting host as long as it may run.
        assert opts["host_grace"] == opts["timeout"] > 360
        show(Round("galera", "bootstrap", "every node down", ["bootstrap ctl1"], [], 1.0))
        return RecoveryReport(seconds=2.0)

    monkeypatch.setattr(chaos, "recover", recover)
    lab["health"] = [True, False, True]
    kept = tmp_path / "history.json"
    report = chaos.run(SCENARIOS["power-loss"], SPEC, SECRETS, ACCESS, lab["progress"].append, keep_history=kept)
    assert len(calls) == 1 and report.recovery is not None
    assert "recover galera: bootstrap: every node down -> bootstrap ctl1" in lab["progress"]
    record = json.loads(kept.read_text())
    assert record["scenario"] == "power-loss" and len(record["history"]["ops"]) == 3


def test_only_a_compute_scenario_pins_servers_and_waits_for_them(lab: dict[str, Any],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []
    original = chaos._workload

    @contextlib.contextmanager
    def timed(argv: list[str], payload: str, ready_s: float) -> Iterator[Any]:
        waited.append(ready_s)
        with original(argv, payload, ready_s) as w:
            yield w

    monkeypatch.setattr(chaos, "_workload", timed)
    run("host-crash", lab)
    assert lab["payload"]["instance_host"] == "" and lab["payload"]["server_stream"] and waited == [chaos.READY_S]
    # a compute scenario: two servers pinned on the evacuated compute, no server-every-5-s stream
    facts = dataclasses.replace(healthy_facts(), evacuator=parse_state(json.dumps(
        {"at": 1.0, "hosts": {h: {"state": "healthy", "reason": "online"} for h in ("compute1", "compute2")}})))
    monkeypatch.setattr(chaos, "_healthy", lambda *a: (True, facts, ()))
    iha = SPEC.model_copy(update={"instance_ha": SPEC.instance_ha.model_copy(update={"enabled": True})})
    chaos.run(SCENARIOS["compute-crash"], iha, SECRETS, ACCESS, lab["progress"].append)
    assert (lab["payload"]["instance_host"], lab["payload"]["instance_count"]) == ("compute1", 2)
    assert not lab["payload"]["server_stream"] and waited[-1] > chaos.READY_S

"""The evacuator's shell: facts read from pacemaker and nova's real output, actions applied in order."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hastack.agent import evacuator
from hastack.agent.evacuation import Action, HostPlan, Member, Plan, State, Step, decide
from hastack.agent.evacuator import Evacuated
from hastack.components.instance_ha import parse_state
from hastack.components.pacemaker import parse_crm_mon, parse_fence_history

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


CFG = evacuator.EvacuatorConfig(computes=("compute1", "compute2"), evacuate=("compute1", "compute2"),
                                max_failed=1, auth_url="http://10.77.0.10:5000/v3", username="admin",
                                password="x" * 32)


class FakeNova:
    """nova as recorded in the lab (2.53), taking actions into a log."""

    def __init__(self, fail: str = "") -> None:
        self.log: list[tuple[str, object]] = []
        self.fail = fail
        self.servers_read = 0

    def services(self) -> Any:
        return json.loads(fixture("nova_os_services_2_53.json"))

    def servers(self, host: str) -> Any:
        """nova's answer with its `host` filter: the recorded servers on that host."""
        self.servers_read += 1
        doc = json.loads(fixture("nova_servers_detail_2_53.json"))
        return {"servers": [s for s in doc["servers"] if s.get("OS-EXT-SRV-ATTR:host") == host]}

    def evacuations(self, host: str) -> Any:
        return json.loads(fixture("nova_os_migrations_evacuation_2_53.json"))

    def service_ids(self) -> dict[str, str]:
        return {s["host"]: s["id"] for s in self.services()["services"]}

    def put_service(self, service_id: str, body: dict[str, object]) -> None:
        self.log.append((service_id, body))

    def evacuate(self, server: str) -> None:
        if server == self.fail:
            raise RuntimeError("409 Conflict: instance is in task_state rebuilding")
        self.log.append(("evacuate", server))


def test_a_compute_as_pacemaker_sees_it() -> None:
    mon = parse_crm_mon(fixture("crm_mon_lab_healthy.xml"))
    assert evacuator.member_of(mon, "ctl1") is Member.ONLINE
    assert evacuator.member_of(mon, "compute9") is Member.UNKNOWN  # not in the cluster's view
    assert evacuator.member_of(None, "ctl1") is Member.UNKNOWN  # no view at all


def test_facts_from_a_lab_with_every_compute_online(tmp_path: Path) -> None:
    def run(argv: list[str]) -> str:
        if argv[0] == "crm_mon":  # the recorded members' view, with the computes online as remote nodes
            return fixture("crm_mon_lab_healthy.xml").replace(
                "</nodes>", '<node name="compute1" id="compute1" online="true" standby="false" unclean="false" '
                'is_dc="false" type="remote"/><node name="compute2" id="compute2" online="false" standby="false" '
                'unclean="true" is_dc="false" type="remote"/></nodes>')
        return fixture("stonith_admin_history.xml")

    c1, c2 = evacuator.facts(CFG, FakeNova(), run)  # type: ignore[arg-type]
    assert c1.member is Member.ONLINE and c2.member is Member.UNCLEAN
    assert c1.service is not None and c1.service.up and not c1.service.forced_down
    # only the failed host's instances are read (nova's host filter); the online one's are not asked for
    assert len(c2.instances) == 4 and c1.instances == ()


def test_instances_are_read_only_while_something_may_move() -> None:
    def run(argv: list[str]) -> str:
        if argv[0] == "crm_mon":
            return fixture("crm_mon_lab_instance_ha.xml")  # every compute online
        return fixture("stonith_admin_history.xml")

    nova = FakeNova()
    c1, c2 = evacuator.facts(CFG, nova, run)  # type: ignore[arg-type]
    assert (c1.member, c2.member) == (Member.ONLINE, Member.ONLINE)
    assert nova.servers_read == 0 and c1.instances == ()
    assert decide((c1, c2), CFG.policy()).actions == ()

    def one_down(argv: list[str]) -> str:
        return run(argv).replace('name="compute2" id="compute2" online="true"', 'name="compute2" id="compute2" '
                                 'online="false"') if argv[0] == "crm_mon" else run(argv)

    _, c2 = evacuator.facts(CFG, nova, one_down)  # type: ignore[arg-type]
    assert c2.member is not Member.ONLINE and nova.servers_read == 1 and c2.instances


def test_a_round_reads_its_facts_at_once() -> None:
    """crm_mon, the fence history and nova's services are read together, then each failed host's
    instances and evacuation records together: every read waits at a barrier the others must reach
    too, so reads made one after another fail here (each took 0.5-1 s on the loaded lab)."""
    first, second = threading.Barrier(3, timeout=10), threading.Barrier(2, timeout=10)

    def run(argv: list[str]) -> str:
        first.wait()
        if argv[0] == "crm_mon":
            return fixture("crm_mon_lab_instance_ha.xml").replace(
                'name="compute2" id="compute2" online="true"', 'name="compute2" id="compute2" online="false"')
        return fixture("stonith_admin_history.xml")

    class Together(FakeNova):
        def services(self) -> Any:
            first.wait()
            return super().services()

        def servers(self, host: str) -> Any:
            second.wait()
            return super().servers(host)

        def evacuations(self, host: str) -> Any:
            second.wait()
            return super().evacuations(host)

    _, c2 = evacuator.facts(CFG, Together(), run)  # type: ignore[arg-type]
    assert c2.member is not Member.ONLINE and c2.instances and c2.service is not None


def test_a_second_fence_is_read_from_the_verbose_history() -> None:
    # Real output after compute1 was fenced twice (10:28:11, then 10:32:35): stonith_admin without
    # --verbose lists only the first, and the evacuator waited for a fence that had happened.
    asked: list[list[str]] = []

    def run(argv: list[str]) -> str:
        asked.append(argv)
        if argv[0] == "crm_mon":
            return fixture("crm_mon_lab_healthy.xml")
        name = "verbose_compute_fenced_twice" if "--verbose" in argv else "compute_fenced_twice"
        return fixture(f"stonith_admin_history_{name}.xml")

    c1, _ = evacuator.facts(CFG, FakeNova(), run)  # type: ignore[arg-type]
    assert c1.fencing.done_at == datetime(2026, 12, 1, 10, 32, 35, tzinfo=UTC).timestamp()
    terse = parse_fence_history(fixture("stonith_admin_history_compute_fenced_twice.xml"))
    assert [e.completed for e in terse] == [datetime(2026, 12, 1, 10, 28, 11, tzinfo=UTC).timestamp()]


def test_without_a_cluster_view_every_compute_is_unknown() -> None:
    def run(argv: list[str]) -> str:
        raise FileNotFoundError("crm_mon")

    assert {c.member for c in evacuator.facts(CFG, FakeNova(), run)} == {Member.UNKNOWN}  # type: ignore[arg-type]


def test_actions_run_in_the_plan_order_and_a_failed_one_is_left_for_the_next_round() -> None:
    plan = Plan((HostPlan("compute1", State.EVACUATING, "fenced", (
        Action(Step.EVACUATE, "compute1", "a"), Action(Step.EVACUATE, "compute1", "b"),
        Action(Step.FORCE_DOWN, "compute1"))),))
    nova = FakeNova(fail="a")
    done, failed = evacuator.apply(nova, plan)  # type: ignore[arg-type]
    ids = nova.service_ids()
    # forced down before anything moves; "a" refused by nova, "b" still asked
    assert nova.log == [(ids["compute1"], {"forced_down": True}), ("evacuate", "b")]
    assert done == ["force-down compute1", "evacuate compute1 b"]
    assert failed == ["evacuate compute1 a: 409 Conflict: instance is in task_state rebuilding"]


def test_a_second_fence_runs_through_pacemaker_before_anything_else() -> None:
    plan = Plan((HostPlan("compute1", State.WAIT_FENCE, "late report", (Action(Step.FENCE, "compute1"),)),
                 HostPlan("compute2", State.EVACUATING, "fenced", (Action(Step.POWER_ON, "compute2"),))))
    ran: list[list[str]] = []

    def run(argv: list[str]) -> str:
        ran.append(argv)
        return ""

    done, failed = evacuator.apply(FakeNova(), plan, run)  # type: ignore[arg-type]
    assert ran == [["stonith_admin", "--fence", "compute1", "--timeout", "120"],
                   ["stonith_admin", "--unfence", "compute2", "--timeout", "60"]]
    assert done == ["fence compute1", "power-on compute2"] and not failed


def test_evacuations_are_asked_together_with_the_service_ids_the_round_read() -> None:
    import threading

    class Counting(FakeNova):
        """Each evacuate waits until the other one arrives: asked one after another, both would fail."""

        def __init__(self) -> None:
            super().__init__()
            self.both = threading.Barrier(2, timeout=5)
            self.services_read = 0

        def services(self) -> Any:
            self.services_read += 1
            return super().services()

        def evacuate(self, server: str) -> None:
            self.both.wait()
            super().evacuate(server)

    nova = Counting()
    plan = Plan((HostPlan("compute1", State.EVACUATING, "fenced", (
        Action(Step.EVACUATE, "compute1", "a"), Action(Step.EVACUATE, "compute1", "b"),
        Action(Step.FORCE_DOWN, "compute1"))),))
    computes = evacuator.facts(CFG, nova, lambda argv: fixture(  # type: ignore[arg-type]
        "crm_mon_lab_healthy.xml" if argv[0] == "crm_mon" else "stonith_admin_history.xml"))
    ids = evacuator.service_ids(computes)
    assert set(ids) == {"compute1", "compute2"} and nova.services_read == 1
    done, failed = evacuator.apply(nova, plan, ids=ids)  # type: ignore[arg-type]
    assert failed == [] and done == ["force-down compute1", "evacuate compute1 a", "evacuate compute1 b"]
    assert nova.log[0] == (ids["compute1"], {"forced_down": True})  # before either evacuation
    assert sorted(nova.log[1:]) == [("evacuate", "a"), ("evacuate", "b")]
    assert nova.services_read == 1  # the round's own read gave the id: no second one


def test_nova_s_reason_is_kept_when_keystoneauth_cannot_read_it() -> None:
    import requests
    from keystoneauth1 import exceptions

    class Refusing(FakeNova):
        def put_service(self, service_id: str, body: dict[str, object]) -> None:
            # What keystoneauth raised in the lab for nova's 400 to forced_down=false.
            resp = requests.Response()
            resp.status_code = 400
            resp._content = b'{"badRequest": {"code": 400, "message": "the reason nova gave"}}'
            raise exceptions.BadRequest(message="Unrecognized schema in response body.", response=resp)

    plan = Plan((HostPlan("compute1", State.RETURNING, "back and empty", (Action(Step.CLEAR, "compute1"),)),))
    done, failed = evacuator.apply(Refusing(), plan)  # type: ignore[arg-type]
    assert done == [] and len(failed) == 1
    assert failed[0].startswith("clear compute1: Unrecognized schema in response body.")
    assert '"message": "the reason nova gave"' in failed[0]


def test_a_compute_back_before_its_instances_left_has_none_asked_twice() -> None:
    """Seen in the lab: compute1 rebooted (fenced) and was online again, still forced down, before its two
    instances had left; both were evacuated a second time and ended in ERROR on compute2."""
    class ForcedDown(FakeNova):
        def services(self) -> Any:
            doc = super().services()
            for svc in doc["services"]:
                if svc["host"] == "compute1":
                    svc["forced_down"], svc["state"] = True, "down"
            return doc

        def evacuations(self, host: str) -> Any:  # both of compute1's ACTIVE instances asked after the fence
            return {"migrations": [{"instance_uuid": i, "status": "pre-migrating", "created_at":
                                    "2026-12-01T10:32:38.000000"} for i in ("f4290cc4-6870-4746-9953-3258980531c8",
                                                                            "0f910412-1d3d-43e4-befc-171d15dd6b54")]}

    c1, c2 = evacuator.facts(CFG, ForcedDown(), _cluster("online", fenced=True))  # type: ignore[arg-type]
    assert c1.member is Member.ONLINE and c1.service is not None and c1.service.forced_down
    asked = [a.instance for a in decide((c1, c2), CFG.policy()).actions if a.step is Step.EVACUATE]
    # only the one not on record: the third ACTIVE one (the build it never finished never ran: it stays)
    assert asked == ["328fc099-8e92-4671-8433-f0f0ea698441"]


def test_a_returned_compute_s_done_evacuations_are_read_from_nova_s_record() -> None:
    class Returned(FakeNova):
        def evacuations(self, host: str) -> Any:  # rebuilt on compute2, not yet cleaned up on compute1
            return {"migrations": [{"instance_uuid": i, "status": s, "created_at": "2026-12-01T10:32:38.000000"}
                                   for i, s in (("a", "done"), ("b", "done"), ("c", "completed"))]}

        def services(self) -> Any:
            doc = super().services()
            for svc in doc["services"]:
                if svc["host"] == "compute1":
                    svc["forced_down"] = True
            return doc

    c1, _ = evacuator.facts(CFG, Returned(), _cluster("online", fenced=True))  # type: ignore[arg-type]
    assert (c1.uncleaned, c1.unfinished) == (2, 0)


def test_the_state_file_holds_each_host_and_what_was_done(tmp_path: Path) -> None:
    plan = Plan((HostPlan("compute1", State.WAIT_FENCE, "unclean; pacemaker has not fenced it yet"),))
    path = tmp_path / "run/evacuator.json"
    evacuator.write_state(str(path), evacuator.state_of(plan, [], 1.5))
    assert json.loads(path.read_text()) == {
        "at": 1.5, "refusal": "", "done": [], "error": "", "failed": [],
        "hosts": {"compute1": {"state": "waiting for fence", "reason": "unclean; pacemaker has not fenced it yet"}}}


def test_a_failed_round_is_written_with_its_cause_and_the_last_view(tmp_path: Path) -> None:
    """Status must tell an evacuator stuck on an unreachable nova from one that stopped running."""
    plan = Plan((HostPlan("compute1", State.HEALTHY, "online"),))
    good = evacuator.state_of(plan, ["force-down compute1"], 1.0)
    path = tmp_path / "evacuator.json"
    evacuator.write_state(str(path), evacuator.failed_state(good, TimeoutError(), 9.0))
    state = parse_state(path.read_text())
    assert (state.at, state.error, state.done) == (9.0, "TimeoutError: TimeoutError", ())
    assert state.hosts == good.hosts


def test_a_config_error_names_the_field_never_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evacuator.yaml"
    path.write_text("computes: [compute1]\nevacuate: [compute1]\nmax_failed: -1\nauth_url: x\nusername: admin\n"
                    "password: hunter2hunter2\n")
    assert evacuator.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "max_failed" in err and "hunter2" not in err


class MovingNova(FakeNova):
    """nova that shows an evacuated instance as rebuilding from then on."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def servers(self, host: str) -> Any:
        doc = super().servers(host)
        for s in doc["servers"]:
            if s["id"] in self.asked:
                s["status"], s["OS-EXT-STS:task_state"] = "REBUILD", "rebuilding"
        return doc

    def evacuate(self, server: str) -> None:
        super().evacuate(server)
        self.asked.add(server)


def _cluster(compute1: str, compute2: str = "online", fenced: bool = False) -> Callable[[list[str]], str]:
    """crm_mon with each compute as given (online / offline), the recorded fence history (compute1
    fenced at 10:32:35, after its nova-compute's last report at 08:02:21) once it is offline (or
    `fenced`: back online after it)."""
    def node(name: str, state: str) -> str:
        return (f'<node name="{name}" id="{name}" online="{"true" if state == "online" else "false"}" '
                f'standby="false" unclean="false" is_dc="false" type="remote"/>')

    def run(argv: list[str]) -> str:
        if argv[0] == "crm_mon":
            return fixture("crm_mon_lab_healthy.xml").replace(
                "</nodes>", node("compute1", compute1) + node("compute2", compute2) + "</nodes>")
        return fixture("stonith_admin_history_verbose_compute_fenced_twice.xml" if compute1 != "online" or fenced
                       else "stonith_admin_history.xml")
    return run


def test_the_operator_evacuation_fences_first_then_moves_everything() -> None:
    state = {"compute1": "online"}
    asked: list[list[str]] = []

    def run(argv: list[str]) -> str:
        asked.append(argv)
        if argv[0] == "stonith_admin" and "--fence" in argv:
            state["compute1"] = "offline"  # the switch cut it; pacemaker records the fence
            return ""
        return _cluster(state["compute1"])(argv)

    nova = MovingNova()
    result = evacuator.evacuate_host(CFG, nova, "compute1", run=run, wait_s=30, every_s=0)  # type: ignore[arg-type]
    fence_at = next(i for i, a in enumerate(asked) if "--fence" in a)
    assert asked[fence_at] == ["stonith_admin", "--fence", "compute1", "--timeout", "120"]
    assert result.ok and result.fenced == "now", result
    ids = nova.service_ids()
    # forced down, then the three ACTIVE instances evacuated (nova's record holds older evacuations only:
    # from before this fence); the one still building when it died never ran (nova evacuates only what
    # was launched once): left in place, and reported
    every = ("0f910412-1d3d-43e4-befc-171d15dd6b54", "328fc099-8e92-4671-8433-f0f0ea698441",
             "f4290cc4-6870-4746-9953-3258980531c8")
    assert nova.log[0] == (ids["compute1"], {"forced_down": True})
    assert sorted(str(x) for k, x in nova.log[1:] if k == "evacuate") == list(every)  # each asked once
    assert len(nova.log) == 1 + len(every)
    assert result.moving == every and result.left == ("01846f31-bbdb-4232-aae2-45e22e567feb (BUILD)",)
    assert Evacuated.model_validate_json(result.model_dump_json()) == result  # what the CLI reads back


def test_the_operator_evacuation_refuses_before_fencing_when_nothing_can_take_the_instances() -> None:
    asked: list[list[str]] = []

    def run(argv: list[str]) -> str:
        asked.append(argv)
        return _cluster("online", compute2="offline")(argv)

    nova = FakeNova()
    result = evacuator.evacuate_host(CFG, nova, "compute1", run=run, wait_s=0, every_s=0)  # type: ignore[arg-type]
    assert not result.ok and "no other compute can take compute1's instances (compute2 offline" in result.refusal
    assert not any(a[0] == "stonith_admin" and "--fence" in a for a in asked) and nova.log == []
    unknown = evacuator.evacuate_host(CFG, nova, "ctl1", run=run, wait_s=0)  # type: ignore[arg-type]
    assert "ctl1 is not a compute instance HA watches" in unknown.refusal


def test_a_failed_fence_moves_nothing_and_says_why() -> None:
    def run(argv: list[str]) -> str:
        if argv[0] == "stonith_admin" and "--fence" in argv:
            raise subprocess.CalledProcessError(1, argv, "", "Command failed: No route to host")
        return _cluster("online")(argv)

    nova = FakeNova()
    result = evacuator.evacuate_host(CFG, nova, "compute1", run=run, wait_s=0)  # type: ignore[arg-type]
    assert not result.ok
    assert result.refusal == "fencing compute1 failed, nothing moved: Command failed: No route to host"
    assert nova.log == []


def test_hastack_evacuate_refuses_what_instance_ha_does_not_cover(tmp_path: Path) -> None:
    import asyncio

    from hastack.hosts.fleet import Access
    from hastack.recovery.evacuate import evacuate, parse_result
    from hastack.recovery.run import RecoverError
    from tests.helpers import variant

    access = Access(tmp_path / "key", tmp_path / "known_hosts")
    with pytest.raises(RecoverError, match="instance_ha is off in this spec"):
        asyncio.run(evacuate(variant(), access, "compute1", 60))
    with pytest.raises(RecoverError, match=r"ctl1 is not a compute of this spec \(computes: compute1, compute2\)"):
        asyncio.run(evacuate(variant(instance_ha={"enabled": True}), access, "ctl1", 60))
    # the agent's answer is its last JSON line, whatever it logged before
    said = Evacuated(host="compute1", ok=False, refusal="no other compute can take compute1's instances")
    assert parse_result("2026-12-01 log line\n" + said.model_dump_json() + "\n") == said
    assert parse_result("Traceback (most recent call last):\n") is None


def test_a_compute_whose_connection_is_not_started_is_not_online() -> None:
    """crm_mon called a powered-off compute "online" while pacemaker retried its connection; the
    evacuator then tried to clear its forced_down, every ~30 s, for minutes (the lab)."""
    text = fixture("crm_mon_lab_instance_ha.xml")
    assert evacuator.member_of(parse_crm_mon(text), "compute1") is Member.ONLINE
    retrying = text.replace('<resource id="compute1" resource_agent="ocf:pacemaker:remote" role="Started" '
                            'active="true"', '<resource id="compute1" resource_agent="ocf:pacemaker:remote" '
                            'role="Stopped" active="false"')
    assert retrying != text
    assert evacuator.member_of(parse_crm_mon(retrying), "compute1") is not Member.ONLINE

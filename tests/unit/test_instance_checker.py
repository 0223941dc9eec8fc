"""Instance HA scenarios judged from a record: where nova showed the pinned servers, what it
recorded as evacuations, when the switch cut their compute."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hastack.chaos.checker import Judgement
from hastack.chaos.instance_checker import InstanceJudgement, judge_instances
from hastack.chaos.run import RunReport
from hastack.chaos.scenarios import SCENARIOS, NoTarget, pick_target
from hastack.components.instance_ha import parse_state
from hastack.workload import instances
from hastack.workload.history import INSTANCES, Evacuation, History, InstanceSample, Readback
from tests.helpers import variant
from tests.unit.test_status import healthy_facts

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ("r-i0", "r-i1")


def history(samples: list[tuple[float, str, str, str]], evacuations: tuple[Evacuation, ...] = (),
            read: bool = True) -> History:
    return History(instance_host="compute1", instance_names=NAMES,
                   instances=tuple(InstanceSample(t=t, server=n, host=h, status=st) for t, n, h, st in samples),
                   evacuations=evacuations, readback={INSTANCES: Readback(complete=read)})


def moved_at(t_active: float) -> list[tuple[float, str, str, str]]:
    """Both servers on compute1 until 104, rebuilding on compute2 from 106, ACTIVE there from t_active."""
    out = []
    for t in range(100, 131):
        for n in NAMES:
            out.append((float(t), n, *(("compute1", "ACTIVE") if t < 106 else
                                       ("compute2", "ACTIVE" if t >= t_active else "REBUILD"))))
    return out


def failed(j: InstanceJudgement) -> dict[str, str]:
    return {i.name: i.detail for i in j.invariants if not i.ok}


def test_a_crash_fenced_then_evacuated_holds_and_is_timed() -> None:
    evac = tuple(Evacuation(server=n, t=105.0, dest="compute2", status="done") for n in NAMES)
    j = judge_instances(history(moved_at(112), evac), fault_at=100.0, fences=(104.2,), move=True, bound_s=120)
    assert failed(j) == {}
    assert j.evacuated_s == 12.0
    # Where the 12 s went: the switch's cut 4.2 s after the fault, nova's first evacuation record at 5 s.
    assert j.fenced_s == pytest.approx(4.2) and j.asked_s == pytest.approx(5.0)
    report = RunReport("compute-crash", "compute1", 100.0, 3.0, 40.0, Judgement((), j.invariants), 10,
                       evacuated_s=j.evacuated_s, fenced_s=j.fenced_s, evacuation_asked_s=j.asked_s)
    assert report.evacuation() == ("every pinned server ACTIVE on another compute 12.0 s after the fault (the "
                                   "compute fenced after 4.2 s, the first evacuation asked after 5.0 s)")


def test_an_evacuation_asked_before_the_fence_is_caught() -> None:
    # nova's created_at is to the second: 104 is the fence's own second (allowed), 102 is not.
    early = (Evacuation(server="r-i0", t=102.0), Evacuation(server="r-i1", t=104.0))
    j = judge_instances(history(moved_at(112), early), fault_at=100.0, fences=(104.6,), move=True, bound_s=120)
    assert set(failed(j)) == {"no evacuation before the fence"}
    assert "r-i0" in failed(j)["no evacuation before the fence"] and "r-i1" not in failed(j)[
        "no evacuation before the fence"]


def test_a_server_seen_elsewhere_before_its_compute_was_cut_ran_twice() -> None:
    j = judge_instances(history(moved_at(112)), fault_at=100.0, fences=(110.0,), move=True, bound_s=120)
    assert "instances: never on two hosts" in failed(j)
    never = judge_instances(history(moved_at(112)), fault_at=100.0, fences=(), move=True, bound_s=120)
    assert "instances: never on two hosts" in failed(never)  # never fenced at all


def test_servers_not_active_elsewhere_within_the_bound_fail() -> None:
    late = judge_instances(history(moved_at(125)), fault_at=100.0, fences=(104.0,), move=True, bound_s=20)
    assert "instances: every one ACTIVE elsewhere within 20 s" in failed(late)
    stuck = [s for s in moved_at(112) if not (s[1] == "r-i1" and s[0] >= 106)]  # r-i1 never sampled after
    j = judge_instances(history(stuck), fault_at=100.0, fences=(104.0,), move=True, bound_s=120)
    assert "r-i1 (ACTIVE on compute1)" in failed(j)["instances: every one ACTIVE elsewhere within 120 s"]
    assert j.evacuated_s is None


def test_a_restarted_nova_compute_moves_nothing() -> None:
    stay = [(float(t), n, "compute1", "ACTIVE") for t in range(100, 130) for n in NAMES]
    j = judge_instances(history(stay), fault_at=100.0, fences=(), move=False, bound_s=120)
    assert failed(j) == {} and (j.evacuated_s, j.fenced_s, j.asked_s) == (None, None, None)
    # A fence of the compute, or any evacuation, breaks it, whatever became of the servers.
    moved = judge_instances(history(moved_at(112), (Evacuation(server="r-i0", t=105.0),)), fault_at=100.0,
                            fences=(104.0,), move=False, bound_s=120)
    assert set(failed(moved)) == {"instances: every one stayed ACTIVE on compute1", "no evacuation",
                                  "compute1 not fenced"}
    # A fence from an earlier run does not count.
    assert failed(judge_instances(history(stay), fault_at=100.0, fences=(50.0,), move=False, bound_s=120)) == {}


def test_an_unread_record_is_never_a_pass() -> None:
    j = judge_instances(history(moved_at(112), read=False), fault_at=100.0, fences=(104.0,), move=True,
                        bound_s=120)
    assert "instances: evacuations read back" in failed(j)


def test_nova_evacuation_records_on_the_run_clock() -> None:
    doc = json.loads((FIXTURES / "nova_os_migrations_evacuation_2_53.json").read_text())
    by_id = {"ff72ea8b-ef57-4ff5-b00c-4d4835d21fa0": "r-i0"}  # the other records are not the run's
    [e] = instances.parse_evacuations(doc, by_id, mono_minus_wall=-1_000_000.0)
    assert (e.server, e.dest, e.status) == ("r-i0", "compute2", "completed")
    assert e.t == datetime(2026, 12, 1, 10, 28, 14, tzinfo=UTC).timestamp() - 1_000_000.0


def test_a_compute_scenario_hits_a_healthy_evacuated_compute() -> None:
    spec = variant(instance_ha={"enabled": True})
    state = parse_state(json.dumps({"at": 1.0, "hosts": {"compute1": {"state": "healthy", "reason": "online"},
                                                         "compute2": {"state": "healthy", "reason": "online"}}}))
    facts = dataclasses.replace(healthy_facts(), evacuator=state)
    assert pick_target(SCENARIOS["compute-crash"], spec, facts) == "compute1"
    lone = dataclasses.replace(facts, evacuator=parse_state(json.dumps(
        {"at": 1.0, "hosts": {"compute1": {"state": "healthy", "reason": "online"},
                              "compute2": {"state": "evacuating", "reason": "fenced"}}})))
    with pytest.raises(NoTarget, match="another to take its servers"):
        pick_target(SCENARIOS["compute-crash"], spec, lone)
    with pytest.raises(NoTarget, match="instance_ha is off"):
        pick_target(SCENARIOS["compute-crash"], variant(), facts)

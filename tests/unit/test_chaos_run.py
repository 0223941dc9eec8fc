"""A chaos run's bookkeeping without a lab: the fault held and undone, healing seen, the record judged."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hastack.chaos import run as chaos
from hastack.chaos.scenarios import SCENARIOS
from hastack.credentials.model import complete
from hastack.hosts.fleet import Access
from hastack.spec.load import load_spec
from hastack.workload.history import DB, History, Op, Readback
from tests.helpers import THREE
from tests.unit.test_status import healthy_facts

SPEC = load_spec(THREE)
SECRETS = complete(SPEC, {})[0]
ACCESS = Access(Path("/nonexistent"), Path("/nonexistent"))


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Health answers from a script, a fault that only records, a workload that reports a history."""
    world: dict[str, Any] = {"health": [True], "faults": [], "undone": 0, "progress": []}

    def healthy(spec: Any, secrets: Any, access: Any) -> tuple[bool, Any]:
        answer = world["health"].pop(0) if len(world["health"]) > 1 else world["health"][0]
        return answer, healthy_facts()

    def fault(shot: chaos.Shot) -> chaos.Undo:
        world["faults"].append((shot.scenario.name, shot.host))

        def undo() -> None:
            world["undone"] += 1

        return undo

    class Workload:
        streams = ("db",)

        def history(self) -> History:
            ops = [Op(stream=DB, key=f"k{i}", t0=float(i), t1=float(i) + 0.01, ok=True) for i in range(3)]
            return History(ops=ops, readback={DB: Readback(keys=frozenset(o.key for o in ops), complete=True)})

    @contextlib.contextmanager
    def workload(netns: str, payload: str) -> Iterator[Workload]:
        world["netns"], world["payload"] = netns, json.loads(payload)
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
    assert lab["netns"].endswith("-client")
    assert lab["payload"]["max_seconds"] == SCENARIOS["host-crash"].heal_bound_s + 120  # the workload's own bound


def test_a_fault_with_a_duration_is_undone_when_it_ends_and_again_at_the_end(lab: dict[str, Any]) -> None:
    lab["health"] = [True, False, True]
    report = run("link-loss", lab, duration_s=0.0)
    assert lab["undone"] == 2 and report.healed_s is not None  # ended, then the final undo (harmless)


def test_a_cluster_that_never_heals_is_judged_not_healthy(lab: dict[str, Any]) -> None:
    lab["health"] = [True, False]
    report = run("stack-crash", lab, heal_bound_s=0.2)
    assert report.healed_s is None and not report.ok
    assert any(not i.ok and i.name == "healthy again" for i in report.judgement.invariants)


def test_a_sick_cluster_is_not_broken_further(lab: dict[str, Any]) -> None:
    lab["health"] = [False]
    with pytest.raises(chaos.ChaosError, match="not every cluster is healthy"):
        run("host-crash", lab)
    assert lab["faults"] == []

"""The recovery loop's rounds, with looks replayed: it acts, waits, stops on refusal, survives a failing host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hastack.credentials.model import complete
from hastack.hosts.fleet import Access
from hastack.hosts.ssh import HostError, Result, SshHost
from hastack.recovery import run as rec
from hastack.recovery.decision import Component, Outcome
from hastack.spec.load import load_spec
from tests.helpers import THREE
from tests.unit.fake_cluster import fake_reachable

SPEC = load_spec(THREE)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "reachable", fake_reachable({}))
    monkeypatch.setattr(rec, "POLL_S", 0.0)


def replay(monkeypatch: pytest.MonkeyPatch, comp: Component, looks: list[rec.Look | Exception]) -> list[str]:
    """`comp`'s looks in turn (the last one repeats); returns the log of the acts carried out."""
    acted: list[str] = []

    def with_act(item: rec.Look | Exception) -> rec.Look | Exception:
        if not isinstance(item, rec.Look) or not item.actions:
            return item

        async def act(hosts: dict[str, SshHost]) -> None:
            acted.append(item.actions[0])

        return rec.Look(item.outcome, item.reason, item.actions, item.evidence, act)

    queue = [with_act(item) for item in looks]

    async def look(ctx: rec.Context, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> rec.Look:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    monkeypatch.setitem(rec.LOOKS, comp, look)
    return acted


def run(only: str, timeout: float = 5) -> rec.Report:
    shown: list[rec.Round] = []
    access = Access(Path("/nonexistent"), Path("/nonexistent"))
    return asyncio.run(rec.recover(SPEC, complete(SPEC, {})[0], access, lambda _: None, shown.append,
                                   only=(only,), timeout=timeout))


def test_a_wait_then_a_repair_then_healthy() -> None:
    with pytest.MonkeyPatch.context() as mp:
        acted = replay(mp, Component.GALERA, [
            rec.Look(Outcome.WAIT, "ctl2 is starting", (), []),
            rec.Look(Outcome.WAIT, "ctl2 is starting", (), []),  # the same: not shown twice
            rec.Look(Outcome.BOOTSTRAP, "ctl3 holds the most commits", ("bootstrap ctl3",), []),
            rec.Look(Outcome.HEALTHY, "primary of 3", (), []),
        ])
        report = run("galera")
    assert report.ok and report.healthy == {"galera": True} and acted == ["bootstrap ctl3"]
    assert [r.outcome for r in report.rounds] == ["wait", "bootstrap", "healthy"]


def test_a_refusal_ends_the_component_with_its_reason() -> None:
    with pytest.MonkeyPatch.context() as mp:
        acted = replay(mp, Component.RABBITMQ, [rec.Look(Outcome.REFUSE, "ctl3 cannot be read", (), [])])
        report = run("rabbitmq")
    assert not report.ok and report.refused == {"rabbitmq": "ctl3 cannot be read"} and not acted


def test_a_host_failing_mid_look_is_an_error_round_then_the_loop_goes_on() -> None:
    failure = HostError("ctl1", "rabbitmqctl -q cluster_status", Result(69, "", "nodedown"))
    with pytest.MonkeyPatch.context() as mp:
        replay(mp, Component.MONGODB, [failure, rec.Look(Outcome.HEALTHY, "primary ctl1", (), [])])
        report = run("mongodb")
    assert report.ok and [r.outcome for r in report.rounds] == ["error", "healthy"]
    assert "nodedown" in report.rounds[0].reason


def test_out_of_time_is_a_refusal_that_says_so() -> None:
    with pytest.MonkeyPatch.context() as mp:
        replay(mp, Component.GALERA, [rec.Look(Outcome.WAIT, "ctl2 is joining", (), [])])
        report = run("galera", timeout=0.05)
    assert not report.ok and report.refused["galera"].startswith("not whole after")

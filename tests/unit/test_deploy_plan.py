"""Deploy's pure plans: what each phase does from what the hosts showed."""

from __future__ import annotations

from hastack.components.galera import GaleraState
from hastack.deploy.phases import corosync, galera
from hastack.deploy.plan import PhaseKey
from hastack.deploy.run import APPLY
from tests.helpers import variant
from tests.unit.test_corosync_conf import conf


def test_the_deploy_plan_reloads_once_restarts_for_a_new_key_and_leaves_stopped_nodes_alone() -> None:
    base, fast = conf(variant()), conf(variant(timing={"profile": "fast"}))
    hosts = ("ctl1", "ctl2", "ctl3")
    every = set(hosts)
    running = {"ctl1": True, "ctl2": True, "ctl3": False}
    todo = corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, fast), every, set())
    assert todo.reload is not None and todo.reload[0] == "ctl1" and "token" in todo.reload[1]
    assert todo.restart == {}
    keyed = corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, base), set(), every)
    assert keyed.reload is None and keyed.restart == {"ctl1": "a new authkey", "ctl2": "a new authkey"}
    assert corosync.plan(running, dict.fromkeys(hosts, base), dict.fromkeys(hosts, base), set(), set()) == \
        type(todo)(None, {})


def test_every_phase_has_its_apply() -> None:
    assert set(APPLY) == set(PhaseKey)


def test_the_galera_plan_joins_the_rest_and_rolls_a_changed_config_writer_last() -> None:
    def st(state: str) -> GaleraState:
        return GaleraState(3, "Primary", state, True, True, "u", 10)

    nodes = ["ctl1", "ctl2", "ctl3"]
    first = galera.plan(nodes, {"ctl1": st("Synced")}, "ctl1", set())
    assert first.join == ("ctl2", "ctl3") and first.restart == () and first.synced == ("ctl1",)
    rolling = galera.plan(nodes, dict.fromkeys(nodes, st("Synced")), "ctl1", set(nodes))
    assert rolling.join == () and rolling.restart == ("ctl2", "ctl3", "ctl1")  # the primary last
    alone = galera.plan(["ctl1"], {"ctl1": st("Synced")}, "ctl1", {"ctl1"})
    assert alone.restart == () and alone.defer == ("ctl1",)  # never restart the only node

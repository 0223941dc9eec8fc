"""crm_mon XML parser, on real output (crm_simulate of the rendered CIBs)."""

from __future__ import annotations

from pathlib import Path

from hastack.components.pacemaker import parse_crm_mon, remote_strays, strays

FIXTURES = Path(__file__).parent / "fixtures"


def test_three_controllers_all_up() -> None:
    state = parse_crm_mon((FIXTURES / "crm_mon_simulated_three_controller.xml").read_text())
    assert state.online() == ("ctl1", "ctl2", "ctl3")
    assert state.stonith_enabled and state.no_quorum_policy == "stop"
    assert state.where("vip-internal") == ("ctl1",)
    assert sorted(state.where("haproxy-clone")) == ["ctl1", "ctl2", "ctl3"]
    assert state.where("fence-ctl1") == ("ctl2",)
    assert not any(r.failed for r in state.resources)


def test_seed_after_ctl1_failed() -> None:
    state = parse_crm_mon((FIXTURES / "crm_mon_simulated_seed_ctl1_failed.xml").read_text())
    assert set(state.online()) == {"ctl2", "arb1"}
    assert state.where("vip-internal") == ("ctl2",)
    assert state.where("haproxy-clone") == ("ctl2",)


def test_nodes_the_spec_dropped_are_told_apart_by_whether_they_are_online() -> None:
    """Deploy removes a dropped node from pacemaker only once it is offline; an online stranger stops it."""
    from hastack.components.pacemaker import strays

    state = parse_crm_mon((FIXTURES / "crm_mon_simulated_seed_ctl1_failed.xml").read_text())
    assert strays(state, ["ctl1", "ctl2", "arb1"]) == ((), ())
    assert strays(state, ["ctl2", "arb1"]) == (("ctl1",), ())  # ctl1 is offline here
    assert strays(state, ["ctl1", "arb1"]) == ((), ("ctl2",))


def test_the_fencing_history_says_who_was_fenced_when_and_by_whose_device() -> None:
    from datetime import UTC, datetime

    from hastack.components.pacemaker import FenceEvent, parse_fence_history

    # stonith_admin --history '*' on a lab controller after chaos host-crash fenced ctl1
    events = parse_fence_history((FIXTURES / "stonith_admin_history.xml").read_text())
    when = datetime(2026, 12, 1, 7, 20, 23, tzinfo=UTC).timestamp()
    assert events == (FenceEvent("ctl1", "reboot", "success", when, "ctl2", "pacemaker-controld.457"),)
    # crm_mon carries the same history; members are not remote nodes
    state = parse_crm_mon((FIXTURES / "crm_mon_fence_failure_recovered.xml").read_text())
    assert [(e.target, e.status) for e in state.fencing] == [("ctl1", "success"), ("ctl2", "success")]
    assert all(e.completed for e in state.fencing) and not any(n.remote for n in state.nodes)
    assert parse_crm_mon((FIXTURES / "crm_mon_simulated_three_controller.xml").read_text()).fencing == ()


def test_remote_nodes_the_spec_no_longer_has_are_strays() -> None:
    mon = parse_crm_mon((FIXTURES / "crm_mon_lab_instance_ha.xml").read_text())
    assert remote_strays(mon, ["compute1", "compute2"]) == ()
    assert remote_strays(mon, ["compute2"]) == ("compute1",)
    assert remote_strays(mon, []) == ("compute1", "compute2")  # instance HA turned off
    assert strays(mon, ["ctl1", "ctl2", "ctl3"]) == ((), ())  # remote nodes are never member strays

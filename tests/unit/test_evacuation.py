"""Instance HA's decider: fence first, then force down and evacuate; refusals with their reason."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

from hastack.agent.evacuation import (
    Action,
    Compute,
    Fencing,
    Instance,
    Member,
    Policy,
    Service,
    State,
    Step,
    decide,
    default_max_failed,
    fence_confirmed,
    parse_evacuations,
)

LAST_REPORT = 1000.0
VMS = (Instance("vm-a", "ACTIVE"), Instance("vm-b", "SHUTOFF"))
POLICY = Policy(evacuate=frozenset({"compute1", "compute2", "compute3", "compute4"}), max_failed=default_max_failed(4))


def up(name: str, instances: tuple[Instance, ...] = ()) -> Compute:
    return Compute(name, Member.ONLINE, service=Service(up=True, updated_at=LAST_REPORT + 60), instances=instances)


def dead(name: str = "compute1", member: Member = Member.OFFLINE, fenced: float | None = LAST_REPORT + 5,
         fence_failed: float | None = None, forced_down: bool = False,
         instances: tuple[Instance, ...] = VMS) -> Compute:
    return Compute(name, member, Fencing(fenced, fence_failed),
                   Service(up=False, forced_down=forced_down, updated_at=LAST_REPORT), instances)


def fleet(*failed: Compute) -> tuple[Compute, ...]:
    names = {c.name for c in failed}
    return (*failed, *(up(f"compute{i}") for i in range(1, 5) if f"compute{i}" not in names))


def test_a_healthy_fleet_needs_nothing() -> None:
    plan = decide(fleet(), POLICY)
    assert plan.actions == () and {h.state for h in plan.hosts} == {State.HEALTHY} and not plan.refusal


def test_a_fenced_host_is_forced_down_before_each_of_its_instances_is_evacuated() -> None:
    plan = decide(fleet(dead()), POLICY)
    assert plan.actions == (Action(Step.FORCE_DOWN, "compute1"), Action(Step.EVACUATE, "compute1", "vm-a"),
                            Action(Step.EVACUATE, "compute1", "vm-b"))
    assert plan.of("compute1").state is State.EVACUATING


def test_nothing_moves_while_pacemaker_still_owes_the_fence() -> None:
    # Unclean: the host failed and pacemaker has not fenced it yet, even if an older fence is on record.
    for c in (dead(member=Member.UNCLEAN), dead(member=Member.UNCLEAN, fenced=None), dead(fenced=None),
              dead(member=Member.UNKNOWN, fenced=None)):
        plan = decide(fleet(c), POLICY)
        assert plan.actions == () and plan.of("compute1").state is State.WAIT_FENCE, c
        assert "nothing moves" in plan.of("compute1").reason


def test_a_fence_older_than_the_host_s_last_report_does_not_count() -> None:
    # Fenced once, powered on again, reported, failed again: that fence says nothing about this failure.
    c = dataclasses.replace(dead(), fencing=Fencing(LAST_REPORT - 300, on_at=LAST_REPORT - 250))
    assert not fence_confirmed(c)
    plan = decide(fleet(c), POLICY)
    assert plan.actions == () and "older than nova-compute's last report" in plan.of("compute1").reason
    # Back with no power-on on record (by hand, outside its device): fenced again, not trusted.
    assert decide(fleet(dead(fenced=LAST_REPORT - 300)), POLICY).actions == (Action(Step.FENCE, "compute1"),)


def test_forcing_down_does_not_make_the_fence_look_old() -> None:
    # In the lab: fenced at 891, forced down by the evacuator at 894, and nova stamped updated_at 894.
    # The next round must keep evacuating (one refused evacuation is asked again), not wait for a fence.
    c = dead(fenced=LAST_REPORT - 3, forced_down=True)
    assert fence_confirmed(c)
    plan = decide(fleet(c), POLICY)
    assert plan.of("compute1").state is State.EVACUATING
    assert [a.step for a in plan.actions] == [Step.EVACUATE, Step.EVACUATE]  # forced down already
    # Unclean is unclean, forced down or not: a new failure is fenced again before anything moves.
    assert not fence_confirmed(dead(member=Member.UNCLEAN, fenced=LAST_REPORT - 3, forced_down=True))


def test_a_fence_in_the_same_second_as_the_last_report_counts() -> None:
    # Both times have one-second resolution; the host was off after its fence, so its report came first.
    assert fence_confirmed(dead(fenced=LAST_REPORT))
    assert not fence_confirmed(dead(fenced=LAST_REPORT - 1))


def test_a_failed_fence_moves_nothing_and_says_so() -> None:
    plan = decide(fleet(dead(fenced=None, fence_failed=LAST_REPORT + 5)), POLICY)
    assert plan.actions == () and plan.of("compute1").state is State.FENCE_FAILED
    # A success after the failure counts; a failure after an earlier success does not.
    assert decide(fleet(dead(fenced=LAST_REPORT + 9, fence_failed=LAST_REPORT + 5)), POLICY).actions
    assert not decide(fleet(dead(fenced=LAST_REPORT + 5, fence_failed=LAST_REPORT + 9)), POLICY).actions


def test_a_host_with_evacuate_false_is_forced_down_and_left_alone() -> None:
    policy = Policy(evacuate=frozenset({"compute2", "compute3", "compute4"}), max_failed=2)
    plan = decide(fleet(dead()), policy)
    assert plan.actions == (Action(Step.FORCE_DOWN, "compute1"),) and plan.of("compute1").state is State.FENCED


def test_more_failed_hosts_than_the_policy_allows_is_refused_unless_overridden() -> None:
    three = fleet(dead("compute1"), dead("compute2"), dead("compute3"))
    plan = decide(three, POLICY)
    assert plan.actions == () and "3 of 4 computes failed at once" in plan.refusal
    assert {plan.of(f"compute{i}").state for i in (1, 2, 3)} == {State.REFUSED}
    # Two of four is still a host failure each.
    assert len(decide(fleet(dead("compute1"), dead("compute2")), POLICY).actions) == 6
    forced = decide(three, Policy(POLICY.evacuate, max_failed=POLICY.max_failed, override=True))
    assert len(forced.actions) == 9
    # Fenced off by the cluster, refused: each is powered on again with its instances (as a reboot
    # brought them back before computes were fenced off), nothing forced down or moved.
    off = tuple(dataclasses.replace(c, fencing=dataclasses.replace(c.fencing, by_cluster=True)) for c in three)
    assert decide(off, POLICY).actions == tuple(Action(Step.POWER_ON, f"compute{i}") for i in (1, 2, 3))


def test_instances_already_moving_are_not_asked_again_nor_forced_down_twice() -> None:
    c = dead(forced_down=True, instances=(Instance("vm-a", "REBUILD", "rebuilding"), Instance("vm-b", "ERROR")))
    plan = decide(fleet(c), POLICY)
    assert plan.actions == (Action(Step.EVACUATE, "compute1", "vm-b"),)
    assert "1 already moving" in plan.of("compute1").reason


def test_a_host_back_keeps_evacuating_then_is_cleared_once_empty() -> None:
    back = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5),
                   Service(up=False, forced_down=True, updated_at=LAST_REPORT), VMS[:1])
    plan = decide(fleet(back), POLICY)
    assert plan.actions == (Action(Step.EVACUATE, "compute1", "vm-a"),)
    empty = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5),
                    Service(up=False, forced_down=True, updated_at=LAST_REPORT))
    plan = decide(fleet(empty), POLICY)
    assert plan.actions == (Action(Step.CLEAR, "compute1"),) and plan.of("compute1").state is State.RETURNING


def test_what_started_on_a_host_since_its_fence_stays_there_when_it_is_back() -> None:
    """The fast lab's isolation (dd1d6e5): a compute fenced by mistake was powered on with nothing that had
    run there; it ran three builds nova had placed on it, and they were evacuated from it (the next test is
    the step that did it, while pacemaker still called it offline). Back, a host keeps what launched there
    since its fence: evacuated, each left a `done` record its nova-compute, started before, never completed,
    and forced_down could not be cleared."""
    fenced = LAST_REPORT + 5
    arrived = tuple(Instance(f"vm-{k}", "ACTIVE", launched_at=fenced + 40) for k in range(3))
    back = Compute("compute1", Member.ONLINE, Fencing(fenced, by_cluster=True),
                   Service(up=True, forced_down=True, updated_at=fenced + 50), arrived)
    plan = decide(fleet(back), POLICY)
    assert plan.actions == (Action(Step.CLEAR, "compute1"),) and plan.of("compute1").state is State.RETURNING
    assert "3 instance(s) started here since the fence stay" in plan.of("compute1").reason
    # One that ran here before the fence and has not left yet still moves; the arrivals stay.
    before = Instance("vm-old", "ACTIVE", launched_at=fenced - 100)
    plan = decide(fleet(dataclasses.replace(back, instances=(*arrived, before))), POLICY)
    assert plan.actions == (Action(Step.EVACUATE, "compute1", "vm-old"),)
    assert "1 instance(s) still to move" in plan.of("compute1").reason


def test_a_compute_powered_on_since_its_fence_has_nothing_evacuated_until_a_new_fence() -> None:
    """The same run, a step earlier: powered on, compute1 booted while pacemaker still called it offline
    (its connection's starts had failed on every member), and the builds it ran then were evacuated from
    the running host. The fence it was powered on after no longer says that anything there stopped."""
    fenced = LAST_REPORT + 5
    ran = tuple(Instance(f"vm-{k}", "ACTIVE", launched_at=fenced + 30) for k in range(3))
    booted = dead(forced_down=True, instances=ran)
    booted = dataclasses.replace(booted, fencing=Fencing(fenced, by_cluster=True, on_at=fenced + 6))
    plan = decide(fleet(booted), POLICY)
    assert plan.actions == () and plan.of("compute1").state is State.WAIT_FENCE
    assert "powered on at 1011, after its last fence (1005)" in plan.of("compute1").reason
    assert not fence_confirmed(booted)
    # Dead again and fenced again: everything on it moves.
    again = dataclasses.replace(booted, fencing=Fencing(fenced + 100, by_cluster=True, on_at=fenced + 6))
    assert [str(a) for a in decide(fleet(again), POLICY).actions] == [f"evacuate compute1 vm-{k}" for k in range(3)]


def test_a_disabled_reserved_host_is_enabled_before_the_evacuations() -> None:
    reserved = Compute("compute4", Member.ONLINE, service=Service(up=True, disabled=True, updated_at=LAST_REPORT))
    policy = Policy(POLICY.evacuate, reserved=("compute4",), max_failed=2)
    plan = decide((dead(), up("compute2"), up("compute3"), reserved), policy)
    assert [str(a) for a in plan.actions] == ["force-down compute1", "enable compute4", "evacuate compute1 vm-a",
                                              "evacuate compute1 vm-b"]
    # Nothing to evacuate, nothing to enable.
    assert decide((up("compute1"), up("compute2"), up("compute3"), reserved), policy).actions == ()


def test_a_host_s_fencing_is_read_from_pacemaker_s_history() -> None:
    from pathlib import Path

    from hastack.agent.evacuation import fencing_of
    from hastack.components.pacemaker import FenceEvent, parse_fence_history

    events = parse_fence_history((Path(__file__).parent / "fixtures" / "stonith_admin_history.xml").read_text())
    assert fencing_of(events, "ctl1").done_at == events[0].completed and fencing_of(events, "ctl1").failed_at is None
    assert fencing_of(events, "compute1") == Fencing()
    # The newest of each kind counts; an "on" proves nothing stopped; a pending attempt has no time yet.
    more = (*events, FenceEvent("ctl1", "reboot", "failed", 5.0), FenceEvent("ctl1", "on", "success", 9e9),
            FenceEvent("ctl1", "reboot", "pending", None))
    # ... but is the power-on a compute the cluster fenced waits for: the cluster's own fence (client
    # pacemaker-controld) owes one until that "on"; a person's stonith_admin --fence never does.
    assert fencing_of(more, "ctl1") == Fencing(events[0].completed, 5.0, by_cluster=False, on_at=9e9)
    assert fencing_of(more[:-2], "ctl1") == Fencing(events[0].completed, 5.0, by_cluster=True)
    assert events[0].client.startswith("pacemaker-controld")
    by_hand = (FenceEvent("compute1", "off", "success", 7.0, client="stonith_admin.1234"),)
    assert fencing_of(by_hand, "compute1") == Fencing(7.0, None, by_cluster=False)


def test_nova_s_compute_services_and_servers_are_read_per_host() -> None:
    import json
    from pathlib import Path

    from hastack.agent.evacuation import parse_compute_services, parse_servers

    fixtures = Path(__file__).parent / "fixtures"
    # Captured through the lab's VIP during a chaos host-crash, microversion 2.53.
    services = parse_compute_services(json.loads((fixtures / "nova_os_services_2_53.json").read_text()))
    assert set(services) == {"compute1", "compute2"}
    assert all(s.up and not s.forced_down and not s.disabled and s.updated_at for s in services.values())
    servers = parse_servers(json.loads((fixtures / "nova_servers_detail_2_53.json").read_text()))
    # Servers still scheduling (or failed to schedule) are on no host: nothing to evacuate for them.
    assert {h: len(v) for h, v in servers.items()} == {"compute1": 4, "compute2": 4}
    assert sorted(i.status for i in servers["compute1"]) == ["ACTIVE", "ACTIVE", "ACTIVE", "BUILD"]
    # nova's launched_at: the build never ran, the others did
    assert sorted((i.status, i.launched) for i in servers["compute1"]) == [
        ("ACTIVE", True), ("ACTIVE", True), ("ACTIVE", True), ("BUILD", False)]
    assert all((i.launched_at is not None) == i.launched for i in servers["compute1"])


def test_an_instance_nova_cannot_evacuate_is_reported_not_asked_for() -> None:
    c = dead(instances=(Instance("vm-a", "ACTIVE"), Instance("vm-p", "PAUSED")))
    plan = decide(fleet(c), POLICY)
    assert [str(a) for a in plan.actions] == ["force-down compute1", "evacuate compute1 vm-a"]
    assert "nova cannot evacuate the rest (PAUSED)" in plan.of("compute1").reason


def test_an_instance_that_never_ran_is_left_in_place_and_holds_nothing_back() -> None:
    """The lab: a server building on a compute when it was fenced. nova evacuates only an instance
    launched once (it answered 409 "invalid state for 'evacuate'" at every round, even after a reset to
    error), and waiting for it to leave kept the compute off for good."""
    build = Instance("vm-c", "BUILD", "spawning", launched=False)
    erred = Instance("vm-e", "ERROR", launched=False)  # reset to error before it ever ran
    c = dead(instances=(Instance("vm-a", "ACTIVE"), build, erred))
    plan = decide(fleet(c), POLICY)
    assert [str(a) for a in plan.actions] == ["force-down compute1", "evacuate compute1 vm-a"]
    assert "2 never ran there, left in place" in plan.of("compute1").reason
    # once the one that ran is rebuilt elsewhere, the compute is powered on: the others stay on it
    moved = dataclasses.replace(_off(), instances=(build, erred))
    assert [a.step for a in decide(fleet(moved), POLICY).actions] == [Step.POWER_ON]
    # and once it is back, forced_down is cleared: nova-compute errs the build as it starts
    back = dead(member=Member.ONLINE, forced_down=True, instances=(build, erred))
    assert [a.step for a in decide(fleet(back), POLICY).actions] == [Step.CLEAR]
    # an instance in error that ran once is evacuated like any other
    assert [str(a) for a in decide(fleet(dead(instances=(Instance("vm-r", "ERROR"),))), POLICY).actions] == [
        "force-down compute1", "evacuate compute1 vm-r"]


def test_an_instance_nova_already_has_an_evacuation_of_is_not_asked_again() -> None:
    # Real records: compute1's instances evacuated at 10:28:14 and at 10:39:44; 4e6727fa was asked twice
    # 2 s apart (the second failed "already exists" on compute2 and left it in ERROR).
    doc = json.loads((Path(__file__).parent / "fixtures" / "nova_os_migrations_evacuation_2_53.json").read_text())
    since = datetime(2026, 12, 1, 10, 39, 40, tzinfo=UTC).timestamp()
    asked = parse_evacuations(doc, since)
    assert {a[:8] for a in asked} == {"4e6727fa", "85415121", "5f272f5e", "11de790f"}  # the failed one aside
    assert {a[:8] for a in parse_evacuations(doc, None)} >= {"ff72ea8b", "e39bcacd"}
    c = dataclasses.replace(dead(forced_down=True), asked=frozenset({"vm-a"}))
    plan = decide(fleet(c), POLICY)
    assert plan.actions == (Action(Step.EVACUATE, "compute1", "vm-b"),)
    assert "1 instance(s) to evacuate, 1 already moving" in plan.of("compute1").reason


def _off(**fencing: object) -> Compute:
    """compute1 fenced off by the cluster, forced down, every instance gone from it."""
    f = dataclasses.replace(Fencing(LAST_REPORT + 5, by_cluster=True), **fencing)  # type: ignore[arg-type]
    return dataclasses.replace(dead(forced_down=True, instances=()), fencing=f)


def test_a_compute_the_cluster_fenced_is_powered_on_once_its_evacuations_are_done() -> None:
    """Seen in the lab: a compute rebooted by its fence was back before its instances were rebuilt
    elsewhere; its nova-compute started before the evacuations were done, left them `done`, and nova
    refused to clear forced_down for good. So the fence is an off, and power returns only now."""
    assert Action(Step.POWER_ON, "compute1") in decide(fleet(_off()), POLICY).actions
    still = dataclasses.replace(_off(), unfinished=1)  # nova still rebuilding one elsewhere
    assert Action(Step.POWER_ON, "compute1") not in decide(fleet(still), POLICY).actions
    left = dataclasses.replace(_off(), instances=VMS[:1])  # one still to move
    assert Action(Step.POWER_ON, "compute1") not in decide(fleet(left), POLICY).actions
    # once: an "on" since the fence is on record; and never a host a person switched off
    assert Action(Step.POWER_ON, "compute1") not in decide(fleet(_off(on_at=LAST_REPORT + 30)), POLICY).actions
    assert Action(Step.POWER_ON, "compute1") not in decide(fleet(_off(by_cluster=False)), POLICY).actions


def test_a_compute_left_in_place_is_powered_on_at_once_and_cleared_with_its_instances() -> None:
    keep = dataclasses.replace(POLICY, evacuate=frozenset({"compute2", "compute3", "compute4"}))
    fenced = dataclasses.replace(dead(instances=VMS), fencing=Fencing(LAST_REPORT + 5, by_cluster=True))
    assert decide(fleet(fenced), keep).actions == (Action(Step.FORCE_DOWN, "compute1"),
                                                   Action(Step.POWER_ON, "compute1"))
    back = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5, by_cluster=True),
                   Service(up=True, forced_down=True, updated_at=LAST_REPORT + 90), VMS)
    # its instances stay: cleared, not evacuated
    assert decide(fleet(back), keep).actions == (Action(Step.CLEAR, "compute1"),)


def test_unfinished_evacuations_are_counted_from_nova_s_record() -> None:
    from hastack.agent.evacuation import parse_unfinished

    doc = {"migrations": [{"status": s, "created_at": "2026-12-01T10:32:38.000000"}
                          for s in ("pre-migrating", "done", "completed", "error", "accepted")]}
    since = datetime(2026, 12, 1, 10, 32, 35, tzinfo=UTC).timestamp()
    assert parse_unfinished(doc, since) == 2  # pre-migrating and accepted
    assert parse_unfinished(doc, since + 10) == 0  # all from before that fence


def test_evacuations_rebuilt_but_not_cleaned_up_on_the_source_are_counted() -> None:
    from hastack.agent.evacuation import parse_uncleaned

    doc = {"migrations": [{"status": s, "created_at": "2026-12-01T10:32:38.000000"}
                          for s in ("pre-migrating", "done", "done", "completed", "error")]}
    assert parse_uncleaned(doc) == 2
    # From an earlier fence of the same host too: nova refuses to clear forced_down while any is left.
    doc["migrations"].append({"status": "done", "created_at": "2026-12-01T10:20:00.000000"})
    assert parse_uncleaned(doc) == 3


def test_forced_down_is_not_cleared_until_the_host_s_nova_compute_cleaned_up() -> None:
    # nova answers 400 to forced_down=false while `done` records remain: the host waits, says why.
    back = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5, by_cluster=True),
                   Service(up=False, forced_down=True, updated_at=LAST_REPORT + 10), (), uncleaned=2)
    plan = decide(fleet(back), POLICY)
    assert plan.actions == () and plan.of("compute1").state is State.RETURNING
    assert "2 evacuated instance(s) to clean up" in plan.of("compute1").reason
    assert decide(fleet(dataclasses.replace(back, uncleaned=0)), POLICY).actions == (Action(Step.CLEAR, "compute1"),)


def test_forced_down_is_not_cleared_while_evacuations_from_the_host_run() -> None:
    back = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5, by_cluster=True),
                   Service(up=False, forced_down=True, updated_at=LAST_REPORT + 10), (), unfinished=1)
    plan = decide(fleet(back), POLICY)
    assert plan.actions == () and plan.of("compute1").state is State.EVACUATING
    assert decide(fleet(dataclasses.replace(back, unfinished=0)), POLICY).actions == (Action(Step.CLEAR, "compute1"),)


DELETING = (Instance("vm-d", "DELETED"), Instance("vm-e", "ACTIVE", "deleting"), Instance("vm-f", "SOFT_DELETED"))


def test_instances_being_deleted_do_not_keep_a_fenced_compute_off() -> None:
    """Seen in the lab: the chaos workload deleted its 20 servers on a compute just fenced; nova finishes
    such a delete only when the host's nova-compute starts again, and the host was kept off until they
    were gone: neither happened, for good."""
    off = dataclasses.replace(_off(), instances=DELETING)
    plan = decide(fleet(off), POLICY)
    assert plan.actions == (Action(Step.POWER_ON, "compute1"),)  # nothing of them evacuated
    # Beside an instance still to move, the host stays off, and the deleted ones are not counted.
    mixed = dataclasses.replace(off, instances=(*DELETING, Instance("vm-a", "ACTIVE")))
    plan = decide(fleet(mixed), POLICY)
    assert plan.actions == (Action(Step.EVACUATE, "compute1", "vm-a"),)
    assert "1 instance(s) to evacuate, 0 already moving" in plan.of("compute1").reason


def test_a_compute_back_with_only_deleted_instances_is_cleared() -> None:
    back = Compute("compute1", Member.ONLINE, Fencing(LAST_REPORT + 5, by_cluster=True),
                   Service(up=False, forced_down=True, updated_at=LAST_REPORT + 10), DELETING)
    plan = decide(fleet(back), POLICY)
    assert plan.actions == (Action(Step.CLEAR, "compute1"),) and plan.of("compute1").state is State.RETURNING


def test_a_report_stamped_after_the_off_that_holds_the_host_is_fenced_again_then_it_moves() -> None:
    """CI: compute1 fenced off at 13:08:15, nova-compute's report stamped 13:08:35 (a conductor working
    through its queue after a power loss). Pacemaker had nothing left to fence; the evacuator waited for
    a newer fence for good and the compute stayed off. Now: fenced off again, then evacuated, powered on."""
    late = dataclasses.replace(dead(fenced=LAST_REPORT - 20), fencing=Fencing(LAST_REPORT - 20, by_cluster=True))
    assert not fence_confirmed(late)
    plan = decide(fleet(late), POLICY)
    assert plan.actions == (Action(Step.FENCE, "compute1"),) and plan.of("compute1").state is State.WAIT_FENCE
    assert "stamped after the fence that holds it off" in plan.of("compute1").reason
    # The second fence is the evacuator's (stonith_admin), yet the cluster's fence still owes the power-on.
    from hastack.agent.evacuation import fencing_of
    from hastack.components.pacemaker import FenceEvent
    events = (FenceEvent("compute1", "reboot", "success", LAST_REPORT - 20, client="pacemaker-controld.478"),
              FenceEvent("compute1", "off", "success", LAST_REPORT + 2, client="stonith_admin.9001"))
    again = dataclasses.replace(late, fencing=fencing_of(events, "compute1"))
    assert again.fencing == Fencing(LAST_REPORT + 2, None, by_cluster=True)
    assert [a.step for a in decide(fleet(again), POLICY).actions] == [Step.FORCE_DOWN, Step.EVACUATE, Step.EVACUATE]
    gone = dataclasses.replace(again, instances=(), service=Service(up=False, forced_down=True, updated_at=LAST_REPORT))
    assert decide(fleet(gone), POLICY).actions == (Action(Step.POWER_ON, "compute1"),)
    # Not when the host was powered on through its device since (it may really be running: the cluster
    # fences it when it fails), nor when it is unclean (pacemaker's fence is coming), nor a failed fence.
    for c in (dataclasses.replace(late, fencing=Fencing(LAST_REPORT - 20, on_at=LAST_REPORT - 10, by_cluster=True)),
              dataclasses.replace(late, member=Member.UNCLEAN),
              dataclasses.replace(late, fencing=Fencing(LAST_REPORT - 20, LAST_REPORT - 5, by_cluster=True))):
        assert Step.FENCE not in [a.step for a in decide(fleet(c), POLICY).actions], c
    # A cluster fence before the last power-on no longer owes one (a person's later off stays off).
    by_hand = (events[0], FenceEvent("compute1", "on", "success", LAST_REPORT - 10),
               FenceEvent("compute1", "off", "success", LAST_REPORT + 2, client="stonith_admin.9001"))
    assert not fencing_of(by_hand, "compute1").by_cluster

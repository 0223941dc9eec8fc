"""The recovery deciders: facts in, steps and evidence out. Grastate and galera_recovery text is real output."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hastack.components import galera as galera_facts
from hastack.components import mongo_config
from hastack.components.galera import GaleraState, parse_transfer_bytes
from hastack.components.mongodb import MongoMemberState, ReplSet
from hastack.components.rabbitmq import RabbitCluster, parse_boot_state
from hastack.components.systemd import UnitAge, parse_unit_age
from hastack.recovery import galera, mongodb, rabbitmq
from hastack.recovery.decision import Outcome

FIX = Path(__file__).parent / "fixtures"
UUID = "98abc1f2-ca5e-11f1-a1d6-9e4dcb8c8a30"


def gra(seqno: int, safe: bool = False, uuid: str = UUID) -> galera_facts.GraState:
    return galera_facts.GraState(uuid, seqno, safe)


def crashed(name: str, recovered: int | None, uuid: str = UUID) -> galera.NodeFacts:
    """A node after a power cut: grastate seqno -1, the position only --wsrep-recover knows."""
    return galera.NodeFacts(name, grastate=gra(-1), recovered=None if recovered is None else galera_facts.Position(
        uuid, recovered))


def synced(name: str, size: int = 3) -> galera.NodeFacts:
    return galera.NodeFacts(name, running=True, state=GaleraState(size, "Primary", "Synced", True, True, UUID, 50))


def steps(d: galera.Decision) -> list[str]:
    return [str(a) for a in d.actions]


def test_grastate_and_recovered_position_parse_real_output() -> None:
    g = galera_facts.parse_grastate((FIX / "galera_grastate_crashed.dat").read_text())
    assert g == galera_facts.GraState("4c0f8993-e8da-11f1-b975-b39782a683a2", -1, False) and g.has_history
    p = galera_facts.parse_recovered((FIX / "galera_recovery_stdout.txt").read_text())
    assert p == galera_facts.Position("4c0f8993-e8da-11f1-b975-b39782a683a2", 252)
    assert galera_facts.parse_grastate("") is None
    assert galera_facts.parse_recovered("WSREP: Failed to start mysqld for wsrep recovery") is None


def test_full_outage_bootstraps_the_most_advanced_node_then_joins_the_rest() -> None:
    nodes = (crashed("ctl1", 2230), crashed("ctl2", 2239), crashed("ctl3", 2231))
    d = galera.decide(nodes, writer="ctl1")
    assert d.outcome is Outcome.BOOTSTRAP and d.chosen == "ctl2"
    assert steps(d) == ["mark-safe ctl2", "bootstrap ctl2", "join ctl1", "join ctl3"]
    assert "seqno 2239" in d.reason and "wsrep-recover" in d.reason
    assert [r.seqno for r in d.evidence] == [2230, 2239, 2231] and d.evidence[1].note == "chosen"


def test_a_tie_goes_to_the_node_galera_marked_safe_then_to_the_writer() -> None:
    safe = galera.NodeFacts("ctl3", grastate=gra(40, safe=True))
    d = galera.decide((galera.NodeFacts("ctl1", grastate=gra(40)), galera.NodeFacts("ctl2", grastate=gra(40)), safe),
                      writer="ctl1")
    assert d.chosen == "ctl3" and steps(d)[0] == "bootstrap ctl3"  # already safe: no mark-safe step
    d = galera.decide((galera.NodeFacts("ctl1", grastate=gra(40)), galera.NodeFacts("ctl2", grastate=gra(40))),
                      writer="ctl2")
    assert d.chosen == "ctl2"


def test_an_unreadable_node_is_waited_for_then_refused_unless_forced() -> None:
    nodes = (crashed("ctl1", 10), galera.NodeFacts("ctl2", reachable=False, error="no route"), crashed("ctl3", 9))
    assert galera.decide(nodes, writer="ctl1", patient=True).outcome is Outcome.WAIT
    d = galera.decide(nodes, writer="ctl1")
    assert d.refused and "ctl2 cannot be read" in d.reason and not d.actions
    forced = galera.decide(nodes, writer="ctl1", force=True)
    assert forced.chosen == "ctl1" and steps(forced) == ["mark-safe ctl1", "bootstrap ctl1", "join ctl3"]


def test_a_failed_wsrep_recover_is_refused_unless_forced() -> None:
    nodes = (crashed("ctl1", 10), crashed("ctl2", None), crashed("ctl3", 9))
    assert galera.decide(nodes, writer="ctl1").refused
    assert galera.decide(nodes, writer="ctl1", force=True).chosen == "ctl1"


def test_two_histories_need_a_person() -> None:
    other = "11111111-2222-3333-4444-555555555555"
    nodes = (crashed("ctl1", 10), crashed("ctl2", 90, uuid=other), crashed("ctl3", 12))
    d = galera.decide(nodes, writer="ctl1", force=True)
    assert d.refused and "different histories" in d.reason
    assert galera.decide(nodes, writer="ctl1", choose="ctl1").refused  # a choice, but not forced
    # The person's choice: ctl1's history; the most advanced node of it (ctl3) is still ahead, so
    # ctl1 needs the force it was given; ctl2 joins by a full state transfer.
    d = galera.decide(nodes, writer="ctl1", choose="ctl1", force=True)
    assert d.chosen == "ctl1" and steps(d) == ["mark-safe ctl1", "bootstrap ctl1", "join ctl2", "join ctl3"]
    assert "chosen by the operator" in d.reason


def test_choosing_a_node_behind_needs_force() -> None:
    nodes = (crashed("ctl1", 10), crashed("ctl2", 12))
    d = galera.decide(nodes, writer="ctl1", choose="ctl1")
    assert d.refused and "2 transaction(s) behind ctl2" in d.reason
    assert galera.decide(nodes, writer="ctl1", choose="ctl1", force=True).chosen == "ctl1"
    assert galera.decide(nodes, writer="ctl1", choose="ctl9").refused


def test_nodes_starting_on_their_own_get_a_grace_then_are_stopped_to_be_read() -> None:
    starting = tuple(galera.NodeFacts(n, running=True, grastate=gra(-1), starting_s=s)
                     for n, s in (("ctl1", 12.0), ("ctl2", 11.0)))
    d = galera.decide(starting, writer="ctl1")
    assert d.outcome is Outcome.WAIT and "pc.recovery" in d.reason
    late = tuple(galera.NodeFacts(n.name, running=True, grastate=n.grastate, starting_s=90.0) for n in starting)
    d = galera.decide(late, writer="ctl1")
    assert d.outcome is Outcome.READ and steps(d) == ["read ctl1", "read ctl2"]


def test_a_node_whose_unit_is_starting_before_mariadbd_runs_is_waited_for_then_stopped_not_left_running() -> None:
    """The three-controller lab's power-loss (8967681): recover read ctl1's position itself and
    bootstrapped it while ctl2's and ctl3's units were still in their own --wsrep-recover (no mariadbd
    process yet, so "stopped"); they went on to restore their old primary component together: two
    primary components. A starting unit is a starting node, process or not."""
    def starting(name: str, s: float) -> galera.NodeFacts:
        return galera.NodeFacts(name, running=False, grastate=gra(-1), starting_s=s)

    nodes = (crashed("ctl1", 13276), starting("ctl2", 20.0), starting("ctl3", 5.0))
    d = galera.decide(nodes, writer="ctl1")
    assert d.outcome is Outcome.WAIT and "ctl2, ctl3 starting" in d.reason and not d.actions
    # As it was seen then: each position read (recover's --wsrep-recover beside the unit's own): still a wait.
    read = tuple(dataclasses.replace(n, recovered=galera_facts.Position(UUID, 13276)) for n in nodes)
    assert galera.decide(read, writer="ctl1").outcome is Outcome.WAIT
    # Past the grace, still starting: stopped to be read, never left to start beside a bootstrap.
    late = (crashed("ctl1", 13276), starting("ctl2", 90.0), starting("ctl3", 75.0))
    d = galera.decide(late, writer="ctl1")
    assert d.outcome is Outcome.READ and steps(d) == ["read ctl2", "read ctl3"]
    # A starting node whose position is known (a clean stop) is stopped before the bootstrap too.
    clean = galera.NodeFacts("ctl3", running=False, grastate=gra(13270), starting_s=90.0)
    d = galera.decide((crashed("ctl1", 13276), crashed("ctl2", 13276), clean), writer="ctl1")
    assert d.outcome is Outcome.BOOTSTRAP and steps(d) == [
        "stop ctl3", "mark-safe ctl1", "bootstrap ctl1", "join ctl2", "join ctl3"]


def test_a_primary_component_is_joined_not_replaced() -> None:
    astray = galera.NodeFacts("ctl3", running=True, state=GaleraState(1, "non-Primary", "Initialized", False, True,
                                                                      UUID, 48))
    d = galera.decide((synced("ctl1", 2), synced("ctl2", 2), astray), writer="ctl1", arbitrator="arb1")
    assert d.outcome is Outcome.REJOIN and steps(d) == ["stop ctl3", "join ctl3", "garbd arb1"]
    down = galera.decide((synced("ctl1", 2), synced("ctl2", 2), galera.NodeFacts("ctl3")), writer="ctl1")
    assert steps(down) == ["join ctl3"]
    joining = galera.NodeFacts("ctl3", running=True)  # runs, no SQL yet: a state transfer
    assert galera.decide((synced("ctl1"), joining), writer="ctl1").outcome is Outcome.WAIT
    healthy = galera.decide(tuple(synced(n) for n in ("ctl1", "ctl2", "ctl3")), writer="ctl1")
    assert healthy.outcome is Outcome.HEALTHY and not healthy.actions


def test_a_silent_joiner_is_restarted_only_when_no_member_sends_it_a_snapshot() -> None:
    joiner = galera.NodeFacts("ctl1", running=True, silent_s=40.0)  # runs, no SQL answer
    assert galera.decide((joiner, synced("ctl2")), writer="ctl1").outcome is Outcome.WAIT
    stuck = dataclasses.replace(joiner, silent_s=300.0)
    d = galera.decide((stuck, synced("ctl2")), writer="ctl1", arbitrator="arb1")
    assert d.outcome is Outcome.REJOIN and steps(d) == ["stop ctl1", "join ctl1"]
    assert "ctl1 ran 300 s answering nothing and receiving nothing" in d.reason and "wedged" in d.reason
    assert d.evidence[0].state == "running, no answer for 300 s"
    # The same silence while a donor streams a snapshot to it is a long SST, not a stall.
    donor = galera.NodeFacts("ctl2", running=True,
                             state=GaleraState(3, "Primary", galera.DONATING, False, True, UUID, 50))
    assert galera.decide((stuck, donor), writer="ctl1").outcome is Outcome.WAIT
    assert galera.decide((stuck, synced("ctl2")), writer="ctl1", stall_s=600).outcome is Outcome.WAIT


def test_transfer_bytes_parse_ss() -> None:
    assert parse_transfer_bytes((FIX / "ss_tin_state_transfer.txt").read_text()) == 100000
    assert parse_transfer_bytes("") is None


def test_unit_age_parses_systemctl_show() -> None:
    active = parse_unit_age((FIX / "systemd_unit_age_active.txt").read_text())
    assert active == UnitAge("active", 288.7) and active.starting_s is None  # 11829.42 - 11540.757733
    assert parse_unit_age((FIX / "systemd_unit_age_inactive.txt").read_text()) == UnitAge("inactive", None)
    starting = parse_unit_age("ActiveState=activating\nInactiveExitTimestampMonotonic=5000000\nNow=65.5\n")
    assert starting.starting_s == 60.5
    assert parse_unit_age("") == UnitAge("unknown", None)
    # A start job waiting behind another unit's (systemd-run --no-block -p After=..., in a lab host).
    queued = parse_unit_age((FIX / "systemd_unit_age_queued.txt").read_text())
    assert queued == UnitAge("inactive", None, 11815.93) and queued.starting_s == 11815.93


def test_a_unit_queued_to_start_on_a_booting_host_is_a_starting_node() -> None:
    """After a power loss, sshd can answer before mariadb.service's start job has run: the unit is
    still "inactive". Taken for stopped, its position would be read beside the unit's own
    --wsrep-recover and it would be left to start beside a bootstrap. Its job says otherwise."""
    booting = FIX.joinpath("systemd_unit_age_queued.txt").read_text().replace("Now=11815.93", "Now=6.20")
    age = parse_unit_age(booting)
    assert age.state == "inactive" and age.starting_s == 6.2
    nodes = (crashed("ctl1", 13276), crashed("ctl2", 13276),
             galera.NodeFacts("ctl3", running=False, grastate=gra(-1), starting_s=age.starting_s))
    d = galera.decide(nodes, writer="ctl1")
    assert d.outcome is Outcome.WAIT and "ctl3 starting" in d.reason and not d.actions
    # Queued since a boot long ago (a start blocked behind another unit): stopped (the job cancelled), then read.
    stuck = parse_unit_age(FIX.joinpath("systemd_unit_age_queued.txt").read_text())
    d = galera.decide((*nodes[:2], dataclasses.replace(nodes[2], starting_s=stuck.starting_s)), writer="ctl1")
    assert d.outcome is Outcome.READ and steps(d) == ["read ctl3"]
    # With no job it is stopped: not a starting node.
    assert parse_unit_age(booting.replace("Job=1674", "Job=")).starting_s is None


def test_no_history_is_a_first_deploy_not_a_recovery() -> None:
    d = galera.decide((galera.NodeFacts("ctl1"), galera.NodeFacts("ctl2")), writer="ctl1")
    assert d.refused and "hastack deploy" in d.reason


# -- rabbitmq ------------------------------------------------------------------------------------

def view(*running: str, partitions: tuple[str, ...] = ()) -> RabbitCluster:
    nodes = tuple(f"rabbit@{n}" for n in running)
    return RabbitCluster(nodes, nodes, (), partitions, (), nodes)


def rnode(name: str, unit: str = "active", v: RabbitCluster | None = None, reachable: bool = True
          ) -> rabbitmq.NodeFacts:
    return rabbitmq.NodeFacts(name, reachable, unit, v)


def test_rabbit_whole_cluster_is_healthy() -> None:
    v = view("ctl1", "ctl2", "ctl3")
    d = rabbitmq.decide(tuple(rnode(n, v=v) for n in ("ctl1", "ctl2", "ctl3")))
    assert d.outcome is Outcome.HEALTHY


def test_rabbit_nodes_that_gave_up_waiting_are_force_booted_one_then_started() -> None:
    d = rabbitmq.decide((rnode("ctl1", "failed"), rnode("ctl2", "failed"), rnode("ctl3", "inactive")))
    assert [str(a) for a in d.actions] == ["force-boot ctl1", "start ctl1", "start ctl2", "start ctl3"]
    booting = rabbitmq.decide((rnode("ctl1", "activating"), rnode("ctl2", "activating")))
    assert booting.outcome is Outcome.WAIT
    half = rabbitmq.decide((rnode("ctl1", "activating"), rnode("ctl2", "failed")))
    assert [str(a) for a in half.actions] == ["start ctl2"]


def test_rabbit_unreachable_node_blocks_a_force_boot_unless_forced() -> None:
    nodes = (rnode("ctl1", "failed"), rnode("ctl2", "unknown", reachable=False))
    assert rabbitmq.decide(nodes, patient=True).outcome is Outcome.WAIT
    assert rabbitmq.decide(nodes).refused
    assert [str(a) for a in rabbitmq.decide(nodes, force=True).actions] == ["force-boot ctl1", "start ctl1"]


def test_no_node_answering_is_waited_for_while_patient_then_refused() -> None:
    """CI: 68 s after a power loss, SSH to every booting controller took over 5 s while recover looked at
    rabbitmq; it refused ("no rabbitmq node can be reached") though the chaos run's grace said wait."""
    gone = tuple(rnode(n, "unknown", reachable=False) for n in ("ctl1", "ctl2", "ctl3"))
    waiting = rabbitmq.decide(gone, patient=True)
    assert waiting.outcome is Outcome.WAIT and "ctl1, ctl2, ctl3" in waiting.reason
    assert rabbitmq.decide(gone).refused
    members = tuple(mongodb.NodeFacts(n, reachable=False) for n in PORTS)
    assert mongodb.decide(members, None, PORTS, patient=True).outcome is Outcome.WAIT
    assert mongodb.decide(members, None, PORTS).refused


def test_rabbit_starts_stopped_nodes_and_forgets_a_gone_one() -> None:
    v = view("ctl1", "ctl2")
    d = rabbitmq.decide((rnode("ctl1", v=v), rnode("ctl2", v=v), rnode("ctl3", "failed")))
    assert [str(a) for a in d.actions] == ["start ctl3"]
    members = RabbitCluster(v.running, ("rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"), (), (), (), v.serving)
    d = rabbitmq.decide((rnode("ctl1", v=members), rnode("ctl2", v=members), rnode("ctl3", reachable=False)),
                        forget=("ctl3",))
    assert [str(a) for a in d.actions] == ["forget rabbit@ctl3 (on ctl1)"]
    assert rabbitmq.decide((rnode("ctl1", v=v),), forget=("ctl9",)).refused


def test_rabbit_partition_keeps_the_larger_side() -> None:
    big, small = view("ctl1", "ctl2", partitions=("rabbit@ctl1",)), view("ctl3", partitions=("rabbit@ctl3",))
    d = rabbitmq.decide((rnode("ctl1", v=big), rnode("ctl2", v=big), rnode("ctl3", v=small)))
    assert d.outcome is Outcome.REPAIR and [str(a) for a in d.actions] == ["restart ctl3"]


def test_rabbit_partition_healed_but_on_record_restarts_the_nodes_that_hold_it() -> None:
    """The lab after repeated management cuts: every node ran with every other, rabbit@ctl3 still listed
    ctl1 and ctl2 as partitioned, and the rule above kept all three and restarted none, every round."""
    whole = view("ctl1", "ctl2", "ctl3")
    held = view("ctl1", "ctl2", "ctl3", partitions=("rabbit@ctl1", "rabbit@ctl2"))
    d = rabbitmq.decide((rnode("ctl1", v=whole), rnode("ctl2", v=whole), rnode("ctl3", v=held)))
    assert d.outcome is Outcome.REPAIR and [str(a) for a in d.actions] == ["restart ctl3"]
    assert "on record on ctl3" in d.reason
    every = rabbitmq.decide(tuple(rnode(n, v=held) for n in ("ctl1", "ctl2", "ctl3")))
    # One a round, not the first that serves: two of three down at once pause the third (pause_minority).
    assert [str(a) for a in every.actions] == ["restart ctl2"]
    alone = rabbitmq.decide((rnode("ctl1", v=held), rnode("ctl2", v=whole), rnode("ctl3", v=whole)))
    assert [str(a) for a in alone.actions] == ["restart ctl1"]


def test_rabbit_stalled_node_is_restarted_not_waited_on() -> None:
    """The lab's deadlock: ctl2's resume after a pause failed (incompatible_feature_flags) and left
    its VM up with the app stopped; ctl1 booted and waited for ctl2's tables for good."""
    stalled = dataclasses.replace(rnode("ctl2"), stalled=True)
    d = rabbitmq.decide((rnode("ctl1", "activating"), stalled))
    assert d.outcome is Outcome.REPAIR and [str(a) for a in d.actions] == ["restart ctl2"]
    assert d.evidence[1].unit == "active (app stopped)"
    with_down = rabbitmq.decide((rnode("ctl1", "failed"), stalled))
    assert [str(a) for a in with_down.actions] == ["restart ctl2", "start ctl1"]
    v = view("ctl1")
    serving = rabbitmq.decide((rnode("ctl1", v=v), stalled))
    assert [str(a) for a in serving.actions] == ["restart ctl2"]
    # Not stalled (booting, or no answer yet): waited on as before.
    assert rabbitmq.decide((rnode("ctl1", v=v), rnode("ctl2"))).outcome is Outcome.WAIT


def test_rabbit_boot_state_parses_the_eval_output() -> None:
    assert parse_boot_state("{false,false}\n") == (False, False)
    assert parse_boot_state("{true,false}") == (True, False)
    assert parse_boot_state("{badrpc,nodedown}") is None
    assert parse_boot_state("") is None


# -- mongodb -------------------------------------------------------------------------------------

PORTS = {"ctl1": "10.0.0.1:27017", "ctl2": "10.0.0.2:27017", "arb1": "10.0.0.3:27017"}


def rs(*states: str) -> ReplSet:
    return ReplSet("rs0", tuple(MongoMemberState(a, s, s != "(not reachable/healthy)")
                                for a, s in zip(PORTS.values(), states, strict=True)))


def test_mongo_starts_members_that_are_down_and_waits_for_an_election() -> None:
    nodes = (mongodb.NodeFacts("ctl1", unit="active"), mongodb.NodeFacts("ctl2", unit="failed"),
             mongodb.NodeFacts("arb1", unit="active"))
    d = mongodb.decide(nodes, rs("PRIMARY", "(not reachable/healthy)", "ARBITER"), PORTS)
    assert d.outcome is Outcome.REPAIR and [str(a) for a in d.actions] == ["start ctl2"]
    assert d.actions[0] == mongodb.Action(mongodb.Step.START, "ctl2")
    up = tuple(mongodb.NodeFacts(n.name, unit="active") for n in nodes)
    assert mongodb.decide(up, rs("SECONDARY", "SECONDARY", "ARBITER"), PORTS).outcome is Outcome.WAIT
    assert mongodb.decide(up, rs("PRIMARY", "SECONDARY", "ARBITER"), PORTS).outcome is Outcome.HEALTHY


def test_mongo_priority_change_bumps_the_version_and_refuses_nonsense() -> None:
    config: dict[str, Any] = {"_id": "rs0", "version": 3, "members": [
        {"_id": 0, "host": "10.0.0.1:27017", "priority": 2}, {"_id": 1, "host": "10.0.0.2:27017", "priority": 1},
        {"_id": 2, "host": "10.0.0.3:27017", "arbiterOnly": True, "priority": 0}]}
    new = mongo_config.with_priority(config, "10.0.0.2", 3)
    assert new["version"] == 4 and new["members"][1]["priority"] == 3 and config["members"][1]["priority"] == 1
    with pytest.raises(mongo_config.PriorityError, match="arbiter"):
        mongo_config.with_priority(config, "10.0.0.3:27017", 1)
    with pytest.raises(mongo_config.PriorityError, match="not a member"):
        mongo_config.with_priority(config, "10.0.0.9", 1)
    with pytest.raises(mongo_config.PriorityError, match="no member could be elected"):
        mongo_config.with_priority(mongo_config.with_priority(config, "10.0.0.1", 0), "10.0.0.2", 0)


def test_mongo_settings_follow_the_spec_but_leave_members_alone() -> None:
    config: dict[str, Any] = {"_id": "rs0", "version": 7, "members": [
        {"_id": 0, "host": "10.0.0.1:27017", "priority": 5}],
        "settings": {"electionTimeoutMillis": 10000, "heartbeatIntervalMillis": 2000, "chainingAllowed": True}}
    want = {"electionTimeoutMillis": 1000, "heartbeatIntervalMillis": 250}
    new = mongo_config.with_settings(config, want)
    assert new is not None and new["version"] == 8
    assert new["settings"] == {**want, "chainingAllowed": True}  # what the spec does not set is kept
    assert new["members"] == config["members"]  # a priority moved by `hastack mongo priority` stays
    assert config["settings"]["electionTimeoutMillis"] == 10000  # the live config is not touched
    assert mongo_config.with_settings(new, want) is None  # nothing to change: no reconfig
    # Deploy's one step at a time: the settings first, then nothing left when the members match.
    step = mongo_config.next_reconfig_step(config, want, config["members"], "10.0.0.1:27017")
    assert step is not None and step[0].startswith("settings ") and step[1] == new
    assert mongo_config.next_reconfig_step(new, want, config["members"], "10.0.0.1:27017") is None


def test_mongo_member_replaced_one_voting_change_at_a_time() -> None:
    live: dict[str, Any] = {"_id": "rs0", "version": 4, "members": [
        {"_id": 0, "host": "10.0.0.1:27017", "priority": 2}, {"_id": 1, "host": "10.0.0.2:27017", "priority": 1},
        {"_id": 2, "host": "10.0.0.3:27017", "priority": 1}]}
    # ctl3 died for good; the spec now names ctl4 in its place.
    desired = [{"_id": 0, "host": "10.0.0.1:27017", "priority": 2}, {"_id": 1, "host": "10.0.0.2:27017", "priority": 1},
               {"_id": 2, "host": "10.0.0.4:27017", "priority": 1}]
    first = mongo_config.next_membership_step(live, desired, "10.0.0.1:27017")
    assert first is not None and first[0] == "removed 10.0.0.3:27017" and first[1] is not None
    assert [m["host"] for m in first[1]["members"]] == ["10.0.0.1:27017", "10.0.0.2:27017"]
    assert first[1]["version"] == 5
    second = mongo_config.next_membership_step(first[1], desired, "10.0.0.1:27017")
    assert second is not None and second[0] == "added 10.0.0.4:27017" and second[1] is not None
    added = second[1]["members"][-1]
    assert added == {"_id": 3, "host": "10.0.0.4:27017", "priority": 1}  # a fresh _id, never a reused one
    assert mongo_config.next_membership_step(second[1], desired, "10.0.0.1:27017") is None
    # The primary is never dropped from under the set: step it down first.
    with pytest.raises(mongo_config.MembershipError, match="primary"):
        mongo_config.next_membership_step(live, desired, "10.0.0.3:27017")


def test_mongo_member_replaced_in_a_primary_arbiter_set_joins_at_priority_0_first() -> None:
    """The seed topology: MongoDB refused adding an electable member to a primary+arbiter set
    in one reconfig (NewReplicaSetConfigurationIncompatible, seen in the lab)."""
    p, s2, new_host, arb = "10.0.0.1:27017", "10.0.0.2:27017", "10.0.0.4:27017", "10.0.0.3:27017"
    live: dict[str, Any] = {"_id": "rs0", "version": 4, "members": [
        {"_id": 0, "host": p, "priority": 3}, {"_id": 1, "host": s2, "priority": 1},
        {"_id": 2, "host": arb, "arbiterOnly": True, "priority": 0}]}
    desired = [live["members"][0], {"_id": 1, "host": new_host, "priority": 1}, live["members"][2]]
    removed = mongo_config.next_membership_step(live, desired, p)
    assert removed is not None and removed[1] is not None and removed[0] == f"removed {s2}"
    joining = mongo_config.next_membership_step(removed[1], desired, p)
    assert joining is not None and joining[1] is not None and "priority 0" in joining[0]
    member = joining[1]["members"][-1]
    assert member["host"] == new_host and member["priority"] == 0 and mongo_config.JOINING_TAG in member["tags"]
    # Not caught up yet: wait, change nothing.
    wait = mongo_config.next_membership_step(joining[1], desired, p, {new_host: "STARTUP2"})
    assert wait is not None and wait[1] is None and "STARTUP2" in wait[0]
    done = mongo_config.next_membership_step(joining[1], desired, p, {new_host: "SECONDARY"})
    assert done is not None and done[1] is not None
    final = done[1]["members"][-1]
    assert final["priority"] == 1 and "tags" not in final and done[1]["version"] == joining[1]["version"] + 1
    assert mongo_config.next_membership_step(done[1], desired, p, {new_host: "SECONDARY"}) is None

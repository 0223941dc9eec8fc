"""The pacemaker repair decider over crm_mon output captured in the lab."""

from __future__ import annotations

from pathlib import Path

from hastack.components.pacemaker import parse_crm_mon
from hastack.recovery.decision import Outcome
from hastack.recovery.pacemaker import Cleanup, Step, decide, settled

FIXTURES = Path(__file__).parent / "fixtures"
LAB = ("ctl1", "ctl2", "ctl3")
SEED = ("ctl1", "ctl2", "arb1")


def mon(name: str, edit: tuple[str, str] | None = None) -> str:
    text = (FIXTURES / name).read_text()
    if edit:
        assert edit[0] in text
        text = text.replace(*edit)
    return text


# The healthy lab with ctl2's haproxy instance stopped by a failed start: what CI's power-loss run
# left (the clone instance lines and the failure's fields as crm_mon 2.1.5 prints them).
HAPROXY_ON_CTL2 = ('''      <resource id="haproxy" resource_agent="systemd:haproxy" role="Started" active="true" orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="1">
        <node name="ctl2" id="2" cached="true"/>
      </resource>''', '''      <resource id="haproxy" resource_agent="systemd:haproxy" role="Stopped" active="false" orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" nodes_running_on="0"/>''')  # noqa: E501
FAILURE = ("  </node_history>\n", '''  </node_history>
  <failures>
    <failure op_key="haproxy_start_0" node="ctl2" exitstatus="error" exitreason="" exitcode="1" call="41" status="complete" last-rc-change="2026-12-01 22:29:20Z" queued="0" exec="1911" interval="0" task="start"/>
  </failures>
''')  # noqa: E501


def stopped_haproxy(with_failure: bool = True) -> str:
    text = mon("crm_mon_lab_healthy.xml", HAPROXY_ON_CTL2)
    return text.replace(*FAILURE) if with_failure else text


def test_a_healthy_cluster_and_a_recovered_failure_need_nothing() -> None:
    assert decide(parse_crm_mon(mon("crm_mon_lab_healthy.xml")), LAB).outcome is Outcome.HEALTHY
    # A fence device's failure on record while it runs again: pacemaker recovered it by itself.
    recovered = parse_crm_mon(mon("crm_mon_fence_failure_recovered.xml"))
    assert recovered.failures and decide(recovered, SEED).outcome is Outcome.HEALTHY


def test_a_failed_start_holding_a_clone_instance_stopped_is_cleaned_up() -> None:
    d = decide(parse_crm_mon(stopped_haproxy()), LAB)
    assert d.outcome is Outcome.REPAIR
    assert d.actions == (Cleanup(Step.CLEANUP, "ctl2", resource="haproxy"),)
    assert str(d.actions[0]) == "cleanup haproxy on ctl2"
    assert {r.node: r.failed for r in d.evidence}["ctl2"] == "haproxy start: error"
    # The instance stopped with no failure on record is pacemaker's own doing (a node down, a ban): left alone.
    assert decide(parse_crm_mon(stopped_haproxy(with_failure=False)), LAB).outcome is Outcome.HEALTHY


def test_while_pacemaker_stops_a_failed_instance_it_waits() -> None:
    # Right after the failed start crm_mon shows the instance FAILED on ctl2 (active, failed) until
    # pacemaker has stopped it: nothing to clean up yet, and not healthy either.
    failing = stopped_haproxy().replace(HAPROXY_ON_CTL2[1], HAPROXY_ON_CTL2[0].replace(
        'active="true" orphaned="false" blocked="false" managed="true" failed="false"',
        'active="true" orphaned="false" blocked="false" managed="true" failed="true"'))
    d = decide(parse_crm_mon(failing), LAB)
    assert d.outcome is Outcome.WAIT and d.reason == "pacemaker is recovering haproxy-clone on ctl2"


def test_fence_devices_failed_everywhere_are_cleaned_up_on_every_node() -> None:
    # Real: the lab's power switch was down; every device's start failed on every node that may run it.
    d = decide(parse_crm_mon(mon("crm_mon_fence_switch_down.xml")), SEED)
    assert d.outcome is Outcome.REPAIR
    assert {(a.resource, a.node) for a in d.actions} == {
        ("fence-ctl2", "ctl1"), ("fence-arb1", "ctl1"), ("fence-ctl2", "arb1"), ("fence-ctl1", "arb1"),
        ("fence-ctl1", "ctl2"), ("fence-arb1", "ctl2")}


def test_a_start_that_fails_again_after_its_cleanup_is_refused_with_the_reason() -> None:
    d = decide(parse_crm_mon(stopped_haproxy()), LAB, frozenset({("haproxy", "ctl2")}))
    assert d.outcome is Outcome.REFUSE and not d.actions
    assert "haproxy failed to start on ctl2 again after a cleanup" in d.reason
    assert "crm_resource --cleanup --resource haproxy --node ctl2" in d.reason


def test_without_a_view_or_quorum_it_waits_then_refuses() -> None:
    assert decide(None, LAB).outcome is Outcome.WAIT
    assert decide(None, LAB, patient=False).outcome is Outcome.REFUSE
    no_quorum = parse_crm_mon(stopped_haproxy().replace('with_quorum="true"', 'with_quorum="false"'))
    assert decide(no_quorum, LAB).outcome is Outcome.WAIT  # no cleanup without quorum


def test_settled_once_it_runs_again_or_failed_again() -> None:
    cleaned = (Cleanup(Step.CLEANUP, "ctl2", resource="haproxy"),)
    assert settled(parse_crm_mon(mon("crm_mon_lab_healthy.xml")), cleaned)  # runs on ctl2 again
    assert settled(parse_crm_mon(stopped_haproxy()), cleaned)  # failed again: the next look refuses
    assert not settled(parse_crm_mon(stopped_haproxy(with_failure=False)), cleaned)  # still starting

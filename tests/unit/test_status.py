"""Status verdicts: facts (parsed from real lab output) in, rows out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from bson import json_util

from hastack.components.corosync import parse_links, parse_quorum
from hastack.components.galera import parse_wsrep_status
from hastack.components.haproxy import parse_show_stat
from hastack.components.instance_ha import parse_state
from hastack.components.mongodb import parse_replset_status
from hastack.components.network import parse_addresses
from hastack.components.openstack import parse_api_check
from hastack.components.pacemaker import parse_crm_mon
from hastack.components.rabbitmq import parse_cluster_status, parse_quorum_queues
from hastack.components.systemd import active
from hastack.lab.fence import lab_fencing
from hastack.lab.layout import layout
from hastack.spec.load import load_spec
from hastack.spec.model import EVERY_SERVICE, Spec
from hastack.status.model import Facts, Row, galera_writer, host_view, verdict
from tests.helpers import SEED, variant

FIX = Path(__file__).parent / "fixtures"


def text(name: str) -> str:
    return (FIX / name).read_text()


def healthy_facts() -> Facts:
    """What the probes of the healthy three-controller lab returned (ctl1 holds the VIP)."""
    rows = [tuple(line.split("\t", 1)) for line in text("galera_wsrep_status.tsv").splitlines()]
    gal = parse_wsrep_status(rows)  # type: ignore[arg-type]
    ctl1_addrs = parse_addresses(text("ip_o_4_addr.txt"))
    stats = parse_show_stat(text("haproxy_show_stat_openstack.csv"))
    links = parse_links(text("corosync_cfgtool_s.txt"))
    return Facts(
        quorum=parse_quorum(text("corosync_quorumtool_s.txt")),
        links={"ctl1": links},
        pacemaker=parse_crm_mon(text("crm_mon_lab_healthy.xml")),
        galera={"ctl1": gal, "ctl2": gal, "ctl3": gal},
        rabbit=parse_cluster_status(text("rabbitmq_cluster_status.json")),
        rabbit_queues=parse_quorum_queues(text("rabbitmq_quorum_leaders_after_power_loss.tsv"))[2:],
        mongo=parse_replset_status(json_util.loads(text("mongo_replsetgetstatus.json"))),
        haproxy={"ctl1": stats, "ctl2": stats, "ctl3": stats},
        addresses={"ctl1": ctl1_addrs},
        openstack=parse_api_check(text("openstack_api_check.json")),
    )


def spec() -> Spec:
    # The fixtures are from a lab running all eight OpenStack services.
    s = variant(openstack={"services": list(EVERY_SERVICE)})
    return lab_fencing(s, layout(s))


def rows_by_name(facts: Facts) -> dict[str, Row]:
    return {r.component: r for r in verdict(spec(), facts)}


def test_healthy_lab_is_healthy_everywhere() -> None:
    rows = verdict(spec(), healthy_facts())
    assert [r.component for r in rows] == ["hosts", "corosync", "pacemaker", "vip", "galera", "rabbitmq", "mongodb",
                                           "haproxy", "openstack"]
    assert all(r.healthy for r in rows), [r for r in rows if not r.healthy]
    openstack = next(r for r in rows if r.component == "openstack")
    assert openstack.summary.startswith("API backends up 99/99; token 294 ms, keystone 200 130 ms")
    assert "heat 200 351 ms, horizon 200 52 ms; nova-compute up 2/2" in openstack.summary
    haproxy = next(r for r in rows if r.component == "haproxy")
    assert "API backends with a server up 11/11" in haproxy.summary and not haproxy.notes
    # A service listed but not run (HA705): its frontend is reported, not judged.
    more = spec().model_copy(update={"haproxy": spec().haproxy.model_copy(
        update={"services": (*spec().haproxy.services, "nova-spicehtml5proxy")})})
    noted = next(r for r in verdict(more, healthy_facts()) if r.component == "haproxy")
    assert noted.healthy and "nova-spicehtml5proxy" in noted.notes[0] and "nova-api" not in noted.notes[0]
    galera = next(r for r in rows if r.component == "galera")
    assert "writer ctl1" in galera.summary and "size 3/3" in galera.summary


def test_an_api_down_behind_the_vip_or_refusing_tokens_is_a_problem() -> None:
    f = healthy_facts()
    ctl2_down = {h: tuple(dataclasses.replace(s, status="DOWN") if (s.proxy, s.server) == ("glance-api-internal",
                                                                                          "ctl2") else s
                          for s in servers) for h, servers in f.haproxy.items()}
    row = rows_by_name(dataclasses.replace(f, haproxy=ctl2_down))["openstack"]
    assert not row.healthy and row.problems == ("glance-api down on ctl2",)
    no_token = dataclasses.replace(f, openstack=parse_api_check('{"error": "no token: HTTP 503", "token_ms": 3}'))
    assert rows_by_name(no_token)["openstack"].problems == ("through the VIP: no token: HTTP 503",)
    silent = dataclasses.replace(f, openstack=None, errors={"openstack": "ctl1: timed out"})
    assert rows_by_name(silent)["openstack"].problems == ("ctl1: timed out",)


def test_a_compute_whose_nova_compute_stopped_reporting_is_a_problem() -> None:
    f = healthy_facts()
    assert f.openstack is not None and "nova-compute up 2/2" in rows_by_name(f)["openstack"].summary
    down = dataclasses.replace(f, openstack=dataclasses.replace(f.openstack, computes={"compute1": "down"}))
    row = rows_by_name(down)["openstack"]
    assert not row.healthy and "nova-compute up 0/2" in row.summary
    assert row.problems == ("nova-compute on compute1: down", "nova-compute on compute2: not registered")


def test_host_view() -> None:
    view = {h.host: h for h in host_view(spec(), healthy_facts())}
    assert view["ctl1"].vips == "internal" and view["ctl2"].vips == "-"
    assert view["ctl1"].mongodb == "PRIMARY" and view["ctl3"].mongodb == "SECONDARY"
    assert view["ctl2"].rabbitmq == "running" and view["compute1"].galera == "-"
    assert view["ctl1"].pacemaker in ("DC", "online")


def test_unreachable_host_and_missing_galera_node() -> None:
    f = dataclasses.replace(healthy_facts(), unreachable={"ctl3": "timeout"},
                            galera={"ctl1": healthy_facts().galera["ctl1"], "ctl2": healthy_facts().galera["ctl2"]})
    rows = {r.component: r for r in verdict(spec(), f)}
    assert not rows["hosts"].healthy and "ctl3: timeout" in rows["hosts"].problems
    assert not rows["galera"].healthy and "ctl3: not running" in rows["galera"].problems


def test_a_galera_node_that_answers_nothing_is_not_called_down() -> None:
    f = healthy_facts()
    f = dataclasses.replace(f, galera={**f.galera, "ctl1": None}, galera_silent=frozenset({"ctl1"}))
    row = rows_by_name(f)["galera"]
    assert not row.healthy and "ctl1=silent" in row.summary
    assert "ctl1: running, answers nothing (wedged, or receiving a snapshot)" in row.problems


def test_the_writer_is_haproxys_first_up_backup_while_the_writer_is_down() -> None:
    f = healthy_facts()
    stats = tuple(dataclasses.replace(s, status="DOWN") if s.proxy.startswith("galera") and s.server == "ctl1"
                  else s for s in f.haproxy["ctl1"])
    assert galera_writer(f) == "ctl1"
    assert galera_writer(dataclasses.replace(f, haproxy={"ctl1": stats})) == "ctl2"
    none_up = tuple(dataclasses.replace(s, status="DOWN") for s in stats)
    assert galera_writer(dataclasses.replace(f, haproxy={"ctl1": none_up})) is None


def test_two_vip_holders_is_a_problem() -> None:
    f = healthy_facts()
    f = dataclasses.replace(f, addresses={"ctl1": f.addresses["ctl1"], "ctl2": f.addresses["ctl1"]})
    row = next(r for r in verdict(spec(), f) if r.component == "vip")
    assert not row.healthy and "2 holders" in row.problems[0]


def test_fence_device_not_running_is_a_problem() -> None:
    f = dataclasses.replace(healthy_facts(), pacemaker=parse_crm_mon(text("crm_mon_fence_not_installed.xml")))
    row = next(r for r in verdict(spec(), f) if r.component == "pacemaker")
    assert not row.healthy
    assert any(p.startswith("stopped: fence-ctl1") for p in row.problems)


def test_degraded_quorum_queue_and_partition() -> None:
    smoke = parse_quorum_queues(text("rabbitmq_quorum_leaders_after_power_loss.tsv"))[2]
    c = json.loads(text("rabbitmq_cluster_status.json"))
    c["partitions"] = {"rabbit@ctl3": ["rabbit@ctl1"]}
    f = dataclasses.replace(healthy_facts(), rabbit_queues=(dataclasses.replace(
        smoke, online=("rabbit@ctl1", "rabbit@ctl2")),), rabbit=parse_cluster_status(json.dumps(c)))
    row = next(r for r in verdict(spec(), f) if r.component == "rabbitmq")
    assert not row.healthy
    assert any("hastack.smoke (rabbit@ctl3)" in p for p in row.problems)
    assert any(p.startswith("partitioned") for p in row.problems)


def test_leaderless_quorum_queue_is_a_problem_though_every_node_runs() -> None:
    # Real output after a power loss of every node: every member online, two queues with no leader.
    f = dataclasses.replace(healthy_facts(), rabbit_queues=parse_quorum_queues(
        text("rabbitmq_quorum_leaders_after_power_loss.tsv")))
    row = next(r for r in verdict(spec(), f) if r.component == "rabbitmq")
    assert not row.healthy
    assert any(p.startswith("quorum queues with no leader: hastack.chaos.") for p in row.problems)
    assert "leaders: ctl2 1" in row.summary


def test_no_answer_is_never_healthy() -> None:
    rows = verdict(spec(), Facts(errors={"mongodb": "ctl1: auth failed"}))
    bad = {r.component for r in rows if not r.healthy}
    assert {"corosync", "pacemaker", "vip", "galera", "rabbitmq", "mongodb", "haproxy"} <= bad
    assert next(r for r in rows if r.component == "mongodb").problems == ("ctl1: auth failed",)


def seed_pacemaker_row(fixture: str) -> Row:
    s = load_spec(SEED)
    f = Facts(pacemaker=parse_crm_mon(text(fixture)))
    return next(r for r in verdict(lab_fencing(s, layout(s)), f) if r.component == "pacemaker")


def test_failure_since_recovered_is_a_note_not_a_problem() -> None:
    # crm_resource --fail on a running fence device: pacemaker restarted it, crm_mon still lists the failure.
    row = seed_pacemaker_row("crm_mon_fence_failure_recovered.xml")
    assert row.healthy and row.problems == ()
    assert row.notes == ("recovered since: fence-ctl1 asyncmon on arb1: complete (Simulated failure) "
                         "at 2026-11-25 10:10:25Z",)


def test_fence_devices_stopped_after_switch_outage_are_problems() -> None:
    # The lab power switch away for a minute: every device failed its start on every allowed node.
    row = seed_pacemaker_row("crm_mon_fence_switch_down.xml")
    assert not row.healthy and row.notes == ()
    assert "stopped: fence-arb1, fence-ctl1, fence-ctl2" in row.problems
    assert "fence-ctl1 start on arb1: complete (error)" in row.problems


def test_rabbit_node_up_without_its_app_is_a_problem() -> None:
    # Captured on the lab: ctl2 rebooted by fencing, its Erlang VM up, the rabbit app stuck in
    # global:sync (rabbitmq-server#6034): in running_nodes, with no listener.
    stuck = parse_cluster_status(text("rabbitmq_cluster_status_boot_stuck.json"))
    assert "rabbit@ctl2" in stuck.running and stuck.serving == ("rabbit@ctl1", "rabbit@ctl3")
    f = dataclasses.replace(healthy_facts(), rabbit=stuck)
    row = next(r for r in verdict(spec(), f) if r.component == "rabbitmq")
    assert not row.healthy and row.summary.startswith("2/3 running")
    assert "up but not serving AMQP (rabbit app not started): rabbit@ctl2" in row.problems
    assert {h.host: h.rabbitmq for h in host_view(spec(), f)}["ctl2"] == "BOOTING"


def _iha(state: str, reason: str, at: float, now: float = 1000.0, refusal: str = "", error: str = "") -> Row:
    """The instance-ha row for the seed with instance HA, compute1 in `state` in the evacuator's last round."""
    ev = parse_state(json.dumps({"at": at, "refusal": refusal, "done": [], "error": error,
                                 "hosts": {"compute1": {"state": state, "reason": reason},
                                           "compute2": {"state": "healthy", "reason": "online"}}}))
    f = dataclasses.replace(healthy_facts(), evacuator=ev, now=now)
    return next(r for r in verdict(variant(SEED, instance_ha={"enabled": True}), f) if r.component == "instance-ha")


def test_instance_ha_row_shows_each_compute_as_the_evacuator_last_saw_it() -> None:
    row = _iha("healthy", "online", at=998.0)
    assert row.healthy and "computes 2 healthy" in row.summary
    waiting = _iha("waiting for fence", "unclean; pacemaker has not fenced it yet: nothing moves", at=998.0)
    assert not waiting.healthy
    assert waiting.problems == ("compute1: waiting for fence: unclean; pacemaker has not fenced it yet: nothing moves",)
    refused = _iha("refused", "2 of 2 computes failed at once", at=998.0, refusal="2 of 2 computes failed at once")
    assert "2 of 2 computes failed at once" in refused.problems


def test_an_evacuator_that_stopped_writing_is_a_problem() -> None:
    row = _iha("healthy", "online", at=900.0, now=1000.0)
    assert not row.healthy and row.problems == ("the evacuator's last round was 100 s ago",)
    f = healthy_facts()  # no state file anywhere
    none = next(r for r in verdict(variant(SEED, instance_ha={"enabled": True}), f) if r.component == "instance-ha")
    assert not none.healthy and "has written no state" in none.problems[0]


def test_an_evacuator_whose_rounds_fail_says_why() -> None:
    row = _iha("healthy", "online", at=998.0, error="ConnectFailure: Unable to establish connection")
    assert not row.healthy
    assert row.problems == ("the evacuator's last round failed: ConnectFailure: Unable to establish connection",)


def test_a_healthy_lab_with_instance_ha_is_healthy() -> None:
    # pacemaker's view and the evacuator's state from the lab with instance HA on (computes as
    # pacemaker_remote nodes, the evacuator on ctl1), after compute1 was fenced and came back.
    ev = parse_state(text("evacuator_state_healthy.json"))
    f = dataclasses.replace(healthy_facts(), pacemaker=parse_crm_mon(text("crm_mon_lab_instance_ha.xml")),
                            evacuator=ev, now=ev.at + 2)
    rows = {r.component: r for r in verdict(variant(instance_ha={"enabled": True}), f)}
    assert rows["pacemaker"].healthy and "computes 2/2" in rows["pacemaker"].summary, rows["pacemaker"]
    assert rows["instance-ha"].healthy and "computes 2 healthy" in rows["instance-ha"].summary
    assert "evacuator on ctl1" in rows["instance-ha"].summary
    down = dataclasses.replace(f, pacemaker=parse_crm_mon(text("crm_mon_lab_instance_ha.xml").replace(
        '<node name="compute1" id="compute1" online="true"', '<node name="compute1" id="compute1" online="false"')))
    row = next(r for r in verdict(variant(instance_ha={"enabled": True}), down) if r.component == "pacemaker")
    assert not row.healthy and "computes offline: compute1" in row.problems


def test_a_rabbit_node_serving_amqp_over_tls_only_is_serving() -> None:
    # With TLS the broker's only AMQP listener is `amqp/ssl` on 5671 (`listeners.tcp = none`); the first
    # lab run with TLS called every node "not serving AMQP". Derived from the healthy capture: the plain
    # listener replaced by the TLS one as cluster_status lists it.
    tls = text("rabbitmq_cluster_status.json").replace('"port":5672,"protocol":"amqp"',
                                                      '"port":5671,"protocol":"amqp/ssl"')
    assert '"amqp/ssl"' in tls and '"protocol":"amqp"' not in tls
    status = parse_cluster_status(tls)
    assert status.serving == ("rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3")


def test_an_openstack_daemon_that_exited_is_a_problem() -> None:
    """The keepalived-quorum lab (`--full`): nova-scheduler on ctl2 lost its database connection while it
    started (a VIP flap) and exited with status 0; its unit did not restart it and status, judging APIs
    only, said healthy. Each controller's daemons are read with `systemctl is-active` (real output, ctl2)."""
    units = ("keystone", "nova-scheduler", "nova-conductor", "cinder-scheduler", "heat-engine")
    ctl2 = active(units).parse(0, text("systemctl_is_active_ctl2.txt"))
    assert ctl2 == {"keystone": "active", "nova-scheduler": "active", "nova-conductor": "active",
                    "cinder-scheduler": "inactive", "heat-engine": "inactive"}
    running = dict.fromkeys(units, "active")
    ok = rows_by_name(dataclasses.replace(healthy_facts(), daemons={"ctl1": running, "ctl3": running}))["openstack"]
    assert ok.healthy and "daemons running 10/10" in ok.summary
    row = rows_by_name(dataclasses.replace(healthy_facts(), daemons={"ctl1": running, "ctl2": ctl2}))["openstack"]
    assert not row.healthy and "daemons running 8/10" in row.summary
    assert row.problems == ("ctl2: not running: cinder-scheduler (inactive), heat-engine (inactive)",)


def test_is_active_output_that_does_not_line_up_is_no_fact() -> None:
    with pytest.raises(ValueError, match="2 states for 3 units"):
        active(("a", "b", "c")).parse(3, "active\ninactive\n")

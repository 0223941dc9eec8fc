"""Parsers of the probes' output, on real output captured from the three-controller lab."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from bson import json_util

from hastack.components.corosync import parse_links, parse_quorum
from hastack.components.fact import FactFailed
from hastack.components.galera import leavers, parse_wsrep_status, parse_wsrep_text
from hastack.components.haproxy import parse_show_stat
from hastack.components.mongodb import parse_replset_status
from hastack.components.network import parse_addresses
from hastack.components.openstack import parse_cell_hosts
from hastack.components.pacemaker import parse_crm_mon
from hastack.components.rabbitmq import (
    conf_needs_restart,
    membership_changes,
    parse_cluster_status,
    parse_quorum_queues,
    parse_status,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_corosync_quorum() -> None:
    q = parse_quorum(fixture("corosync_quorumtool_s.txt"))
    assert q.quorate
    assert (q.expected_votes, q.total_votes) == (3, 3)
    assert sorted(q.names) == ["ctl1", "ctl2", "ctl3"]


def test_corosync_links_both_rings_connected() -> None:
    links = parse_links(fixture("corosync_cfgtool_s.txt"))
    # The local node is not a peer; two peers on each of the two knet links.
    assert sorted((ls.link, ls.nodeid) for ls in links) == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert all(ls.connected for ls in links)


def test_corosync_link_down_is_seen() -> None:
    up, down_ = "nodeid:          3:\tconnected", "nodeid:          3:\tdisconnected"
    text = fixture("corosync_cfgtool_s.txt").replace(up, down_, 1)
    down = [ls for ls in parse_links(text) if not ls.connected]
    assert [(ls.link, ls.nodeid) for ls in down] == [(0, 3)]


def test_galera_status() -> None:
    rows = [tuple(line.split("\t", 1)) for line in fixture("galera_wsrep_status.tsv").splitlines()]
    st = parse_wsrep_status(rows)  # type: ignore[arg-type]
    assert st.cluster_size == 3 and st.primary and st.local_state == "Synced" and st.ready
    # The same rows as `mariadb -N -B` prints them, parsed from the text by the probes' one parser.
    assert parse_wsrep_text(fixture("galera_wsrep_status.tsv")) == st
    assert parse_wsrep_text("") == parse_wsrep_status([])
    assert st.incoming == ("10.77.0.13:0", "10.77.0.11:0", "10.77.0.12:0")


def test_galera_leavers_are_the_spec_hosts_no_longer_members() -> None:
    incoming = parse_wsrep_text(fixture("galera_wsrep_status.tsv")).incoming
    hosts = {"10.77.0.11": "ctl1", "10.77.0.12": "ctl2", "10.77.0.13": "ctl3", "10.77.0.21": "compute1"}
    assert leavers(incoming, hosts, ["ctl1", "ctl2", "ctl3"]) == ((), ())
    assert leavers(incoming, hosts, ["ctl1", "ctl2", "compute1"]) == (("ctl3",), ())
    # An address the spec does not know is reported, never stopped.
    assert leavers(incoming, {k: v for k, v in hosts.items() if v != "ctl3"}, ["ctl1", "ctl2"]) == (
        (), ("10.77.0.13:0",))


def test_rabbit_membership_changes_name_joiners_and_leavers() -> None:
    three = parse_cluster_status(fixture("rabbitmq_cluster_status.json"))  # ctl1, ctl2, ctl3
    want = {"rabbit@ctl1", "rabbit@ctl2", "rabbit@compute1"}
    now = dataclasses.replace(three, running=(*three.running, "rabbit@compute1"),
                              disk_nodes=(*three.disk_nodes, "rabbit@compute1"))
    assert not now.complete(want) and now.complete(want, exact=False)
    assert membership_changes(want, three, now) == (["rabbit@compute1"], ["rabbit@ctl3"])
    # A first deploy: nothing ran before, so nobody "joined" queues that do not exist yet.
    assert membership_changes(want, None, now) == ([], ["rabbit@ctl3"])
    assert membership_changes(set(three.running), three, three) == ([], [])


def test_rabbit_peer_list_change_restarts_nothing() -> None:
    old = "cluster_name = x\ncluster_formation.classic_config.nodes.1 = rabbit@ctl1\nnet_ticktime = 10\n"
    assert not conf_needs_restart(old, old.replace("rabbit@ctl1", "rabbit@compute1"))
    assert conf_needs_restart(old, old.replace("net_ticktime = 10", "net_ticktime = 20"))
    assert conf_needs_restart("", old)  # the old file could not be read


def test_haproxy_stat() -> None:
    servers = parse_show_stat(fixture("haproxy_show_stat.csv"))
    galera = [s for s in servers if s.proxy.startswith("galera")]
    assert [s.server for s in galera if not s.backup] == ["ctl1"]  # one writer, the others backups
    assert sorted(s.server for s in galera if s.backup) == ["ctl2", "ctl3"]
    assert all(s.status.startswith("UP") for s in galera)
    assert not any(s.server in ("FRONTEND", "BACKEND") for s in servers)


def test_vip_is_a_secondary_address() -> None:
    addrs = parse_addresses(fixture("ip_o_4_addr.txt"))
    assert IPv4Address("10.77.0.10") in addrs and IPv4Address("10.77.1.11") in addrs
    assert IPv4Address("10.77.0.12") not in addrs


def test_rabbit_cluster_and_queues() -> None:
    c = parse_cluster_status(fixture("rabbitmq_cluster_status.json"))
    assert c.complete({"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"})
    assert c.ram_nodes == () and c.partitions == () and c.alarms == ()
    lost_a, lost_b, smoke = parse_quorum_queues(fixture("rabbitmq_quorum_leaders_after_power_loss.tsv"))
    # Raft's own answer: after the power loss two queues had no leader, the long-lived one had.
    assert smoke.name == "hastack.smoke" and smoke.leader == "rabbit@ctl2" and not smoke.degraded
    assert smoke.members == ("rabbit@ctl1", "rabbit@ctl3", "rabbit@ctl2") and smoke.vhost == "/"
    assert lost_a.leader == "" and lost_b.leader == "" and lost_a.name.startswith("hastack.chaos.")
    line = "/\tq1\trabbit@ctl1\trabbit@ctl1,rabbit@ctl2,rabbit@ctl3\trabbit@ctl1,rabbit@ctl2\n"
    assert parse_quorum_queues(line)[0].degraded


def test_rabbit_eval_closing_ok_is_not_a_queue() -> None:
    assert parse_quorum_queues("ok\n") == ()


def test_rabbit_status_one_call_with_a_node_down() -> None:
    # Real output of the status eval on ctl3 while ctl1 was powered off by a chaos run.
    st = parse_status(fixture("rabbitmq_status_ctl1_down.tsv"))
    c = st.cluster
    assert c.running == ("rabbit@ctl2", "rabbit@ctl3") and c.serving == c.running
    assert c.members == {"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"} and c.ram_nodes == ()
    assert not c.complete({"rabbit@ctl1", "rabbit@ctl2", "rabbit@ctl3"})
    assert c.partitions == () and c.alarms == ()
    assert len(st.queues) > 20 and all(q.degraded and "rabbit@ctl1" in q.members for q in st.queues)
    assert all(q.leader in ("rabbit@ctl2", "rabbit@ctl3") for q in st.queues)


def test_rabbit_status_partition_and_alarm_lines() -> None:
    text = ("node\trunning\trabbit@ctl1,rabbit@ctl2\nnode\tpartitioned\trabbit@ctl2\n"
            "alarm\trabbit@ctl1\tmemory\nok\n")
    st = parse_status(text)
    assert st.cluster.partitions == ("rabbit@ctl2",) and st.cluster.alarms == ("rabbit@ctl1: memory",)
    assert st.queues == () and st.cluster.serving == ()


def test_rabbit_status_without_a_cluster_view_is_no_answer() -> None:
    with pytest.raises(ValueError):
        parse_status("ok\n")


def test_mongo_replset() -> None:
    rs = parse_replset_status(json_util.loads(fixture("mongo_replsetgetstatus.json")))
    assert rs.name == "rs0" and rs.primary == "10.77.0.11:27017" and rs.healthy()
    assert [m.state for m in rs.members] == ["PRIMARY", "SECONDARY", "SECONDARY"]


def test_crm_mon_live_lab_fencing_running() -> None:
    pm = parse_crm_mon(fixture("crm_mon_lab_healthy.xml"))
    fences = [r for r in pm.resources if r.agent == "stonith:fence_hastack_lab"]
    assert len(fences) == 3 and all(r.active for r in fences)
    assert pm.failures == ()


def test_crm_mon_failed_actions() -> None:
    pm = parse_crm_mon(fixture("crm_mon_fence_not_installed.xml"))
    assert {(a.resource, a.node) for a in pm.failures} >= {("fence-ctl2", "ctl1"), ("fence-ctl1", "ctl3")}
    assert all(a.status == "Not installed" and "fence_ipmilan" in a.reason for a in pm.failures)
    assert not any(r.active for r in pm.resources if r.id.startswith("fence-"))


def test_nova_cell_hosts_are_the_hostname_column_of_list_hosts() -> None:
    assert parse_cell_hosts(0, fixture("nova_cell_list_hosts.txt")) == {"compute1", "compute2"}
    header_only = "\n".join([*fixture("nova_cell_list_hosts.txt").splitlines()[:3], "+--+"])
    assert parse_cell_hosts(0, header_only) == frozenset()  # no compute mapped yet
    with pytest.raises(FactFailed):
        parse_cell_hosts(1, "")


def test_nova_compute_states_are_read_from_os_services() -> None:
    from hastack.components.openstack_api import computes

    body = fixture("nova_os_services.json").encode()
    assert computes(body) == {"compute1": "up", "compute2": "up"}
    other = b'{"services": [{"binary": "nova-conductor", "host": "ctl1", "state": "up"}]}'
    assert computes(other) == {}

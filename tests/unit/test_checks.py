"""Every rule fires on a spec with its pitfall; the recommended example is clean."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from hastack.checks import RULES, Severity, run_checks
from hastack.spec.load import load_spec
from hastack.spec.model import Spec
from tests.helpers import SEED, THREE, raw, spec_from, variant


def codes(spec: Spec) -> set[str]:
    return {f.code for f in run_checks(spec) if f.waived is None}


def _two_node() -> Spec:
    data = raw(SEED)
    data["nodes"] = [n for n in data["nodes"] if n["name"] != "arb1"]
    data["galera"].pop("arbitrator")
    data["mongodb"].pop("arbiter")
    return spec_from(data)


def _bare_two_node() -> Spec:
    """Two controllers and nothing else on the management network: each pings only the other."""
    data = raw(SEED)
    data["nodes"] = [n for n in data["nodes"] if n["name"] in ("ctl1", "ctl2")]
    data["galera"].pop("arbitrator")
    data["mongodb"].pop("arbiter")
    return spec_from(data)


def _edit(fn: Callable[[dict[str, Any]], None], path: Any = THREE) -> Callable[[], Spec]:
    def build() -> Spec:
        data = copy.deepcopy(raw(path))
        fn(data)
        return spec_from(data)
    return build


def _nine_mongo_voters(data: dict[str, Any]) -> None:
    for i in range(4, 10):
        data["nodes"].append({"name": f"ctl{i}", "roles": ["controller"], "address": f"10.77.0.{30 + i}",
                              "heartbeat": [f"10.77.1.{30 + i}", f"10.77.2.{30 + i}"],
                              "fence": {"agent": "fence_ipmilan", "params": {"ip": f"10.77.9.{30 + i}"}}})
    data["mongodb"]["members"] = [{"node": f"ctl{i}"} for i in range(1, 10)]


def _drop_fence(data: dict[str, Any]) -> None:
    del data["nodes"][0]["fence"]


def _drop_compute_fence(data: dict[str, Any]) -> None:
    del data["nodes"][3]["fence"]


def _single_link(data: dict[str, Any]) -> None:
    data["networks"]["heartbeat"] = data["networks"]["heartbeat"][:1]
    for n in data["nodes"]:
        if "heartbeat" in n:
            n["heartbeat"] = n["heartbeat"][:1]


def _overlapping_links(data: dict[str, Any]) -> None:
    data["networks"]["heartbeat"][1] = "10.77.1.0/25"
    for n in data["nodes"]:
        if "heartbeat" in n:
            n["heartbeat"][1] = n["heartbeat"][0].replace("10.77.1.", "10.77.1.1")[:11]


def _four_voters(data: dict[str, Any]) -> None:
    data["nodes"].append({"name": "arb1", "roles": ["arbitrator"], "address": "10.77.0.14",
                          "heartbeat": ["10.77.1.14", "10.77.2.14"], "fence": data["nodes"][0]["fence"]})
    data["galera"]["arbitrator"] = "arb1"


def _fence_password(data: dict[str, Any]) -> None:
    data["nodes"][0]["fence"]["params"]["password"] = "secret123"


def _busy_arbiter(data: dict[str, Any]) -> None:
    data["rabbitmq"]["nodes"] = ["ctl1", "ctl2", "arb1"]


def _lonely_haproxy(data: dict[str, Any]) -> None:
    data["haproxy"] = {"nodes": ["ctl1"]}


def _removed_keyword(data: dict[str, Any]) -> None:
    data["haproxy"] = {"defaults": {"extra": ["contimeout 50000"]}}


def _removed_endpoint(data: dict[str, Any]) -> None:
    data["haproxy"] = {"services": ["keystone", "glance-registry"]}


def _orphan_endpoint(data: dict[str, Any]) -> None:
    data["openstack"]["services"] = ["keystone", "nova", "placement", "neutron", "glance"]
    data["haproxy"] = {"services": ["keystone", "cinder-api"]}


def _port_clash(data: dict[str, Any]) -> None:
    data["haproxy"] = {"stats_port": 5000}


def _garbd_on_data(data: dict[str, Any]) -> None:
    data["galera"]["nodes"] = ["ctl1", "ctl2"]
    data["galera"]["arbitrator"] = "ctl2"
    data["galera"]["donor"] = None


def _mongo_arbiter_on_member(data: dict[str, Any]) -> None:
    data["mongodb"]["arbiter"] = "ctl2"


def _mongo_two_members(data: dict[str, Any]) -> None:
    data["mongodb"]["members"] = data["mongodb"]["members"][:2]


def _no_network_nodes(data: dict[str, Any]) -> None:
    for n in data["nodes"]:
        n["roles"] = [r for r in n["roles"] if r != "network"]


# code -> a spec that has the pitfall
CASES: dict[str, Callable[[], Spec]] = {
    "HA101": _two_node,
    "HA102": _edit(_four_voters),
    "HA103": lambda: variant(corosync={"nodes": ["ctl1"]}),
    "HA104": _edit(_single_link),
    "HA105": _edit(_overlapping_links),
    "HA106": lambda: variant(corosync={"transport": "udpu"}),
    "HA107": lambda: variant(corosync={"crypto": False}),
    "HA110": lambda: variant(pacemaker={"fencing": False}),
    "HA111": lambda: variant(pacemaker={"no_quorum_policy": "ignore"}),
    "HA112": _edit(_drop_fence),
    "HA113": _two_node,
    "HA114": _edit(_fence_password),
    "HA120": lambda: variant(vip_manager="keepalived"),
    "HA121": _edit(_lonely_haproxy),
    "HA122": lambda: variant(vip_manager="keepalived-quorum"),
    "HA123": _bare_two_node,
    "HA130": _edit(_drop_compute_fence),
    "HA131": _edit(_busy_arbiter, SEED),
    "HA201": lambda: variant(galera={"nodes": ["ctl1", "ctl2"], "donor": "ctl2"}),
    "HA202": lambda: load_spec(SEED),
    "HA203": lambda: variant(galera={"writers": "all"}),
    "HA204": _edit(_garbd_on_data),
    "HA205": lambda: variant(galera={"health_check": "tcp"}),
    "HA206": lambda: variant(galera={"ignore_split_brain": True}),
    "HA207": lambda: variant(timing={"galera_keepalive_ms": 2000}),
    "HA208": lambda: variant(galera={"arbitrator": "compute1"}),
    "HA209": lambda: variant(galera={"sst_method": "xtrabackup"}),
    "HA210": lambda: variant(galera={"sst_method": "rsync"}),
    "HA211": lambda: variant(galera={"donor": "ctl1"}),
    "HA301": lambda: variant(rabbitmq={"queue_type": "mirrored"}),
    "HA302": lambda: variant(rabbitmq={"ram_nodes": ["ctl3"]}),
    "HA303": lambda: load_spec(SEED),
    "HA304": lambda: variant(rabbitmq={"nodes": ["ctl1", "ctl2", "ctl3", "compute1"]}),
    "HA305": lambda: variant(rabbitmq={"partition_handling": "ignore"}),
    "HA306": lambda: variant(rabbitmq={"guest_user": True}),
    "HA307": lambda: variant(rabbitmq={"via_haproxy": True}),
    "HA308": lambda: variant(rabbitmq={"queue_type": "classic"}),
    "HA309": lambda: variant(rabbitmq={"nodes": ["ctl1", "ctl2"], "partition_handling": "pause_minority"}),
    "HA401": _edit(_mongo_arbiter_on_member),
    "HA402": lambda: load_spec(SEED),
    "HA403": _edit(_mongo_two_members),
    "HA404": _edit(_mongo_two_members),
    "HA405": lambda: variant(mongodb={"via_haproxy": True}),
    "HA406": _edit(_nine_mongo_voters),
    "HA501": _edit(_removed_keyword),
    "HA502": _edit(_removed_endpoint),
    "HA503": _edit(_orphan_endpoint),
    "HA504": _edit(_port_clash),
    "HA601": lambda: variant(timing={"corosync_consensus_ms": 3000}),
    "HA602": lambda: variant(timing={"haproxy_inter_ms": 2000, "haproxy_fall": 5}),
    "HA603": lambda: variant(timing={"pacemaker_monitor_s": 30}),
    "HA604": lambda: variant(timing={"mongo_heartbeat_ms": 5000}),
    "HA605": lambda: variant(timing={"galera_suspect_ms": 1000, "galera_keepalive_ms": 300}),
    "HA606": lambda: variant(timing={"haproxy_fall": 1}),
    "HA701": lambda: variant(openstack={"neutron": {"l3_ha": False}}),
    "HA702": lambda: variant(openstack={"neutron": {"l3_ha": False, "allow_automatic_l3agent_failover": False}}),
    "HA703": _edit(_no_network_nodes),
    "HA704": lambda: variant(openstack={"neutron": {"max_l3_agents_per_router": 1}}),
    "HA705": lambda: variant(openstack={"services": ["keystone", "glance", "nova", "placement", "nova-spice"]}),
    "HA706": lambda: variant(waivers=[]),  # the examples' cheap hashes, their waiver dropped
}


def test_enough_rules() -> None:
    assert len(RULES) >= 15


def test_every_rule_has_a_case() -> None:
    assert set(RULES) == set(CASES)


@pytest.mark.parametrize("code", sorted(CASES))
def test_rule_fires_on_its_pitfall(code: str) -> None:
    assert code not in codes(load_spec(THREE))
    assert code in codes(CASES[code]())


def test_three_controller_is_clean() -> None:
    # One waived finding: its cheap password hashes, a choice the spec explains.
    assert [(f.code, f.waived is not None) for f in run_checks(load_spec(THREE))] == [("HA706", True)]


def test_seed_teaches_with_warnings_only() -> None:
    findings = [f for f in run_checks(load_spec(SEED)) if f.waived is None]
    assert {f.code for f in findings} == {"HA202", "HA303", "HA402"}
    assert all(f.severity is Severity.WARNING for f in findings)
    assert all(f.why and f.fix for f in findings)


def test_fast_profile_is_consistent() -> None:
    assert codes(variant(timing={"profile": "fast"})) == set()


def test_findings_sorted_errors_first() -> None:
    findings = run_checks(variant(pacemaker={"fencing": False}, rabbitmq={"nodes": ["ctl1", "ctl2"]}))
    sev = [f.severity for f in findings]
    assert sev.index(Severity.ERROR) < sev.index(Severity.WARNING)


def test_waiver_unblocks_only_its_code() -> None:
    spec = variant(pacemaker={"fencing": False}, rabbitmq={"queue_type": "mirrored"},
                   waivers=[{"code": "HA110", "reason": "lab without a fence device yet"}])
    findings = {f.code: f for f in run_checks(spec)}
    assert findings["HA110"].waived == "lab without a fence device yet"
    assert not findings["HA110"].blocking
    assert findings["HA301"].blocking


def test_waiver_by_subject() -> None:
    data = raw()
    del data["nodes"][0]["fence"]
    del data["nodes"][1]["fence"]
    data["waivers"] = [{"code": "HA112", "subject": "ctl1", "reason": "fence device arrives next week"}]
    findings = [f for f in run_checks(spec_from(data)) if f.code == "HA112"]
    assert {(f.subject, f.waived is not None) for f in findings} == {("ctl1", True), ("ctl2", False)}


def test_waiver_needs_a_reason() -> None:
    with pytest.raises(Exception, match="reason"):
        variant(waivers=[{"code": "HA110"}])
    with pytest.raises(Exception, match="reason"):
        variant(waivers=[{"code": "HA110", "reason": "x"}])


def test_unknown_and_stale_waivers_are_reported() -> None:
    spec = variant(waivers=[{"code": "HA999", "reason": "typo in the code here"},
                            {"code": "HA110", "reason": "nothing to waive any more"}])
    found = {f.code: f for f in run_checks(spec)}
    assert found["HA001"].severity is Severity.ERROR
    assert found["HA002"].severity is Severity.WARNING


def test_timing_finding_gives_numbers() -> None:
    [f] = [f for f in run_checks(variant(timing={"haproxy_inter_ms": 2000, "haproxy_fall": 5}))
           if f.code == "HA602"]
    assert "10000 ms" in f.what and "5000 ms" in f.what

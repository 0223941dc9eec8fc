"""Recorded facts: each component fact's command, the output it gave in the lab, and what it parses to.

A fact's command and its parser change together or not at all: the test fails when
either moves away from what was recorded (pyinfra's model). `python -m
tests.unit.fact_fixtures` writes facts.json again after a deliberate change.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from hastack.components import corosync, galera, haproxy, network, pacemaker, rabbitmq, systemd
from hastack.components.fact import Fact

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "facts.json"

# fact name -> (the fact, the captured output it was run on, its exit status)
FACTS: dict[str, tuple[Fact[Any], str, int]] = {
    "corosync.QUORUM": (corosync.QUORUM, "corosync_quorumtool_s.txt", 0),
    "corosync.LINKS": (corosync.LINKS, "corosync_cfgtool_s.txt", 0),
    "pacemaker.MON": (pacemaker.MON, "crm_mon_lab_healthy.xml", 0),
    "galera.STATUS": (galera.STATUS, "galera_wsrep_status.tsv", 0),
    "galera.GRASTATE": (galera.GRASTATE, "galera_grastate_crashed.dat", 0),
    "galera.TRANSFER": (galera.TRANSFER, "ss_tin_state_transfer.txt", 0),
    "haproxy.STATS": (haproxy.STATS, "haproxy_show_stat.csv", 0),
    "network.ADDRESSES": (network.ADDRESSES, "ip_o_4_addr.txt", 0),
    "rabbitmq.CLUSTER": (rabbitmq.CLUSTER, "rabbitmq_cluster_status.json", 0),
    "rabbitmq.STATUS": (rabbitmq.STATUS, "rabbitmq_status_ctl1_down.tsv", 0),
    "systemd.unit_age(mariadb)": (systemd.unit_age("mariadb"), "systemd_unit_age_active.txt", 0),
    "systemd.active(ctl2)": (systemd.active(("keystone", "nova-scheduler", "nova-conductor", "cinder-scheduler",
                                             "heat-engine")), "systemctl_is_active_ctl2.txt", 0),
}


def plain(value: Any) -> Any:
    """A parsed fact as JSON holds it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (frozenset, set)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    # Enums and addresses as their text; numbers, strings, booleans and None as they are.
    return value.value if isinstance(value, enum.Enum) else str(value) if isinstance(value, IPv4Address) else value


def record() -> dict[str, Any]:
    out = {}
    for name, (fact, output, rc) in FACTS.items():
        stdout = (FIXTURES / output).read_text()
        out[name] = {"argv": list(fact.argv), "rc": rc, "output": output, "parsed": plain(fact.parse(rc, stdout))}
    return out


if __name__ == "__main__":
    RECORDED.write_text(json.dumps(record(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {RECORDED}")

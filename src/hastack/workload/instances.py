"""Instance HA scenarios' servers, from the client host: booted on the target compute before the
fault, sampled through the run, their evacuations read from nova's record at the end, then deleted.

Plain functions over a keystoneauth session and a token; the chaos workload runs them (its own
sampler thread, its own final read).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hastack.agent.evacuation import nova_time
from hastack.render.openstack_run import FLAVOR
from hastack.workload.history import Evacuation, InstanceSample

# 2.37: a server with no network; 2.53: os-migrations filtered by type, as the evacuator reads them.
HEADERS = {"OpenStack-API-Version": "compute 2.53"}
BOOT_S = 180.0  # every pinned server ACTIVE (fake driver: ~5 s each on a quiet lab)
SAMPLE_EVERY_S = 1.0
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Pinned:
    """The run's servers: `count` of them, named after the run, pinned on `host`."""

    compute_url: str
    run: str
    host: str
    count: int

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.run}-i{k}" for k in range(self.count))


def _h(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token, **HEADERS}


def listed(sess: Any, token: str, p: Pinned) -> list[dict[str, Any]]:
    """The run's pinned servers as nova lists them (name filter: a regex nova anchors as given)."""
    resp = sess.get(f"{p.compute_url}/servers/detail?name=^{p.run}-i", headers=_h(token), authenticated=False,
                    timeout=TIMEOUT_S)
    resp.raise_for_status()
    return list(resp.json()["servers"])


def boot(sess: Any, login: Callable[[], str], p: Pinned, image: str) -> None:
    """Each server pinned to its host (an admin may name the host in the availability zone), all ACTIVE
    there before the fault; raises with what nova says otherwise."""
    token = login()
    for name in p.names:
        body = {"server": {"name": name, "flavorRef": FLAVOR, "imageRef": image, "networks": "none",
                           "availability_zone": f"nova:{p.host}"}}
        resp = sess.post(f"{p.compute_url}/servers", json=body, headers=_h(token), authenticated=False,
                         raise_exc=False, timeout=TIMEOUT_S)
        if resp.status_code != 202:
            raise RuntimeError(f"nova refused server {name} on {p.host}: HTTP {resp.status_code} {resp.text[:300]}")
    deadline = time.monotonic() + BOOT_S
    while True:
        servers = listed(sess, token, p)
        states = {s["name"]: (s["status"], s.get("OS-EXT-SRV-ATTR:host") or "") for s in servers}
        if len(servers) == p.count and all(v == ("ACTIVE", p.host) for v in states.values()):
            return
        if any(st == "ERROR" for st, _ in states.values()) or time.monotonic() > deadline:
            raise RuntimeError(f"servers pinned on {p.host} not ACTIVE there within {BOOT_S:.0f} s: {states}")
        time.sleep(1)


def sample(servers: list[dict[str, Any]], at: float) -> list[InstanceSample]:
    return [InstanceSample(t=at, server=s["name"], host=s.get("OS-EXT-SRV-ATTR:host") or "", status=s["status"],
                           task=s.get("OS-EXT-STS:task_state") or "") for s in servers]


def parse_evacuations(doc: dict[str, Any], by_id: dict[str, str], mono_minus_wall: float) -> tuple[Evacuation, ...]:
    """GET os-migrations?migration_type=evacuation: the run's servers' evacuations, on the run's clock."""
    return tuple(Evacuation(server=by_id[m["instance_uuid"]], t=(nova_time(m["created_at"]) or 0.0) + mono_minus_wall,
                            dest=m.get("dest_compute") or "", status=m.get("status") or "")
                 for m in doc.get("migrations", []) if m.get("instance_uuid") in by_id)


def evacuations(sess: Any, token: str, p: Pinned) -> tuple[Evacuation, ...]:
    by_id = {s["id"]: s["name"] for s in listed(sess, token, p)}
    resp = sess.get(f"{p.compute_url}/os-migrations?source_compute={p.host}&migration_type=evacuation",
                    headers=_h(token), authenticated=False, timeout=TIMEOUT_S)
    resp.raise_for_status()
    return parse_evacuations(resp.json(), by_id, time.monotonic() - time.time())


def delete(sess: Any, token: str, p: Pinned) -> None:
    for s in listed(sess, token, p):
        sess.delete(f"{p.compute_url}/servers/{s['id']}", headers=_h(token), authenticated=False, raise_exc=False,
                    timeout=TIMEOUT_S)

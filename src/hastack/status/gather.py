"""Probe every host in parallel over SSH and collect the facts the verdicts judge."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from typing import Any, TypeVar

import asyncssh

from hastack.common.errors import described, first_line
from hastack.components import (
    corosync,
    galera,
    haproxy,
    instance_ha,
    network,
    openstack_api,
    pacemaker,
    rabbitmq,
    systemd,
)
from hastack.components.fact import Fact
from hastack.components.galera import GaleraState
from hastack.components.openstack import ApiCheck, parse_api_check
from hastack.credentials.model import Secrets
from hastack.hosts.fleet import Access, reachable
from hastack.hosts.mongo import MongoLogin, replset
from hastack.hosts.probe import probe as read
from hastack.hosts.ssh import HostError, SshHost
from hastack.render.openstack_run import ADMIN, api_reads, auth_url, ca_file, public_url
from hastack.spec.catalog import daemons_for, daemons_on
from hastack.spec.model import Role, Spec
from hastack.status.model import Facts

T = TypeVar("T")
PROBE_TIMEOUT = 10.0
# Facts whose command boots a VM before it asks anything: seconds more while a lab heals on two busy
# cores (rabbitmqctl's bounded eval took 11-24 s on a controller during an isolation run).
SLOW = {rabbitmq.STATUS.name: 15.0}
# The admin's password login, then each API read (all at once). A failure threshold, not the usual
# time (a look takes ~0.7 s): a login costs keystone over 1 s under a chaos run's load on the lab's two
# cores, and an API's first read after its start took 1.5 s (cinder, in CI); busy is not dead.
API_TIMEOUT = 3.0
# A host that has not answered SSH in this long is reported unreachable, not waited for.
CONNECT_TIMEOUT = 3.0


# The component whose verdict reads each fact: a probe's error is filed under it, so the verdict
# can say what went wrong instead of "no node answered".
COMPONENT_OF = {"quorum": "corosync", "links": "corosync", "pacemaker": "pacemaker", "galera": "galera",
                "rabbit": "rabbitmq", "mongo": "mongodb", "haproxy": "haproxy",
                "addresses": "vip", "openstack": "openstack", "evacuator": "instance-ha",
                "daemons": "openstack"}


async def _first(hosts: list[SshHost], fact: Fact[T], errors: dict[str, str], component: str) -> T | None:
    """The fact as the first host (in spec order) that can show it does; each failure is kept in `errors`.

    One host at a time: a cluster-wide view needs one answer, and the CLIs
    (rabbitmqctl boots an Erlang VM) are too heavy to run everywhere at once.
    """
    for h in hosts:
        try:
            return await read(h, fact, PROBE_TIMEOUT + SLOW.get(fact.name, 0.0))
        except (HostError, asyncssh.Error, OSError, ValueError, KeyError) as exc:
            lines = (str(exc) or type(exc).__name__).strip().splitlines()
            head = lines[0] if isinstance(exc, HostError) else f"{h.name}: {lines[0]}"
            # The command and its last words: enough to act on, short enough for a table cell.
            errors[component] = head if len(lines) == 1 else f"{head}: {lines[-1].strip()}"
    return None


async def _each(hosts: list[SshHost], fact: Fact[T]) -> dict[str, T]:
    """The fact on every host at once; a host that cannot show it is left out."""
    return await _each_own([(h, fact) for h in hosts])


async def _each_own(facts: list[tuple[SshHost, Fact[T]]]) -> dict[str, T]:
    """Each host's own fact, all at once; a host that cannot show its fact is left out."""
    values = await asyncio.gather(*(read(h, f, PROBE_TIMEOUT) for h, f in facts), return_exceptions=True)
    return {h.name: v for (h, _), v in zip(facts, values, strict=True) if not isinstance(v, BaseException)}


async def _daemons(spec: Spec, up: dict[str, SshHost]) -> dict[str, dict[str, str]]:
    """Whether each OpenStack daemon hastack runs is running, on every host that should run it: one
    that exited cleanly (nova-scheduler on a database cut at start) stays down whatever haproxy says."""
    units = {n.name: tuple(d.unit for d in daemons_on(spec.openstack.services, n.has(Role.CONTROLLER),
                                                       n.has(Role.COMPUTE))) for n in spec.nodes if n.name in up}
    return await _each_own([(up[h], systemd.active(u)) for h, u in units.items() if u])


def api_ask(spec: Spec, secrets: Secrets) -> dict[str, object]:
    """What the API check asks: a token as the admin, then one read per API hastack runs, through the VIP."""
    services = public_url(spec, "nova") + "/os-services?binary=nova-compute" \
        if "nova" in spec.openstack.services and daemons_for(spec.openstack.services, computes=True) else ""
    return {"auth_url": auth_url(spec), "user": ADMIN, "password": secrets["keystone_admin_password"],
            "timeout": API_TIMEOUT, "apis": api_reads(spec), "services": services, "cafile": ca_file(spec)}


async def _api_check(spec: Spec, secrets: Secrets, hosts: list[SshHost], errors: dict[str, str]) -> ApiCheck | None:
    """One controller asks every API through the VIP (the first that can run the check)."""
    if "keystone" not in spec.openstack.services or not daemons_for(spec.openstack.services):
        return None
    source = inspect.getsource(openstack_api)
    for h in hosts:
        try:
            res = await h.run(["python3", "-c", source], check=False, timeout=PROBE_TIMEOUT,
                              input=json.dumps(api_ask(spec, secrets)) + "\n")
            return parse_api_check(res.stdout)
        except (HostError, asyncssh.Error, OSError, ValueError, KeyError) as exc:
            errors["openstack"] = f"{h.name}: {first_line(described(exc))}"
    return None


async def gather(spec: Spec, secrets: Secrets, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Facts:
    up = {n: h for n, h in hosts.items() if n not in unreachable}

    def on(names: list[str]) -> list[SshHost]:
        return [up[n] for n in names if n in up]

    cor = on([n.name for n in spec.corosync_nodes()]) if spec.vip_manager.runs_pacemaker else []
    gal = on([n.name for n in spec.galera_nodes()]) if spec.galera.enabled else []
    rab = on([n.name for n in spec.rabbit_nodes()]) if spec.rabbitmq.enabled else []
    mon = on([n.name for _, n in spec.mongo_members()]) if spec.mongodb.enabled else []
    hap = on([n.name for n in spec.haproxy_nodes()])
    errors: dict[str, str] = {}
    silent: set[str] = set()

    async def wsrep(h: SshHost) -> GaleraState | None:
        try:
            return await read(h, galera.STATUS, PROBE_TIMEOUT + 5)
        except galera.Silent:  # it took the connection and answered nothing
            silent.add(h.name)
            return None
        except Exception:  # no answer is a state here: the verdict says "not running"
            return None

    async def galera_states() -> dict[str, GaleraState | None]:
        return dict(zip((h.name for h in gal), await asyncio.gather(*(wsrep(h) for h in gal)), strict=True))

    async def mongo() -> Any:
        for h in mon:  # any member's view will do; the first that answers
            try:
                return await replset(h, MongoLogin.of(spec, secrets))
            except Exception as exc:
                errors["mongodb"] = f"{h.name}: {exc}"
        return None

    names = ("quorum", "links", "pacemaker", "galera", "rabbit", "mongo", "haproxy", "addresses", "openstack",
             "evacuator", "daemons")
    ctl = on([n.name for n in spec.with_role(Role.CONTROLLER)])
    results = await asyncio.gather(
        _first(cor, corosync.QUORUM, errors, "corosync"), _each(cor, corosync.LINKS),
        _first(cor, pacemaker.MON, errors, "pacemaker"), galera_states(),
        _first(rab, rabbitmq.STATUS, errors, "rabbitmq"),
        mongo(), _each(hap, haproxy.STATS), _each(list(up.values()), network.ADDRESSES),
        _api_check(spec, secrets, ctl, errors),
        # Where the evacuator runs writes its state each round; an older copy stays where it ran before.
        _each(on([n.name for n in spec.evacuator_nodes()]), instance_ha.STATE), _daemons(spec, up),
        return_exceptions=True)
    values: dict[str, Any] = {}
    for name, r in zip(names, results, strict=True):
        if isinstance(r, (HostError, asyncssh.Error, OSError, ValueError, KeyError)):
            errors.setdefault(COMPONENT_OF[name], f"{name}: {r}")
        elif isinstance(r, BaseException):
            raise r
        elif isinstance(r, rabbitmq.RabbitStatus):  # one rabbitmqctl call answers both
            values |= {"rabbit": r.cluster, "rabbit_queues": r.queues}
        elif name == "evacuator":
            values["evacuator"] = max(r.values(), key=lambda s: s.at, default=None)
        elif r is not None:
            values[name] = r
    return Facts(unreachable=unreachable, errors=errors, galera_silent=frozenset(silent), now=time.time(), **values)


async def probe(spec: Spec, secrets: Secrets, access: Access) -> Facts:
    """Connect to every host at once and gather; a host that does not answer is a fact, not an error."""
    async with reachable(spec, access, timeout=CONNECT_TIMEOUT) as (hosts, unreachable):
        return await gather(spec, secrets, hosts, unreachable)

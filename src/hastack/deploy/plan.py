"""The deploy's phases, in order, with the hosts each touches. Pure: Spec -> Phases.

The apply step walks these phases; `--dry-run` prints them with the file
changes the hosts report. Order is what the components need: a quorate
corosync before the CIB; a bootstrapped galera node before joiners; the
first rabbit node before the others find it; members up before
replSetInitiate; the galera agent before haproxy polls it; the VIP last.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from hastack.spec.catalog import daemons_for
from hastack.spec.model import Node, Role, Spec, VipManager


class PhaseKey(StrEnum):
    FILES = "files"
    AGENT = "agent"
    COROSYNC = "corosync"
    GALERA = "galera"
    RABBITMQ = "rabbitmq"
    MONGODB = "mongodb"
    MEMCACHED = "memcached"
    REMOTE = "remote"
    CIB = "cib"
    KEEPALIVED = "keepalived"
    OPENSTACK = "openstack"


@dataclass(frozen=True)
class Phase:
    key: PhaseKey
    hosts: tuple[str, ...]
    what: str


def names(nodes: Iterable[Node]) -> tuple[str, ...]:
    return tuple(n.name for n in nodes)


def phases(spec: Spec) -> tuple[Phase, ...]:
    out = [Phase(PhaseKey.FILES, names(spec.nodes),
                 "push every rendered file (0600 first, then owner/mode, then rename)")]
    galera = names(spec.galera_nodes()) if spec.galera.enabled else ()
    gated = names(spec.haproxy_nodes()) if spec.vip_manager.runs_keepalived else ()
    rabbit = names(spec.rabbit_nodes()) if spec.rabbitmq.enabled else ()
    mongo = names(spec.electable_mongo_nodes())
    bundled = tuple(dict.fromkeys((*galera, *names(spec.evacuator_nodes()), *gated, *rabbit, *mongo)))
    if bundled:
        out.append(Phase(PhaseKey.AGENT, bundled, "install the hastack agent (galera health for haproxy"
                         + ("; instance HA's evacuator" if spec.evacuator_nodes() else "")
                         + ("; keepalived's checks" if gated else "")
                         + ("; the RabbitMQ watch" if rabbit else "") + ("; the mongo watch" if mongo else "") + ")"))
    if spec.vip_manager.runs_pacemaker:
        out.append(Phase(PhaseKey.COROSYNC, names(spec.corosync_nodes()),
                         "start corosync and pacemaker; wait for quorum with every member"))
    if galera:
        arb = (spec.galera.arbitrator,) if spec.galera.arbitrator else ()
        out.append(Phase(PhaseKey.GALERA, galera + arb,
                         f"bootstrap on {spec.galera_writer().name} if no node runs, join the rest one by one"
                         " (SST by " + spec.galera.sst_method.value + ")" + (", start garbd" if arb else "")))
    if spec.rabbitmq.enabled and spec.rabbit_nodes():
        out.append(Phase(PhaseKey.RABBITMQ, names(spec.rabbit_nodes()),
                         "start the first node, then the others (classic peer discovery joins them)"))
    if spec.mongodb.enabled and spec.mongo_members():
        members = tuple(n.name for _, n in spec.mongo_members())
        arb = (spec.mongodb.arbiter,) if spec.mongodb.arbiter else ()
        out.append(Phase(PhaseKey.MONGODB, members + arb,
                         "start mongod on every member, replSetInitiate once, admin user"))
    if spec.memcached_nodes():
        out.append(Phase(PhaseKey.MEMCACHED, names(spec.memcached_nodes()), "start memcached on its address"))
    if spec.remote_nodes():
        out.append(Phase(PhaseKey.REMOTE, names(spec.remote_nodes()),
                         "start pacemaker_remote on every compute (pacemaker watches and fences them)"))
    if spec.vip_manager is VipManager.PACEMAKER:
        out.append(Phase(PhaseKey.CIB, names(spec.corosync_nodes())[:1],
                         "load the CIB (VIP, haproxy clone, fencing, constraints); wait for the VIP"))
    elif spec.vip_manager.runs_pacemaker:
        out.append(Phase(PhaseKey.CIB, names(spec.corosync_nodes())[:1],
                         "load the CIB (haproxy clone, fencing); wait for haproxy on every haproxy node"))
    if spec.vip_manager.runs_keepalived:
        started = "" if spec.vip_manager.runs_pacemaker else "haproxy and "
        out.append(Phase(PhaseKey.KEEPALIVED, names(spec.haproxy_nodes()),
                         f"start {started}keepalived; wait for one holder of each VIP"))
    run = daemons_for(spec.openstack.services)
    if run:
        controllers = names(spec.with_role(Role.CONTROLLER))
        on_computes = daemons_for(spec.openstack.services, computes=True)
        computes = tuple(n for n in names(spec.with_role(Role.COMPUTE)) if n not in controllers) \
            if on_computes else ()
        also = f"; then {', '.join(d.unit for d in on_computes)} on every compute, mapped to a cell" \
            if on_computes else ""
        out.append(Phase(PhaseKey.OPENSTACK, controllers + computes,
                         "sync schemas once, bootstrap keystone, make its catalog; start "
                         + ", ".join(d.unit for d in run) + " on every controller" + also))
    return tuple(out)

"""What the probes saw, and the verdict per component. Pure: facts in, rows out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from hastack.components.corosync import LinkState, Quorum
from hastack.components.galera import GaleraState
from hastack.components.haproxy import ServerState
from hastack.components.instance_ha import EvacuatorState
from hastack.components.mongodb import ReplSet
from hastack.components.openstack import ApiCheck
from hastack.components.pacemaker import PacemakerState
from hastack.components.rabbitmq import QuorumQueue, RabbitCluster
from hastack.spec.catalog import daemons_for
from hastack.spec.model import Role, Spec


@dataclass(frozen=True)
class Facts:
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why
    quorum: Quorum | None = None
    links: dict[str, tuple[LinkState, ...]] = field(default_factory=dict)
    pacemaker: PacemakerState | None = None
    galera: dict[str, GaleraState | None] = field(default_factory=dict)
    galera_silent: frozenset[str] = frozenset()  # mariadbd took a connection and answered nothing
    rabbit: RabbitCluster | None = None
    rabbit_queues: tuple[QuorumQueue, ...] = ()
    mongo: ReplSet | None = None
    haproxy: dict[str, tuple[ServerState, ...]] = field(default_factory=dict)
    addresses: dict[str, frozenset[IPv4Address]] = field(default_factory=dict)
    openstack: ApiCheck | None = None  # one authenticated read per API through the VIP
    evacuator: EvacuatorState | None = None  # instance HA's last round (the freshest state file)
    daemons: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> OpenStack unit -> ActiveState
    now: float = 0.0  # when the facts were gathered (epoch seconds): how old the evacuator's round is
    errors: dict[str, str] = field(default_factory=dict)  # component -> probe error


@dataclass(frozen=True)
class Row:
    component: str
    healthy: bool
    summary: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # worth knowing, not unhealthy: a failure since recovered


def _row(component: str, summary: str, problems: list[str], notes: list[str] | None = None) -> Row:
    return Row(component, not problems, summary, tuple(problems), tuple(notes or ()))


def verdict(spec: Spec, f: Facts) -> tuple[Row, ...]:
    rows = [_hosts(spec, f)]
    if spec.vip_manager.runs_pacemaker:
        rows += [_corosync(spec, f), _pacemaker(spec, f)]
    rows.append(_vips(spec, f))
    if spec.galera.enabled and spec.galera_nodes():
        rows.append(_galera(spec, f))
    if spec.rabbitmq.enabled and spec.rabbit_nodes():
        rows.append(_rabbit(spec, f))
    if spec.mongodb.enabled and spec.mongo_members():
        rows.append(_mongo(spec, f))
    if spec.haproxy_nodes():
        rows.append(_haproxy(spec, f))
    if any(d.endpoint for d in daemons_for(spec.openstack.services)):
        rows.append(_openstack(spec, f))
    if spec.remote_nodes():
        rows.append(_instance_ha(spec, f))
    return tuple(rows)


# The evacuator's rounds are seconds apart; a state this old means it is not running its loop.
EVACUATOR_STALE_S = 30


def _instance_ha(spec: Spec, f: Facts) -> Row:
    ev = f.evacuator
    where = ",".join(f.pacemaker.where("evacuator")) if f.pacemaker else ""
    if ev is None:
        return _row("instance-ha", "no answer", [f"the evacuator has written no state{' on ' + where if where else ''}"
                                                 " (not started yet, or not running)"])
    problems = []
    age = f.now - ev.at
    if f.now and age > EVACUATOR_STALE_S:
        problems.append(f"the evacuator's last round was {age:.0f} s ago")
    if ev.error:
        problems.append(f"the evacuator's last round failed: {ev.error}")
    problems += [f"failed: {f}" for f in ev.failed]
    if ev.refusal:
        problems.append(ev.refusal)
    problems += [f"{h}: {v.state}: {v.reason}" for h, v in sorted(ev.hosts.items()) if v.state != "healthy"]
    states = Counter(v.state for v in ev.hosts.values())
    summary = (f"evacuator on {where or '?'}; computes " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
               + (f"; last round did {len(ev.done)}" if ev.done else ""))
    return _row("instance-ha", summary, problems)


def _hosts(spec: Spec, f: Facts) -> Row:
    problems = [f"{h}: {why}" for h, why in sorted(f.unreachable.items())]
    return _row("hosts", f"{len(spec.nodes) - len(f.unreachable)}/{len(spec.nodes)} reachable over SSH", problems)


def _corosync(spec: Spec, f: Facts) -> Row:
    want = {n.name for n in spec.corosync_nodes()}
    q = f.quorum
    if q is None:
        return _row("corosync", "no answer", [f.errors.get("corosync", "no corosync node answered")])
    problems = [] if q.quorate else ["not quorate"]
    missing = want - set(q.names)
    if missing:
        problems.append("not members: " + ", ".join(sorted(missing)))
    down = sorted({f"{host}->node{ls.nodeid} link{ls.link}" for host, lst in f.links.items() for ls in lst
                   if not ls.connected})
    if down:
        problems.append("links down: " + ", ".join(down))
    nlinks = len({ls.link for lst in f.links.values() for ls in lst})
    return _row("corosync", f"{'quorate' if q.quorate else 'NOT quorate'}, {len(q.members)}/{len(want)} members, "
                f"votes {q.total_votes}/{q.expected_votes}, {nlinks} link(s)", problems)


def _pacemaker(spec: Spec, f: Facts) -> Row:
    pm = f.pacemaker
    if pm is None:
        return _row("pacemaker", "no answer", [f.errors.get("pacemaker", "crm_mon did not answer")])
    want = {n.name for n in spec.corosync_nodes()}
    problems = []
    offline = want - set(pm.online())
    if offline:
        problems.append("offline: " + ", ".join(sorted(offline)))
    remote = {n.name for n in spec.remote_nodes()}
    if remote - set(pm.online()):  # a compute pacemaker does not reach is fenced, then waited for
        problems.append("computes offline: " + ", ".join(sorted(remote - set(pm.online()))))
    failed = sorted({r.id for r in pm.resources if r.failed})
    if failed:
        problems.append("failed: " + ", ".join(failed))
    # Every resource hastack configures is meant to run; a stopped one (a
    # fence device above all) is a problem even when nothing "failed".
    stopped = sorted(set(pm.stopped()) - set(failed))
    if stopped:
        problems.append("stopped: " + ", ".join(stopped))
    # crm_mon lists a failure until someone cleans it up. One whose resource
    # runs again is history (a fence device's monitor that once timed out):
    # shown, but the cluster is not unhealthy for it today.
    notes, failures = set(), set()
    for a in pm.failures:
        line = f"{a.resource} {a.task} on {a.node}: {a.status} ({a.reason})"
        if pm.recovered(a.resource):
            notes.add(f"recovered since: {line}" + (f" at {a.when}" if a.when else ""))
        else:
            failures.add(line)
    problems += sorted(failures)
    if not pm.stonith_enabled:
        problems.append("fencing is disabled")
    placed = [f"{r.id}@{','.join(r.nodes)}" for r in pm.resources if r.active and r.clone is None
              and not r.agent.startswith("stonith")]
    dc = next((n.name for n in pm.nodes if n.is_dc), "none")
    online = f"{len(want & set(pm.online()))} online" + (
        f", computes {len(remote & set(pm.online()))}/{len(remote)}" if remote else "")
    summary = "; ".join([f"DC {dc}", online, *([" ".join(placed)] if placed else [])])
    return _row("pacemaker", summary, problems, sorted(notes))


def _vips(spec: Spec, f: Facts) -> Row:
    problems, parts = [], []
    for vip in spec.vips:
        holders = sorted(h for h, addrs in f.addresses.items() if vip.address in addrs)
        parts.append(f"{vip.name} {vip.address} on {','.join(holders) or 'nobody'}")
        if len(holders) != 1:
            problems.append(f"{vip.name}: {len(holders)} holders ({', '.join(holders) or 'none'})")
    return _row("vip", "; ".join(parts), problems)


def _galera(spec: Spec, f: Facts) -> Row:
    nodes = [n.name for n in spec.galera_nodes()]
    expected = len(nodes) + (1 if spec.galera.arbitrator else 0)
    problems = []
    states = []
    for n in nodes:
        st = f.galera.get(n)
        if st is None:
            silent = n in f.galera_silent
            problems.append(f"{n}: running, answers nothing (wedged, or receiving a snapshot)" if silent
                            else f"{n}: not running")
            states.append(f"{n}={'silent' if silent else 'down'}")
            continue
        states.append(f"{n}={st.local_state}")
        if not st.primary or st.local_state != "Synced":
            problems.append(f"{n}: {st.cluster_status}/{st.local_state}")
    sizes = {st.cluster_size for st in f.galera.values() if st is not None and st.primary}
    size = max(sizes) if sizes else 0
    if size != expected:
        problems.append(f"cluster size {size}, expected {expected}")
    writer = galera_writer(f)
    return _row("galera", f"size {size}/{expected}; writer {writer or 'none'}; " + " ".join(states), problems)


def galera_writer(f: Facts) -> str | None:
    """The server haproxy sends writes to (any haproxy agrees): the UP non-backup galera server,
    else, as haproxy does when it is down, the first UP backup."""
    for servers in f.haproxy.values():
        up = [s for s in servers if s.proxy.startswith("galera") and s.status.startswith("UP")]
        chosen = next((s for s in up if not s.backup), None) or next(iter(up), None)
        if chosen is not None:
            return chosen.server
    return None


def _rabbit(spec: Spec, f: Facts) -> Row:
    want = {f"rabbit@{n.name}" for n in spec.rabbit_nodes()}
    r = f.rabbit
    if r is None:
        return _row("rabbitmq", "no answer", [f.errors.get("rabbitmq", "no rabbit node answered")])
    problems = []
    if set(r.running) != want:
        problems.append("not running: " + ", ".join(sorted(want - set(r.running))))
    booting = sorted(set(r.running) - set(r.serving))
    if booting:
        problems.append("up but not serving AMQP (rabbit app not started): " + ", ".join(booting))
    if r.partitions:
        problems.append("partitioned: " + ", ".join(r.partitions))
    problems += [f"alarm {a}" for a in r.alarms]
    qs = f.rabbit_queues
    degraded = [q for q in qs if q.degraded]
    if degraded:
        problems.append("quorum queues with a member down: " + ", ".join(
            f"{q.name} ({', '.join(sorted(set(q.members) - set(q.online)))})" for q in degraded[:5])
            + (f" (+{len(degraded) - 5})" if len(degraded) > 5 else ""))
    # No leader: the queue takes no publish and gives no message, whatever list_queues says.
    leaderless = [q.name for q in qs if not q.leader]
    if leaderless:
        problems.append("quorum queues with no leader: " + ", ".join(leaderless[:5])
                        + (f" (+{len(leaderless) - 5})" if len(leaderless) > 5 else ""))
    leaders = Counter(q.leader.split("@")[-1] for q in qs if q.leader)
    spread = ", ".join(f"{n} {c}" for n, c in sorted(leaders.items()))
    return _row("rabbitmq", f"{len(set(r.serving) & set(r.running))}/{len(want)} running; {len(qs)} quorum queue(s)"
                + (f", leaders: {spread}" if qs else ""), problems)


def _mongo(spec: Spec, f: Facts) -> Row:
    rs = f.mongo
    if rs is None:
        return _row("mongodb", "no answer", [f.errors.get("mongodb", "no member answered")])
    want = len(spec.mongo_members()) + (1 if spec.mongodb.arbiter else 0)
    problems = [f"{m.name}: {m.state}" for m in rs.members
                if not m.healthy or m.state not in ("PRIMARY", "SECONDARY", "ARBITER")]
    if rs.primary is None:
        problems.append("no primary")
    if len(rs.members) != want:
        problems.append(f"{len(rs.members)} members, expected {want}")
    by_addr = {str(n.address): n.name for n in spec.nodes}

    def name(member: str) -> str:
        return by_addr.get(member.rsplit(":", 1)[0], member)

    roles = " ".join(f"{name(m.name)}={m.state}" for m in rs.members)
    primary = name(rs.primary) if rs.primary else "none"
    return _row("mongodb", f"{rs.name} primary {primary}; {roles}", problems)


# Backends of the clusters hastack deploys. The APIs hastack runs are judged in the openstack row;
# the others (services hastack does not run yet, HA705) are reported, not judged.
INFRA_PROXIES = ("galera-", "memcached-", "rabbitmq-", "mongodb-")


def _haproxy(spec: Spec, f: Facts) -> Row:
    silent = sorted({n.name for n in spec.haproxy_nodes()} - set(f.haproxy))
    problems = [f"no stats from {', '.join(silent)}"] if silent else []
    for host, servers in sorted(f.haproxy.items()):
        down = [f"{s.proxy}/{s.server}" for s in servers
                if s.proxy.startswith(INFRA_PROXIES) and not s.status.startswith(("UP", "no check"))]
        if down:
            problems.append(f"{host}: down {', '.join(down)}")
    infra = [x for s in f.haproxy.values() for x in s if x.proxy.startswith(INFRA_PROXIES)]
    apis = {x.proxy for s in f.haproxy.values() for x in s if not x.proxy.startswith(INFRA_PROXIES)}
    apis_up = {x.proxy for s in f.haproxy.values() for x in s
               if not x.proxy.startswith(INFRA_PROXIES) and x.status.startswith("UP")}
    up = sum(1 for x in infra if x.status.startswith("UP"))
    run = {d.endpoint for d in daemons_for(spec.openstack.services) if d.endpoint}
    others = sorted({s for s in spec.haproxy.services if s not in run})
    notes = [f"frontends for APIs hastack does not run (their servers stay down): {', '.join(others)}"] \
        if others else []
    return _row("haproxy", f"{len(f.haproxy)} instance(s); cluster servers {up}/{len(infra)} up; "
                f"API backends with a server up {len(apis_up)}/{len(apis)}", problems, notes)


def _openstack(spec: Spec, f: Facts) -> Row:
    """Every API hastack runs: its backends up on every haproxy, and a read through the VIP that succeeds."""
    problems: list[str] = []
    up = total = 0
    for d in daemons_for(spec.openstack.services):
        if d.endpoint is None:
            continue
        proxies = {f"{d.endpoint}-{v.name}" for v in spec.vips}
        servers = [x for s in f.haproxy.values() for x in s if x.proxy in proxies]
        total += len(servers)
        up += sum(1 for x in servers if x.status.startswith("UP"))
        down = sorted({x.server for x in servers if not x.status.startswith("UP")})
        if down:
            problems.append(f"{d.endpoint} down on {', '.join(down)}")
    check = f.openstack
    reads = ""
    if check is None:
        problems.append(f.errors.get("openstack", "no controller could ask the APIs"))
    elif check.error:
        problems.append(f"through the VIP: {check.error}")
    else:
        problems += [f"{name} through the VIP: " + (f"HTTP {r.status}" if r.status else "no answer")
                     for name, r in check.apis.items() if not r.ok]
        reads = f"; token {check.token_ms:.0f} ms, " + ", ".join(
            f"{name} {r.status or '-'} {r.ms:.0f} ms" for name, r in check.apis.items())
        if check.computes is not None:
            reads += "; " + _computes(spec, check.computes, problems)
    running = sum(s == "active" for states in f.daemons.values() for s in states.values())
    daemons = sum(len(states) for states in f.daemons.values())
    for host, states in sorted(f.daemons.items()):
        if stopped := [f"{unit} ({state})" for unit, state in states.items() if state != "active"]:
            problems.append(f"{host}: not running: {', '.join(stopped)}")
    ran = f"; daemons running {running}/{daemons}" if daemons else ""
    return _row("openstack", f"API backends up {up}/{total}{ran}{reads}", problems)


def _computes(spec: Spec, states: dict[str, str], problems: list[str]) -> str:
    """Every compute host's nova-compute reporting in (nova's own view: heartbeats within service_down_time)."""
    want = [n.name for n in spec.with_role(Role.COMPUTE)]
    for host in want:
        if states.get(host) != "up":
            problems.append(f"nova-compute on {host}: " + states.get(host, "not registered"))
    return f"nova-compute up {sum(states.get(h) == 'up' for h in want)}/{len(want)}"


@dataclass(frozen=True)
class HostView:
    """One host's part in every cluster, as the probes saw it ('-' where it has none)."""

    host: str
    reachable: bool
    corosync: str
    pacemaker: str
    galera: str
    rabbitmq: str
    mongodb: str
    vips: str


def host_view(spec: Spec, f: Facts) -> tuple[HostView, ...]:
    cor = {n.name for n in spec.corosync_nodes()} if spec.vip_manager.runs_pacemaker else set()
    members = set(f.quorum.names) if f.quorum else set()
    pm_nodes = {n.name: n for n in f.pacemaker.nodes} if f.pacemaker else {}
    gal = {n.name for n in spec.galera_nodes()} if spec.galera.enabled else set()
    rab = {n.name for n in spec.rabbit_nodes()} if spec.rabbitmq.enabled else set()
    mongo = {m.name.rsplit(":", 1)[0]: m.state for m in f.mongo.members} if f.mongo else {}
    mon = {n.name for _, n in spec.mongo_members()} if spec.mongodb.enabled else set()
    if spec.mongodb.enabled and spec.mongodb.arbiter:
        mon.add(spec.mongodb.arbiter)
    rows = []
    for node in spec.nodes:
        h = node.name
        pm = pm_nodes.get(h)
        gs = f.galera.get(h)
        rows.append(HostView(
            host=h,
            reachable=h not in f.unreachable,
            corosync=("member" if h in members else "ABSENT") if h in cor else "-",
            pacemaker=("-" if h not in cor else "?" if pm is None else "DC" if pm.online and pm.is_dc
                       else "online" if pm.online else "UNCLEAN" if pm.unclean else "OFFLINE"),
            galera=("-" if h not in gal else "down" if gs is None else gs.local_state),
            rabbitmq=("-" if h not in rab else "?" if f.rabbit is None
                      else "running" if f"rabbit@{h}" in f.rabbit.serving
                      else "BOOTING" if f"rabbit@{h}" in f.rabbit.running else "STOPPED"),
            mongodb=("-" if h not in mon else mongo.get(str(node.address), "?" if f.mongo is None else "ABSENT")),
            vips=",".join(v.name for v in spec.vips if v.address in f.addresses.get(h, frozenset())) or "-",
        ))
    return tuple(rows)

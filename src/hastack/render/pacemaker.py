"""The pacemaker CIB as XML: VIPs, haproxy, time sync, fencing, constraints.

Differences from the 2014 guide, on purpose:
- fencing is on and every member has a fence device; no-quorum-policy=stop;
- haproxy runs as a clone on every haproxy node and only the address moves
  (measured: starting haproxy on failover added ~2.1 s after the VIP was up);
  each VIP is colocated with a running haproxy and ordered after it;
- members that do not run haproxy (the voting node) are banned from the VIP;
- a VIP holder must reach its management network: the guide's two rings say
  nothing about the network clients use, and a holder that lost only that one
  kept the VIP for the whole cut (measured: a 60 s cut, a 72 s write gap). A
  ping clone counts the other nodes (and the spec's ping targets) each node
  reaches; a node that reaches none may not hold a VIP.
- with instance HA, every compute is a pacemaker_remote node with its own fence
  device: pacemaker watches it from whichever member holds its connection and
  fences it when the connection is lost; it runs none of the members' resources.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from hastack.agent.vrrp_gate import PING_TRIES, PING_TRY_MS
from hastack.credentials.model import Secrets
from hastack.render.corosync import members
from hastack.render.evacuator import UNIT_NAME as EVACUATOR_UNIT
from hastack.render.files import RenderedFile, text
from hastack.spec.model import Spec, Vip, VipManager

CIB = "/etc/hastack/cib.xml"
AUTHKEY = "/etc/pacemaker/authkey"  # pacemaker_remote's key, on members and remote nodes
REMOTE_DROP_IN = "/etc/systemd/system/pacemaker_remote.service.d/50-hastack.conf"
REMOTE_PORT = 3121
# How often pacemaker tries a compute's connection again after losing it (it boots in ~10 s once fenced).
REMOTE_RETRY_S = 10
HAPROXY = "haproxy-clone"
PING = "mgmt-ping-clone"
TIME_SYNC = "time-sync-clone"
EVACUATOR = "evacuator"
PING_ATTRIBUTE = "mgmt-reach"  # the node attribute the ping clone sets: how many targets answered
PING_OPTIONS = f"-r {PING_TRIES - 1}"  # fping's retries: the later -r wins over the agent's (see _ping_clone)
# The CIB schema version pacemaker 2.1 (Debian 12) validates against.
VALIDATE_WITH = "pacemaker-3.7"


def _nvset(parent: ET.Element, tag: str, set_id: str, pairs: dict[str, str]) -> None:
    el = ET.SubElement(parent, tag, id=set_id)
    for name, value in pairs.items():
        ET.SubElement(el, "nvpair", id=f"{set_id}-{name}", name=name, value=value)


def _ops(parent: ET.Element, rid: str, monitor_s: int, timeout_s: int = 20, start_s: int = 30,
         on_fail: str | None = None) -> None:
    ops = ET.SubElement(parent, "operations")
    mon = ET.SubElement(ops, "op", id=f"{rid}-monitor", name="monitor", interval=f"{monitor_s}s",
                        timeout=f"{timeout_s}s")
    if on_fail:
        mon.set("on-fail", on_fail)
    ET.SubElement(ops, "op", id=f"{rid}-start", name="start", interval="0s", timeout=f"{start_s}s")
    ET.SubElement(ops, "op", id=f"{rid}-stop", name="stop", interval="0s", timeout="30s")


def _primitive(parent: ET.Element, rid: str, cls: str, type_: str, provider: str | None = None,
               ) -> ET.Element:
    attrs = {"id": rid, "class": cls, "type": type_}
    if provider:
        attrs["provider"] = provider
    return ET.SubElement(parent, "primitive", attrs)


def _ping_clone(res: ET.Element, spec: Spec) -> None:
    clone = ET.SubElement(res, "clone", id=PING)
    p = _primitive(clone, "mgmt-ping", "ocf", "ping", "pacemaker")
    # The VRRP gate's look (PING_TRIES of PING_TRY_MS, all targets at once); no dampening: a holder
    # cut off gives the VIP up at its next look, not seconds after. The agent runs `fping -r ATTEMPTS
    # -t TIMEOUT/ATTEMPTS`: -r counts retries, not tries, so its -r is one too many (an unreachable
    # target took 2 s with attempts=1, measured); the later -r in its options wins.
    _nvset(p, "instance_attributes", "mgmt-ping-ia", {
        "name": PING_ATTRIBUTE, "multiplier": "1", "attempts": str(PING_TRIES),
        "timeout": str(PING_TRIES * PING_TRY_MS // 1000), "dampen": "0s", "options": PING_OPTIONS})
    for node in spec.haproxy_nodes():  # each node its own list: rules on the node's name
        ia = ET.SubElement(p, "instance_attributes", id=f"mgmt-ping-ia-{node.name}", score="10")
        rule = ET.SubElement(ia, "rule", id=f"mgmt-ping-ia-{node.name}-rule", score="INFINITY")
        ET.SubElement(rule, "expression", id=f"mgmt-ping-ia-{node.name}-is", attribute="#uname",
                      operation="eq", value=node.name)
        ET.SubElement(ia, "nvpair", id=f"mgmt-ping-ia-{node.name}-host_list", name="host_list",
                      value=" ".join(spec.ping_targets(node)))
    _ops(p, "mgmt-ping", spec.timing.pacemaker_ping_s)
    _nvset(clone, "meta_attributes", f"{PING}-meta",
           {"interleave": "true", "clone-max": str(len(spec.haproxy_nodes()))})


# How long a fence device's failure counts against a node before pacemaker tries it again.
FENCE_FAILURE_TIMEOUT_S = 120
# The same for every other resource (haproxy, VIPs, ping, time sync, evacuator). A failed start is
# final on that node until the failure expires: CI saw haproxy fail its start on one controller while
# the machine was at load 45 after a power cut, and the clone stayed stopped there for good (the
# controller fit to run it, its clusters whole). With this pacemaker starts it again by itself.
FAILURE_TIMEOUT_S = 60


def remote_waits(spec: Spec) -> tuple[int, int]:
    """How long a compute's connection waits for the answer to a monitor's poke (two monitor
    intervals), and for a start (one, at least 4 s: a start answered in 0.7 s in the loaded lab; one
    that fails takes all of it). A compute no member reaches is fenced after a failed poke and a
    failed start on each other member: ~2 + 4 + 4 + 4 s with the fast profile, ~5 + 10 + 5 + 5 s
    with the default one."""
    monitor = spec.timing.pacemaker_monitor_s
    return max(4, 2 * monitor), max(4, monitor)


def managed_vips(spec: Spec) -> tuple[Vip, ...]:
    # With keepalived as the VIP manager pacemaker keeps fencing and haproxy only.
    return spec.vips if spec.vip_manager is VipManager.PACEMAKER else ()


def pings(spec: Spec) -> bool:
    """Whether the members watch their reach of the management network: for the VIPs pacemaker
    places, and for the connections to computes (instance HA), which run over that network."""
    return bool(managed_vips(spec)) or bool(spec.remote_nodes())


def _needs_mgmt(cons: ET.Element, rid: str, unknown: bool = True) -> None:
    """`rid` never where the management network is out of reach, nor (`unknown`) where that is not known
    yet: before the node's first ping."""
    loc = ET.SubElement(cons, "rsc_location", id=f"{rid}-needs-mgmt", rsc=rid)
    rule = ET.SubElement(loc, "rule", {"id": f"{rid}-needs-mgmt-rule", "score": "-INFINITY", "boolean-op": "or"})
    if unknown:
        ET.SubElement(rule, "expression", id=f"{rid}-needs-mgmt-unknown", attribute=PING_ATTRIBUTE,
                      operation="not_defined")
    ET.SubElement(rule, "expression", id=f"{rid}-needs-mgmt-none", attribute=PING_ATTRIBUTE,
                  operation="lt", value="1", type="number")


def build_cib(spec: Spec) -> ET.Element:
    monitor = spec.timing.pacemaker_monitor_s
    cib = ET.Element("cib", {
        "validate-with": VALIDATE_WITH, "epoch": "1", "num_updates": "0", "admin_epoch": "0",
    })
    conf = ET.SubElement(cib, "configuration")
    crm = ET.SubElement(conf, "crm_config")
    _nvset(crm, "cluster_property_set", "cib-bootstrap-options", {
        "cluster-name": spec.cluster,
        "stonith-enabled": "true" if spec.pacemaker.fencing else "false",
        "no-quorum-policy": spec.pacemaker.no_quorum_policy,
        "symmetric-cluster": "true",
    })
    nodes = ET.SubElement(conf, "nodes")
    cluster = members(spec)
    for m in cluster:
        ET.SubElement(nodes, "node", id=str(m.nodeid), uname=m.name)

    res = ET.SubElement(conf, "resources")
    haproxy_nodes = set(spec.haproxy.nodes)
    net = spec.networks.management
    for vip in managed_vips(spec):
        rid = f"vip-{vip.name}"
        p = _primitive(res, rid, "ocf", "IPaddr2", "heartbeat")
        holder = next((spec.node(n) for n in spec.haproxy.nodes), None)
        _nvset(p, "instance_attributes", f"{rid}-ia", {
            "ip": str(vip.address),
            "cidr_netmask": str(net.prefixlen),
            **({"nic": holder.interface} if holder else {}),
        })
        _ops(p, rid, monitor)

    clone = ET.SubElement(res, "clone", id=HAPROXY)
    _primitive(clone, "haproxy", "systemd", "haproxy")
    _ops(clone[0], "haproxy", monitor)
    # clone-max: one instance per haproxy node, none left "Stopped" on a node banned from it.
    _nvset(clone, "meta_attributes", f"{HAPROXY}-meta",
           {"interleave": "true", "clone-max": str(len(spec.haproxy_nodes()))})

    if pings(spec):
        _ping_clone(res, spec)

    if spec.pacemaker.time_sync != "none":
        ts = ET.SubElement(res, "clone", id=TIME_SYNC)
        unit = "chrony" if spec.pacemaker.time_sync == "chrony" else "ntp"
        _primitive(ts, "time-sync", "systemd", unit)
        _ops(ts[0], "time-sync", 60)
        # One instance per member: none left "Stopped" for a compute (a remote node) it is banned from.
        _nvset(ts, "meta_attributes", f"{TIME_SYNC}-meta", {"clone-max": str(len(cluster))})

    poke_s, start_s = remote_waits(spec)
    for node in spec.remote_nodes():
        # The connection to a compute's pacemaker_remoted. A monitor not answered moves it to another
        # member (on-fail=restart; one failure bans the member for failure-timeout), and pacemaker
        # fences the compute once no member can start it ("the connection is unrecoverable").
        # Pacemaker's default, fencing at the first failed monitor, fenced healthy computes: a member
        # that lost the management network pokes into the void, and its stop waits behind that poke
        # until the poke times out (controld's remote_ra runs one command at a time), so the poke's
        # failure lands first whenever one was sent between the cut and the stop (seen in the lab;
        # tests/integration/test_corosync_pacemaker.py replays both in pacemaker's scheduler).
        # After a fence pacemaker tries to connect again every reconnect_interval.
        p = _primitive(res, node.name, "ocf", "remote", "pacemaker")
        _nvset(p, "instance_attributes", f"{node.name}-ia", {
            "server": str(node.address), "port": str(REMOTE_PORT), "reconnect_interval": f"{REMOTE_RETRY_S}s"})
        # Without a failure timeout the lost connection's failure kept the compute out after it came
        # back (seen in the lab: "will not be started under current conditions" until the 15-minute
        # recheck); with it pacemaker schedules the retry itself.
        # Moved by stop then start, not migrated: a migration left the source's recurring monitor
        # running until the stop that follows it.
        _nvset(p, "meta_attributes", f"{node.name}-meta",
               {"failure-timeout": f"{2 * REMOTE_RETRY_S}s", "allow-migrate": "false", "migration-threshold": "1"})
        _ops(p, node.name, monitor, timeout_s=poke_s, start_s=start_s, on_fail="restart")

    if spec.remote_nodes():
        # Instance HA's evacuator: one copy, on a controller; pacemaker starts it elsewhere when that
        # controller dies (every action it takes is safe to repeat).
        ev = _primitive(res, EVACUATOR, "systemd", EVACUATOR_UNIT)
        _ops(ev, EVACUATOR, monitor)

    fenced = []
    if spec.pacemaker.fencing:
        for node in (*spec.corosync_nodes(), *spec.remote_nodes()):
            if node.fence is None:
                continue
            rid = f"fence-{node.name}"
            p = _primitive(res, rid, "stonith", node.fence.agent)
            attrs = {**node.fence.params, "pcmk_host_list": node.name}  # the spec refuses pcmk_* params
            if node in spec.remote_nodes():
                # A compute is fenced off, not rebooted: the evacuator powers it on once every evacuation
                # from it is done. Back sooner, its nova-compute started first, left the evacuations
                # `done`, and nova refused to clear forced_down until someone restarted it (the lab).
                attrs["pcmk_reboot_action"] = "off"
            if node.fence.delay:
                attrs["pcmk_delay_base"] = f"{node.fence.delay}s"
            _nvset(p, "instance_attributes", f"{rid}-ia", attrs)
            # A failed start is fatal on that node; a power-switch outage fails
            # the device everywhere and, without this, fencing stays off for
            # good once the switch is back (seen in the lab). Retry instead.
            _nvset(p, "meta_attributes", f"{rid}-meta", {"failure-timeout": f"{FENCE_FAILURE_TIMEOUT_S}s"})
            ops = ET.SubElement(p, "operations")
            # 60 s, not the default 20: a BMC (or the lab switch) answering slowly under load is not a failure.
            ET.SubElement(ops, "op", id=f"{rid}-monitor", name="monitor", interval="60s", timeout="60s")
            fenced.append(node.name)

    rsc_defaults = ET.SubElement(conf, "rsc_defaults")
    _nvset(rsc_defaults, "meta_attributes", "rsc-options", {
        "resource-stickiness": str(spec.pacemaker.resource_stickiness),
        "failure-timeout": f"{FAILURE_TIMEOUT_S}s",
    })

    cons = ET.SubElement(conf, "constraints")
    for m in cluster:
        if m.name not in haproxy_nodes:
            for clone_id in (HAPROXY, PING) if pings(spec) else (HAPROXY,):
                ET.SubElement(cons, "rsc_location", id=f"ban-{clone_id}-{m.name}", rsc=clone_id,
                              node=m.name, score="-INFINITY")
    # A compute runs none of the members' resources (its clock is its own business, as before).
    banned = (HAPROXY, *((PING,) if pings(spec) else ()), *(f"vip-{v.name}" for v in managed_vips(spec)),
              *((TIME_SYNC,) if spec.pacemaker.time_sync != "none" else ()))
    evacuators = {n.name for n in spec.evacuator_nodes()}
    for node in spec.remote_nodes():
        for rid in (*banned, EVACUATOR):
            ET.SubElement(cons, "rsc_location", id=f"ban-{rid}-{node.name}", rsc=rid, node=node.name,
                          score="-INFINITY")
    for m in cluster if spec.remote_nodes() else ():
        if m.name not in evacuators:  # a member that is no controller (the voting node)
            ET.SubElement(cons, "rsc_location", id=f"ban-{EVACUATOR}-{m.name}", rsc=EVACUATOR, node=m.name,
                          score="-INFINITY")
    for vip in managed_vips(spec):
        rid = f"vip-{vip.name}"
        ET.SubElement(cons, "rsc_colocation", {"id": f"{rid}-with-haproxy", "rsc": rid,
                                               "with-rsc": HAPROXY, "score": "INFINITY"})
        ET.SubElement(cons, "rsc_order", id=f"haproxy-before-{rid}", first=HAPROXY, then=rid,
                      kind="Mandatory")
        _needs_mgmt(cons, rid)
        for m in cluster:
            if m.name not in haproxy_nodes:
                ET.SubElement(cons, "rsc_location", id=f"ban-{rid}-{m.name}", rsc=rid,
                              node=m.name, score="-INFINITY")
        pref = spec.pacemaker.vip_preferred_node
        if pref:
            ET.SubElement(cons, "rsc_location", id=f"prefer-{rid}-{pref}", rsc=rid, node=pref,
                          score="100")
    for node in spec.remote_nodes():
        # A compute's connection leaves a member that lost the management network (it would fail there,
        # and its failure only moves it: see the connection above). An unknown reach does not keep it off:
        # a connection that cannot start gets its compute fenced (the whole cluster starting, before the
        # first ping, would fence every compute).
        _needs_mgmt(cons, node.name, unknown=False)
    for name in fenced:
        # A node never runs the device that fences itself.
        ET.SubElement(cons, "rsc_location", id=f"fence-{name}-not-on-self", rsc=f"fence-{name}",
                      node=name, score="-INFINITY")
    ET.SubElement(cib, "status")
    return cib


def remote_drop_in(spec: Spec) -> str:
    """pacemaker_remoted's environment on a compute: a bound on how long a connection may hold data its
    peer never acknowledged.

    pacemaker_remoted tells every client of each operation's result, the connections of members that
    died included, and when such a socket's buffer is full it retries the send in a loop (2.1.5,
    `send_tls` in lib/common/remote.c) that holds its main loop: it accepts no connection then, and
    each member that tries one fails its start after 5 s ("Key was rejected by service"). With every
    member failed, pacemaker fenced the healthy compute (seen in the lab after a controller crash and a
    ring loss). The daemon sets TCP_USER_TIMEOUT, half of SBD_WATCHDOG_TIMEOUT, on the connections it
    accepts when that variable is set, and uses it for nothing else: the kernel then drops a
    connection whose data stays unacknowledged for the poke's wait (the time a member takes to find
    the connection lost from its side), which ends the loop and the dead client with it."""
    poke_s, _ = remote_waits(spec)
    return ("# Rendered by hastack: a dead member's connection is dropped, never waited on\n"
            "# (hastack.render.pacemaker.remote_drop_in says why).\n"
            f"[Service]\nEnvironment=SBD_WATCHDOG_TIMEOUT={2 * poke_s}s\n")


def render_pacemaker(spec: Spec, secrets: Secrets) -> dict[str, list[RenderedFile]]:
    root = build_cib(spec)
    ET.indent(root)
    xml = ET.tostring(root, encoding="unicode") + "\n"
    out = {m.name: [text(CIB, xml)] for m in members(spec)}
    if spec.remote_nodes():
        key = RenderedFile(AUTHKEY, base64.b64decode(secrets["pacemaker_authkey"]), 0o440, "hacluster", "haclient")
        for m in members(spec):
            out[m.name].append(key)
        drop_in = text(REMOTE_DROP_IN, remote_drop_in(spec))
        for n in spec.remote_nodes():
            out.setdefault(n.name, []).extend((key, drop_in))
    return out

"""Rendering: complete, deterministic, secrets only in private files."""

from __future__ import annotations

import base64
import configparser
import json
from urllib.parse import urlsplit

import pytest
import yaml

from hastack.deploy.plan import phases
from hastack.render import render_all
from hastack.render.files import Tree
from hastack.render.keepalived import priorities
from hastack.render.pacemaker import build_cib
from hastack.spec.errors import SpecLoadError
from hastack.spec.load import load_spec
from hastack.spec.model import EVERY_SERVICE, Spec
from hastack.spec.timing import Timing
from tests.helpers import SEED, THREE, secrets_for, variant


@pytest.fixture(params=[THREE, SEED], ids=["three", "seed"])
def spec(request: pytest.FixtureRequest) -> Spec:
    return load_spec(request.param)


def files(tree: Tree, host: str, path: str) -> str:
    return tree[host][path].content.decode()


def ini(tree: Tree, host: str, path: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(files(tree, host, path))
    return cp


def test_render_is_deterministic(spec: Spec) -> None:
    secrets = secrets_for(spec)
    a, b = render_all(spec, secrets), render_all(spec, secrets)
    assert {h: {p: f.content for p, f in fs.items()} for h, fs in a.items()} == {
        h: {p: f.content for p, f in fs.items()} for h, fs in b.items()
    }


def test_no_secret_in_a_world_readable_file(spec: Spec) -> None:
    secrets = secrets_for(spec)
    values = list(secrets.data.values())
    values += [base64.b64decode(secrets["corosync_authkey"])[:32].hex()]
    for host, fs in render_all(spec, secrets).items():
        for path, f in fs.items():
            body = f.content.decode(errors="replace")
            leaked = [v[:6] + "..." for v in values if v in body]
            if leaked:
                assert f.secret, f"{host}:{path} (mode {f.mode:o}) holds secrets {leaked}"


def test_every_component_lands_on_its_hosts() -> None:
    spec = load_spec(SEED)
    tree = render_all(spec, secrets_for(spec))
    assert "/etc/default/garb" in tree["arb1"]
    assert "/etc/mysql/mariadb.conf.d/60-galera.cnf" not in tree["arb1"]
    assert "/etc/haproxy/haproxy.cfg" not in tree["arb1"]
    assert "/etc/corosync/corosync.conf" in tree["arb1"]
    assert "/etc/corosync/corosync.conf" not in tree["compute1"]
    assert "/etc/mongod.conf" in tree["arb1"]
    assert set(tree["compute1"]) == {
        "/etc/nova/nova.conf.d/50-hastack-ha.conf", "/etc/neutron/neutron.conf.d/50-hastack-ha.conf",
        "/etc/systemd/system/nova-compute.service",  # nova's fake driver
        "/etc/hastack/secrets.fingerprints",  # computes hold the messaging password
        "/etc/hastack/tls/ca.pem",  # the examples speak TLS: the broker and the VIP are checked against it
        "/etc/sysctl.d/61-hastack-keepalive.conf"}  # every host


def test_every_host_probes_idle_connections_by_the_profile() -> None:
    # PyMySQL asks for keepalive; the kernel's 2 h default left a query through a dead VIP holder
    # waiting that long. The probes follow the timing profile, on every host.
    for profile, idle, interval in (("default", 15, 5), ("fast", 5, 1)):
        spec = load_spec(SEED).model_copy(update={"timing": Timing(profile=profile)})
        tree = render_all(spec, secrets_for(spec))
        bodies = {tree[n.name]["/etc/sysctl.d/61-hastack-keepalive.conf"].content.decode() for n in spec.nodes}
        assert len(bodies) == 1
        body = bodies.pop()
        assert f"net.ipv4.tcp_keepalive_time = {idle}\n" in body
        assert f"net.ipv4.tcp_keepalive_intvl = {interval}\n" in body and "tcp_keepalive_probes = 3\n" in body


def test_corosync_two_links_and_shared_key(spec: Spec) -> None:
    tree = render_all(spec, secrets_for(spec))
    members = spec.corosync.nodes
    confs = {files(tree, m, "/etc/corosync/corosync.conf") for m in members}
    assert len(confs) == 1
    conf = confs.pop()
    assert "transport: knet" in conf and "linknumber: 1" in conf
    assert conf.count("ring1_addr:") == len(members)
    assert "two_node" not in conf  # three voters in both examples
    keys = {tree[m]["/etc/corosync/authkey"].content for m in members}
    assert len(keys) == 1 and len(keys.pop()) == 256
    assert tree[members[0]]["/etc/corosync/authkey"].mode == 0o400


def test_two_voters_get_two_node_mode() -> None:
    spec = variant(corosync={"nodes": ["ctl1", "ctl2"]})
    conf = files(render_all(spec, secrets_for(spec)), "ctl1", "/etc/corosync/corosync.conf")
    assert "two_node: 1" in conf


def test_haproxy_one_writer_and_http_check() -> None:
    spec = load_spec(THREE)
    cfg = files(render_all(spec, secrets_for(spec)), "ctl2", "/etc/haproxy/haproxy.cfg")
    galera = cfg.split("listen galera-internal")[1].split("\nlisten ")[0]
    servers = [line.split() for line in galera.splitlines() if line.strip().startswith("server ")]
    assert [s[1] for s in servers] == ["ctl1", "ctl2", "ctl3"]
    assert ["backup" in s for s in servers] == [False, True, True]
    assert "http-check send meth GET uri /galera hdr Authorization" in galera and all("port" in s for s in servers)
    assert "contimeout" not in cfg and "balance source\n    server ctl1 10.77.0.11:3306" not in cfg
    assert "stats auth hastack:" in cfg and "admin:admin" not in cfg
    assert "bind 10.77.0.12:1993" in cfg  # stats on the node's own management address
    assert "default-server inter 1000ms fastinter 1000ms rise 2 fall 3 " in cfg
    assert cfg.split("default-server")[1].split("\n")[0].endswith(" on-error fastinter")
    assert "    timeout connect 2000ms\n" in cfg


def test_haproxy_checks_a_well_server_each_second_and_a_failing_one_at_fastinter() -> None:
    """The fast profile: every 200 ms only once a check (or a client's connection) failed; checking
    every API that often took ~0.8 of the lab's 2 cores."""
    spec = variant(timing={"profile": "fast"})
    cfg = files(render_all(spec, secrets_for(spec)), "ctl1", "/etc/haproxy/haproxy.cfg")
    [line] = [ln.split() for ln in cfg.splitlines() if ln.strip().startswith("default-server")]
    assert line[1:] == ["inter", "1000ms", "fastinter", "200ms", "rise", "2", "fall", "2",
                        "observe", "layer4", "error-limit", "1", "on-error", "sudden-death"]
    assert "    timeout connect 250ms\n" in cfg
    spec = variant(timing={"profile": "fast", "haproxy_fastinter_ms": 300, "haproxy_inter_ms": 2000})
    cfg = files(render_all(spec, secrets_for(spec)), "ctl1", "/etc/haproxy/haproxy.cfg")
    assert "default-server inter 2000ms fastinter 300ms rise 2 fall 2 " in cfg


def test_haproxy_multi_writer_when_asked() -> None:
    spec = variant(galera={"writers": "all"})
    cfg = files(render_all(spec, secrets_for(spec)), "ctl1", "/etc/haproxy/haproxy.cfg")
    galera = cfg.split("listen galera-internal")[1].split("\nlisten ")[0]
    assert " backup" not in galera


def test_galera_config(spec: Spec) -> None:
    tree = render_all(spec, secrets_for(spec))
    nodes = spec.galera.nodes
    cnf = files(tree, nodes[1], "/etc/mysql/mariadb.conf.d/60-galera.cnf")
    addrs = ",".join(str(spec.node(n).address) for n in nodes)
    assert f"wsrep_cluster_address = gcomm://{addrs}" in cnf
    assert "server_id = 2" in cnf and "wsrep_sst_method = mariabackup" in cnf
    assert "evs.suspect_timeout=PT5S" in cnf and "pc.recovery=TRUE" in cnf
    assert "\ninnodb_locks_unsafe_for_binlog" not in cnf  # only named in the comment
    sst = tree[nodes[0]]["/etc/mysql/mariadb.conf.d/61-galera-sst.cnf"]
    assert sst.mode == 0o640 and sst.group == "mysql"
    sql = files(tree, nodes[0], "/etc/hastack/galera-bootstrap.sql")
    assert "GRANT ALL PRIVILEGES ON *.*" not in sql
    assert "CREATE DATABASE IF NOT EXISTS `nova_api`" in sql


def test_fast_profile_reaches_galera_and_garbd() -> None:
    spec = variant(SEED, timing={"profile": "fast"})
    tree = render_all(spec, secrets_for(spec))
    for host, path in (("ctl1", "/etc/mysql/mariadb.conf.d/60-galera.cnf"), ("arb1", "/etc/default/garb")):
        text = files(tree, host, path)
        assert "evs.suspect_timeout=PT1.5S" in text and "evs.keepalive_period=PT0.4S" in text
        # Eviction = suspect timeout + up to one check period + the join rounds: both scaled down
        # with the profile (galera's own 0.5 s and 1 s added 1.5 s to a 2 s suspect timeout).
        assert "evs.inactive_check_period=PT0.15S" in text and "evs.join_retrans_period=PT0.4S" in text
    default = files(render_all(load_spec(SEED), secrets_for(spec)), "ctl1", "/etc/mysql/mariadb.conf.d/60-galera.cnf")
    assert "evs.inactive_check_period=PT0.5S" in default and "evs.join_retrans_period=PT1S" in default


def test_mongo_replset_priorities_and_arbiter() -> None:
    spec = load_spec(SEED)
    tree = render_all(spec, secrets_for(spec))
    rs = json.loads(files(tree, "ctl1", "/etc/hastack/mongodb-replset.json"))
    assert [m.get("priority") for m in rs["members"]] == [3, 1, None]
    assert rs["members"][2] == {"_id": 2, "host": "10.77.0.13:27017", "arbiterOnly": True}
    assert rs["settings"]["electionTimeoutMillis"] == 10000
    assert rs["settings"]["chainingAllowed"] is False  # no secondary hangs off another one
    # Bounded: MongoDB's -1 waits for a lost primary's heartbeat to time out, 10 s after its last answer
    assert rs["settings"]["catchUpTimeoutMillis"] == 2000
    fast = variant(timing={"profile": "fast"})
    fast_rs = json.loads(files(render_all(fast, secrets_for(fast)), "ctl1", "/etc/hastack/mongodb-replset.json"))
    # ~1 s sooner writable after a crash; majority writes are on the elected member anyway
    assert fast_rs["settings"]["catchUpTimeoutMillis"] == 0
    conf = yaml.safe_load(files(tree, "arb1", "/etc/mongod.conf"))
    assert conf["replication"]["replSetName"] == "rs0"
    assert conf["net"]["bindIp"] == "127.0.0.1,10.77.0.13"


def test_rabbitmq_no_guest_quorum_and_peers() -> None:
    spec = load_spec(THREE)
    tree = render_all(spec, secrets_for(spec))
    conf = files(tree, "ctl3", "/etc/rabbitmq/rabbitmq.conf")
    assert "cluster_formation.classic_config.nodes.3 = rabbit@ctl3" in conf
    assert "cluster_partition_handling = pause_minority" in conf
    # Two nodes: neither side of a split is a majority, so autoheal unless the spec says otherwise.
    seed = load_spec(SEED)
    two = files(render_all(seed, secrets_for(seed)), "ctl2", "/etc/rabbitmq/rabbitmq.conf")
    assert "cluster_partition_handling = autoheal" in two
    defs = json.loads(files(tree, "ctl3", "/etc/rabbitmq/definitions.json"))
    assert "guest" not in {u["name"] for u in defs["users"]}
    assert all("ha-mode" not in p["definition"] for p in defs["policies"])
    assert "NODENAME=rabbit@ctl3" in files(tree, "ctl3", "/etc/rabbitmq/rabbitmq-env.conf")
    # A start hung in global:sync is retried after 180 s, not left for Debian's 10.
    unit = files(tree, "ctl3", "/etc/systemd/system/rabbitmq-server.service.d/50-hastack.conf")
    assert "TimeoutStartSec=180" in unit and "Restart=on-failure" in unit


def test_mirrored_policy_when_waived() -> None:
    spec = variant(rabbitmq={"queue_type": "mirrored"})
    defs = json.loads(files(render_all(spec, secrets_for(spec)), "ctl1", "/etc/rabbitmq/definitions.json"))
    assert any(p["definition"].get("ha-mode") == "all" for p in defs["policies"])


def test_openstack_fragments() -> None:
    spec = load_spec(THREE)
    secrets = secrets_for(spec)
    tree = render_all(spec, secrets)
    cp = ini(tree, "ctl1", "/etc/nova/nova.conf.d/50-hastack-ha.conf")
    url = urlsplit(cp["DEFAULT"]["transport_url"])
    assert url.scheme == "rabbit"
    assert [h.split("@")[1] for h in url.netloc.split(",")] == [  # AMQP over TLS: the examples have it
        "10.77.0.11:5671", "10.77.0.12:5671", "10.77.0.13:5671"]
    assert cp["oslo_messaging_rabbit"]["rabbit_quorum_queue"] == "true"
    db = urlsplit(cp["database"]["connection"])
    assert db.hostname == "10.77.0.10" and db.path == "/nova"
    assert urlsplit(cp["api_database"]["connection"]).path == "/nova_api"
    assert cp["cache"]["memcache_servers"] == "10.77.0.10:11211"
    neutron = ini(tree, "ctl2", "/etc/neutron/neutron.conf.d/50-hastack-ha.conf")
    assert neutron["DEFAULT"]["l3_ha"] == "true"
    assert neutron["DEFAULT"]["max_l3_agents_per_router"] == "3"
    compute = ini(tree, "compute1", "/etc/nova/nova.conf.d/50-hastack-ha.conf")
    assert "database" not in compute  # computes never reach the database directly


def test_cinder_heat_and_horizon_run_bound_to_their_node() -> None:
    spec = variant(openstack={"services": list(EVERY_SERVICE)})
    secrets = secrets_for(spec)
    tree = render_all(spec, secrets)
    heat = ini(tree, "ctl2", "/etc/heat/heat.conf.d/50-hastack-ha.conf")
    # The engine acts for users through trusts given to heat's own user; instances call the CFN API on the VIP.
    assert heat["trustee"]["username"] == "heat" and heat["trustee"]["password"] == secrets["os_heat_password"]
    assert heat["DEFAULT"]["heat_metadata_server_url"] == "https://10.77.0.10:8000"  # the examples have TLS
    assert urlsplit(heat["database"]["connection"]).path == "/heat"
    cinder = ini(tree, "ctl2", "/etc/cinder/cinder.conf.d/50-hastack-ha.conf")
    assert cinder["DEFAULT"]["my_ip"] == "10.77.0.12" and cinder["keystone_authtoken"]["username"] == "cinder"
    for unit in ("cinder-api", "heat-api", "heat-api-cfn", "horizon"):
        assert "http-socket = 10.77.0.12:" in files(tree, "ctl2", f"/etc/hastack/uwsgi/{unit}.ini"), unit
    # horizon binds port 80 as www-data (a capability, not root), in a log directory systemd makes for it.
    unit = files(tree, "ctl2", "/etc/systemd/system/horizon.service")
    assert "User=www-data" in unit and "AmbientCapabilities=CAP_NET_BIND_SERVICE" in unit
    assert "LogsDirectory=horizon" in unit
    assert "AmbientCapabilities" not in files(tree, "ctl2", "/etc/systemd/system/heat-api.service")
    assert "static-map = /static=" in files(tree, "ctl2", "/etc/hastack/uwsgi/horizon.ini")
    # One signing key everywhere (signed-cookie sessions: any controller serves any session), never world-readable.
    path = "/etc/openstack-dashboard/local_settings.d/_90_hastack.py"
    settings = [tree[h][path] for h in ("ctl1", "ctl2", "ctl3")]
    assert len({f.content for f in settings}) == 1 and settings[0].mode == 0o640 and settings[0].group == "www-data"
    scope: dict[str, object] = {}
    exec(settings[0].content.decode(), scope)  # horizon exec()s it the same way
    assert scope["SECRET_KEY"] == secrets["horizon_secret_key"]
    assert scope["SESSION_ENGINE"] == "django.contrib.sessions.backends.signed_cookies"
    assert scope["OPENSTACK_KEYSTONE_URL"] == "https://10.77.0.10:5000/v3"
    assert "10.77.0.10" in scope["ALLOWED_HOSTS"]  # type: ignore[operator]


def test_keepalived_replaces_pacemaker_vip() -> None:
    spec = variant(vip_manager="keepalived", waivers=[{"code": "HA120", "reason": "operator prefers VRRP"}])
    tree = render_all(spec, secrets_for(spec))
    conf = files(tree, "ctl2", "/etc/keepalived/keepalived.conf")
    assert "unicast_peer" in conf and "10.77.0.11" in conf and "nopreempt" in conf
    assert "priority 150" in conf and "vrrp_rt_priority 50" in conf
    assert "vip-internal" not in files(tree, "ctl1", "/etc/hastack/cib.xml")
    assert "/etc/keepalived/keepalived.conf" not in render_all(load_spec(THREE), secrets_for(spec))["ctl1"]


def test_vrrp_priorities_leave_a_backup_time_to_be_heard() -> None:
    # Two backups' master-down timers differ by gap/256 adverts: keep the gap wide, every value valid.
    assert priorities(2) == [250, 150] and priorities(3) == [250, 150, 50]
    for n in (1, 5, 9, 40):
        got = priorities(n)
        assert len(set(got)) == n and all(1 <= p <= 254 for p in got) and got == sorted(got, reverse=True)
    assert min(a - b for a, b in zip(priorities(9), priorities(9)[1:], strict=False)) == 25


def test_keepalived_quorum_gates_vrrp_on_corosync_and_keeps_fencing() -> None:
    spec = variant(vip_manager="keepalived-quorum")
    tree = render_all(spec, secrets_for(spec))
    conf = files(tree, "ctl1", "/etc/keepalived/keepalived.conf")
    # No vrrp_script (keepalived would fork its VRRP process for it): each check is a file the gate writes.
    keywords = {line.split()[0] for line in conf.splitlines() if line.strip() and not line.lstrip().startswith("#")}
    assert not keywords & {"vrrp_script", "track_script"}
    for name in ("haproxy", "mgmt", "quorum"):
        block = conf.split(f"track_file {name} {{", 1)[1].split("}", 1)[0]
        assert f'file "/run/hastack-vrrp/{name}"' in block and "weight 0" in block and "init_file 1" in block
    tracked = conf.split("track_file {", 1)[1].split("}", 1)[0].split()
    assert tracked == ["haproxy", "mgmt", "quorum"]
    unit = files(tree, "ctl1", "/etc/systemd/system/hastack-vrrp-gate.service")
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    # The management network checked as pacemaker's ping clone checks it: one other node answering is enough.
    assert exec_start == ("ExecStart=/usr/local/bin/hastack-vrrp-gate --dir /run/hastack-vrrp --quorum "
                          "--ping-every 3 --ping 10.77.0.12 10.77.0.13 10.77.0.21 10.77.0.22 "
                          f"--device eth0 --vip {spec.vips[0].address}/24")
    drop_in = files(tree, "ctl1", "/etc/systemd/system/keepalived.service.d/hastack.conf")
    assert "Wants=hastack-vrrp-gate.service" in drop_in
    assert "advert_int 1\n" in conf  # the default profile's advert
    assert "down_timer_adverts 5\n" in conf  # VRRP's own rule is 3: see Timing
    # The fast profile's 0.1 s adverts: six missed in a row before a backup takes over, so a lossy
    # link does not hand the VIP to a backup while the holder lives.
    fast = variant(vip_manager="keepalived-quorum", timing={"profile": "fast"})
    fast_conf = files(render_all(fast, secrets_for(fast)), "ctl2", "/etc/keepalived/keepalived.conf")
    assert "advert_int 0.1\n" in fast_conf and "down_timer_adverts 6\n" in fast_conf
    assert fast.timing.keepalived_failover_ms() == 700
    cib = build_cib(spec)
    ids = {p.get("id", "") for p in cib.iter("primitive")}
    assert not any(i.startswith("vip-") for i in ids)  # keepalived moves the address
    assert {"haproxy", "fence-ctl1", "fence-ctl2", "fence-ctl3"} <= ids
    props = {nv.get("name"): nv.get("value") for nv in cib.iter("nvpair")}
    assert props["stonith-enabled"] == "true"
    assert "/etc/corosync/corosync.conf" in tree["ctl1"]
    # VRRP alone has no quorum to ask.
    alone = variant(vip_manager="keepalived", waivers=[{"code": "HA120", "reason": "operator prefers VRRP"}])
    alone_tree = render_all(alone, secrets_for(alone))
    assert "quorum" not in files(alone_tree, "ctl1", "/etc/keepalived/keepalived.conf").split("track_file {", 1)[1]
    assert "--quorum" not in files(alone_tree, "ctl1", "/etc/systemd/system/hastack-vrrp-gate.service")


def test_deploy_phases_follow_the_vip_manager() -> None:
    def keys(manager: str) -> list[str]:
        return [p.key for p in phases(variant(vip_manager=manager))]

    # OpenStack last, once the VIP it reaches its databases through is up.
    assert keys("pacemaker")[-2:] == ["cib", "openstack"] and "keepalived" not in keys("pacemaker")
    assert "corosync" not in keys("keepalived") and "cib" not in keys("keepalived")
    hybrid = keys("keepalived-quorum")
    # Quorum before the CIB (haproxy and fencing), keepalived after it: its quorum check needs corosync.
    assert hybrid.index("corosync") < hybrid.index("cib") < hybrid.index("keepalived") < hybrid.index("openstack")


def test_cib_constraints() -> None:
    spec = load_spec(SEED)
    cib = build_cib(spec)
    locs = {(c.get("rsc"), c.get("node"), c.get("score")) for c in cib.iter("rsc_location")}
    assert ("vip-internal", "arb1", "-INFINITY") in locs
    assert ("haproxy-clone", "arb1", "-INFINITY") in locs
    assert ("vip-internal", "ctl1", "100") in locs
    for node in ("ctl1", "ctl2", "arb1"):
        assert (f"fence-{node}", node, "-INFINITY") in locs
    props = {nv.get("name"): nv.get("value") for nv in cib.iter("nvpair")}
    assert props["stonith-enabled"] == "true" and props["no-quorum-policy"] == "stop"
    [order] = list(cib.iter("rsc_order"))
    assert (order.get("first"), order.get("then")) == ("haproxy-clone", "vip-internal")
    # A fence device that failed to start everywhere is tried again, not left off for good.
    metas = {p.get("id"): {nv.get("name"): nv.get("value") for nv in p.iter("nvpair") if "-meta-" in nv.get("id", "")}
             for p in cib.iter("primitive") if p.get("class") == "stonith"}
    assert set(metas) == {"fence-ctl1", "fence-ctl2", "fence-arb1"}
    assert all(m == {"failure-timeout": "120s"} for m in metas.values())
    # Every other resource's failed start is tried again too (CI: haproxy stopped for good on a node).
    defaults = {nv.get("name"): nv.get("value") for nv in cib.iter("nvpair")
                if nv.get("id", "").startswith("rsc-options")}
    assert defaults == {"resource-stickiness": str(spec.pacemaker.resource_stickiness), "failure-timeout": "60s"}


def test_a_vip_holder_must_reach_the_management_network() -> None:
    spec = variant(networks={"management": "10.77.0.0/24", "heartbeat": ["10.77.1.0/24", "10.77.2.0/24"],
                             "ping_targets": ["10.77.0.1"]}, timing={"profile": "fast"})
    cib = build_cib(spec)
    ping = next(p for p in cib.iter("primitive") if p.get("type") == "ping")
    lists = {ia.get("id"): nv.get("value") for ia in ping.iter("instance_attributes") for nv in ia.iter("nvpair")
             if nv.get("name") == "host_list"}
    # Each node pings every other node and the spec's gateway, never itself (its own address answers
    # with the link down).
    assert lists["mgmt-ping-ia-ctl2"] == "10.77.0.11 10.77.0.13 10.77.0.21 10.77.0.22 10.77.0.1"
    assert next(op for op in ping.iter("op") if op.get("name") == "monitor").get("interval") == "1s"  # fast
    # Two fping tries of 0.5 s per look (the agent's -r is a retry count: its options' later -r 1 wins).
    [common] = [ia for ia in ping.iter("instance_attributes") if ia.get("id") == "mgmt-ping-ia"]
    shared = {nv.get("name"): nv.get("value") for nv in common.iter("nvpair")}
    assert {k: shared[k] for k in ("attempts", "timeout", "options", "dampen")} == {
        "attempts": "2", "timeout": "1", "options": "-r 1", "dampen": "0s"}
    [rule] = [c.find("rule") for c in cib.iter("rsc_location") if c.get("id") == "vip-internal-needs-mgmt"]
    assert rule is not None and rule.get("score") == "-INFINITY" and rule.get("boolean-op") == "or"
    assert [(e.get("attribute"), e.get("operation"), e.get("value")) for e in rule.iter("expression")] == [
        ("mgmt-reach", "not_defined", None), ("mgmt-reach", "lt", "1")]
    # A target outside the management network is refused with the spec.
    with pytest.raises(SpecLoadError, match=r"ping_targets 192\.0\.2\.1 not in the management network"):
        variant(networks={"management": "10.77.0.0/24", "ping_targets": ["192.0.2.1"]})


def test_a_compute_s_connection_leaves_a_member_cut_off_from_the_management_network() -> None:
    """Seen in the lab: the VIP holder's management link cut while it held compute1's connection; the
    connection failed there and pacemaker fenced the healthy compute. Each connection now leaves a
    member whose reach dropped to 0, and is not kept off one whose reach is unknown (the cluster
    starting: a connection that cannot start gets its compute fenced); a poke that failed only moves
    it. With keepalived managing the VIP, the members ping for the connections alone."""
    for manager in ("pacemaker", "keepalived-quorum"):
        cib = build_cib(variant(instance_ha={"enabled": True}, vip_manager=manager))
        assert any(c.get("id") == "mgmt-ping-clone" for c in cib.iter("clone")), manager
        for compute in ("compute1", "compute2"):
            [rule] = [c.find("rule") for c in cib.iter("rsc_location") if c.get("id") == f"{compute}-needs-mgmt"]
            assert rule is not None and rule.get("score") == "-INFINITY"
            assert [(e.get("attribute"), e.get("operation"), e.get("value")) for e in rule.iter("expression")] == [
                ("mgmt-reach", "lt", "1")]
            # Moved by stop then start: a migration's source kept poking from the cut member meanwhile.
            [meta] = [m for m in cib.iter("meta_attributes") if m.get("id") == f"{compute}-meta"]
            metas = {n.get("name"): n.get("value") for n in meta.iter("nvpair")}
            assert metas["allow-migrate"] == "false" and metas["migration-threshold"] == "1"
            # A failed poke moves the connection (pacemaker's default fenced the compute at once); a compute
            # no member reaches is fenced when every member failed to start it.
            ops = {o.get("name"): o for o in cib.iter("op") if o.get("id", "").startswith(f"{compute}-")}
            assert ops["monitor"].get("on-fail") == "restart" and ops["start"].get("on-fail") is None
            assert (ops["monitor"].get("interval"), ops["monitor"].get("timeout"), ops["start"].get("timeout")) == (
                "5s", "10s", "5s")  # the default profile
    assert not any(c.get("id") == "mgmt-ping-clone" for c in build_cib(variant(vip_manager="keepalived-quorum"))
                   .iter("clone"))


def test_a_compute_s_pacemaker_remoted_drops_a_connection_its_peer_stopped_acknowledging() -> None:
    """pacemaker_remoted gives its connections TCP_USER_TIMEOUT (half of SBD_WATCHDOG_TIMEOUT) only when
    that variable is in its environment: computes get it, twice the poke's wait, so a dead member's
    connection is dropped once a member would have found it lost; members never (their controller
    reads the variable as the watchdog's timeout)."""
    for profile, poke_s in (("default", 10), ("fast", 4)):
        s = variant(instance_ha={"enabled": True}, timing={"profile": profile})
        tree = render_all(s, secrets_for(s))
        path = "/etc/systemd/system/pacemaker_remote.service.d/50-hastack.conf"
        for compute in ("compute1", "compute2"):
            assert ini(tree, compute, path)["Service"]["Environment"] == f"SBD_WATCHDOG_TIMEOUT={2 * poke_s}s", profile
        assert not [h for h, fs in tree.items() if path in fs and not h.startswith("compute")]
        assert not any(b"SBD_WATCHDOG_TIMEOUT" in f.content for fs in tree.values() for f in fs.values()
                       if f.path != path)
    # No computes watched, no drop-in.
    plain = variant()
    assert not any(p.startswith("/etc/systemd/system/pacemaker_remote") for fs in render_all(
        plain, secrets_for(plain)).values() for p in fs)


def test_fence_delay_becomes_pcmk_delay_base() -> None:
    data_spec = load_spec(SEED)
    nodes = [n.model_copy(update={"fence": n.fence.model_copy(update={"delay": 10})}) if n.name == "ctl1" and n.fence
             else n for n in data_spec.nodes]
    spec = data_spec.model_copy(update={"nodes": tuple(nodes)})
    props = {nv.get("id"): nv.get("value") for nv in build_cib(spec).iter("nvpair")}
    assert props["fence-ctl1-ia-pcmk_delay_base"] == "10s"

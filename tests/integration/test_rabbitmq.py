"""RabbitMQ boots on the rendered rabbitmq.conf and definitions.

One node, in a namespace holding its management address (the listener and
management bind there, as rendered). Checks what the definitions promise:
the generated users authenticate with the derived password hashes, the
policy exists, and no guest account was made.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from hastack.agent.rabbit_watch import DIST_PORT, cut_argv
from hastack.common.poll import until
from hastack.components.rabbitmq import CLUSTER, STATUS, parse_cluster_status, parse_status
from hastack.lab.netns import Netns, netns
from hastack.render.rabbitmq import DEFINITIONS, TLS_DIR
from hastack.workload.chaos_load import ChaosTarget
from hastack.workload.smoke import target
from tests.helpers import SEED, variant
from tests.integration.conftest import Daemons, Rendered, render_to, require, wait_until

NODE = "hastack-validate@localhost"
SBIN = Path("/usr/lib/rabbitmq/bin")  # the scripts themselves, not Debian's su wrappers


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_NODENAME": NODE,
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",
        "RABBITMQ_PID_FILE": str(home / "pid"),
    }


def _ctl(ns: Netns, home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return ns.run([str(SBIN / "rabbitmqctl"), "-n", NODE, *args], env=_env(home), timeout=timeout)


def _boot(rendered: Rendered, name: str, home: Path, ns: Netns, daemons: Daemons) -> None:
    """rabbitmq-server on the rendered files; only paths (definitions, certificates) move to `home`."""
    (home / "mnesia").mkdir(parents=True)
    (home / "log").mkdir()
    conf = rendered.path(name, "/etc/rabbitmq/rabbitmq.conf").read_text()
    conf = conf.replace(DEFINITIONS, str(home / "definitions.json"))
    (home / "rabbitmq.conf").write_text(conf.replace(TLS_DIR, str(rendered.path(name, TLS_DIR))))
    for f in ("definitions.json", "enabled_plugins"):
        (home / f).write_bytes(rendered.path(name, f"/etc/rabbitmq/{f}").read_bytes())
    cookie = home / ".erlang.cookie"
    cookie.write_bytes(rendered.path(name, "/var/lib/rabbitmq/.erlang.cookie").read_bytes())
    cookie.chmod(0o400)
    # Run from `home`: Erlang writes its crash dumps (MnesiaCore.*, erl_crash.dump) where it runs, and one
    # from the repository's root was once committed.
    daemons.spawn(ns.argv([str(SBIN / "rabbitmq-server")]), home / "server.out", env=_env(home), cwd=home)
    wait_until(lambda: _ctl(ns, home, "await_startup", "--timeout", "5", timeout=30).returncode == 0,
               120, "rabbitmq to boot")


def test_rabbitmq_boots_with_rendered_config(rendered: Rendered, tmp_path: Path, daemons: Daemons) -> None:
    require("rabbitmq-server")
    spec = rendered.spec
    name = spec.rabbitmq.nodes[0]
    home = tmp_path / "rabbit"
    with netns("rabbit", [str(spec.node(name).address)]) as ns:
        _boot(rendered, name, home, ns, daemons)
        users = _ctl(ns, home, "list_users", "-q").stdout
        assert "openstack" in users and "hastack-admin" in users and "guest" not in users
        ok = _ctl(ns, home, "authenticate_user", spec.rabbitmq.user, rendered.secrets["rabbitmq_password"])
        assert ok.returncode == 0, ok.stdout + ok.stderr
        bad = _ctl(ns, home, "authenticate_user", spec.rabbitmq.user, "guest")
        assert bad.returncode != 0
        policies = _ctl(ns, home, "list_policies", "-q").stdout
        assert "hastack-transient" in policies and "ha-mode" not in policies
        status = _ctl(ns, home, "environment").stdout
        assert spec.rabbitmq.partition_mode in status  # autoheal on the seed's two nodes
        listeners = _ctl(ns, home, "status").stdout
        port = 5671 if spec.tls.enabled else 5672  # AMQP over TLS alone when the spec says TLS
        assert f"{spec.node(name).address}, port: {port}" in listeners, listeners
        _ctl(ns, home, "stop")


# A publish confirmed by the broker, as the workload makes it (Target.amqp): prints "confirmed" or the error.
PUBLISH = """
import json, sys
import pika
from hastack.workload.smoke import Target
t = Target.model_validate_json(sys.argv[1])
try:
    conn = pika.BlockingConnection(pika.ConnectionParameters(**t.amqp(t.rabbit_hosts[0]), virtual_host=t.rabbit_vhost,
        credentials=pika.PlainCredentials(t.rabbit_user, t.rabbit_password), socket_timeout=5, connection_attempts=1))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.queue_declare("tls-probe", durable=True, arguments={"x-queue-type": "quorum"})
    ch.basic_publish("", "tls-probe", b"x", pika.BasicProperties(delivery_mode=2), mandatory=True)
    print("confirmed")
except Exception as exc:
    print(type(exc).__name__)
"""


def test_amqp_over_tls_only_with_the_rendered_certificates(tmp_path: Path, daemons: Daemons) -> None:
    """TLS on: the broker listens for AMQP over TLS alone; a client checking its certificate against
    the CA publishes (confirmed), one without TLS is not served."""
    require("rabbitmq-server")
    r = render_to(variant(SEED, tls={"enabled": True}), tmp_path / "out")
    name = r.spec.rabbitmq.nodes[0]
    address = str(r.spec.node(name).address)
    home = tmp_path / "rabbit"
    t = target(r.spec, r.secrets, "hastack_admin").model_copy(update={"rabbit_hosts": (address,)})
    with netns("rabbittls", [address]) as ns:
        _boot(r, name, home, ns, daemons)
        listeners = _ctl(ns, home, "status").stdout
        assert f"{address}, port: 5671, protocol: amqp/ssl" in listeners, listeners
        assert "port: 5672" not in listeners
        # status's own probe calls the node serving (its one AMQP listener is the TLS one)
        probe = _ctl(ns, home, *STATUS.argv[1:])
        assert probe.returncode == 0, probe.stderr
        assert parse_status(probe.stdout).cluster.serving == (NODE,), probe.stdout
        view = _ctl(ns, home, *CLUSTER.argv[1:])  # recover's view of the cluster: the same
        assert view.returncode == 0, view.stderr
        assert parse_cluster_status(view.stdout).serving == (NODE,), view.stdout
        res = ns.run([sys.executable, "-c", PUBLISH, t.model_dump_json()], timeout=60)
        assert res.stdout.strip() == "confirmed", res.stdout + res.stderr
        plain = t.model_copy(update={"tls_ca": "", "rabbit_port": 5671})
        res = ns.run([sys.executable, "-c", PUBLISH, plain.model_dump_json()], timeout=60)
        assert res.stdout.strip() not in ("confirmed", ""), res.stdout + res.stderr
        _ctl(ns, home, "stop")


def _go_silent(ns: Netns) -> None:
    """Every frame in or out of the namespace's eth0 dropped: its host lost its link (no FIN, no RST)."""
    for args in (("add", "table", "ip", "hst"),
                 ("add", "chain", "ip", "hst", "in", "{ type filter hook input priority 0 ; }"),
                 ("add", "chain", "ip", "hst", "out", "{ type filter hook output priority 0 ; }"),
                 ("add", "rule", "ip", "hst", "in", "iifname", "eth0", "drop"),
                 ("add", "rule", "ip", "hst", "out", "oifname", "eth0", "drop")):
        res = ns.run(["nft", *args])
        assert res.returncode == 0, f"nft {' '.join(args)}: {res.stderr}"


def _linked(a: Netns, b: Netns, addresses: tuple[str, str], prefix: int) -> None:
    """A veth pair between the two namespaces (eth0 in each), with one address each, up."""
    subprocess.run(["ip", "-n", a.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                    "netns", b.name], check=True, timeout=30)
    for ns, addr in ((a, addresses[0]), (b, addresses[1])):
        for args in (("addr", "add", f"{addr}/{prefix}", "dev", "eth0"), ("link", "set", "eth0", "up")):
            subprocess.run(["ip", "-n", ns.name, *args], check=True, timeout=30)


# The watching node: connected to its peer, it prints "up", then "down" the moment the VM sees the peer go.
WATCHER = ("true = net_kernel:connect_node('{peer}'), erlang:monitor_node('{peer}', true), io:format(\"up~n\"), "
           "receive {{nodedown, _}} -> io:format(\"down~n\") end, init:stop().")


def test_the_watch_lets_a_silent_peer_go_in_the_kernel_and_the_vm_sees_it_at_once(tmp_path: Path,
                                                                                  daemons: Daemons) -> None:
    """Two real Erlang nodes in two namespaces, the peer's traffic then dropped both ways (a host whose
    link died: no FIN, no RST). The watching node still counts the peer connected (net_ticktime, 60 s
    here); the watch's kernel cut (`ss -K` on the distribution sockets to that address) makes its VM see
    the node down within a second, which is what lets quorum queue followers elect and blocked senders
    go on. Nothing but that address's distribution connection is closed: another connection stays."""
    erl = require("erl")
    cookie = "hastackwatchtest"
    addresses = {"a": "10.77.0.11", "b": "10.77.0.12"}
    peer = f"peer@{addresses['b']}"
    with netns("watch-a") as a, netns("watch-b") as b:
        _linked(a, b, (addresses["a"], addresses["b"]), 24)
        # The peer listens for distribution on the port a RabbitMQ node does; the watcher dials it.
        home = {k: tmp_path / k for k in addresses}
        for h in home.values():
            h.mkdir()
        daemons.spawn(b.argv([erl, "-noshell", "-name", peer, "-setcookie", cookie, "-kernel", "inet_dist_listen_min",
                              str(DIST_PORT), "inet_dist_listen_max", str(DIST_PORT)]), home["b"] / "out",
                      cwd=home["b"])
        wait_until(lambda: b.run(["ss", "-Htln", f"sport = :{DIST_PORT}"]).stdout.strip() != "", 60,
                   "the peer's distribution listener")
        # A connection with the peer that is not Erlang's: the cut must leave it alone.
        serve = "import socket, time; s = socket.create_server(('0.0.0.0', 4000)); c, _ = s.accept(); time.sleep(120)"
        other = daemons.spawn(b.argv([sys.executable, "-c", serve]))
        wait_until(lambda: b.run(["ss", "-Htln", "sport = :4000"]).stdout.strip() != "", 30, "a plain listener")
        dial = f"import socket, time; c = socket.create_connection(('{addresses['b']}', 4000)); time.sleep(120)"
        plain = daemons.spawn(a.argv([sys.executable, "-c", dial]))
        out = home["a"] / "out"
        daemons.spawn(a.argv([erl, "-noshell", "-name", f"watcher@{addresses['a']}", "-setcookie", cookie, "-eval",
                              WATCHER.format(peer=peer)]), out, cwd=home["a"])
        wait_until(lambda: "up" in out.read_text(), 60, "the watcher to connect to its peer")
        _go_silent(b)
        # Silence alone is nothing to the VM for a while: no nodedown in the next 2 s.
        assert not until(lambda: "down" in out.read_text(), 2), out.read_text()
        cut = a.run(cut_argv(addresses["b"]))
        cut_at = time.monotonic()
        assert cut.returncode == 0, cut.stderr
        assert f"{addresses['b']}:{DIST_PORT}" in cut.stdout and len(cut.stdout.splitlines()) == 1, cut.stdout
        wait_until(lambda: "down" in out.read_text(), 5, "the watcher's VM to see its peer down")
        assert time.monotonic() - cut_at < 1.5
        established = a.run(["ss", "-Htn", "state", "established", "dst", addresses["b"]]).stdout
        assert ":4000" in established and f":{DIST_PORT}" not in established, established
        assert plain.poll() is None and other.poll() is None


# The chaos workload's publisher as it connects (amqp_connect): one confirmed publish, then, once told its
# broker's host went silent, one more; prints how long it waited before giving the connection up.
PUBLISH_ACROSS_A_CUT = """
import sys, time
import pika
from hastack.workload.chaos_load import ChaosTarget, amqp_connect
t = ChaosTarget.model_validate_json(sys.argv[1])
conn, _ = amqp_connect(t, 0)
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare("cut-probe", durable=True, arguments={"x-queue-type": "quorum"})
ch.basic_publish("", "cut-probe", b"x", pika.BasicProperties(delivery_mode=2), mandatory=True)
print("confirmed", flush=True)
sys.stdin.readline()
start = time.monotonic()
try:
    ch.basic_publish("", "cut-probe", b"y", pika.BasicProperties(delivery_mode=2), mandatory=True)
    print("confirmed again")
except Exception as exc:
    print(f"gave up {time.monotonic() - start:.2f} {type(exc).__name__}")
"""


def test_the_workloads_publisher_gives_a_silent_broker_up_after_the_client_timeout(tmp_path: Path,
                                                                                   daemons: Daemons) -> None:
    """A real broker in one namespace, the chaos workload's publisher in another; the broker's host then
    drops every frame (a host that lost its network). The publish in flight fails after the profile's
    client timeout (TCP_USER_TIMEOUT), so the publisher moves to the next node as oslo.messaging would,
    instead of waiting for pika's heartbeat check (heartbeat + 5 s: 7 s here)."""
    require("rabbitmq-server")
    r = render_to(variant(SEED, tls={"enabled": False}, timing={"profile": "fast"}), tmp_path / "out")
    name = r.spec.rabbitmq.nodes[0]
    address = str(r.spec.node(name).address)
    client = str(r.spec.vips[0].address)  # any other address of the network will do
    prefix = r.spec.networks.management.prefixlen
    t = ChaosTarget(**target(r.spec, r.secrets, "hastack_admin").model_copy(
        update={"rabbit_hosts": (address,)}).model_dump(), run="cut", client_address=client)
    assert t.client_timeout_s == 1.0
    home = tmp_path / "rabbit"
    with netns("amqp-client") as a, netns("amqp-broker") as b:
        _linked(a, b, (client, address), prefix)
        _boot(r, name, home, b, daemons)
        pub = subprocess.Popen(a.argv([sys.executable, "-c", PUBLISH_ACROSS_A_CUT, t.model_dump_json()]),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert pub.stdout is not None and pub.stdin is not None
            first = pub.stdout.readline().strip()
            assert first == "confirmed", first + (pub.stderr.read() if pub.poll() is not None and pub.stderr else "")
            _go_silent(b)
            pub.stdin.write("go\n")
            pub.stdin.flush()
            out, err = pub.communicate(timeout=30)
        finally:
            if pub.poll() is None:
                pub.kill()
                pub.wait()
        said = out.split()
        assert said[:2] == ["gave", "up"], out + err
        assert float(said[2]) < t.client_timeout_s + 1.5, out

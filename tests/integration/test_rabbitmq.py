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
from pathlib import Path

from hastack.components.rabbitmq import CLUSTER, STATUS, parse_cluster_status, parse_status
from hastack.lab.netns import Netns, netns
from hastack.render.rabbitmq import DEFINITIONS, TLS_DIR
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

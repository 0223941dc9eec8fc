"""RabbitMQ boots on the rendered rabbitmq.conf and definitions.

One node, in a namespace holding its management address (the listener and
management bind there, as rendered). Checks what the definitions promise:
the generated users authenticate with the derived password hashes, the
policy exists, and no guest account was made.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hastack.lab.netns import Netns, netns
from hastack.render.rabbitmq import DEFINITIONS
from tests.integration.conftest import Daemons, Rendered, require, wait_until

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


def test_rabbitmq_boots_with_rendered_config(rendered: Rendered, tmp_path: Path, daemons: Daemons) -> None:
    require("rabbitmq-server")
    spec = rendered.spec
    name = spec.rabbitmq.nodes[0]
    home = tmp_path / "rabbit"
    (home / "mnesia").mkdir(parents=True)
    (home / "log").mkdir()
    conf = rendered.path(name, "/etc/rabbitmq/rabbitmq.conf").read_text()
    # Only the definitions path moves to the test folder; the rest is as rendered.
    (home / "rabbitmq.conf").write_text(conf.replace(DEFINITIONS, str(home / "definitions.json")))
    for f in ("definitions.json", "enabled_plugins"):
        (home / f).write_bytes(rendered.path(name, f"/etc/rabbitmq/{f}").read_bytes())
    cookie = home / ".erlang.cookie"
    cookie.write_bytes(rendered.path(name, "/var/lib/rabbitmq/.erlang.cookie").read_bytes())
    cookie.chmod(0o400)

    with netns("rabbit", [str(spec.node(name).address)]) as ns:
        daemons.spawn(ns.argv([str(SBIN / "rabbitmq-server")]), home / "server.out", env=_env(home))
        wait_until(lambda: _ctl(ns, home, "await_startup", "--timeout", "5", timeout=30).returncode == 0,
                   120, "rabbitmq to boot")
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
        assert f"{spec.node(name).address}, port: 5672" in listeners
        _ctl(ns, home, "stop")

"""A healthy three-controller cluster as fake hosts: every command answered as the lab's hosts answered.

Facts replay real output captured in the lab (tests/unit/fixtures/); files and
units answer as a host that already holds the rendered tree would. Tests
change one answer to make a fault, and drive deploy, status or recovery
through it without a lab.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymongo.errors

from hastack.components import corosync, galera, haproxy, network, openstack, pacemaker, rabbitmq
from hastack.credentials.model import FINGERPRINTS_PATH, Secrets, fingerprints_text
from hastack.deploy import bundle
from hastack.deploy.context import CIB_PATH
from hastack.hosts.files import file_fact
from hastack.hosts.ssh import Result
from hastack.render import render_all
from hastack.render.files import Tree
from hastack.spec.catalog import daemons_for
from hastack.spec.model import Role, Spec

FIXTURES = Path(__file__).parent / "fixtures"
OK = Result(0, "", "")

# Facts every healthy member shows (the lab's own output).
CAPTURED = {
    corosync.QUORUM.command: "corosync_quorumtool_s.txt",
    corosync.LINKS.command: "corosync_cfgtool_s.txt",
    pacemaker.MON.command: "crm_mon_lab_healthy.xml",
    galera.STATUS.command: "galera_wsrep_status.tsv",
    rabbitmq.CLUSTER.command: "rabbitmq_cluster_status.json",
    rabbitmq.STATUS.command: "rabbitmq_status_healthy.tsv",
    haproxy.STATS.command: "haproxy_show_stat_openstack.csv",
    network.ADDRESSES.command: "ip_o_4_addr.txt",
    openstack.CELL_HOSTS.command: "nova_cell_list_hosts.txt",
}


@dataclass
class FakeHost:
    """Answers a command from `answers` (exact command line), else as a host holding `files` would."""

    name: str
    files: dict[str, Any]
    answers: dict[str, Result]
    units: set[str] = field(default_factory=set)  # the units running here
    log: list[str] = field(default_factory=list)
    stdin: dict[int, Any] = field(default_factory=dict)  # index in `log` -> what that command was sent

    async def run(self, argv: Any, check: bool = True, timeout: float = 300, input: Any = None) -> Result:
        if isinstance(argv, str):
            raise TypeError("argv, not a string")
        command = shlex.join(argv)
        if input is not None:
            self.stdin[len(self.log)] = input
        self.log.append(command)
        res = self.answers.get(command) or self._openstack(tuple(argv)) or self._as_deployed(command)
        if check and res.rc != 0:
            from hastack.hosts.ssh import HostError

            raise HostError(self.name, command, res)
        return res

    @staticmethod
    def _openstack(argv: tuple[str, ...]) -> Result | None:
        """A deployed controller's OpenStack: keystone's catalog made, every API answering its check."""
        if argv[:2] != ("python3", "-c"):
            return None
        if "def ensure(api" in argv[2] or "def ensure(cloud" in argv[2]:  # the catalog, the starters: all there
            return Result(0, '{"changes": []}\n', "")
        if "token_ms" in argv[2]:  # status's look at every API through the VIP
            return Result(0, (FIXTURES / "openstack_api_check.json").read_text(), "")
        return Result(0, "200\n", "")

    def _as_deployed(self, command: str) -> Result:
        if command.startswith("systemctl is-active --quiet "):
            return OK if command.rsplit(maxsplit=1)[-1] in self.units else Result(3, "", "")
        if command.startswith("systemctl show -p ActiveState --value "):
            return Result(0, "active\n" if command.rsplit(maxsplit=1)[-1] in self.units else "inactive\n", "")
        for path, f in self.files.items():
            if command == file_fact(path).command:
                return Result(0, f"{f.owner} {f.group} {f.mode:o}\n{f.sha256}\n", "")
            if command == shlex.join(["cat", path]):
                return Result(0, f.content.decode(errors="replace"), "")
        if command.startswith("cat /"):  # a file this host was not deployed with
            return Result(1, "", f"cat: {command[4:]}: No such file or directory")
        return OK  # systemctl is-active/enable/disable, and the like: a healthy host's answer

    @property
    def conn(self) -> Any:
        raise OSError("no SSH connection in a fake host")


def cluster(spec: Spec, secrets: Secrets, **overrides: dict[str, Result]) -> dict[str, FakeHost]:
    """Every host of `spec`, deployed and healthy; `overrides[host]` replaces answers on one host."""
    tree: Tree = render_all(spec, secrets)
    captured = {cmd: Result(0, (FIXTURES / name).read_text(), "") for cmd, name in CAPTURED.items()}
    captured[shlex.join(["cat", FINGERPRINTS_PATH])] = Result(0, fingerprints_text(secrets), "")
    captured[shlex.join(["cat", bundle.STAMP])] = Result(0, bundle.build_bundle().sha256 + "\n", "")  # agent current
    cib = next(files[CIB_PATH].content for files in tree.values() if CIB_PATH in files)
    resources = ET.fromstring(cib).find("configuration/resources")
    assert resources is not None
    captured["cibadmin --query --scope resources"] = Result(0, ET.tostring(resources).decode(), "")  # as loaded
    return {n.name: FakeHost(n.name, dict(tree[n.name]), {**captured, **overrides.get(n.name, {})},
                             units_on(spec, n.name)) for n in spec.nodes}


def units_on(spec: Spec, host: str) -> set[str]:
    """The units a deployed `host` runs, by the spec's placement."""
    def on(nodes: Any) -> bool:
        return host in {n.name for n in nodes}

    galera_nodes = {n.name for n in spec.galera_nodes()}
    placed = {"corosync": on(spec.corosync_nodes()), "pacemaker": on(spec.corosync_nodes()),
              "mariadb": host in galera_nodes, "hastack-agent": host in galera_nodes,
              "garb": host == spec.galera.arbitrator, "rabbitmq-server": on(spec.rabbit_nodes()),
              "hastack-rabbit-watch": on(spec.rabbit_nodes()),
              "mongod": on(n for _, n in spec.mongo_members()) or host == spec.mongodb.arbiter,
              "hastack-mongo-watch": on(spec.electable_mongo_nodes()),
              "memcached": on(spec.memcached_nodes()), "haproxy": on(spec.haproxy_nodes())}
    placed |= {d.unit: on(spec.with_role(Role.CONTROLLER)) for d in daemons_for(spec.openstack.services)}
    placed |= {d.unit: on(spec.with_role(Role.COMPUTE)) for d in daemons_for(spec.openstack.services, computes=True)}
    return {unit for unit, runs in placed.items() if runs}


class FakeMongo:
    """A member's mongod as pymongo sees it: the set initiated, users made, the config the spec renders."""

    def __init__(self, config: dict[str, Any], admin: bool) -> None:
        self.config, self.admin_auth = config, admin
        self.admin = self
        self.sent: list[str] = []

    def command(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(name)
        if name == "ping":
            return {"ok": 1}
        if name == "replSetGetStatus":
            if not self.admin_auth:  # a user exists: the localhost exception is closed
                raise pymongo.errors.OperationFailure("Unauthorized", code=13)
            return json.loads((FIXTURES / "mongo_replsetgetstatus.json").read_text())
        if name == "replSetGetConfig":
            return {"config": self.config}
        raise AssertionError(f"a healthy set needs no {name}")


def fake_mongo(config: dict[str, Any], clients: list[FakeMongo]) -> Callable[..., Any]:
    @contextlib.asynccontextmanager
    async def mongo_client(h: Any, login: Any, *, timeout_ms: int = 3000) -> AsyncIterator[Any]:
        client = FakeMongo(config, login.password is not None)
        clients.append(client)
        yield client

    return mongo_client


def fake_reachable(hosts: Mapping[str, Any], unreachable: dict[str, str] | None = None) -> Callable[..., Any]:
    """A stand-in for `hosts.fleet.reachable`: the given hosts answer, `unreachable` do not."""
    @contextlib.asynccontextmanager
    async def reachable(*_: Any, **__: Any) -> AsyncIterator[tuple[dict[str, Any], dict[str, str]]]:
        yield dict(hosts), dict(unreachable or {})

    return reachable

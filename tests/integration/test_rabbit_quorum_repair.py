"""The RabbitMQ watch's third duty against real RabbitMQ nodes (two, or three) clustered in one namespace.

The state it repairs, made by hand the way the seed lab met it: a quorum queue of two members, one of
which lost its server and data (`ra:force_delete_server` on that node) and the other restarted, so no
leader can ever be elected. The watch's own look and repair (`look_at_quorum_members`, the Erlang it
sends) then run on the node that lost its member: an empty queue is deleted and can be declared again;
one that holds a message is kept, and the log says what a person can do. With three members, the
one that lost its data is regrown from the other two, its message kept.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hastack.agent import quorum_repair
from hastack.agent.quorum_repair import CONFIRM_S, Lost, parse_lost
from hastack.agent.rabbit_watch import look_at_quorum_members
from hastack.lab.netns import Netns, netns
from tests.integration.conftest import Daemons, require, wait_until

SBIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "hastackquorumrepairtest"
QUEUE = "heat-engine-listener.test"


@dataclass(frozen=True)
class Node:
    name: str
    home: Path
    port: int

    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_PORT": str(self.port), "RABBITMQ_DIST_PORT": str(self.port + 20000),
                "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
                "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"), "RABBITMQ_LOG_BASE": str(self.home / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
                "RABBITMQ_CONF_ENV_FILE": "/dev/null", "RABBITMQ_PID_FILE": str(self.home / "pid")}

    def ctl_prefix(self, ns: Netns) -> list[str]:
        """rabbitmqctl for this node, as the watch runs it (argv only: the environment rides on `env`)."""
        return ns.argv(["env", f"HOME={self.home}", str(SBIN / "rabbitmqctl"), "-n", self.name])

    def ctl(self, ns: Netns, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return ns.run([str(SBIN / "rabbitmqctl"), "-n", self.name, *args], env=self.env(), timeout=timeout)


def _boot(node: Node, ns: Netns, daemons: Daemons) -> None:
    for d in ("mnesia", "log"):
        (node.home / d).mkdir(parents=True)
    (node.home / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{node.port}\nloopback_users = none\n")
    (node.home / "enabled_plugins").write_text("[].\n")
    cookie = node.home / ".erlang.cookie"
    cookie.write_text(COOKIE)
    cookie.chmod(0o400)
    daemons.spawn(ns.argv([str(SBIN / "rabbitmq-server")]), node.home / "server.out", env=node.env(), cwd=node.home)
    wait_until(lambda: node.ctl(ns, "await_startup", "--timeout", "5", timeout=30).returncode == 0, 120,
               f"{node.name} to boot")


def _nodes(tmp_path: Path, ns: Netns, daemons: Daemons, count: int) -> list[Node]:
    """`count` nodes booted in `ns`, each after the first joined to it."""
    nodes = [Node(f"rabbit-{n}@localhost", tmp_path / f"rabbit-{n}", 5672 + i) for i, n in enumerate("abc"[:count])]
    for node in nodes:
        _boot(node, ns, daemons)
    for node in nodes[1:]:
        for args in (("stop_app",), ("join_cluster", nodes[0].name), ("start_app",)):
            res = node.ctl(ns, *args)
            assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return nodes


@pytest.fixture
def cluster(tmp_path: Path, daemons: Daemons) -> Iterator[tuple[Netns, Node, Node]]:
    require("rabbitmq-server")
    with netns("qqrepair") as ns:
        a, b = _nodes(tmp_path, ns, daemons, 2)
        yield ns, a, b


# Declares QUEUE (quorum: a member on both nodes) and publishes argv[2] confirmed messages to it.
DECLARE = """
import sys
import pika
conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", int(sys.argv[1]), connection_attempts=1,
                                                         socket_timeout=10))
ch = conn.channel()
ch.confirm_delivery()
ch.queue_declare(sys.argv[3], durable=True, arguments={"x-queue-type": "quorum"})
for _ in range(int(sys.argv[2])):
    ch.basic_publish("", sys.argv[3], b"x", pika.BasicProperties(delivery_mode=2), mandatory=True)
conn.close()
print("ok")
"""


def _declare(ns: Netns, node: Node, messages: int) -> subprocess.CompletedProcess[str]:
    return ns.run([sys.executable, "-c", DECLARE, str(node.port), str(messages), QUEUE], timeout=60)


def _queue_line(ns: Netns, node: Node) -> str:
    out = node.ctl(ns, "-q", "list_queues", "name", "leader", "members", "online", timeout=60).stdout
    return next((line for line in out.splitlines() if line.startswith(QUEUE + "\t")), "")


def _lose_member(ns: Netns, a: Node, b: Node) -> None:
    """b's member of QUEUE: server and data gone; a restarted: the queue has no leader, for good."""
    gone = b.ctl(ns, "eval", f"ra:force_delete_server(quorum_queues, {{'%2F_{QUEUE}', node()}}).")
    assert gone.returncode == 0 and "ok" in gone.stdout, gone.stdout + gone.stderr
    for args in (("stop_app",), ("start_app",)):
        res = a.ctl(ns, *args)
        assert res.returncode == 0, res.stdout + res.stderr
    # No leader comes in the time an election takes (a few seconds), nor ever: b's member cannot vote.
    assert not _leader_within(ns, a, 15), _queue_line(ns, a)


def _leader_within(ns: Netns, node: Node, seconds: float) -> bool:
    """Raft's own answer (list_queues' leader column is the record's, which outlives the leader)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        asked = node.ctl(ns, "eval", f"ra:members({{'%2F_{QUEUE}', node()}}, 1500).", timeout=60).stdout
        if asked.startswith("{ok,"):
            return True
        time.sleep(1)
    return False


def _lost_here(node: Node, ns: Netns) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*node.ctl_prefix(ns), "-q", "eval", quorum_repair.LOST], capture_output=True, text=True,
                          timeout=60, check=False)


def _repair(b: Node, ns: Netns, members: int = 2) -> Lost:
    """The watch's look on b, as if its first look had been CONFIRM_S ago (no minute-long wait)."""
    listed = _lost_here(b, ns)
    lost = parse_lost(listed.stdout)
    assert [(m.vhost, m.queue) for m in lost] == [("/", QUEUE)], listed.stdout + listed.stderr
    assert set(lost[0].nodes) == {f"rabbit-{n}@localhost" for n in "abc"[:members]}
    earlier = Lost(since={("/", QUEUE): time.monotonic() - CONFIRM_S})
    return asyncio.run(look_at_quorum_members(earlier, tuple(b.ctl_prefix(ns))))


def _lost_then_repaired(cluster: tuple[Netns, Node, Node], caplog: pytest.LogCaptureFixture, messages: int) -> Lost:
    """QUEUE declared with `messages` in it, b's member lost, then the watch's look on b."""
    ns, a, b = cluster
    assert _declare(ns, a, messages).stdout.strip() == "ok"
    _lose_member(ns, a, b)
    with caplog.at_level(logging.WARNING, logger="hastack.rabbit_watch"):
        return _repair(b, ns)


def test_an_empty_queue_that_can_never_elect_is_deleted_and_can_be_declared_again(
        cluster: tuple[Netns, Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    ns, a, b = cluster
    after = _lost_then_repaired(cluster, caplog, 0)
    assert "deleted" in caplog.text and "held no message" in caplog.text, caplog.text
    assert _queue_line(ns, a) == ""
    assert ("/", QUEUE) in after.repaired
    # oslo.messaging declares it again on reconnect: a queue with both members and a leader.
    assert _declare(ns, b, 1).stdout.strip() == "ok"
    assert _leader_within(ns, a, 30), _queue_line(ns, a)


def test_a_queue_that_holds_a_message_is_kept_and_the_log_says_what_to_run(
        cluster: tuple[Netns, Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    ns, a, _ = cluster
    _lost_then_repaired(cluster, caplog, 1)
    assert "hold 1 message(s)" in caplog.text, caplog.text
    assert f"rabbitmqctl delete_queue '{QUEUE}'" in caplog.text
    assert _queue_line(ns, a) != ""  # still there: its message is not the watch's to throw away


def test_a_member_that_only_stopped_is_restarted_and_nothing_is_lost(
        cluster: tuple[Netns, Node, Node], caplog: pytest.LogCaptureFixture) -> None:
    ns, a, b = cluster
    assert _declare(ns, a, 1).stdout.strip() == "ok"
    stopped = b.ctl(ns, "eval", f"rabbit_quorum_queue:stop_server({{'%2F_{QUEUE}', node()}}).")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with caplog.at_level(logging.WARNING, logger="hastack.rabbit_watch"):
        _repair(b, ns)
    assert "restarted" in caplog.text, caplog.text
    line = _queue_line(ns, a)
    assert "rabbit-b@localhost" in line.split("\t")[3], line  # b's member is online again
    # The count is the leader's metric, refreshed on its tick (seconds): polled, not read once.
    wait_until(lambda: f"{QUEUE}\t1" in a.ctl(ns, "-q", "list_queues", "name", "messages", timeout=60).stdout, 30,
               "the queue to count its one message")


def test_a_member_whose_data_is_gone_is_regrown_when_the_others_can_elect(
        tmp_path: Path, daemons: Daemons, caplog: pytest.LogCaptureFixture) -> None:
    require("rabbitmq-server")
    with netns("qqregrow") as ns:
        a, b, c = _nodes(tmp_path, ns, daemons, 3)
        assert _declare(ns, a, 1).stdout.strip() == "ok"
        gone = c.ctl(ns, "eval", f"ra:force_delete_server(quorum_queues, {{'%2F_{QUEUE}', node()}}).")
        assert gone.returncode == 0 and "ok" in gone.stdout, gone.stdout + gone.stderr
        with caplog.at_level(logging.WARNING, logger="hastack.rabbit_watch"):
            after = _repair(c, ns, members=3)
        assert "regrown" in caplog.text, caplog.text
        assert ("/", QUEUE) in after.repaired
        # c's member runs again (the watch's own look finds nothing), all three are online, and the
        # message its lost copy held is still in the queue.
        assert parse_lost(_lost_here(c, ns).stdout) == ()
        wait_until(lambda: all(n.name in _queue_line(ns, a).partition(f"{QUEUE}\t")[2].split("\t")[-1]
                               for n in (a, b, c)), 60, "all three members to be online")
        wait_until(lambda: f"{QUEUE}\t1" in a.ctl(ns, "-q", "list_queues", "name", "messages", timeout=60).stdout,
                   30, "the queue to count its one message")
        assert _leader_within(ns, c, 30)

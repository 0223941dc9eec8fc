"""The RabbitMQ watch's pure parts: when a node counts as stuck, when it is restarted, the listener read
from /proc/net (fixtures: the kernel's own files), the peer connect, and the unit deploy renders."""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from hastack.agent import quorum_repair
from hastack.agent.quorum_repair import AGAIN_S as QUORUM_AGAIN_S
from hastack.agent.quorum_repair import CONFIRM_S, Lost, Member, command_for, parse_lost, parse_repair, repair_expr
from hastack.agent.quorum_repair import EVERY_S as QUORUM_EVERY_S
from hastack.agent.rabbit_watch import (
    AGAIN_S,
    BACKOFF_S,
    DIST_PORT,
    EVERY_S,
    GRACE_S,
    HOLD,
    LAUNCHER,
    MISSES,
    MISSES_CUT_OFF,
    TRIES,
    Peers,
    Seen,
    Watch,
    cut_argv,
    cut_off,
    let_go,
    let_go_argv,
    listening,
    main,
    parse_reach,
    parser,
)
from hastack.agent.silence import knock, to_next_tick
from hastack.render.pacemaker import PING_ATTRIBUTE, pings
from hastack.render.rabbitmq import WATCH_UNIT, render_rabbitmq
from tests.helpers import SEED, THREE, secrets_for, variant

FIXTURES = Path(__file__).parent / "fixtures"
STUCK = Seen(active=True, listening=False, peers_serving=2)


def _run(looks: Sequence[tuple[float, Seen]]) -> list[float]:
    """The times at which the watch restarts the node."""
    watch, restarts = Watch(), []
    for now, seen in looks:
        watch, why = watch.after(now, seen)
        if why:
            restarts.append(now)
    return restarts


def test_a_node_stuck_for_the_grace_period_is_restarted_once_then_not_before_the_backoff() -> None:
    looks = [(t, STUCK) for t in range(0, 600, 5)]
    assert _run(looks) == [GRACE_S, GRACE_S + BACKOFF_S, GRACE_S + 2 * BACKOFF_S]


def test_anything_but_stuck_starts_the_grace_period_again() -> None:
    serving = Seen(active=True, listening=True, peers_serving=2)
    # Stuck for 85 s, a look that is not stuck (the app came back, or was starting), stuck again: 90 s more.
    looks = [*((t, STUCK) for t in range(0, 90, 5)), (90, serving), *((t, STUCK) for t in range(95, 300, 5))]
    assert _run(looks) == [95 + GRACE_S]


def test_what_is_not_a_stuck_node() -> None:
    long = range(0, 400, 5)
    # Paused with no peer in sight: pause_minority's own choice, kept.
    assert _run([(t, Seen(True, False, 0)) for t in long]) == []
    # Starting, stopping or stopped: systemd's business (and the deploy's), not the watch's.
    assert _run([(t, Seen(False, False, 2)) for t in long]) == []
    # Serving.
    assert _run([(t, Seen(True, True, 2)) for t in long]) == []
    # Stopped on purpose under the operator's hold.
    assert _run([(t, Seen(True, False, 2, held=True)) for t in long]) == []


def test_the_reason_says_what_was_seen() -> None:
    _, why = Watch(since=0.0).after(GRACE_S + 3, STUCK)
    assert "no AMQP listener for 93 s while 2 peer(s) serve" in why


def test_the_listener_is_read_from_the_kernels_tables(tmp_path: Path) -> None:
    # The app stopped: only an accepted connection still has local port 5672 (state 01); 25672 listens.
    shutil.copy(FIXTURES / "proc_net_tcp_app_stopped.txt", tmp_path / "tcp")
    assert not listening(5672, tmp_path) and listening(25672, tmp_path)
    shutil.copy(FIXTURES / "proc_net_tcp6_amqps_listening.txt", tmp_path / "tcp6")  # [::]:5671 listens
    assert listening(5671, tmp_path) and not listening(5672, tmp_path)
    assert not listening(5672, tmp_path / "absent")


def test_a_peer_serves_when_its_port_accepts() -> None:
    async def go() -> tuple[bool, bool]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            up = await knock("127.0.0.1", port) == "accepted"
        finally:
            server.close()
            await server.wait_closed()
        return up, await knock("127.0.0.1", port) == "accepted"

    assert asyncio.run(go()) == (True, False)


def test_every_rabbit_node_gets_a_watch_of_its_peers_on_the_amqp_port() -> None:
    # The ping clone runs where pacemaker places the VIPs (or watches computes): then the watch of a member
    # reads its count. A RabbitMQ node on a compute (the lab's member-replacement test) is no member.
    on_compute = variant(THREE, instance_ha={"enabled": True}, vip_manager="keepalived-quorum",
                         rabbitmq={"nodes": ["ctl1", "ctl2", "compute1"]})
    for spec, tls, ping in ((variant(THREE, tls={"enabled": False}), False, True),
                            (variant(SEED, tls={"enabled": False}), False, True),
                            (variant(THREE, tls={"enabled": True}), True, True),
                            (variant(THREE, vip_manager="keepalived-quorum"), True, False),
                            (on_compute, True, True)):
        assert pings(spec) is ping
        files = render_rabbitmq(spec, secrets_for(spec))
        assert set(files) == {n.name for n in spec.rabbit_nodes()}
        members = {n.name for n in spec.corosync_nodes()}
        for node in spec.rabbit_nodes():
            unit = next(f for f in files[node.name] if f.path == WATCH_UNIT).content.decode()
            peers = [f"rabbit@{n.name}={n.address}" for n in spec.rabbit_nodes() if n.name != node.name]
            start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
            reads = ping and node.name in members
            assert start == f"ExecStart={LAUNCHER} --port {5671 if tls else 5672}" + "".join(
                f" --peer {p}" for p in peers) + (
                f" --reach-attribute {PING_ATTRIBUTE} --node rabbit@{node.name}" if reads else "")
            assert "Type=notify" in unit and "WatchdogSec=" in unit and HOLD in unit
            # The watch itself takes the line (a parse error is a unit that never starts).
            args = parser().parse_args(shlex.split(start.removeprefix("ExecStart="))[1:])
            assert (args.node, args.reach_attribute) == ((f"rabbit@{node.name}", PING_ATTRIBUTE) if reads
                                                         else (None, None))
            assert dict(args.peer) == dict(p.split("=") for p in peers)


PEERS = {"rabbit@ctl1": "10.77.0.11", "rabbit@ctl3": "10.77.0.13"}  # as ctl2's watch knows them


def _drops(looks: Sequence[tuple[float, frozenset[str]]], cut: frozenset[str] = frozenset(),
           here: str = "ctl2") -> list[tuple[float, str]]:
    """When this node (on host `here`) lets which peer go (`cut`: the hosts pacemaker's ping says are cut off)."""
    peers, out = Peers(), []
    for now, silent in looks:
        peers, lost = peers.after(now, PEERS, silent, cut, here)
        out += [(now, n) for n in lost]
    return out


def test_a_peer_silent_for_three_looks_is_let_go_a_bounded_number_of_times() -> None:
    cut = frozenset({"10.77.0.11"})
    first = float(MISSES - 1)
    assert _drops([(float(t), cut) for t in range(60)]) == [(first, "rabbit@ctl1"), (first + AGAIN_S, "rabbit@ctl1")]
    assert TRIES == 2
    # Once it answers again, the next loss starts afresh (and needs its own three silent looks).
    again = [*((float(t), cut) for t in range(4)), (4.0, frozenset[str]()), *((float(t), cut) for t in range(5, 9))]
    assert _drops(again) == [(first, "rabbit@ctl1"), (7.0, "rabbit@ctl1")]


def test_no_peer_is_let_go_when_this_node_is_the_one_cut_off_or_a_peer_only_refuses() -> None:
    everyone = frozenset(PEERS.values())
    assert _drops([(float(t), everyone) for t in range(30)]) == []
    # A refused connect (the app paused, the port closed) is an answer: its host is there.
    assert _drops([(float(t), frozenset[str]()) for t in range(30)]) == []
    # Two silent looks, then an answer: a lossy link, not a lost node.
    cut = frozenset({"10.77.0.11"})
    assert _drops([(0.0, cut), (1.0, cut), (2.0, frozenset[str]()), (3.0, cut), (4.0, cut)]) == []


def test_letting_go_names_only_an_erlang_node() -> None:
    argv = let_go_argv("rabbit@ctl1")
    assert argv[-3:] == ["-q", "eval", 'erlang:disconnect_node(list_to_atom("rabbit@ctl1")).']
    # As the rabbitmq user, without Debian's su wrapper (a PAM session in the journal per call).
    assert argv[0] == "setpriv" and "--reuid=rabbitmq" in argv and argv[-4] == "/usr/lib/rabbitmq/bin/rabbitmqctl"
    for bad in ('rabbit@ctl1")), halt(', "ctl1", ""):
        with pytest.raises(ValueError):
            let_go_argv(bad)
    with pytest.raises(SystemExit):  # argparse refuses a peer that is not NODE=ADDRESS
        main(["--port", "5672", "--peer", "10.77.0.12"])
    with pytest.raises(SystemExit):  # and a --node that is not a node name
        main(["--port", "5672", "--node", "ctl1; reboot"])


def test_a_peer_whose_own_ping_reached_no_one_is_let_go_at_its_first_silent_look() -> None:
    assert MISSES_CUT_OFF == 1 < MISSES
    silent = frozenset({"10.77.0.11"})
    assert _drops([(float(t), silent) for t in range(3)], cut=frozenset({"ctl1"})) == [(0.0, "rabbit@ctl1")]
    # Pacemaker's word alone is not enough: a peer that still answers here is kept ...
    assert _drops([(float(t), frozenset[str]()) for t in range(30)], cut=frozenset({"ctl1"})) == []
    # ... and so is every peer when this node is the one that hears no one.
    everyone = frozenset(PEERS.values())
    assert _drops([(float(t), everyone) for t in range(30)], cut=frozenset({"ctl1", "ctl3"})) == []
    # Another host's count says nothing about this one: three silent looks as before.
    assert _drops([(float(t), silent) for t in range(3)], cut=frozenset({"ctl3"})) == [(2.0, "rabbit@ctl1")]


def test_the_node_cut_off_lets_every_silent_peer_go_on_pacemakers_word_so_that_it_pauses() -> None:
    """The fast tier's mgmt-loss at 4df6415: the cut-off node noticed nothing within the 30 s cut
    (net_ticktime 60 s), did not pause, and a partition stayed on record on both sides for good.
    With pacemaker saying this host reaches no one while a peer reaches something, every silent peer
    is let go at its first silent look, and pause_minority pauses this node."""
    everyone = frozenset(PEERS.values())
    assert _drops([(float(t), everyone) for t in range(3)], cut=frozenset({"ctl2"})) == [
        (0.0, "rabbit@ctl1"), (0.0, "rabbit@ctl3")]
    # Pacemaker's word alone is not enough: a peer that still answers is kept.
    assert _drops([(float(t), frozenset({"10.77.0.11"})) for t in range(3)], cut=frozenset({"ctl2"})) == [
        (0.0, "rabbit@ctl1")]
    assert _drops([(float(t), frozenset[str]()) for t in range(30)], cut=frozenset({"ctl2"})) == []
    # Every host at 0 (a switch down, the targets gone) is no one's word: nobody is let go, as before.
    assert cut_off({"ctl1": 0, "ctl2": 0, "ctl3": 0}) == frozenset()
    assert _drops([(float(t), everyone) for t in range(30)], cut=frozenset()) == []
    # Without a name for this host (no --node) nothing changes.
    assert _drops([(float(t), everyone) for t in range(30)], cut=frozenset({"ctl2"}), here="") == []


def test_the_reach_is_read_from_pacemakers_attribute_manager() -> None:
    # Captured on the three-controller lab (`attrd_updater -Q -A -n mgmt-reach` on ctl1), all well.
    text = (FIXTURES / "attrd_updater_mgmt_reach.txt").read_text()
    assert parse_reach(text) == {"ctl1": 3, "ctl2": 3, "ctl3": 3}
    assert cut_off(parse_reach(text)) == frozenset()
    cut = text.replace('host="ctl1" value="3"', 'host="ctl1" value="0"')
    assert cut_off(parse_reach(cut)) == frozenset({"ctl1"})
    # Every member at 0 is the network (or the targets), not one host; nothing known is nothing.
    assert cut_off({"ctl1": 0, "ctl2": 0, "ctl3": 0}) == frozenset() == cut_off({})
    # attrd_updater's answer when the attribute does not exist (no ping clone): nothing.
    assert parse_reach("attrd_updater: Could not query value of mgmt-reach: attribute does not exist") == {}
    assert parse_reach('name="mgmt-reach" host="ctl1" value=""') == {}


def test_the_kernel_cut_closes_only_distribution_connections_with_that_address() -> None:
    assert cut_argv("10.77.0.11") == ["ss", "-K", "-H", "-tn", "state", "established",
                                      f"( sport = :{DIST_PORT} or dport = :{DIST_PORT} )", "dst", "10.77.0.11"]
    for bad in ("ctl1", "10.77.0.11 or all", ""):
        with pytest.raises(ValueError):
            cut_argv(bad)
    with pytest.raises(SystemExit):  # a peer's address must be an address
        main(["--port", "5672", "--peer", "rabbit@ctl1=ctl1"])


@pytest.mark.parametrize(("ss_says", "asks_the_vm"), [
    ("0 0 10.77.0.12:25672 10.77.0.11:41234\n", False),  # a connection closed in the kernel: done
    ("", True),  # nothing on the port (gone already, or dialled elsewhere): the VM's own disconnect
])
def test_a_peer_is_let_go_by_the_kernel_and_by_the_vm_when_the_kernel_closed_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ss_says: str, asks_the_vm: bool) -> None:
    # Stand-ins for ss and rabbitmqctl on PATH, recording their arguments: the adapter's choice is tested,
    # the commands themselves are (ss -K against real Erlang nodes in tests/integration/test_rabbitmq.py).
    for tool, out in (("ss", ss_says), ("rabbitmqctl", "true\n")):
        (tmp_path / tool).write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/{tool}.args\nprintf '{out}'\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setattr(quorum_repair, "CTL", (str(tmp_path / "rabbitmqctl"),))
    asyncio.run(let_go("rabbit@ctl1", "10.77.0.11"))
    assert (tmp_path / "ss.args").read_text().strip() == " ".join(cut_argv("10.77.0.11")[1:])
    assert (tmp_path / "rabbitmqctl.args").exists() is asks_the_vm


def _look_starts(first: float, durations: Sequence[float]) -> list[float]:
    """When a watch's looks start, each lasting what `durations` says, scheduled as run() does."""
    starts, now = [], first
    for took in durations:
        starts.append(round(now, 3))
        now += took
        now += to_next_tick(now, starts[-1] + EVERY_S / 2, EVERY_S)
    return starts


def test_every_members_watch_looks_on_the_same_ticks_of_the_clock() -> None:
    # Members started at different moments look at the same instants from their second look on, once a
    # second while every peer answers at once (a look of a few ms, begun a little late after its sleep).
    quick = [0.012] * 4
    assert _look_starts(100.37, quick)[1:] == [101.0, 102.0, 103.0]
    assert _look_starts(100.81, quick)[1:] == [102.0, 103.0, 104.0]  # at least half a second after the first
    assert _look_starts(101.003, quick) == [101.003, 102.0, 103.0, 104.0]
    # A look held 1.5 s by a silent peer's connect: the next on the following whole second.
    assert _look_starts(200.0, [1.502, 1.501, 0.01, 0.01]) == [200.0, 202.0, 204.0, 205.0]


# The third duty (agent/quorum_repair.py): which queues it repairs, and when.
LOST_OUTPUT = "/\theat-engine-listener.05c77ab9\trabbit@ctl2,rabbit@ctl1\nops\tq 2\trabbit@ctl1\nok\n"


def test_the_look_lists_each_queue_missing_its_member_here() -> None:
    assert parse_lost(LOST_OUTPUT) == (Member("/", "heat-engine-listener.05c77ab9", ("rabbit@ctl2", "rabbit@ctl1")),
                                       Member("ops", "q 2", ("rabbit@ctl1",)))
    assert parse_lost("ok\n") == ()


def test_a_queue_is_repaired_once_seen_at_two_looks_then_not_again_for_a_while() -> None:
    q = Member("/", "q", ("rabbit@a", "rabbit@b"))
    lost, due = Lost().after(0, (q,))
    assert due == ()  # a member starting (a declare, a node's recovery) is not taken for a lost one
    lost, due = lost.after(QUORUM_EVERY_S, (q,))
    assert due == (q,) and QUORUM_EVERY_S >= CONFIRM_S
    lost, due = lost.after(2 * QUORUM_EVERY_S, (q,))
    assert due == ()  # repaired a minute ago: its log line is not repeated each minute
    lost, due = lost.after(QUORUM_EVERY_S + QUORUM_AGAIN_S, (q,))
    assert due == (q,)
    lost, due = lost.after(QUORUM_EVERY_S + QUORUM_AGAIN_S + 60, ())
    assert lost == Lost()  # back: forgotten


def test_a_queue_back_between_looks_starts_over() -> None:
    q = Member("/", "q", ())
    lost, _ = Lost().after(0, (q,))
    lost, _ = lost.after(60, ())
    assert lost.after(120, (q,))[1] == ()


def test_the_repair_names_its_queue_by_code_points_and_reads_its_verdict() -> None:
    expr = repair_expr(Member("/", 'a"b\\', ()))
    assert 'a"b' not in expr and "[97,34,98,92]" in expr and "[47]" in expr  # nothing to quote in Erlang source
    assert '<<"hastack-rabbit-watch">>' in expr
    assert parse_repair("deleted\trestart: {error,enoent}; ...\nok\n") == ("deleted", "restart: {error,enoent}; ...")
    assert parse_repair("restarted\nok\n") == ("restarted", "")
    assert parse_repair("regrown\trestart: {error,enoent}; a new member here\nok\n")[0] == "regrown"
    assert parse_repair("held\trestart: {error,enoent}; the other members hold 2 message(s)\nok\n")[0] == "held"
    assert parse_repair("Error:\n{undef,...}\n") == ("unknown", "Error:\n{undef,...}")


def test_the_command_for_a_person_names_the_vhost_only_when_it_is_not_the_default() -> None:
    assert command_for(Member("/", "q", ())) == "rabbitmqctl delete_queue 'q'"
    assert command_for(Member("ops", "q", ())) == "rabbitmqctl delete_queue -p 'ops' 'q'"

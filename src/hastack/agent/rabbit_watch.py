"""The RabbitMQ watch: a node whose rabbit app stopped and never came back is restarted.

With `pause_minority` a node that loses sight of the majority stops its rabbit app (the Erlang VM
keeps running, the unit stays active) and polls until the majority is back, then starts the app
again. If that start fails, nothing in RabbitMQ tries again: the node stays up but serves nothing
until a person restarts it (seen in the fast keepalived lab after a 30 s cut of one controller's
management network; rabbitmq-server discussions #2175 and #17319 describe the same). Autoheal's
losers restart their app the same way, with the same hole.

This process watches for that state with cheap checks only (no rabbitmqctl, whose Erlang VM costs
a second of CPU per call): the unit is active, no AMQP listener is open on this host (/proc/net/tcp),
and a peer serves AMQP (a TCP connect). Once that has lasted `grace` seconds it restarts the unit,
then waits `backoff` seconds before it would do so again. A peer serving means the majority is back:
a paused node whose peers are unreachable is left paused, as pause_minority wants. An operator who
stops the app on purpose creates the hold file first (`hastack-rabbit-watch --help`).

Its second duty: a peer whose host went silent is let go at once. With the management network of a
node cut (its host there, its links dead), every message to it fills the Erlang distribution buffer,
and a process sending more is suspended: quorum queue leaders replicating to it stalled, and so did
the followers asked to stand (measured: `ra:trigger_election` changed nothing; 18 queues had no
leader 44 s into a 30 s cut). That lasts until net_ticktime (60 s by default) drops the connection;
mgmt-loss measured confirmed publishes back after 0.6-54 s. So once a peer has been silent on the
AMQP port (agent/silence.py) MISSES looks in a row while another peer answers, each node that sees
it so drops its own connection to it (`erlang:disconnect_node`): the followers elect, the blocked
senders go on, and pause_minority, which counts what this node reaches, keeps the majority serving.
The node comes back by itself when its link does, as after any partition.

Faster when pacemaker says so: where the members run the ping clone (`--reach-attribute`), a peer
whose own count of management targets it reaches is 0 (the attribute travels over the heartbeat
rings, which still work) is let go at its first silent look instead of its third: two signals from
two sides agree, so a lossy link (a connect lost now and then, a ping round lost now and then) is
not taken for a cut. And the connection is closed in the kernel (`ss -K`: the distribution sockets
to that address), which Erlang sees at once as the node going down, instead of by `rabbitmqctl eval`,
whose VM took ~1.4 s to start on the lab; rabbitmqctl stays the fallback when ss cannot.

The same two signals from the cut-off node's side: when pacemaker says this host is the one that
reaches no one (its own count 0, a peer's not) and every peer has been silent for a look, this node
lets them all go too, so that pause_minority pauses it during the cut. Without that it noticed
nothing before net_ticktime (60 s in the default profile, longer than a 30 s cut): when the link came
back it took the peers' closed connections for a nodedown, saw the majority again at once and did
not pause, and mnesia recorded a partition that nothing heals under pause_minority: both sides
served, apart, for good (the fast tier's `mgmt-loss` at 4df6415: still partitioned 10 minutes on).
With every host at 0 (a switch down) no one lets anyone go: the cut may be over before net_ticktime.

Its third duty, once a minute while the node serves and beside the looks: a quorum queue member that
should run on this node and does not is restarted; when its data is gone, it is regrown from the other
members if they can elect without it, else (the queue can never elect a leader again) the queue is
deleted if it holds nothing (agent/quorum_repair.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from hastack.agent import quorum_repair
from hastack.agent.quorum_repair import Lost
from hastack.agent.sd_notify import notify
from hastack.agent.silence import Silence, knock, to_next_tick

DIR = "/run/hastack-rabbit-watch"
HOLD = f"{DIR}/hold"
LAUNCHER = "/usr/local/bin/hastack-rabbit-watch"
UNIT = "rabbitmq-server"
# A resume that works takes 10-25 s here with the peers up, up to ~65 s on a starved lab: 90 s
# leaves such a start alone and still heals a stuck node minutes, not hours, after the fault.
GRACE_S = 90.0
# A restart boots the node (up to the unit's 180 s start timeout): not another one before that.
BACKOFF_S = 240.0
# Each second, on the wall clock's whole seconds: a lost leader is the gap of every publish to its queue.
# A look is a few TCP connects and a read of /proc/net/tcp (systemctl only when no listener is open).
EVERY_S = 1.0
# A peer is let go after 3 silent looks (~5.5 s: 1.5 s each, on whole seconds), not 2: with link-loss's
# 10% of frames dropped each way a connect goes unanswered for 1.5 s ~4% of the time (a SYN or its answer
# lost twice), 2 looks in a row ~1 in 750 (estimated, not seen), and letting a live node go is a partition.
MISSES = 3
# A silent peer is let go at most this often, and at most TRIES times per loss.
AGAIN_S = 10.0
TRIES = 2
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
# Erlang's distribution port on a RabbitMQ node (RABBITMQ_DIST_PORT: the node port 5672 + 20000, TLS or not).
DIST_PORT = 25672
# A peer its pacemaker ping says is cut off is let go after this many silent looks.
MISSES_CUT_OFF = 1
log = logging.getLogger("hastack.rabbit_watch")


@dataclass(frozen=True)
class Seen:
    """One look at the node."""

    active: bool  # the unit is active (not starting, stopping or stopped)
    listening: bool  # an AMQP listener is open on this host
    peers_serving: int  # peers whose AMQP port accepts a connection
    held: bool = False  # the operator's hold file exists


@dataclass(frozen=True)
class Watch:
    """What the watch remembers between looks: since when the node has looked stuck, and its last restart."""

    since: float | None = None
    restarted: float | None = None

    def after(self, now: float, seen: Seen, grace: float = GRACE_S, backoff: float = BACKOFF_S) -> tuple[Watch, str]:
        """The next state, and why to restart the node now ("" : not now)."""
        stuck = seen.active and not seen.listening and seen.peers_serving > 0 and not seen.held
        if not stuck:
            return replace(self, since=None), ""
        since = now if self.since is None else self.since
        if now - since < grace or (self.restarted is not None and now - self.restarted < backoff):
            return replace(self, since=since), ""
        return Watch(None, now), (f"the unit has been active with no AMQP listener for {now - since:.0f} s while "
                                  f"{seen.peers_serving} peer(s) serve: the rabbit app stopped and did not start "
                                  "again (a failed resume after a pause)")


@dataclass(frozen=True)
class Peers:
    """The second duty between looks: the peers' silence, and when each lost one was let go."""

    silence: Silence = field(default_factory=Silence)
    dropped: Mapping[str, tuple[float, int]] = field(default_factory=dict)  # node -> (last drop, how many)

    def after(self, now: float, peers: Mapping[str, str], silent: frozenset[str],
              unreachable: frozenset[str] = frozenset(), here: str = "") -> tuple[Peers, tuple[str, ...]]:
        """The next state, and the peers to let go now. `peers` maps each other node's name to its
        address; `silent` holds the addresses that did not answer; `unreachable` the hosts whose own
        ping found none of the management network (pacemaker's view: `cut_off()`); `here` this host."""
        silence = self.silence.after(peers.values(), silent)
        if here and here in unreachable:  # this host is the one cut off: every silent peer, no answer needed
            lost = sorted(n for n, a in peers.items() if silence.misses.get(a, 0) >= MISSES_CUT_OFF)
        else:
            lost = sorted(n for n, a in peers.items()
                          if silence.lost(a, MISSES_CUT_OFF if host_of(n) in unreachable else MISSES))
        dropped = {n: v for n, v in self.dropped.items() if n in lost}  # a node that answers again is forgotten
        due = tuple(n for n in lost if n not in dropped or (dropped[n][1] < TRIES and now - dropped[n][0] >= AGAIN_S))
        dropped |= {n: (now, dropped.get(n, (now, 0))[1] + 1) for n in due}
        return Peers(silence, dropped), due


NODE_NAME = re.compile(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+")
ATTRIBUTE = re.compile(r'name="[^"]*" host="(?P<host>[^"]+)" value="(?P<value>[^"]*)"')


def host_of(node: str) -> str:
    """The host part of an Erlang node name: hastack names each node rabbit@<its name in the spec>,
    the name pacemaker knows the host by."""
    return node.partition("@")[2]


def parse_reach(text: str) -> dict[str, int]:
    """`attrd_updater -Q -A -n NAME`: each member's count of management targets it reached at its
    last ping. A member not listed has not pinged yet; a value that is not a number counts as unknown."""
    out: dict[str, int] = {}
    for m in ATTRIBUTE.finditer(text):
        with contextlib.suppress(ValueError):
            out[m["host"]] = int(m["value"])
    return out


def cut_off(reach: Mapping[str, int]) -> frozenset[str]:
    """The hosts whose ping reached nothing, when another's reached something: a host alone with a
    count of 0, or every host at 0 (the network itself, or the ping targets), proves nothing."""
    zero = frozenset(h for h, n in reach.items() if n <= 0)
    return zero if any(n > 0 for n in reach.values()) else frozenset()


def reach_argv(attribute: str) -> list[str]:
    return ["attrd_updater", "-Q", "-A", "-n", attribute]


def cut_argv(address: str, port: int = DIST_PORT) -> list[str]:
    """Close this host's established distribution connections with `address` (either side may have
    dialled: one end is on `port`). The kernel resets each socket; the VM sees the connection closed."""
    ipaddress.ip_address(address)  # ValueError for anything that is not an address
    return ["ss", "-K", "-H", "-tn", "state", "established", f"( sport = :{port} or dport = :{port} )",
            "dst", address]


def let_go_argv(node: str) -> list[str]:
    """This node drops its distribution connection to `node` (true: there was one)."""
    if not NODE_NAME.fullmatch(node):
        raise ValueError(f"not an Erlang node name: {node!r}")
    return [*quorum_repair.CTL, "-q", "eval", f'erlang:disconnect_node(list_to_atom("{node}")).']


def listening(port: int, proc: Path = Path("/proc/net")) -> bool:
    """A socket in LISTEN on `port`, IPv4 or IPv6, in this network namespace."""
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


async def active(unit: str) -> bool:
    proc = await asyncio.create_subprocess_exec("systemctl", "is-active", "--quiet", unit,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(proc.wait(), 10) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


async def look(port: int, peers: Mapping[str, str], hold: Path, unit: str) -> tuple[Seen, frozenset[str]]:
    """The node as the restart duty sees it, and the peer addresses that did not answer at all."""
    answers = dict(zip(peers.values(), await asyncio.gather(*(knock(a, port) for a in peers.values())), strict=True))
    here = listening(port)
    # Only a node with no listener can be stuck: no systemctl (a process) on the usual look.
    seen = Seen(here or await active(unit), here, sum(a == "accepted" for a in answers.values()), hold.exists())
    return seen, frozenset(a for a, said in answers.items() if said == "silent")


async def _output(argv: list[str], timeout: float) -> tuple[int, str] | None:
    """Exit code and output (stderr included) of `argv`; None if it did not finish in time (killed)."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return proc.returncode or 0, out.decode(errors="replace").strip()


async def reach(attribute: str) -> dict[str, int]:
    """Each member's management reach as pacemaker knows it; {} when it cannot say."""
    got = await _output(reach_argv(attribute), 5)
    return parse_reach(got[1]) if got is not None and got[0] == 0 else {}


async def let_go(node: str, address: str) -> None:
    got = await _output(cut_argv(address), 10)
    closed = len([line for line in got[1].splitlines() if line.strip()]) if got is not None and got[0] == 0 else 0
    if closed:
        log.warning("let %s go: closed %d distribution connection(s) with %s", node, closed, address)
        return
    # ss could not, or found no connection on the port (gone already, or the VM dialled elsewhere): the VM's way.
    log.warning("letting %s go: ss -K closed nothing (%s); asking the VM", node,
                "timeout" if got is None else got[1][-200:] or f"exit {got[0]}")
    got = await _output(let_go_argv(node), 30)
    if got is None:
        log.error("letting %s go: rabbitmqctl did not finish within 30 s", node)
    elif got[0]:
        log.error("letting %s go: rabbitmqctl exit %d: %s", node, got[0], got[1][-300:])
    else:
        log.warning("let %s go (disconnect_node: %s)", node, got[1] or "?")


async def look_at_quorum_members(lost: Lost, ctl: tuple[str, ...] = quorum_repair.CTL) -> Lost:
    """The third duty's look (quorum_repair.py), and the repair of each queue that is due; `ctl` runs
    rabbitmqctl against this node."""
    got = await _output(quorum_repair.lost_argv(ctl), 60)
    if got is None or got[0]:
        log.error("listing this node's quorum queue members: %s", "timeout" if got is None else got[1][-300:])
        return lost
    lost, due = lost.after(time.monotonic(), quorum_repair.parse_lost(got[1]))
    for member in due:
        log.warning("quorum queue %r (vhost %r, members %s): its member on this node has not run for %.0f s: "
                    "repairing", member.queue, member.vhost, ",".join(member.nodes),
                    time.monotonic() - lost.since[member.key])
        done = await _output(quorum_repair.repair_argv(member, ctl), 180)
        verdict, why = ("unknown", "timeout") if done is None else quorum_repair.parse_repair(done[1])
        if verdict == "held":
            log.error("quorum queue %r: kept (%s): it will not serve again; to give its messages up: %s",
                      member.queue, why, quorum_repair.command_for(member))
        else:
            (log.warning if verdict in ("restarted", "regrown", "deleted") else log.error)(
                "quorum queue %r: %s%s", member.queue, verdict, f" ({why})" if why else "")
    return lost


async def run(port: int, peers: Mapping[str, str], hold: Path, *, grace: float = GRACE_S,
              reach_attribute: str | None = None, node: str = "") -> None:
    watch, silent_peers = Watch(), Peers()
    here = host_of(node)
    # The third duty runs beside the looks (a rabbitmqctl takes a second or more): its result is taken when done.
    quorum, quorum_look, quorum_due = Lost(), None, time.monotonic() + quorum_repair.EVERY_S
    notify("READY=1")
    while True:
        started = time.time()
        seen, silent = await look(port, peers, hold, UNIT)
        if quorum_look is not None and quorum_look.done():
            try:
                quorum = quorum_look.result()
            except Exception:  # a bug there must not stop the other duties
                log.exception("the quorum member look failed")
            quorum_look = None
        if quorum_look is None and seen.listening and time.monotonic() >= quorum_due:
            quorum_look = asyncio.create_task(look_at_quorum_members(quorum))
            quorum_due = time.monotonic() + quorum_repair.EVERY_S
        watch, why = watch.after(time.monotonic(), seen, grace)
        if why:
            log.warning("restarting %s: %s", UNIT, why)
            # --no-block: the start may take minutes; the watchdog keeps being fed meanwhile.
            res = subprocess.run(["systemctl", "restart", "--no-block", UNIT], capture_output=True, text=True,
                                 timeout=30, check=False)
            if res.returncode:
                log.error("systemctl restart %s: exit %d: %s", UNIT, res.returncode, res.stderr.strip()[:300])
        # Pacemaker is asked only while a peer is silent: one small process then, none on a quiet look.
        cut = cut_off(await reach(reach_attribute)) if reach_attribute and silent else frozenset[str]()
        silent_peers, lost = silent_peers.after(time.monotonic(), peers, silent, cut, here)
        for peer in lost if seen.listening else ():  # a node that serves nothing has nothing stalled
            looks = silent_peers.silence.misses[peers[peer]]
            if here in cut:
                log.warning("%s has not answered on port %d for %d look(s), and pacemaker's ping says this host "
                            "is the one that reaches no one: letting it go (pause_minority pauses this node)",
                            peer, port, looks)
            else:
                log.warning("%s has not answered on port %d for %d looks while other peers did%s: letting it go",
                            peer, port, looks,
                            ", and pacemaker's ping says its host reaches no one" if host_of(peer) in cut else "")
            await let_go(peer, peers[peer])
        notify("WATCHDOG=1")
        # On the wall clock's whole seconds: every member's watch looks, and lets a lost peer go, at once.
        # Quorum queue followers that dropped the lost leader 0.75 s apart took 3.5-4.3 s to elect (a
        # follower ahead of a candidate ignores its pre-vote), 0.2-0.6 s when they dropped it together.
        # The price: a look held 1.5 s by a silent peer is followed 2 s after it began, not 1.5 s.
        # Half a second of slack: a look that began a little after its tick is not pushed a tick on.
        await asyncio.sleep(to_next_tick(time.time(), started + EVERY_S / 2, EVERY_S))


def _peer(text: str) -> tuple[str, str]:
    node, sep, address = text.partition("=")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        sep = ""
    if not sep or not NODE_NAME.fullmatch(node):
        raise argparse.ArgumentTypeError(f"expected NODE=ADDRESS (rabbit@ctl2=10.0.0.12), got {text!r}")
    return node, address


def _node(text: str) -> str:
    if not NODE_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected an Erlang node name (rabbit@ctl1), got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hastack-rabbit-watch", description=__doc__.split("\n\n", 1)[0],
                                 epilog=f"To stop the rabbit app on purpose (maintenance): touch {HOLD} first, "
                                        "remove it after.")
    ap.add_argument("--port", type=int, required=True, help="the AMQP port (5672, or 5671 with TLS)")
    ap.add_argument("--peer", action="append", default=[], type=_peer,
                    help="another node's Erlang name and AMQP address, NODE=ADDRESS (repeat)")
    ap.add_argument("--hold", default=HOLD, help=f"while this file exists nothing is restarted (default {HOLD})")
    ap.add_argument("--grace", type=float, default=GRACE_S, help=f"seconds stuck before a restart ({GRACE_S:g})")
    ap.add_argument("--reach-attribute", metavar="NAME",
                    help="the pacemaker node attribute counting the management targets each member reaches "
                         "(the ping clone's): a peer at 0 is let go at its first silent look")
    # No default through `type`: argparse runs a string default through it, and "" is no node name
    # (every watch rendered without --node failed to start: a RabbitMQ node on a compute).
    ap.add_argument("--node", type=_node,
                    help="this node's Erlang name (rabbit@ctl1): with --reach-attribute, a host whose own count is "
                         "0 while a peer's is not lets every silent peer go, so that pause_minority pauses it")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.port, dict(args.peer), Path(args.hold), grace=args.grace,
                    reach_attribute=args.reach_attribute, node=args.node or ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

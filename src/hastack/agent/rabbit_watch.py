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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from hastack.agent.sd_notify import notify

DIR = "/run/hastack-rabbit-watch"
HOLD = f"{DIR}/hold"
LAUNCHER = "/usr/local/bin/hastack-rabbit-watch"
UNIT = "rabbitmq-server"
# A resume that works takes 10-25 s here with the peers up, up to ~65 s on a starved lab: 90 s
# leaves such a start alone and still heals a stuck node minutes, not hours, after the fault.
GRACE_S = 90.0
# A restart boots the node (up to the unit's 180 s start timeout): not another one before that.
BACKOFF_S = 240.0
EVERY_S = 5.0
CONNECT_TIMEOUT_S = 2.0
LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's st column
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


async def serves(address: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout)
    return True


async def active(unit: str) -> bool:
    proc = await asyncio.create_subprocess_exec("systemctl", "is-active", "--quiet", unit,
                                                stdin=asyncio.subprocess.DEVNULL)
    try:
        return await asyncio.wait_for(proc.wait(), 10) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


async def look(port: int, peers: Sequence[str], hold: Path, unit: str) -> Seen:
    up = await asyncio.gather(*(serves(p, port) for p in peers))
    return Seen(await active(unit), listening(port), sum(up), hold.exists())


async def run(port: int, peers: Sequence[str], hold: Path, grace: float = GRACE_S, unit: str = UNIT) -> None:
    watch = Watch()
    notify("READY=1")
    while True:
        started = time.monotonic()
        seen = await look(port, peers, hold, unit)
        watch, why = watch.after(time.monotonic(), seen, grace)
        if why:
            log.warning("restarting %s: %s", unit, why)
            # --no-block: the start may take minutes; the watchdog keeps being fed meanwhile.
            res = subprocess.run(["systemctl", "restart", "--no-block", unit], capture_output=True, text=True,
                                 timeout=30, check=False)
            if res.returncode:
                log.error("systemctl restart %s: exit %d: %s", unit, res.returncode, res.stderr.strip()[:300])
        notify("WATCHDOG=1")
        await asyncio.sleep(max(0.0, EVERY_S - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hastack-rabbit-watch", description=__doc__.split("\n\n", 1)[0],
                                 epilog=f"To stop the rabbit app on purpose (maintenance): touch {HOLD} first, "
                                        "remove it after.")
    ap.add_argument("--port", type=int, required=True, help="the AMQP port (5672, or 5671 with TLS)")
    ap.add_argument("--peer", action="append", default=[], help="another node's AMQP address (repeat)")
    ap.add_argument("--hold", default=HOLD, help=f"while this file exists nothing is restarted (default {HOLD})")
    ap.add_argument("--grace", type=float, default=GRACE_S, help=f"seconds stuck before a restart ({GRACE_S:g})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run(args.port, args.peer, Path(args.hold), grace=args.grace))
    return 0


if __name__ == "__main__":
    sys.exit(main())

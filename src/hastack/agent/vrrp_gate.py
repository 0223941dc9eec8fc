"""The VRRP gate: keepalived's checks run outside keepalived, their verdicts written to files it tracks.

keepalived runs each `vrrp_script` by forking its VRRP process. On a loaded host that fork waited in
the kernel (D state in dup_mmap, behind processes holding the shared libraries' mapping lock) for
seconds at a time, real-time priority or not: the VRRP process sent no adverts meanwhile, a backup
took the VIP from a live holder, and the checks themselves timed out and moved the VIP back and
forth (the fast keepalived lab). keepalived reads a `track_file` through inotify: with only those
it never forks. (Its `track_process` needs the kernel's process events, which reach only the first
network namespace: not a container's.) This process does the forking instead, at ordinary
priority: when it is starved a verdict comes late; it does not take the VRRP process down with it.

Each check's file holds 0 (pass) or 1 (fail); keepalived puts the VRRP instance in FAULT while any
is non-zero. A check must fail `fall` times in a row to write 1 and pass `rise` times to write 0.

Before writing a failing verdict the gate deletes the VIPs from this host itself. keepalived going
from MASTER to FAULT sends its priority-0 advert first and removes the addresses after: a backup
took the VIP on that advert while the old holder, its netlink calls waiting on a loaded host, still
answered ARP for it (two holders in one sample of the fast keepalived lab's `ring-loss`). A VIP
deleted under keepalived makes it step down too (to BACKUP, with the same advert), so the order is
the same whichever it reads first: the address leaves, then the backup takes it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hastack.agent.sd_notify import notify

DIR = "/run/hastack-vrrp"
LAUNCHER = "/usr/local/bin/hastack-vrrp-gate"
QUORUM_TOOL = "/usr/sbin/corosync-quorumtool"
FPING = "/usr/bin/fping"
IP = "/usr/sbin/ip"
# A check that has not answered in this long has failed. Longer than keepalived's 1-2 s script
# timeouts were: a slow answer on a starved host is an answer; a corosync that cannot say whether
# it is quorate for 5 s is not one to hold a VIP on.
TIMEOUT_S = 5.0
# The management network's look, here and in pacemaker's ping agent: every target is tried twice,
# 0.5 s a try, and one answer to either try counts. A network that is gone is still known in ~1 s;
# a lossy one is taken for gone only when both tries to every target were lost (at 10 % loss each
# way ~1.7e-6 of the looks with four targets, against ~1.3e-3 with one try of 1 s).
PING_TRIES = 2
PING_TRY_MS = 500
log = logging.getLogger("hastack.vrrp_gate")


@dataclass(frozen=True)
class Check:
    name: str  # the file's name in DIR, and keepalived's track_file name
    every_s: float
    rise: int
    fall: int
    argv: tuple[str, ...] = ()  # a command that exits 0 when the check passes
    process: str = ""  # or: a process of this name runs (read from /proc, no fork)


@dataclass(frozen=True)
class Gate:
    """A check's verdict so far: `ok` is what the file says (None: nothing written yet)."""

    ok: bool | None = None
    streak: int = 0  # consecutive results that disagree with `ok`

    def after(self, passed: bool, rise: int, fall: int) -> Gate:
        if self.ok is None:  # the first result decides: a starting gate keeps the VIP away until it knows
            return Gate(passed, 0)
        if passed == self.ok:
            return Gate(self.ok, 0)
        streak = self.streak + 1
        return Gate(passed, 0) if streak >= (rise if passed else fall) else Gate(self.ok, streak)


def fping(targets: Sequence[str]) -> tuple[str, ...]:
    """One look at the management network: passes when one of `targets` answered one of its tries
    (`-B 1.0`: the second try waits as long as the first, not twice as long)."""
    return (FPING, "-q", "-x", "1", "-r", str(PING_TRIES - 1), "-t", str(PING_TRY_MS), "-B", "1.0", *targets)


def checks(quorum: bool, ping: Sequence[str], ping_every_s: float, process: str = "haproxy") -> tuple[Check, ...]:
    """What the gate runs: haproxy itself, not the services behind it (a backend outage must not move
    the VIP around); the management network (one of `ping` answering, `fping`); and, where corosync
    gates the VIP, its quorum (`corosync-quorumtool -s`: 0 quorate, 2 not, 1 not running)."""
    out = [Check("haproxy", 1.0, 2, 2, process=process)]
    if ping:
        out.append(Check("mgmt", ping_every_s, 2, 1, argv=fping(ping)))
    if quorum:
        out.append(Check("quorum", 1.0, 2, 1, argv=(QUORUM_TOOL, "-s")))
    return tuple(out)


def running(name: str, proc: Path = Path("/proc")) -> bool:
    """A process named `name` (its comm, as ps shows it) runs."""
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                return True
        except OSError:  # gone while we looked
            continue
    return False


def write_verdict(directory: Path, name: str, ok: bool) -> None:
    """The file keepalived tracks, replaced whole (it reads it on inotify's close or move)."""
    tmp = directory / f".{name}.new"
    tmp.write_text("0\n" if ok else "1\n")
    os.replace(tmp, directory / name)


async def passes(argv: Sequence[str], timeout: float = TIMEOUT_S) -> bool:
    try:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
    except OSError as exc:
        log.warning("%s: %s", argv[0], exc)
        return False
    try:
        return await asyncio.wait_for(proc.wait(), timeout) == 0
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return False


def withdraw_argv(vip: str, device: str) -> tuple[str, ...]:
    """Delete one VIP (ADDRESS/PREFIX) from `device`; exits non-zero where this host does not hold it."""
    return (IP, "addr", "del", vip, "dev", device)


async def withdraw(vips: Sequence[str], device: str) -> list[str]:
    """The VIPs this host held and no longer does."""
    return [v for v in vips if await passes(withdraw_argv(v, device))]


async def run(directory: Path, todo: Sequence[Check], vips: Sequence[str] = (), device: str = "") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    gates = {c.name: Gate() for c in todo}
    last = {c.name: time.monotonic() for c in todo}

    async def loop(c: Check) -> None:
        while True:
            started = time.monotonic()
            before = gates[c.name]
            passed = running(c.process) if c.process else await passes(c.argv)
            gates[c.name] = after = before.after(passed, c.rise, c.fall)
            if after.ok != before.ok:
                if not after.ok and vips and (gone := await withdraw(vips, device)):
                    log.info("%s fails: withdrew %s from %s before keepalived's FAULT", c.name, " ".join(gone), device)
                write_verdict(directory, c.name, bool(after.ok))
                log.info("%s %s", c.name, "passes" if after.ok else "fails")
            last[c.name] = time.monotonic()
            await asyncio.sleep(max(0.0, c.every_s - (last[c.name] - started)))

    async def watchdog() -> None:
        ready = False
        while True:
            if not ready and all(g.ok is not None for g in gates.values()):
                notify("READY=1")
                ready = True
            # Each round is bounded by TIMEOUT_S: a check that made no round for far longer is stuck.
            if all(time.monotonic() - t < 4 * TIMEOUT_S for t in last.values()):
                notify("WATCHDOG=1")
            await asyncio.sleep(1)

    await asyncio.gather(watchdog(), *(loop(c) for c in todo))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hastack-vrrp-gate", description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--dir", default=DIR, help=f"where the verdicts go (default {DIR})")
    ap.add_argument("--quorum", action="store_true", help="gate on corosync's quorum too")
    ap.add_argument("--ping", nargs="*", default=[], help="management addresses; one answering is enough")
    ap.add_argument("--process", default="haproxy", help="the process whose absence fails the haproxy check")
    ap.add_argument("--ping-every", type=float, default=1.0, help="seconds between two pings (default 1)")
    ap.add_argument("--vip", nargs="*", default=[], metavar="ADDRESS/PREFIX",
                    help="keepalived's VIPs: deleted from --device before a failing verdict is written")
    ap.add_argument("--device", default="", help="the interface that holds the VIPs")
    args = ap.parse_args(argv)
    if args.vip and not args.device:
        ap.error("--vip needs --device")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    todo = checks(args.quorum, args.ping, args.ping_every, args.process)
    asyncio.run(run(Path(args.dir), todo, args.vip, args.device))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A delay line between two interfaces: netem's `delay`, in user space.

The machine hastack's lab was built on has no sch_netem (nor sch_fq, nor
NFQUEUE), so the kernel cannot hold frames back. This process can: it reads
every frame arriving on one interface of a pair through a packet socket,
keeps it for the delay, and sends it out of the other. `chaos` splices it
into a lab host's links (the host's veth taken off its bridge, a fresh veth
pair put on in its place) for the length of the fault.

Packet sockets with virtio-net headers (PACKET_VNET_HDR, as QEMU's tap
backend uses) carry each frame's offload state across: the veths hand over
TCP segments of up to 64 KiB with their checksums still to fill in, and the
header tells the sending side to finish them, so nothing inside the hosts
has to change.

    python -m hastack.chaos.delayline --delay-ms 100 --seconds 90 [--on-exit CMD ...] IF_A:IF_B [...]

Prints `ready` once every socket is bound; stops at the bound, on SIGTERM or
when its stdin closes (the chaos run that started it gone), sends what it
still holds, then runs the `--on-exit` commands: the splice undone by the line
itself, so that a chaos run killed outright leaves no host cut off.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import os
import selectors
import shlex
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15
PACKET_OUTGOING = 4  # a frame this host sent (ours among them): never forwarded back
VNET_HDR = 10  # struct virtio_net_hdr
FRAME_MAX = 65536 + VNET_HDR + 64
# netem's default queue limit is 1,000 packets; a lab link at full tilt holds more
# than that in 100 ms of segments, and a drop here would be loss, not delay.
QUEUE_LIMIT = 20_000


def release_time(arrival: float, delay_s: float, previous: float) -> float:
    """When a frame leaves: after its delay, and never before the one ahead of it.

    netem with jitter reorders; a link does not, and TCP would read reordering
    as loss. Pure."""
    return max(arrival + delay_s, previous)


@dataclass
class Port:
    name: str
    sock: socket.socket
    peer: Port | None = None
    last_release: float = 0.0  # of the frames bound out of this port
    sent: int = 0
    dropped: int = 0


@dataclass(order=True)
class Held:
    release: float
    seq: int
    out: Port = field(compare=False)
    frame: bytes = field(compare=False)


def open_port(name: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((name, ETH_P_ALL))
    # Promiscuous: the frames are for the hosts behind the port, not for this machine.
    mreq = struct.pack("iHH8s", socket.if_nametoindex(name), PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    sock.setblocking(False)
    return sock


def send(out: Port, frame: bytes) -> None:
    try:
        out.sock.send(frame)
        out.sent += 1
    except OSError:  # the interface went away (its host fenced and rebooted): as a pulled cable
        out.dropped += 1


def serve(pairs: list[tuple[str, str]], delay_s: float, seconds: float) -> list[Port]:
    # netem runs in the kernel and is never late; a user-space line descheduled on a busy
    # machine would add its own jitter (and a VRRP advert 0.3 s late is a failover). Real-time
    # priority where allowed: the loop blocks in select, it cannot hog a core.
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    ports: list[Port] = []
    for a, b in pairs:
        pa, pb = Port(a, open_port(a)), Port(b, open_port(b))
        pa.peer, pb.peer = pb, pa
        ports += [pa, pb]
    sel = selectors.DefaultSelector()
    for p in ports:
        sel.register(p.sock, selectors.EVENT_READ, p)
    sel.register(sys.stdin, selectors.EVENT_READ, None)
    stop = False

    def on_term(_sig: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    held: list[Held] = []
    seq = 0
    until = time.monotonic() + seconds
    while not stop:
        now = time.monotonic()
        if now >= until:
            break
        wait = min(held[0].release - now if held else 0.5, until - now)
        for key, _ in sel.select(max(wait, 0.0)):
            port = key.data
            if port is None:  # stdin: EOF means whoever started us is gone
                stop = not sys.stdin.readline()
                continue
            while True:
                try:
                    frame, addr = port.sock.recvfrom(FRAME_MAX)
                except OSError:  # drained (BlockingIOError), or the interface went away
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                out = port.peer
                assert out is not None
                if len(held) >= QUEUE_LIMIT:
                    out.dropped += 1
                    continue
                out.last_release = release_time(time.monotonic(), delay_s, out.last_release)
                seq += 1
                heapq.heappush(held, Held(out.last_release, seq, out, frame))
        now = time.monotonic()
        while held and held[0].release <= now:
            h = heapq.heappop(held)
            send(h.out, h.frame)
    # Removing the delay lets what it held through at once, in order: nothing lost by the injector.
    while held:
        h = heapq.heappop(held)
        send(h.out, h.frame)
    return ports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--seconds", type=float, required=True, help="stop after this long whatever happens")
    ap.add_argument("--on-exit", action="append", default=[], metavar="CMD",
                    help="run when the line stops, each whatever the others do")
    ap.add_argument("pairs", nargs="+", metavar="IF_A:IF_B")
    args = ap.parse_args(argv)
    pairs = [tuple(p.split(":", 1)) for p in args.pairs]
    if any(len(p) != 2 or not all(p) for p in pairs):
        ap.error("each pair is IF_A:IF_B")
    try:
        ports = serve([(a, b) for a, b in pairs], args.delay_ms / 1000, args.seconds)
    finally:
        for cmd in args.on_exit:
            subprocess.run(shlex.split(cmd), check=False, capture_output=True)
    print("frames out: " + ", ".join(f"{p.name} {p.sent} ({p.dropped} dropped)" for p in ports), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

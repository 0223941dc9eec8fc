"""sd_notify(3) without libsystemd: the agents are the standard library only."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> None:
    """Tells systemd `message` (READY=1, WATCHDOG=1) when it runs us as a notify unit; else nothing."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), "\0" + addr[1:] if addr.startswith("@") else addr)

"""Host keys: every connection is verified against a known_hosts file; first contact is a person's call.

Deploy sends every secret and runs root commands, so a connection to a host
whose key nobody checked is a gift to whoever sits in the middle. `hastack
trust` fetches each host's key, shows its fingerprint and records it once an
operator agrees (the lab records the keys of the hosts it creates itself).
A key that differs from the recorded one is never replaced here.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import asyncssh

from hastack.common.errors import described
from hastack.spec.model import Spec


class KeyState(StrEnum):
    KNOWN = "known"  # recorded, and the host shows it
    NEW = "new"  # nothing recorded for this host and key type
    CHANGED = "CHANGED"  # a key of this type is recorded, and the host shows another
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class HostKey:
    host: str
    address: str
    port: int
    state: KeyState
    key_type: str = ""
    fingerprint: str = ""
    line: str = ""  # the known_hosts line that records it
    error: str = ""


def known_hosts_name(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def read_known(path: Path) -> asyncssh.SSHKnownHosts | None:
    return asyncssh.read_known_hosts(str(path)) if path.exists() else None


def classify(known: asyncssh.SSHKnownHosts | None, address: str, port: int, key: asyncssh.SSHKey) -> KeyState:
    if known is None:
        return KeyState.NEW
    trusted = known.match(address, address, port)[0]
    same_type = [k for k in trusted if k.algorithm == key.algorithm]
    if any(k.public_data == key.public_data for k in same_type):
        return KeyState.KNOWN
    return KeyState.CHANGED if same_type else KeyState.NEW


async def _scan_one(name: str, address: str, port: int, known: asyncssh.SSHKnownHosts | None,
                    timeout: float) -> HostKey:
    try:
        key = await asyncio.wait_for(asyncssh.get_server_host_key(address, port), timeout)
    except (TimeoutError, OSError, asyncssh.Error) as exc:
        return HostKey(name, address, port, KeyState.UNREACHABLE, error=described(exc))
    if key is None:
        return HostKey(name, address, port, KeyState.UNREACHABLE, error="the server showed no host key")
    public = key.export_public_key("openssh").decode().split()
    return HostKey(name, address, port, classify(known, address, port, key), key.algorithm.decode(),
                   key.get_fingerprint("sha256"), f"{known_hosts_name(address, port)} {public[0]} {public[1]}")


async def scan(spec: Spec, known_hosts: Path, port: int = 22, timeout: float = 10) -> list[HostKey]:
    """Every host's key as it shows it now, compared with what `known_hosts` records."""
    known = read_known(known_hosts)
    return list(await asyncio.gather(*(_scan_one(n.name, str(n.address), port, known, timeout) for n in spec.nodes)))


def record(known_hosts: Path, keys: list[HostKey]) -> int:
    """Append the NEW keys to `known_hosts` (0600, created with a 0700 folder); returns how many."""
    lines = [k.line for k in keys if k.state is KeyState.NEW]
    if not lines:
        return 0
    known_hosts.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as fh:
        fh.write("".join(f"{line}\n" for line in lines))
    return len(lines)

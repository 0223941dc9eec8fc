"""SshHost against sshd's session limit: never more than MAX_SESSIONS at once, a refused open retried."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest

from hastack.hosts import ssh
from hastack.hosts.ssh import SshHost


@dataclass
class Proc:
    exit_status: int = 0
    stdout: str = "ok\n"
    stderr: str = ""


class Conn:
    """An SSH connection that refuses a session now and then, as sshd does past MaxSessions."""

    def __init__(self, refusals: int) -> None:
        self.open = self.most = 0
        self.refusals = refusals

    async def run(self, command: str, **_: Any) -> Proc:
        if self.refusals:
            self.refusals -= 1
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "open failed")
        self.open += 1
        self.most = max(self.most, self.open)
        await asyncio.sleep(0.01)
        self.open -= 1
        return Proc()


def host(conn: Conn) -> SshHost:
    h = SshHost("ctl1", "10.0.0.1", "/nonexistent", known_hosts="/nonexistent")
    h._conn = conn  # type: ignore[assignment]
    return h


def test_commands_gathered_on_one_host_stay_under_the_session_limit() -> None:
    conn = Conn(refusals=0)

    async def many() -> list[ssh.Result]:
        h = host(conn)
        return await asyncio.gather(*(h.run(["true", str(i)]) for i in range(30)))

    results = asyncio.run(many())
    assert all(r.stdout == "ok\n" for r in results) and conn.most == ssh.MAX_SESSIONS


def test_a_refused_session_is_opened_again_and_a_host_that_keeps_refusing_is_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "OPEN_RETRIES", 4)
    assert asyncio.run(host(Conn(refusals=3)).run(["true"])).rc == 0
    with pytest.raises(asyncssh.ChannelOpenError):
        asyncio.run(host(Conn(refusals=ssh.OPEN_RETRIES)).run(["true"]))


def test_a_host_dropped_without_a_reason_is_unreachable_for_a_named_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI's status once said "compute1: cannot reach root@10.79.0.21 over SSH: " and nothing more."""
    from pathlib import Path

    from hastack.hosts.fleet import Access, reachable
    from hastack.spec.load import load_spec
    from tests.helpers import THREE

    async def lost(self: SshHost) -> SshHost:
        raise asyncssh.ConnectionLost("")

    monkeypatch.setattr(SshHost, "__aenter__", lost)

    async def probe() -> dict[str, str]:
        async with reachable(load_spec(THREE), Access(Path("/nonexistent"), Path("/nonexistent"))) as (_, why):
            return why

    why = asyncio.run(probe())
    assert why and all(w.endswith("over SSH: ConnectionLost (no message)") for w in why.values()), why

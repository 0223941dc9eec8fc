"""SshHost against sshd's session limit: never more than MAX_SESSIONS at once, a refused open retried."""

from __future__ import annotations

import asyncio
import contextlib
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

    def is_closed(self) -> bool:
        return False

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


class BlackHole:
    """A TCP relay to a real SSH server that can go silent: it keeps both sockets open and passes
    nothing more either way, as a host that lost power does (no FIN, no RST; only the kernel's
    retransmissions, ~15 min of them, would end it)."""

    def __init__(self, port: int) -> None:
        self.port, self.silent = port, False
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers += [writer, up_w]

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while data := await r.read(65536):
                if not self.silent:
                    w.write(data)

        with contextlib.suppress(asyncio.CancelledError):  # the test's loop ends with the relay still up
            await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer), return_exceptions=True)

    def close(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()


def test_a_host_that_goes_silent_mid_session_fails_its_command_instead_of_holding_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen: a chaos run's status probe waited for good on a compute fenced while it was asked, so the
    fault was never undone. A real asyncssh server behind a relay that goes silent: the command fails
    (the keepalives get no answer) within their bound, and the host closes at once."""
    monkeypatch.setattr(ssh, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(ssh, "KEEPALIVE_MISSES", 2)
    server_key, client_key = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(tmp_path / "id"))
    (tmp_path / "authorized").write_bytes(client_key.export_public_key())

    async def go() -> tuple[ssh.Result, float]:
        server = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[server_key],
            authorized_client_keys=str(tmp_path / "authorized"),
            process_factory=lambda p: (p.stdout.write("up\n"), p.exit(0)))
        relay = BlackHole(server.sockets[0].getsockname()[1])
        port = await relay.start()
        (tmp_path / "known").write_text(f"[127.0.0.1]:{port} "
                                        + server_key.export_public_key().decode())
        try:
            async with SshHost("compute1", "127.0.0.1", str(tmp_path / "id"), port=port, user="root",
                               known_hosts=str(tmp_path / "known")) as h:
                first = await h.run(["true"], timeout=5)
                relay.silent = True
                start = asyncio.get_running_loop().time()
                # asyncio's TimeoutError here would be the old behaviour: the command still waiting.
                with pytest.raises(asyncssh.Error):
                    await asyncio.wait_for(h.run(["true"], timeout=300), 10)
                took = asyncio.get_running_loop().time() - start
            return first, took
        finally:
            relay.close()
            server.close()

    first, took = asyncio.run(asyncio.wait_for(go(), 30))
    assert first.stdout == "up\n"
    assert took < 0.2 * (2 + 1) + 1.0, took

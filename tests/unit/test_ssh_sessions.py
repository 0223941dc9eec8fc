"""SshHost against sshd's session limit: never more than MAX_SESSIONS at once, a refused open retried."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest

from hastack.hosts import ssh
from hastack.hosts.ssh import SshHost


@dataclass
class Proc:
    returncode: int | None = 0
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


async def _answer(p: asyncssh.SSHServerProcess[str], hung: asyncio.Event) -> None:
    """The server's side: `hang` never ends (a command the host dies under; `hung` says it arrived);
    anything else says up."""
    if p.command == "hang":
        hung.set()
        await asyncio.sleep(60)
    p.stdout.write("up\n")
    p.exit(0)


async def _silenced(tmp_path: Any, commands: list[str]) -> tuple[ssh.Result, list[tuple[BaseException, float]]]:
    """A real asyncssh server behind a relay: one command answered, then the relay goes silent and
    each of `commands` is run; what each raised, and how long it took to. The relay goes silent under
    `hang` once the server has it."""
    hung = asyncio.Event()
    server_key, client_key = asyncssh.generate_private_key("ssh-ed25519"), asyncssh.generate_private_key("ssh-ed25519")
    client_key.write_private_key(str(tmp_path / "id"))
    (tmp_path / "authorized").write_bytes(client_key.export_public_key())
    server = await asyncssh.create_server(
        asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[server_key],
        authorized_client_keys=str(tmp_path / "authorized"),
        process_factory=functools.partial(_answer, hung=hung))
    relay = BlackHole(server.sockets[0].getsockname()[1])
    port = await relay.start()
    (tmp_path / "known").write_text(f"[127.0.0.1]:{port} " + server_key.export_public_key().decode())
    loop = asyncio.get_running_loop()
    raised: list[tuple[BaseException, float]] = []
    try:
        async with SshHost("compute1", "127.0.0.1", str(tmp_path / "id"), port=port, user="root",
                           known_hosts=str(tmp_path / "known")) as h:
            first = await h.run(["true"], timeout=5)
            for command in commands:
                run = asyncio.create_task(asyncio.wait_for(h.run([command], timeout=300), 10))
                if command == "hang":
                    await asyncio.wait_for(hung.wait(), 5)
                relay.silent = True
                start = loop.time()
                # asyncio's TimeoutError here would be the old behaviour: the command still waiting.
                with pytest.raises(ssh.HostLost) as err:
                    await run
                raised.append((err.value, loop.time() - start))
        return first, raised
    finally:
        relay.close()
        server.close()


def test_a_host_that_goes_silent_mid_session_fails_its_command_instead_of_holding_it(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen: a chaos run's status probe waited for good on a compute fenced while it was asked, so the
    fault was never undone. The command fails (the keepalives get no answer) within their bound, says
    why, and the next one on that host fails at once for the same named cause."""
    monkeypatch.setattr(ssh, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(ssh, "KEEPALIVE_MISSES", 2)
    first, raised = asyncio.run(asyncio.wait_for(_silenced(tmp_path, ["true", "date"]), 30))
    assert first.stdout == "up\n"
    (lost, took), (again, at_once) = raised
    assert took < 0.2 * (2 + 1) + 1.0 and at_once < 0.1, (took, at_once)
    # A lab deploy once failed with "SSH connection closed" alone: which host, which command, why.
    assert str(lost).startswith("compute1: `true` could not start: the SSH connection closed "
                                "(Server not responding to keepalive)"), lost
    assert str(again).startswith("compute1: `date` could not start: the SSH connection closed "
                                 "(Server not responding to keepalive)"), again


def test_a_command_cut_off_by_a_dead_host_is_an_error_not_a_success(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """asyncssh ends a run whose connection died with no exit status; read as 0, a deploy step that
    never finished would have counted as done."""
    monkeypatch.setattr(ssh, "KEEPALIVE_S", 0.2)
    monkeypatch.setattr(ssh, "KEEPALIVE_MISSES", 2)
    _, raised = asyncio.run(asyncio.wait_for(_silenced(tmp_path, ["hang"]), 30))
    ((lost, took),) = raised
    assert took < 0.2 * (2 + 1) + 1.0, took
    assert isinstance(lost, ssh.HostError) and lost.result.rc == -1
    assert re.match(r"compute1: `hang` was cut off: the SSH connection closed \(Server not responding to "
                    r"keepalive\) \d+ s after the host last answered$", str(lost)), lost

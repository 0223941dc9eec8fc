"""A host reached over SSH (asyncssh): commands, facts, and files placed atomically."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import asyncssh


class HostError(Exception):
    """A command failed on a host: says which host, which command, and its output."""

    def __init__(self, host: str, command: str, result: Result, why: str = "") -> None:
        self.host, self.command, self.result = host, command, result
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        super().__init__(f"{host}: `{command}` {why or f'exited {result.rc}'}" + (f"\n{tail}" if tail else ""))


class CommandTimeout(HostError):
    """A command outran its time on a host (a busy host, a hung daemon). A HostError, so a wait that
    polls a command retries it as it would one that failed."""

    def __init__(self, host: str, command: str, result: Result, timeout: float) -> None:
        super().__init__(host, command, result, f"did not finish within {timeout:g} s")


class HostLost(HostError):
    """The SSH connection to a host closed under a command, or before it could start: the command's
    outcome is unknown (it may have run). Says why the connection closed and how long the host had
    been silent, which tells a dead or fenced host (keepalives unanswered) from a reset."""

    def __init__(self, host: str, command: str, why: str) -> None:
        super().__init__(host, command, Result(-1, "", ""), why)


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


# sshd refuses an 11th session on one connection (OpenSSH's MaxSessions is 10), and counts a session
# until its close reaches it, a little after the command's exit: commands gathered over many units
# of one host wait their turn here, and a refused one is opened again shortly (bounded).
MAX_SESSIONS = 6
OPEN_RETRIES = 10
# A host that dies mid-session answers nothing more, and the kernel retries unsent data for ~15 min
# (tcp_retries2): a chaos run's status probe once waited that long on a compute fenced while it was
# asked, with the session's open in flight (asyncssh bounds no open). SSH keepalives drop such a
# connection after KEEPALIVE_S * (KEEPALIVE_MISSES + 1) s of silence, failing whatever waits on it.
# Generous: a lab host under load took over 5 s to answer SSH, and a slow answer is not a dead host.
KEEPALIVE_S = 10
KEEPALIVE_MISSES = 3


class _Client(asyncssh.SSHClient):
    """Remembers why and when its connection closed: asyncssh keeps neither where a caller can read it."""

    def __init__(self) -> None:
        self.lost: tuple[float, str] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = (time.monotonic(), str(exc).strip() if exc else "closed")


class SshHost:
    def __init__(self, name: str, address: str, key_path: str, *, known_hosts: str, port: int = 22,
                 user: str = "root", connect_timeout: float = 10) -> None:
        self.name = name
        self.address = address
        self.port = port
        self._key = key_path
        self._known_hosts = known_hosts
        self._user = user
        self._timeout = connect_timeout
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client = _Client()
        self._answered = time.monotonic()  # when the host last finished a command for us
        self._sessions = asyncio.Semaphore(MAX_SESSIONS)

    async def __aenter__(self) -> SshHost:
        # The host key is checked against known_hosts, always: a host not recorded there
        # (`hastack trust`) or showing another key is refused (asyncssh.HostKeyNotVerifiable).
        self._client = _Client()
        self._conn = await asyncssh.connect(
            self.address, port=self.port, username=self._user, client_keys=[self._key],
            known_hosts=self._known_hosts, connect_timeout=self._timeout,
            keepalive_interval=KEEPALIVE_S, keepalive_count_max=KEEPALIVE_MISSES,
            client_factory=lambda: self._client,
        )
        self._answered = time.monotonic()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
            self._conn = None

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        if self._conn is None:
            raise RuntimeError(f"{self.name}: not connected")
        return self._conn

    async def run(self, argv: Sequence[str], check: bool = True, timeout: float = 300,
                  input: str | bytes | None = None) -> Result:
        """Run `argv` (quoted for the remote shell here: nothing interpolated can split or inject).

        `input` goes to its stdin; bytes as they are (a binary key, an archive)."""
        if isinstance(argv, str):  # a string would be split by the remote shell: refuse, never guess
            raise TypeError(f"{self.name}: commands are argv sequences, not strings: {argv!r}")
        command = shlex.join(argv)
        binary = isinstance(input, bytes)
        async with self._sessions:
            for attempt in range(OPEN_RETRIES):
                try:
                    proc = await self.conn.run(command, check=False, timeout=timeout, input=input,
                                               **({"encoding": None} if binary else {}))
                    break
                except asyncssh.TimeoutError as exc:
                    partial = Result(-1, _text(exc.stdout), _text(exc.stderr))
                    raise CommandTimeout(self.name, command, partial, timeout) from None
                except asyncssh.ChannelOpenError:
                    # A refusal is worth another try; a connection that closed (keepalives unanswered) is not.
                    if self.conn.is_closed() or self._client.lost:
                        raise self._lost(command, "could not start") from None
                    if attempt == OPEN_RETRIES - 1:
                        raise
                    await asyncio.sleep(0.1 * (attempt + 1))
        # Neither a status nor a signal: the channel closed under the command (asyncssh returns such a
        # run as if it had exited; read as 0, a command cut off by a dead host would pass for done).
        if proc.returncode is None:
            raise self._lost(command, "was cut off")
        self._answered = time.monotonic()
        result = Result(proc.returncode, _text(proc.stdout), _text(proc.stderr))
        if check and result.rc != 0:
            raise HostError(self.name, command, result)
        return result

    def _lost(self, command: str, what: str) -> HostLost:
        lost = self._client.lost
        when, why = lost if lost else (time.monotonic(), "closed")
        return HostLost(self.name, command, f"{what}: the SSH connection closed ({why}) "
                                            f"{when - self._answered:.0f} s after the host last answered")


def _text(data: object) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")

"""A host reached over SSH (asyncssh): commands, facts, and files placed atomically."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import asyncssh

from hastack.hosts.files import FACT_CMD, Change, diff, parse_file_fact
from hastack.hosts.place import place_argv
from hastack.render.files import RenderedFile


class HostError(Exception):
    """A command failed on a host: says which host, which command, and its output."""

    def __init__(self, host: str, command: str, result: Result) -> None:
        self.host, self.command, self.result = host, command, result
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        super().__init__(f"{host}: `{command}` exited {result.rc}\n{tail}")


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


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

    async def __aenter__(self) -> SshHost:
        # The host key is checked against known_hosts, always: a host not recorded there
        # (`hastack trust`) or showing another key is refused (asyncssh.HostKeyNotVerifiable).
        self._conn = await asyncssh.connect(
            self.address, port=self.port, username=self._user, client_keys=[self._key],
            known_hosts=self._known_hosts, connect_timeout=self._timeout,
        )
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

    async def run(self, argv: Sequence[str] | str, check: bool = True, timeout: float = 300,
                  input: str | None = None) -> Result:
        command = argv if isinstance(argv, str) else shlex.join(argv)
        proc = await self.conn.run(command, check=False, timeout=timeout, input=input)
        result = Result(proc.exit_status or 0, str(proc.stdout or ""), str(proc.stderr or ""))
        if check and result.rc != 0:
            raise HostError(self.name, command, result)
        return result

    async def put(self, f: RenderedFile) -> Change:
        """Place one file with its owner and mode; do nothing if it is already so."""
        out = await self.run(FACT_CMD.format(path=shlex.quote(f.path)), check=False)
        change = diff(f, parse_file_fact(out.stdout))
        if change is Change.NONE:
            return change
        argv = place_argv(f)
        proc = await self.conn.run(shlex.join(argv), check=False, timeout=120, input=f.content, encoding=None)
        result = Result(proc.exit_status or 0, _text(proc.stdout), _text(proc.stderr))
        if result.rc != 0:
            raise HostError(self.name, f"place {f.path} ({f.owner}:{f.group} {f.mode:o})", result)
        return change


def _text(data: object) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")

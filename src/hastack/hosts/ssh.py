"""A host reached over SSH (asyncssh): commands, facts, and files placed atomically."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

import asyncssh

from hastack.hosts.files import FACT_CMD, Change, diff, parse_file_fact
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
    def __init__(self, name: str, address: str, key_path: str, *, port: int = 22, user: str = "root",
                 connect_timeout: float = 10) -> None:
        self.name = name
        self.address = address
        self.port = port
        self._key = key_path
        self._user = user
        self._timeout = connect_timeout
        self._conn: asyncssh.SSHClientConnection | None = None

    async def __aenter__(self) -> SshHost:
        # Lab and first deploys know no host keys yet; hastack pins nothing
        # today (known_hosts=None). Production should pass a known_hosts file.
        self._conn = await asyncssh.connect(
            self.address, port=self.port, username=self._user, client_keys=[self._key], known_hosts=None,
            connect_timeout=self._timeout,
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
        tmp = f"{f.path}.hastack-new"
        q = shlex.quote
        await self.run(f"mkdir -p {q(posixpath.dirname(f.path))}")
        # Written 0600 first, then owned and moded, then renamed over the old
        # file: a secret is never readable by others, a reader never sees half a file.
        async with (self.conn.start_sftp_client() as sftp,
                    sftp.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as fh):
            await fh.write(f.content)
        await self.run(f"chown {q(f.owner)}:{q(f.group)} {q(tmp)} && chmod {f.mode:o} {q(tmp)} "
                       f"&& mv -f {q(tmp)} {q(f.path)}")
        return change

"""What every deploy phase works with: the spec, its rendered tree, the hosts, what changed so far.

A phase (deploy/phases/) probes what it needs, decides, acts, and records what
it changed in the report; the helpers here are the acts phases share: a unit
running (restarted when its configuration changed), a bounded wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pymongo.errors

from hastack.common.poll import PollTimeout, until_async
from hastack.common.progress import Progress
from hastack.common.tasks import all_or_stop
from hastack.credentials.model import Secrets
from hastack.hosts.files import Change
from hastack.hosts.ssh import HostError, SshHost
from hastack.render.files import Tree
from hastack.spec.model import Spec

T = TypeVar("T")

COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_AUTHKEY = "/etc/corosync/authkey"
CIB_PATH = "/etc/hastack/cib.xml"
GALERA_SQL = "/etc/hastack/galera-bootstrap.sql"
REPLSET_PATH = "/etc/hastack/mongodb-replset.json"
# Files a deploy placed whose change it has not acted on yet (a restart, a reload), one path a line,
# written before each such file is: a deploy stopped in between (Ctrl-C, a lost host) left the new
# file in place and the old daemon running, and the next deploy, finding the file as rendered,
# changed nothing. Removed when a whole deploy has finished.
PENDING_PATH = "/var/lib/hastack/deploy-pending"
# Beside it, for a file whose action depends on what it replaced (corosync reloads some changes and
# restarts for others): the content the daemon still runs with, under the file's own path. Without
# it the next deploy compared the new file with itself and did neither.
PENDING_BEFORE = "/var/lib/hastack/deploy-pending.before"


class DeployError(Exception):
    """A step failed: names the host, the step and what was seen."""


@dataclass(frozen=True)
class ChangeRecord:
    """One change a deploy made: where, in which phase, and what."""

    host: str
    phase: str
    what: str

    def __str__(self) -> str:
        return f"{self.host}: {self.what}"


@dataclass
class Report:
    changes: list[ChangeRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    phase: str = ""  # the phase running: each change is filed under it

    def changed(self, host: str, what: str) -> None:
        self.changes.append(ChangeRecord(host, self.phase, what))


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str,
                   interval: float = 0.5) -> T:
    """Poll `probe` until it returns a value; bounded, and says what it waited for."""
    try:
        return await until_async(probe, timeout, interval,
                                 retry_on=(HostError, pymongo.errors.PyMongoError, ValueError))
    except PollTimeout as exc:
        last = f"; last error: {exc.last}" if exc.last else ""
        raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}{last}") from None


@dataclass
class DeployContext:
    spec: Spec
    secrets: Secrets
    tree: Tree
    hosts: Mapping[str, SshHost]
    progress: Progress
    report: Report = field(default_factory=Report)
    pushed: dict[str, dict[str, Change]] = field(default_factory=dict)  # host -> path -> what the push did
    before: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> path -> content before this deploy
    agent_installed: set[str] = field(default_factory=set)  # hosts whose health agent is new: it restarts
    owed: dict[str, set[str]] = field(default_factory=dict)  # host -> paths an unfinished deploy placed

    async def read_owed(self, host: str) -> set[str]:
        """What an earlier deploy placed on `host` and did not finish acting on (read once per deploy)."""
        if host not in self.owed:
            res = await self.h(host).run(["cat", PENDING_PATH], check=False)
            self.owed[host] = set(res.stdout.split("\n")) - {""} if res.rc == 0 else set()
        return self.owed[host]

    async def owe(self, host: str, path: str) -> None:
        """Record on `host`, before `path` is written, that this deploy owes it an action (and what it
        replaces, when the action depends on that). An earlier record stands: the daemon runs with what
        the first unfinished deploy replaced."""
        owed = await self.read_owed(host)
        if path in owed:
            return
        if (old := self.before.get(host, {}).get(path)) is not None:
            await self.h(host).run(["sh", "-c", 'mkdir -p "${1%/*}" && umask 077 && cat > "$1"', "keep",
                                    PENDING_BEFORE + path], input=old)
        await self.h(host).run(["sh", "-c", 'mkdir -p "${1%/*}" && umask 077 && printf "%s\\n" "$2" >> "$1"',
                                "owe", PENDING_PATH, path])
        owed.add(path)

    async def read_before(self, host: str, path: str) -> str | None:
        """What `path` held before this deploy, as its daemon knows it: the content an unfinished deploy
        replaced if it owes `path`, else the file (None: no such file)."""
        if path in await self.read_owed(host):
            kept = await self.h(host).run(["cat", PENDING_BEFORE + path], check=False)
            if kept.rc == 0:
                return kept.stdout
        res = await self.h(host).run(["cat", path], check=False)
        return res.stdout if res.rc == 0 else None

    async def settle(self) -> None:
        """A whole deploy finished: nothing is owed any more where something was."""
        await self.gather([self.h(h).run(["rm", "-rf", PENDING_PATH, PENDING_BEFORE])
                           for h, owed in self.owed.items() if owed])
        self.owed.clear()

    def h(self, name: str) -> SshHost:
        return self.hosts[name]

    def file_changed(self, host: str, *paths: str) -> bool:
        return any(self.pushed.get(host, {}).get(p, Change.NONE) is not Change.NONE for p in paths)

    async def active(self, host: str, unit: str) -> bool:
        res = await self.h(host).run(["systemctl", "is-active", "--quiet", unit], check=False)
        return res.rc == 0

    async def ensure_running(self, host: str, unit: str, restart_if: bool = False, enable: bool = True) -> None:
        """Start (or restart when its config changed) a unit; record what was done."""
        running = await self.active(host, unit)
        restart_if = restart_if or self.file_changed(host, f"/etc/systemd/system/{unit}.service")
        if enable:
            await self.h(host).run(["systemctl", "enable", "--quiet", unit])
        if running and not restart_if:
            return
        verb = "restart" if running else "start"
        try:
            await self.h(host).run(["systemctl", verb, unit], timeout=600)
        except HostError as exc:
            journal = await self.h(host).run(["journalctl", "-u", unit, "-n", "20", "--no-pager"], check=False)
            raise DeployError(f"{host}: systemctl {verb} {unit} failed:\n{exc}\n{journal.stdout}") from exc
        self.report.changed(host, f"{verb}ed {unit}")

    async def gather(self, coros: list[Awaitable[T]]) -> list[T]:
        return await all_or_stop(coros)

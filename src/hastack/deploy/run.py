"""Apply the deploy phases over SSH. Each phase probes first and acts only where needed.

Idempotent by construction: every action is guarded by a fact (a file's
hash, a unit's state, the live cluster's membership), and the report lists
what changed. A second deploy on a healthy cluster reports nothing changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncssh
import pymongo
import pymongo.errors

from hastack.common.poll import PollTimeout, until_async
from hastack.common.progress import Progress
from hastack.components import corosync, galera, network, pacemaker, rabbitmq
from hastack.components.corosync import conf_change
from hastack.components.fact import script, shell
from hastack.components.galera import GaleraState
from hastack.components.galera import leavers as galera_leavers
from hastack.components.mongo_config import MembershipError, next_reconfig_step
from hastack.components.mongodb import MONGO_ADMIN, ReplSet, parse_replset_status
from hastack.components.pacemaker import PacemakerState, strays
from hastack.components.rabbitmq import RabbitCluster, conf_needs_restart, membership_changes
from hastack.credentials.model import FINGERPRINTS_PATH, Secrets, conflicting, fingerprints, parse_fingerprints
from hastack.deploy import bundle as agent_bundle
from hastack.deploy.plan import Phase, phases
from hastack.hosts.files import Change
from hastack.hosts.mongo import mongo_client
from hastack.hosts.place import put
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError, SshHost
from hastack.render.files import RenderedFile, Tree
from hastack.render.galera import GARBD, GARBD_DROPIN
from hastack.render.mongodb import PORT as MONGO_PORT
from hastack.render.pacemaker import managed_vips
from hastack.render.rabbitmq import CONF as RABBIT_CONF
from hastack.spec.model import Node, Spec

COROSYNC_CONF = "/etc/corosync/corosync.conf"
COROSYNC_AUTHKEY = "/etc/corosync/authkey"
T = TypeVar("T")

CIB_PATH = "/etc/hastack/cib.xml"
GALERA_SQL = "/etc/hastack/galera-bootstrap.sql"
REPLSET_PATH = "/etc/hastack/mongodb-replset.json"

# Daemons pacemaker owns must not also be started by systemd at boot.
PACEMAKER_OWNED = ("haproxy",)
# Socket activation would hold galera's port before mariadbd binds its own address.
GALERA_SOCKETS = ("mariadb.socket", "mariadb-extra.socket")


class DeployError(Exception):
    """A step failed: names the host, the step and what was seen."""


@dataclass
class Report:
    changes: list[str] = field(default_factory=list)  # "host: what changed"
    timings: dict[str, float] = field(default_factory=dict)

    def changed(self, host: str, what: str) -> None:
        self.changes.append(f"{host}: {what}")


async def wait_for(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str,
                   interval: float = 0.5) -> T:
    """Poll `probe` until it returns a value; bounded, and says what it waited for."""
    try:
        return await until_async(probe, timeout, interval,
                                 retry_on=(HostError, pymongo.errors.PyMongoError, ValueError))
    except PollTimeout as exc:
        last = f"; last error: {exc.last}" if exc.last else ""
        raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}{last}") from None


class Deployer:
    def __init__(self, spec: Spec, secrets: Secrets, tree: Tree, hosts: Mapping[str, SshHost],
                 progress: Progress) -> None:
        self.spec, self.secrets, self.tree, self.hosts = spec, secrets, tree, hosts
        self.progress = progress
        self.report = Report()
        self.pushed: dict[str, dict[str, Change]] = {}
        self.before: dict[str, dict[str, str]] = {}  # host -> path -> content before this deploy

    # -- helpers -----------------------------------------------------------------------------------
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
        return list(await asyncio.gather(*coros))

    # -- phases ------------------------------------------------------------------------------------
    async def run(self, only: tuple[str, ...] = ()) -> Report:
        for phase in phases(self.spec):
            if only and phase.key not in only:
                continue
            t0 = time.monotonic()
            self.progress(f"{phase.key}: {phase.what} [{', '.join(phase.hosts)}]")
            try:
                await getattr(self, f"phase_{phase.key}")(phase)
            except (pymongo.errors.PyMongoError, asyncssh.Error, OSError) as exc:
                # Name the step; the operator needs where it broke, not a traceback.
                raise DeployError(f"phase {phase.key} on {', '.join(phase.hosts)}: {exc}") from exc
            self.report.timings[phase.key] = time.monotonic() - t0
        return self.report

    async def phase_files(self, phase: Phase) -> None:
        await self.refuse_other_secrets(phase.hosts)

        async def keep(host: str) -> None:
            # Kept to decide how a change is applied: corosync reloads some changes, restarts for
            # others; rabbitmq ignores a changed peer list.
            for path in (COROSYNC_CONF, RABBIT_CONF):
                if path in self.tree.get(host, {}):
                    old = await self.h(host).run(["cat", path], check=False)
                    if old.rc == 0:
                        self.before.setdefault(host, {})[path] = old.stdout

        await self.gather([keep(h) for h in phase.hosts])
        await self.refuse_renumbering(phase.hosts)

        async def push(host: str) -> None:
            files = self.tree.get(host, {})
            await self.ensure_users(host, files.values())
            changes: dict[str, Change] = {}
            for path, f in sorted(files.items()):
                changes[path] = await put(self.h(host), f)
                if changes[path] is not Change.NONE:
                    self.report.changed(host, f"{path} ({changes[path].value})")
            self.pushed[host] = changes
            if any(c is not Change.NONE for p, c in changes.items() if p.startswith("/etc/systemd/system/")):
                await self.h(host).run(["systemctl", "daemon-reload"])
            if self.file_changed(host, "/etc/sysctl.d/60-hastack.conf"):
                await self.h(host).run(["sysctl", "-q", "-p", "/etc/sysctl.d/60-hastack.conf"])
            for unit in PACEMAKER_OWNED:
                await self.h(host).run(["systemctl", "disable", "--quiet", unit], check=False)

        await self.gather([push(h) for h in phase.hosts])

    async def refuse_renumbering(self, hosts: Iterable[str]) -> None:
        """Nothing is pushed when a running corosync node would get another node id: corosync
        cannot take that without every node restarted at once, and it is most likely an accident."""
        for host in hosts:
            old = self.before.get(host, {}).get(COROSYNC_CONF)
            if old is None or COROSYNC_CONF not in self.tree.get(host, {}):
                continue
            change = conf_change(old, self.tree[host][COROSYNC_CONF].content.decode())
            if change.kind == "refuse" and await self.active(host, "corosync"):
                raise DeployError(f"corosync on {host}: {change.reason}. Nothing was changed. A node's id is "
                                  "its place in the spec's `nodes`: keep that order (new nodes at the end; a "
                                  "member taken out can stay listed with other roles), or stop the whole "
                                  "cluster first.")

    async def refuse_other_secrets(self, hosts: Iterable[str]) -> None:
        """Nothing is pushed when a host runs with other secrets than this deploy's: a new
        cookie, authkey or SST password would cut it off from its clusters (a spec copied
        somewhere else gets a new NAME.secrets.yaml)."""
        desired = fingerprints(self.secrets)
        hosts = list(hosts)
        lives = await self.gather([self.h(h).run(["cat", FINGERPRINTS_PATH], check=False) for h in hosts])
        clashes = {h: c for h, live in zip(hosts, lives, strict=True)
                   if live.rc == 0 and (c := conflicting(parse_fingerprints(live.stdout), desired))}
        if clashes:
            groups: dict[tuple[str, ...], list[str]] = {}
            for h, c in clashes.items():
                groups.setdefault(c, []).append(h)
            lines = "; ".join(f"{', '.join(sorted(hs))}: {', '.join(c)}" for c, hs in groups.items())
            raise DeployError(f"hosts run with other secrets than this deploy's. Nothing was changed. {lines}. "
                              "Deploy with the secrets file the cluster was deployed with (NAME.secrets.yaml next "
                              "to the spec it was deployed from); a new value on a running cluster cuts nodes off.")

    async def ensure_users(self, host: str, files: Iterable[RenderedFile]) -> None:
        """Users and groups that own rendered files, made as the service's package would.

        mongod comes from a wheel, and OpenStack's own packages may come after
        hastack: their config fragments still need their group to exist.
        """
        files = list(files)
        groups = sorted({f.group for f in files} - {"root"})
        users = sorted({f.owner for f in files} - {"root"})
        lines = [script("getent group {g} >/dev/null || groupadd --system {g}", g=g) for g in groups]
        lines += [script("id -u {u} >/dev/null 2>&1 || useradd --system --gid {g} --home-dir {home} --no-create-home "
                         "--shell /usr/sbin/nologin {u}", u=u, g=u if u in groups else "nogroup", home=f"/var/lib/{u}")
                  for u in users]
        if lines:
            await self.h(host).run(["sh", "-c", " && ".join(lines)])

    async def phase_agent(self, phase: Phase) -> None:
        bundle = agent_bundle.build_bundle()

        async def install(host: str) -> None:
            h = self.h(host)
            stamp = await h.run(["cat", agent_bundle.STAMP], check=False)
            if stamp.stdout.strip() != bundle.sha256:
                ver = await h.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"])
                remote = tuple(int(x) for x in ver.stdout.split())
                if remote != bundle.python:
                    raise DeployError(f"{host}: python3 is {remote}, the agent bundle is built for "
                                      f"{bundle.python}; install a matching python3 there")
                await put(h, RenderedFile("/opt/hastack/bundle.tar.gz", bundle.data, 0o644))
                await h.run(shell("rm -rf {root} && mkdir -p {root} && tar -xzf {tgz} -C {root} && rm {tgz}",
                                  root=agent_bundle.ROOT, tgz="/opt/hastack/bundle.tar.gz"))
                await put(h, RenderedFile(agent_bundle.LAUNCHER, agent_bundle.LAUNCHER_BODY.encode(), 0o755))
                await h.run(shell("echo {sha} > {stamp}", sha=bundle.sha256, stamp=agent_bundle.STAMP))
                self.report.changed(host, "installed the hastack agent")
            # Started in the galera phase, once mariadb runs; restarted here if its config moved.

        await self.gather([install(h) for h in phase.hosts])

    async def phase_corosync(self, phase: Phase) -> None:
        await self.corosync_leavers(phase.hosts)
        running = dict(zip(phase.hosts, await self.gather([self.active(h, "corosync") for h in phase.hosts]),
                           strict=True))
        new_conf = {h: self.tree[h][COROSYNC_CONF].content.decode() for h in phase.hosts}
        changes = {h: conf_change(self.before.get(h, {}).get(COROSYNC_CONF, ""), new_conf[h])
                   for h in phase.hosts if running[h] and self.file_changed(h, COROSYNC_CONF)}
        # "refuse" (renumbered) never gets here on a running node: the files phase stopped it.
        restart = {h for h, c in changes.items() if c.kind in ("restart", "refuse")}
        restart |= {h for h in phase.hosts if running[h] and self.file_changed(h, COROSYNC_AUTHKEY)}
        reload = [h for h, c in changes.items() if c.kind == "reload" and h not in restart]
        if reload:
            # Every running node has the new file already (the files phase): one call reloads them all,
            # before a new member starts, so the others know it when it knocks. Pacemaker keeps running.
            why = changes[reload[0]].reason
            self.progress(f"corosync: reloading the configuration on every node ({why})")
            await self.h(reload[0]).run(["corosync-cfgtool", "-R"])
            self.report.changed(reload[0], f"reloaded corosync.conf on every node ({why})")
        for h in sorted(restart):
            why = changes[h].reason if h in changes else "a new authkey"
            self.progress(f"corosync: {h} restarts ({why})")

        async def start(host: str) -> None:
            await self.ensure_running(host, "corosync", restart_if=host in restart)
            await self.ensure_running(host, "pacemaker")

        await self.gather([start(h) for h in phase.hosts])
        first = self.h(phase.hosts[0])
        want = set(phase.hosts)

        async def quorate() -> bool | None:
            q = await probe(first, corosync.QUORUM)
            return True if q.quorate and set(q.names) >= want else None

        await wait_for(quorate, 120, f"corosync quorum with {', '.join(sorted(want))}")
        # Pacemaker's DC election (up to dc-deadtime, 20 s) runs meanwhile;
        # the cib phase waits for it, after the databases have formed.

    async def corosync_leavers(self, members: tuple[str, ...]) -> None:
        """Spec hosts that run corosync but are no longer members leave first, cleanly, as
        `pcs cluster node remove` does: pacemaker stops there (its resources move away and the
        others see a clean shutdown, so nobody fences it), then corosync; both stay disabled.
        Only then do the members reload a nodelist without it."""
        others = [n.name for n in self.spec.nodes if n.name not in members]
        up = await self.gather([self.active(h, "corosync") for h in others])
        for host in (h for h, running in zip(others, up, strict=True) if running):
            self.progress(f"corosync: {host} leaves the cluster (no longer a corosync node in the spec)")
            await self.h(host).run(["systemctl", "disable", "--now", "--quiet", "pacemaker"], timeout=600)
            await self.h(host).run(["systemctl", "disable", "--now", "--quiet", "corosync"], timeout=120)
            self.report.changed(host, "stopped pacemaker and corosync: left the cluster")

    async def pacemaker_forget(self, anchor: str, mon: PacemakerState) -> None:
        """Nodes pacemaker still knows that the spec no longer has as members: removed from the CIB
        once they are offline. One still online is a member the spec does not know: refuse."""
        offline, online = strays(mon, [n.name for n in self.spec.corosync_nodes()])
        if online:
            raise DeployError(f"pacemaker nodes outside the spec are online ({', '.join(online)}): add them to "
                              "corosync.nodes, or stop pacemaker and corosync on them")
        for name in offline:
            await self.h(anchor).run(["crm_node", "--remove", name, "--force"], timeout=120)
            self.report.changed(anchor, f"removed {name} from pacemaker's node list")

    async def pacemaker_ready(self, hosts: tuple[str, ...]) -> PacemakerState:
        """Waits for a DC with every one of `hosts` online; what crm_mon on the first one then shows."""
        first, want = self.h(hosts[0]), set(hosts)

        async def ready() -> PacemakerState | None:
            mon = await probe(first, pacemaker.MON)
            return mon if any(n.is_dc for n in mon.nodes) and set(mon.online()) >= want else None

        return await wait_for(ready, 180, "pacemaker to elect a DC with every node online")

    async def galera_state(self, host: str) -> GaleraState | None:
        if not await self.active(host, "mariadb"):
            return None
        try:
            return await probe(self.h(host), galera.STATUS)
        except galera.Silent:  # running, answering nothing yet: not a state to act on
            return None

    async def phase_galera(self, phase: Phase) -> None:
        nodes = [n.name for n in self.spec.galera_nodes()]
        writer = self.spec.galera_writer().name
        await self.gather([self.h(n).run(["systemctl", "disable", "--now", "--quiet", *GALERA_SOCKETS], check=False)
                           for n in nodes])
        states = dict(zip(nodes, await self.gather([self.galera_state(n) for n in nodes]), strict=True))
        primary = [n for n, s in states.items() if s is not None and s.primary]
        if not primary:
            # The galera decider's own reading of grastate.dat: a node that was in a cluster has its uuid.
            grastates = await self.gather([probe(self.h(n), galera.GRASTATE) for n in nodes])
            used = [n for n, g in zip(nodes, grastates, strict=True) if g is not None and g.has_history]
            if used:
                raise DeployError(
                    "no galera node is running, but " + ", ".join(used) + " hold cluster history (grastate.dat):"
                    " this is an outage, not a first deploy. Choosing the node to bootstrap is "
                    "`hastack recover SPEC --only galera`'s job; deploy will not guess.")
            self.progress(f"galera: bootstrapping a new cluster on {writer}")
            try:
                await self.h(writer).run(["galera_new_cluster"], timeout=300)
            except HostError as exc:
                journal = await self.h(writer).run(["journalctl", "-u", "mariadb", "-n", "30", "--no-pager"],
                                                   check=False)
                raise DeployError(f"{writer}: galera_new_cluster failed:\n{exc}\n{journal.stdout}") from exc
            await self.h(writer).run(shell("mariadb < {sql}", sql=GALERA_SQL))
            self.report.changed(writer, "bootstrapped galera and created its users")
            primary = [writer]
        elif self.file_changed(primary[0], GALERA_SQL):
            await self.h(primary[0]).run(shell("mariadb < {sql}", sql=GALERA_SQL))
            self.report.changed(primary[0], "applied galera users and databases")
        # Joiners one at a time: each SST takes the donor out of rotation while it runs.
        synced = []
        for node in nodes:
            st = states.get(node)
            if st is not None and st.primary and st.local_state == "Synced":
                synced.append(node)
                continue
            if node not in primary:
                self.progress(f"galera: {node} joins (state transfer)")
                await self.ensure_running(node, "mariadb")
            await self.wait_synced(node)
        # A changed my.cnf on a running node: a rolling restart, each node synced again before the
        # next, the node the others joined last. Never the only node: that would be a full outage.
        cnf = "/etc/mysql/mariadb.conf.d/60-galera.cnf"
        stale = sorted((n for n in synced if self.file_changed(n, cnf)), key=lambda n: n == primary[0])
        for node in stale:
            if len(nodes) < 2:
                self.report.changed(node, f"{cnf} changed: restart mariadb in a maintenance window")
                continue
            self.progress(f"galera: {node} restarts for its new configuration")
            await self.ensure_running(node, "mariadb", restart_if=True)
            await self.wait_synced(node)
        for node in nodes:
            await self.h(node).run(["systemctl", "enable", "--quiet", "mariadb"])
        arb = self.spec.galera.arbitrator
        await self.galera_leavers(primary[0], [*nodes, *([arb] if arb else [])])
        expected = len(nodes)
        if arb:
            await self.ensure_running(arb, "garb", restart_if=self.file_changed(arb, GARBD, GARBD_DROPIN))
            expected += 1

        async def sized() -> int | None:
            st = await self.galera_state(nodes[0])
            return st.cluster_size if st and st.cluster_size == expected else None

        try:
            await wait_for(sized, 120, f"galera cluster size {expected}")
        except DeployError as exc:
            if not arb:
                raise
            journal = await self.h(arb).run(["journalctl", "-u", "garb", "-n", "15", "--no-pager"], check=False)
            raise DeployError(f"{exc}\n{arb}: garbd's journal:\n{journal.stdout}") from exc
        if self.spec.galera.health_check == "http":
            await self.gather([self.ensure_running(n, "hastack-agent", restart_if=self.file_changed(
                n, "/etc/hastack/agent.yaml") or any("installed the hastack agent" in c and c.startswith(n + ":")
                                                      for c in self.report.changes)) for n in nodes])

    async def galera_leavers(self, anchor: str, members: list[str]) -> None:
        """Nodes the spec took out of galera leave it cleanly, after every joiner is synced:
        a clean shutdown shrinks the cluster (and its quorum) without an eviction."""
        st = await self.galera_state(anchor)
        if st is None:
            return
        gone, unknown = galera_leavers(st.incoming, {str(n.address): n.name for n in self.spec.nodes}, members)
        if unknown:
            raise DeployError(f"galera nodes outside the spec are in the cluster ({', '.join(unknown)}): "
                              "add them to the spec, or stop mariadb on them")
        for host in gone:
            self.progress(f"galera: {host} leaves the cluster (no longer a galera node in the spec)")
            await self.h(host).run(["systemctl", "disable", "--now", "--quiet", "mariadb"], timeout=300)
            # Its health agent too, where there is one (an http galera check).
            await self.h(host).run(["systemctl", "disable", "--now", "--quiet", "hastack-agent"], check=False)
            self.report.changed(host, "stopped mariadb (and its health agent): left the galera cluster")

    async def wait_synced(self, node: str) -> None:
        async def synced() -> bool | None:
            st = await self.galera_state(node)
            return True if st and st.primary and st.local_state == "Synced" else None

        await wait_for(synced, 600, f"galera on {node} to be Synced in the primary component")

    async def rabbit_view(self, host: str) -> RabbitCluster | None:
        try:
            return await probe(self.h(host), rabbitmq.CLUSTER)
        except HostError:  # not running, or not answering yet
            return None

    async def phase_rabbitmq(self, phase: Phase) -> None:
        nodes = list(phase.hosts)
        want = {f"rabbit@{n}" for n in nodes}
        running = [n for n, up in zip(nodes, await self.gather([self.active(n, "rabbitmq-server") for n in nodes]),
                                      strict=True) if up]
        before = await self.rabbit_view(running[0]) if running else None
        cfg = ("/etc/rabbitmq/rabbitmq-env.conf", "/etc/rabbitmq/enabled_plugins",
               "/var/lib/rabbitmq/.erlang.cookie", "/etc/rabbitmq/definitions.json")
        # One by one: the first forms the cluster; each next one finds it by classic peer discovery.
        for node in nodes:
            conf = self.file_changed(node, RABBIT_CONF) and conf_needs_restart(
                self.before.get(node, {}).get(RABBIT_CONF, ""), self.tree[node][RABBIT_CONF].content.decode())
            await self.ensure_running(node, "rabbitmq-server", restart_if=conf or self.file_changed(node, *cfg))

        async def clustered(exact: bool) -> RabbitCluster | None:
            view = await self.rabbit_view(nodes[0])
            return view if view is not None and view.complete(want, exact) else None

        # 360 s: a node that joins while its only peer is paused (pause_minority in a
        # two-node cluster) may need a second start (the unit retries after 90 s).
        view = await wait_for(lambda: clustered(False), 360, f"rabbitmq nodes {', '.join(sorted(want))} in one cluster")
        joined, leaving = membership_changes(want, before, view)
        # Joiners get a member of every quorum queue before any leaver takes its members
        # away: a queue never has fewer copies than before.
        for node in joined:
            await self.h(nodes[0]).run(["rabbitmq-queues", "grow", node, "all"], timeout=300)
            self.report.changed(node.removeprefix("rabbit@"), "added a member of every quorum queue")
        for node in leaving:
            await self.rabbit_leave(nodes[0], node)
        await wait_for(lambda: clustered(True), 120, f"rabbitmq cluster of exactly {', '.join(sorted(want))}")

    async def rabbit_leave(self, anchor: str, node: str) -> None:
        """A node the spec no longer lists leaves: its quorum queue members first (while a majority
        of each queue is up), then the node itself; reset, so it could join again later."""
        host = node.removeprefix("rabbit@")
        self.progress(f"rabbitmq: {node} leaves the cluster (no longer a rabbitmq node in the spec)")
        await self.h(anchor).run(["rabbitmq-queues", "shrink", node], timeout=300)
        if host in self.hosts and await self.active(host, "rabbitmq-server"):
            h = self.h(host)
            await h.run(["rabbitmqctl", "stop_app"], timeout=300)
            await h.run(["rabbitmqctl", "reset"], timeout=300)
            await h.run(["systemctl", "disable", "--now", "--quiet", "rabbitmq-server"], timeout=300)
            self.report.changed(host, "left the rabbitmq cluster and stopped rabbitmq-server")
        else:  # gone, or stopped: the cluster forgets it
            await self.h(anchor).run(["rabbitmqctl", "forget_cluster_node", node], timeout=120)
            self.report.changed(anchor, f"forgot {node}")

    def mongo(self, host: str, admin: bool = False) -> contextlib.AbstractAsyncContextManager[
            pymongo.MongoClient[dict[str, Any]]]:
        """A client to mongod on `host` through its SSH connection (unauthenticated: the localhost exception)."""
        return mongo_client(self.h(host), password=self.secrets["mongodb_admin_password"] if admin else None)

    async def phase_mongodb(self, phase: Phase) -> None:
        members = [n.name for _, n in self.spec.mongo_members()]
        await self.gather([self.ensure_running(h, "mongod", restart_if=self.file_changed(
            h, "/etc/mongod.conf", "/etc/mongodb/keyfile")) for h in phase.hosts])

        async def answers(host: str) -> None:
            async with self.mongo(host) as client:
                await wait_for(lambda: asyncio.to_thread(client.admin.command, "ping"), 60, f"mongod on {host}")

        async def setup_state(host: str) -> str:
            async with self.mongo(host) as client:
                return await asyncio.to_thread(_mongo_setup_state, client)

        # replSetInitiate checks that every member answers: wait for all first.
        await self.gather([answers(h) for h in phase.hosts])
        # A new member (one added or replacing a dead one) is uninitiated too: the set is set up
        # through a member that already belongs to it, never initiated a second time.
        states = dict(zip(members, await self.gather([setup_state(h) for h in members]), strict=True))
        first = next((h for h in members if states[h] != "uninitiated"), members[0])
        async with self.mongo(first) as client:
            cmd = client.admin.command
            state = await asyncio.to_thread(_mongo_setup_state, client)
            if state == "uninitiated":
                config = json.loads(self.tree[first][REPLSET_PATH].content)
                self.progress(f"mongodb: replSetInitiate on {first}")
                await asyncio.to_thread(cmd, "replSetInitiate", config)
                self.report.changed(first, "initiated the replica set")
            if state in ("uninitiated", "no-users"):
                async def writable() -> bool | None:
                    hello = await asyncio.to_thread(cmd, "hello")
                    return True if hello.get("isWritablePrimary") else None

                await wait_for(writable, 120, f"{first} to become the mongo primary")
                await asyncio.to_thread(cmd, "createUser", MONGO_ADMIN, pwd=self.secrets["mongodb_admin_password"],
                                        roles=[{"role": "root", "db": "admin"}])
                self.report.changed(first, f"created mongo user {MONGO_ADMIN}")
        await wait_for(lambda: self.mongo_primary(first), 180, "a mongo primary")
        removed = await self.mongo_converge(first, json.loads(self.tree[first][REPLSET_PATH].content))
        rs = await wait_for(lambda: self.mongo_healthy(first), 300, "every mongo member healthy")
        self.progress(f"mongodb: primary {rs.primary}")
        by_address = self.mongo_hosts(self.spec.nodes)
        for host in sorted(by_address[a] for a in removed if a in by_address):
            # Out of the set, its mongod would only log that it was removed: stopped, data kept.
            await self.h(host).run(["systemctl", "disable", "--now", "--quiet", "mongod"], timeout=300)
            self.report.changed(host, "stopped mongod: removed from the replica set")

    async def mongo_primary(self, host: str) -> ReplSet | None:
        async with self.mongo(host, admin=True) as client:
            rs = parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))
        return rs if rs.primary else None

    @staticmethod
    def mongo_hosts(nodes: Iterable[Node]) -> dict[str, str]:
        """host:port as the replica set names a member -> the spec's node."""
        return {f"{n.address}:{MONGO_PORT}": n.name for n in nodes}

    async def mongo_converge(self, first: str, document: dict[str, Any]) -> set[str]:
        """Settings and members the spec changed reach the running set, through its primary:
        one replSetReconfig per step (at most one voting member added or removed at a time).
        Returns the members (host:port) removed."""
        by_address = self.mongo_hosts(n for _, n in self.spec.mongo_members())
        removed: set[str] = set()
        said = [""]

        async def step() -> bool | None:
            rs = await wait_for(lambda: self.mongo_primary(first), 120, "a mongo primary")
            if str(rs.primary) not in by_address:
                raise DeployError(f"the mongo primary {rs.primary} is not a member in the spec: give it priority 0 "
                                  "(`hastack mongo priority`) so another member takes over, then deploy again")
            async with self.mongo(by_address[str(rs.primary)], admin=True) as client:
                live = (await asyncio.to_thread(client.admin.command, "replSetGetConfig"))["config"]
                try:
                    change = next_reconfig_step(live, document["settings"], document["members"], str(rs.primary),
                                                {str(m.name): m.state for m in rs.members})
                except MembershipError as exc:
                    raise DeployError(str(exc)) from exc
                if change is None:
                    return True
                what, new = change
                if what != said[-1]:  # a wait is polled: said once
                    self.progress(f"mongodb: {what}")
                    said.append(what)
                if new is None:
                    return None
                # Refused while the previous change is not yet on a majority: wait_for tries again.
                await asyncio.to_thread(client.admin.command, "replSetReconfig", new)
                removed.update({m["host"] for m in live["members"]} - {m["host"] for m in new["members"]})
                self.report.changed(by_address[str(rs.primary)], f"replica set: {what}")
                return None

        await wait_for(step, 300, "the replica set to have the spec's settings and members")
        return removed

    async def mongo_healthy(self, host: str) -> ReplSet | None:
        async with self.mongo(host, admin=True) as client:
            rs = parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))
        want = len(self.spec.mongo_members()) + (1 if self.spec.mongodb.arbiter else 0)
        return rs if rs.healthy() and len(rs.members) == want else None

    async def phase_memcached(self, phase: Phase) -> None:
        await self.gather([self.ensure_running(h, "memcached", restart_if=self.file_changed(h, "/etc/memcached.conf"))
                           for h in phase.hosts])

    async def phase_cib(self, phase: Phase) -> None:
        # phase.hosts[0] is the first corosync node: the one pacemaker_ready asked.
        mon = await self.pacemaker_ready(tuple(n.name for n in self.spec.corosync_nodes()))
        host = phase.hosts[0]
        h = self.h(host)
        await self.pacemaker_forget(host, mon)
        desired = self.tree[host][CIB_PATH].content
        configuration = ET.tostring(ET.fromstring(desired).find("configuration"))  # type: ignore[arg-type]
        live = await h.run(["cibadmin", "--query", "--scope", "resources"], check=False)
        want_ids = {el.get("id") for el in ET.fromstring(desired).iter("primitive")}
        have_ids = {el.get("id") for el in ET.fromstring(live.stdout).iter("primitive")} if live.rc == 0 else set()
        # Primitives compared both ways: a resource the spec no longer has (the VIP, when
        # keepalived takes it over) must go even if an earlier, failed deploy already pushed the file.
        if want_ids != have_ids or any(self.file_changed(n, CIB_PATH) for n in phase.hosts):
            await h.run(["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"],
                        input=configuration.decode())
            self.report.changed(host, "loaded the CIB configuration")
        # Pacemaker reloads haproxy only when told; a changed haproxy.cfg is reloaded here.
        for node in self.spec.haproxy_nodes():
            if self.file_changed(node.name, "/etc/haproxy/haproxy.cfg") and await self.active(node.name, "haproxy"):
                await self.h(node.name).run(["systemctl", "reload", "haproxy"])
                self.report.changed(node.name, "reloaded haproxy")
        vips = {v.name for v in managed_vips(self.spec)}

        async def placed() -> bool | None:
            mon = await probe(h, pacemaker.MON)
            # Every resource, fence devices too: a deploy ends with the cluster
            # running what it configured, not with part of it still starting.
            waiting = [f"vip-{v}" for v in vips if not mon.where(f"vip-{v}")]
            waiting += [f"haproxy on {n.name}" for n in self.spec.haproxy_nodes()
                        if n.name not in mon.where("haproxy-clone")]
            waiting += mon.stopped()
            if waiting:
                raise ValueError("not running yet: " + ", ".join(dict.fromkeys(waiting)))
            return True

        await wait_for(placed, 180, "pacemaker to start the VIP, haproxy on every haproxy node and every resource")

    async def phase_keepalived(self, phase: Phase) -> None:
        for host in phase.hosts:
            if not self.spec.vip_manager.runs_pacemaker:  # else haproxy is pacemaker's (the CIB phase)
                await self.ensure_running(host, "haproxy",
                                          restart_if=self.file_changed(host, "/etc/haproxy/haproxy.cfg"))
            await self.ensure_running(host, "keepalived", restart_if=self.file_changed(
                host, "/etc/keepalived/keepalived.conf"))

        async def held() -> bool | None:
            found = await self.gather([probe(self.h(n), network.ADDRESSES) for n in phase.hosts])
            addrs = dict(zip(phase.hosts, found, strict=True))
            wrong = [f"{v.name} on {len(holders)} hosts" for v in self.spec.vips
                     if len(holders := [n for n, a in addrs.items() if v.address in a]) != 1]
            if wrong:
                raise ValueError("; ".join(wrong))
            return True

        await wait_for(held, 60, "keepalived to give each VIP exactly one holder")


def _mongo_setup_state(client: pymongo.MongoClient[dict[str, Any]]) -> str:
    """uninitiated, no-users (the localhost exception still open) or ready (users exist)."""
    try:
        client.admin.command("replSetGetStatus")
    except pymongo.errors.OperationFailure as exc:
        if exc.code == 94:  # NotYetInitialized
            return "uninitiated"
        if exc.code == 13:  # Unauthorized: a user exists, the localhost exception is closed
            return "ready"
        raise
    return "no-users"

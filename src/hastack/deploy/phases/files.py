"""The files phase: every rendered file in place, unless a host runs with other secrets, would be
renumbered, or would change TLS under its running peers."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hastack.components.corosync import conf_change
from hastack.components.fact import script
from hastack.credentials.model import FINGERPRINTS_PATH, conflicting, fingerprints, parse_fingerprints
from hastack.deploy.context import (
    COROSYNC_CONF,
    DeployContext,
    DeployError,
)
from hastack.deploy.phases.remote import UNIT as REMOTE_UNIT
from hastack.deploy.plan import Phase
from hastack.hosts.files import Change
from hastack.hosts.place import put
from hastack.render.files import RenderedFile
from hastack.render.galera import CONF as GALERA_CNF
from hastack.render.galera import GARBD, GARBD_TLS_DIR
from hastack.render.galera import TLS_DIR as GALERA_TLS_DIR
from hastack.render.haproxy import SYSCTL
from hastack.render.kernel import KEEPALIVE
from hastack.render.mongodb import CONF as MONGO_CONF
from hastack.render.mongodb import TLS_DIR as MONGO_TLS_DIR
from hastack.render.rabbitmq import CONF as RABBIT_CONF
from hastack.spec.model import Spec

# Daemons pacemaker owns must not also be started by systemd at boot.
PACEMAKER_OWNED = ("haproxy",)
# Kernel settings take effect when written (systemd-sysctl applies them again at boot).
SYSCTL_FILES = (SYSCTL, KEEPALIVE)


async def apply(ctx: DeployContext, phase: Phase) -> None:
    await refuse_other_secrets(ctx, phase.hosts)

    tls = tls_members(ctx.spec)

    async def keep(host: str) -> None:
        # Kept to decide how a change is applied: corosync reloads some changes, restarts for
        # others; rabbitmq ignores a changed peer list; a member's TLS may not change under its peers.
        paths = [COROSYNC_CONF, RABBIT_CONF, *(p for members in tls.values() if (m := members.get(host))
                                               for p in (m.conf, m.ca))]
        kept = [p for p in dict.fromkeys(paths) if p in ctx.tree.get(host, {})]
        await ctx.read_owed(host)  # once, before the reads that consult it
        olds = await ctx.gather([ctx.read_before(host, p) for p in kept])
        for path, old in zip(kept, olds, strict=True):
            if old is not None:
                ctx.before.setdefault(host, {})[path] = old

    await ctx.gather([keep(h) for h in phase.hosts])
    await refuse_renumbering(ctx, phase.hosts)
    await refuse_tls_change(ctx, phase.hosts)
    await refuse_remote_joiners(ctx, phase.hosts)

    async def push(host: str) -> None:
        files = ctx.tree.get(host, {})
        await ensure_users(ctx, host, files.values())
        changes: dict[str, Change] = {}
        owed = set(await ctx.read_owed(host))
        for path, f in sorted(files.items()):
            changes[path] = await put(ctx.h(host), f, before_write=functools.partial(ctx.owe, host, path))
            if changes[path] is Change.NONE and path in owed:
                changes[path] = Change.OWED  # what the daemon runs with is older than the file
            if changes[path] is not Change.NONE:
                ctx.report.changed(host, f"{path} ({changes[path].value})")
        ctx.pushed[host] = changes
        if any(c is not Change.NONE for p, c in changes.items() if p.startswith("/etc/systemd/system/")):
            await ctx.h(host).run(["systemctl", "daemon-reload"])
        for conf in SYSCTL_FILES:
            if ctx.file_changed(host, conf):
                await ctx.h(host).run(["sysctl", "-q", "-p", conf])
        for unit in PACEMAKER_OWNED:
            await ctx.h(host).run(["systemctl", "disable", "--quiet", unit], check=False)

    await ctx.gather([push(h) for h in phase.hosts])


async def refuse_renumbering(ctx: DeployContext, hosts: Iterable[str]) -> None:
    """Nothing is pushed when a running corosync node would get another node id: corosync
    cannot take that without every node restarted at once, and it is most likely an accident."""
    for host in hosts:
        old = ctx.before.get(host, {}).get(COROSYNC_CONF)
        if old is None or COROSYNC_CONF not in ctx.tree.get(host, {}):
            continue
        change = conf_change(old, ctx.tree[host][COROSYNC_CONF].content.decode())
        if change.kind == "refuse" and await ctx.active(host, "corosync"):
            raise DeployError(f"corosync on {host}: {change.reason}. Nothing was changed. A node's id is "
                              "its place in the spec's `nodes`: keep that order (new nodes at the end; a "
                              "member taken out can stay listed with other roles), or stop the whole "
                              "cluster first.")


def tls_clashes(live: Mapping[str, str | None], desired: str | None) -> dict[str, str]:
    """Running members of one cluster whose CA is not the one this deploy installs (None: no TLS),
    each with what it runs. Peers with and without TLS, or with two CAs, cannot talk: a rolling
    restart would cut each restarted member off from the rest."""
    def runs(ca: str | None) -> str:
        return "without TLS" if ca is None else "with TLS" if desired is None else "with another CA"

    return {h: runs(ca) for h, ca in sorted(live.items()) if ca != desired}


@dataclass(frozen=True)
class TlsMember:
    unit: str
    conf: str  # its configuration file, which says whether it speaks TLS
    marker: str  # a line there only with TLS
    ca: str  # where its CA is


def live_ca(m: TlsMember, files: Mapping[str, str]) -> str | None:
    """The CA a member runs with, from its files as read (path -> text): None when its configuration
    has no TLS (a CA file left from before TLS was turned off counts for nothing); a missing CA file is
    no CA it shares."""
    conf = files.get(m.conf)
    if conf is None or m.marker not in conf:
        return None
    return files.get(m.ca, "(missing)")


def tls_members(spec: Spec) -> dict[str, dict[str, TlsMember]]:
    """Per cluster that speaks TLS among its members: host -> how to tell what it runs."""
    out: dict[str, dict[str, TlsMember]] = {}
    if spec.galera.enabled:
        out["galera"] = {n.name: TlsMember("mariadb", GALERA_CNF, "socket.ssl_ca=", f"{GALERA_TLS_DIR}/ca.pem")
                         for n in spec.galera_nodes()}
        if spec.galera.arbitrator:
            out["galera"][spec.galera.arbitrator] = TlsMember("garb", GARBD, "socket.ssl_ca=",
                                                              f"{GARBD_TLS_DIR}/ca.pem")
    if spec.mongodb.enabled:
        hosts = [n.name for _, n in spec.mongo_members()] + [a for a in [spec.mongodb.arbiter] if a]
        out["mongodb"] = dict.fromkeys(hosts, TlsMember("mongod", MONGO_CONF, "mode: requireTLS",
                                                        f"{MONGO_TLS_DIR}/ca.pem"))
    return out


async def refuse_tls_change(ctx: DeployContext, hosts: Iterable[str]) -> None:
    """Nothing is pushed when a running galera or mongodb member would get TLS turned on or off,
    or another CA, while the others run on (docs/tls.md). Judged from the files `keep` read: a CA
    file this deploy does not render is not read, and counts as missing (what matters then is that
    the member's configuration has TLS at all)."""
    chosen = set(hosts)
    for cluster, members in tls_members(ctx.spec).items():
        todo = [h for h in members if h in chosen]
        up = await ctx.gather([ctx.active(h, members[h].unit) for h in todo])
        live = {h: live_ca(members[h], ctx.before.get(h, {})) for h, u in zip(todo, up, strict=True) if u}
        desired = next((f.content.decode() for h, m in members.items() if (f := ctx.tree.get(h, {}).get(m.ca))), None)
        if clash := tls_clashes(live, desired):
            runs = "; ".join(f"{h} runs {what}" for h, what in clash.items())
            wants = "installs TLS with the cluster's CA" if desired else "turns TLS off"
            raise DeployError(
                f"{cluster}: {runs}, and this deploy {wants}. Nothing was changed. Members with and without "
                "TLS (or with two CAs) cannot reach each other: a rolling restart would cut each one off in "
                f"turn. Stop {cluster} on every member (an outage), deploy, then run `hastack recover SPEC` "
                "(docs/tls.md).")


async def refuse_remote_joiners(ctx: DeployContext, hosts: Iterable[str]) -> None:
    """Nothing is pushed when a new corosync member still runs pacemaker_remote: pacemaker would
    meet it as a cluster node and as a remote node at once (in the lab, its fence device and the
    clones never started there). It leaves instance HA in one deploy, joins in the next."""
    chosen = set(hosts)
    joining = [n.name for n in ctx.spec.corosync_nodes() if n.name in chosen]
    corosync = await ctx.gather([ctx.active(h, "corosync") for h in joining])
    remote = await ctx.gather([ctx.active(h, REMOTE_UNIT) for h in joining])
    still = [h for h, c, r in zip(joining, corosync, remote, strict=True) if r and not c]
    if still:
        raise DeployError(
            f"{', '.join(still)} run{'s' if len(still) == 1 else ''} pacemaker_remote (watched by instance HA) and "
            "would join corosync in this deploy. Nothing was changed. Deploy first with "
            f"{'it' if len(still) == 1 else 'them'} out of instance HA (not a compute, or instance_ha off): "
            "pacemaker closes its connection and pacemaker_remote stops; then add "
            f"{'it' if len(still) == 1 else 'them'} to corosync.nodes.")


async def refuse_other_secrets(ctx: DeployContext, hosts: Iterable[str]) -> None:
    """Nothing is pushed when a host runs with other secrets than this deploy's: a new
    cookie, authkey or SST password would cut it off from its clusters (a spec copied
    somewhere else gets a new NAME.secrets.yaml)."""
    desired = fingerprints(ctx.secrets)
    hosts = list(hosts)
    lives = await ctx.gather([ctx.h(h).run(["cat", FINGERPRINTS_PATH], check=False) for h in hosts])
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


async def ensure_users(ctx: DeployContext, host: str, files: Iterable[RenderedFile]) -> None:
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
        await ctx.h(host).run(["sh", "-c", " && ".join(lines)])

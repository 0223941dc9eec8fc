"""The openstack phase: schemas synced once, keystone bootstrapped, the catalog made, every API answering.

Ordered after the CIB phase: the services reach their databases, keystone
and memcached through the VIP. Each schema is synced once, on one controller
(the same migration from two nodes deadlocks on galera); different projects'
at once, spread over the controllers. keystone starts
first (the others authenticate against it); its catalog (service users,
roles, services and endpoints on the VIP) is made from a controller through
the VIP, as an operator's client would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

from hastack.components import haproxy, keystone_catalog, starters
from hastack.components.openstack import CELL_HOSTS, SCHEMAS, Schema, http_status, schema_current
from hastack.credentials.model import service_password_key
from hastack.deploy.context import DeployContext, DeployError, wait_for
from hastack.deploy.plan import Phase
from hastack.hosts.files import Change
from hastack.hosts.probe import probe
from hastack.render.openstack import fragment_path
from hastack.render.openstack_run import (
    ADMIN,
    CLOUD,
    CLOUDS,
    CREDENTIAL_DIR,
    FERNET_DIR,
    FLAVOR,
    HORIZON_SETTINGS,
    IMAGE,
    auth_url,
    ca_file,
    catalog_names,
    log_path,
    public_url,
    unit_path,
    uwsgi_path,
    vip_url,
)
from hastack.render.tls import CA_PATH
from hastack.spec.catalog import BY_NAME, IDENTITY, Daemon, Endpoint, daemons_for
from hastack.spec.model import Role, Spec

# keystone first: every other service checks its tokens.
ORDER = ("keystone", "placement", "glance", "neutron", "nova", "cinder", "heat", "horizon")
API_WAIT_S = 180.0
# The admin's client on a controller; each resource made only when it is missing (or, an image,
# not active: an upload cut short leaves one queued). The admin project's servers are not bounded:
# a chaos run makes one every 5 s, past nova's default quota of 10.


@dataclass(frozen=True)
class Restart:
    """Per daemon, per host: restart it (its files changed) or just make sure it runs."""

    unit: str
    host: str
    restart: bool


def plan_daemons(daemons: tuple[Daemon, ...], hosts: tuple[str, ...], changed: Mapping[str, set[str]]
                 ) -> list[Restart]:
    """Pure: a daemon restarts where any file it reads changed (its unit, uwsgi ini, config fragment, keys)."""
    out = []
    for d in daemons:
        # The CA: what the daemon checks the VIP's and the broker's certificates against.
        mine = {unit_path(d), uwsgi_path(d), fragment_path(d.project), CA_PATH} | (
            {HORIZON_SETTINGS} if d.project == "horizon" else set())
        for h in hosts:
            keys = {p for p in changed.get(h, set()) if p.startswith((FERNET_DIR, CREDENTIAL_DIR))}
            out.append(Restart(d.unit, h, bool(mine & changed.get(h, set())) or (d.project == "keystone"
                                                                                and bool(keys))))
    return out


def catalog_want(spec: Spec, secrets: Mapping[str, str]) -> dict[str, object]:
    """What keystone must hold: every project hastack runs, with its user (not keystone's own) and URL."""
    services = []
    for name in catalog_names(spec):
        ident = IDENTITY[name]
        services.append({"name": name, "type": ident.type, "url": public_url(spec, name),
                         "description": ident.description,
                         "password": secrets[service_password_key(ident.project)] if ident.user else ""})
    return {"auth_url": auth_url(spec), "admin_password": secrets["keystone_admin_password"],
            "region": spec.openstack.region, "services": services, "cafile": ca_file(spec)}


async def apply(ctx: DeployContext, phase: Phase) -> None:
    spec = ctx.spec
    daemons = daemons_for(spec.openstack.services)
    if not daemons:
        return
    controllers = tuple(h for h in phase.hosts if spec.node(h).has(Role.CONTROLLER))
    computes = tuple(n.name for n in spec.with_role(Role.COMPUTE))
    first = controllers[0]
    await sync_schemas(ctx, controllers, [p for p in ORDER if p in spec.openstack.services and p in SCHEMAS])
    changed = {h: {p for p, c in ctx.pushed.get(h, {}).items() if c is not Change.NONE} for h in phase.hosts}
    keystone = tuple(d for d in daemons if d.project == "keystone")
    for group in (keystone, tuple(d for d in daemons if d.project != "keystone")):
        await run_daemons(ctx, group, controllers, changed)
        await ctx.gather([vip_answers(ctx, first, d) for d in group])
        if group is keystone and keystone:
            await ensure_catalog(ctx, first)
    on_computes = daemons_for(spec.openstack.services, computes=True)
    if on_computes and computes:
        await run_daemons(ctx, on_computes, computes, changed)
        await map_computes(ctx, first, computes)
    if {"nova", "glance"} <= set(spec.openstack.services):
        await ensure_starters(ctx, first)


async def run_daemons(ctx: DeployContext, group: tuple[Daemon, ...], hosts: tuple[str, ...],
                      changed: Mapping[str, set[str]]) -> None:
    """`group` running on every one of `hosts`, answering, and restarted where a file it reads changed."""
    by_unit = {d.unit: d for d in group}
    mine = plan_daemons(group, hosts, changed)
    running = await ctx.gather([ctx.active(r.host, r.unit) for r in mine])
    # Stopped ones start everywhere at once (with their new files: no restart after), nothing
    # they serve being up to keep up; the running ones are only enabled here.
    mine = [dataclasses.replace(r, restart=r.restart and up) for r, up in zip(mine, running, strict=True)]
    await ctx.gather([ctx.ensure_running(r.host, r.unit) for r in mine])
    await ctx.gather([api_answers(ctx, h, d) for d in group for h in hosts])
    # A changed configuration restarts one host at a time, each back in every haproxy before the
    # next goes: the API never loses all its backends to a deploy.
    for host in hosts:
        again = [r for r in mine if r.host == host and r.restart]
        if again:
            ctx.progress(f"openstack: {', '.join(r.unit for r in again)} restart on {host} (a file they read "
                         "changed); the other hosts serve meanwhile")
            await ctx.gather([ctx.ensure_running(host, r.unit, restart_if=True) for r in again])
            await ctx.gather([api_answers(ctx, host, by_unit[r.unit]) for r in again])
            await ctx.gather([backend_up(ctx, host, by_unit[r.unit]) for r in again])


async def map_computes(ctx: DeployContext, host: str, computes: tuple[str, ...]) -> None:
    """Every compute mapped to nova's cell (`discover_hosts` once its nova-compute has registered)."""
    have = await probe(ctx.h(host), CELL_HOSTS)
    if set(computes) <= have:
        return
    discover = SCHEMAS["nova"].as_user(("nova-manage", "cell_v2", "discover_hosts", "--by-service"))

    async def mapped() -> bool | None:
        await ctx.h(host).run(discover, check=False, timeout=120)
        return True if set(computes) <= await probe(ctx.h(host), CELL_HOSTS) else None

    missing = sorted(set(computes) - have)
    ctx.progress(f"openstack: mapping {', '.join(missing)} to nova's cell (nova-manage cell_v2 discover_hosts)")
    await wait_for(mapped, API_WAIT_S, f"nova-compute on {', '.join(missing)} to register and be mapped to a cell")
    ctx.report.changed(host, f"nova: mapped {', '.join(missing)} to cell1")


async def ensure_starters(ctx: DeployContext, host: str) -> None:
    """A flavor and a tiny raw image for a first server, the admin's quotas lifted (components/starters.py,
    on `host` as the admin)."""
    want = {"clouds": CLOUDS, "cloud": CLOUD, "flavor": FLAVOR, "image": IMAGE, "project": ADMIN}
    result = await _script(ctx, host, starters, want, f"making flavor {FLAVOR} and image {IMAGE}")
    if "changes" not in result:
        raise DeployError(f"openstack on {host}: making flavor {FLAVOR} and image {IMAGE} (components/starters.py): "
                          f"{result.get('error')}")
    for change in list(result["changes"]):  # type: ignore[call-overload]
        ctx.report.changed(host, change)


async def sync_schemas(ctx: DeployContext, hosts: tuple[str, ...], projects: list[str]) -> None:
    """Each schema checked (read-only: at once, spread over the controllers), then the due ones synced.

    A project's schema is synced once, on one controller: the same migration run from two nodes
    deadlocks on galera. Different projects sync at once, spread over the controllers: each has its
    own database, and each migration is a single-threaded Python process, so one after the other they
    left the other core idle through most of the phase. Every sync runs to its end, even when another
    fails: a migration cut off half-way leaves its schema between two versions.
    """
    due = await ctx.gather([probe(ctx.h(hosts[i % len(hosts)]), schema_current(SCHEMAS[p]))
                            for i, p in enumerate(projects)])
    todo = [p for p, current in zip(projects, due, strict=True) if not current]

    async def sync(host: str, project: str) -> None:
        ctx.progress(f"openstack: {project} schema sync on {host}")
        await _manage(ctx, host, SCHEMAS[project], SCHEMAS[project].sync)
        if not await probe(ctx.h(host), schema_current(SCHEMAS[project])):
            raise DeployError(f"{project} on {host}: the schema is still not current after "
                              f"`{' '.join(SCHEMAS[project].sync)}`")
        ctx.report.changed(host, f"synced the {project} database schema")

    done = await asyncio.gather(*(sync(hosts[i % len(hosts)], p) for i, p in enumerate(todo)),
                                return_exceptions=True)
    failed = [r for r in done if isinstance(r, BaseException)]
    if len(failed) > 1 and all(isinstance(f, DeployError) for f in failed):
        raise DeployError("\n".join(str(f) for f in failed))
    if failed:
        raise failed[0]


async def _manage(ctx: DeployContext, host: str, schema: Schema, argv: tuple[str, ...]) -> None:
    res = await ctx.h(host).run(schema.as_user(argv), check=False, timeout=900)
    if res.rc != 0:
        log = await ctx.h(host).run(["tail", "-n", "20", f"/var/log/{schema.project}/{schema.project}-manage.log"],
                                    check=False)
        tail = "\n".join((res.stderr + res.stdout).strip().splitlines()[-10:]) or log.stdout.strip()
        raise DeployError(f"{schema.project} on {host}: `{' '.join(argv)}` exited {res.rc}; nothing else was "
                          f"changed for {schema.project}. Last lines:\n{tail}")


async def _until_answers(ctx: DeployContext, host: str, ep: Endpoint, url: str, what: str,
                         cafile: str | None = None) -> None:
    """`url`, asked from `host`, answers as haproxy's check of `ep` expects (bounded)."""
    low, _, high = ep.check_status.partition("-")

    async def answers() -> bool | None:
        status = await probe(ctx.h(host), http_status(url, cafile=cafile))
        # A TCP frontend (the console proxy) is up when anything answers on its port.
        ok = status != 0 if not ep.http else int(low) <= status <= int(high or low)
        return True if ok else None

    await wait_for(answers, API_WAIT_S, what)


async def api_answers(ctx: DeployContext, host: str, d: Daemon) -> None:
    """`d`'s API answers on `host`'s own address; on a timeout, its log and journal say why."""
    if d.endpoint is None:
        return
    ep = BY_NAME[d.endpoint]
    url = f"http://{ctx.spec.node(host).address}:{ep.port}{ep.check_path or '/'}"
    try:
        await _until_answers(ctx, host, ep, url, f"{d.unit} on {host} to answer {url}")
    except DeployError as exc:
        log = await ctx.h(host).run(["tail", "-n", "15", log_path(d)], check=False)
        journal = await ctx.h(host).run(["journalctl", "-u", d.unit, "-n", "10", "--no-pager"], check=False)
        raise DeployError(f"{exc}\n{log_path(d)}:\n{log.stdout.strip()}\njournal:\n{journal.stdout.strip()}") from None


async def vip_answers(ctx: DeployContext, host: str, d: Daemon) -> None:
    """`d`'s API answers through the VIP, asked from `host`: haproxy marks a backend up only after its checks."""
    if d.endpoint is None:
        return
    ep = BY_NAME[d.endpoint]
    url = f"{vip_url(ctx.spec, d.endpoint)}{ep.check_path or '/'}"
    await _until_answers(ctx, host, ep, url, f"{d.unit} to answer through the VIP ({url})", ca_file(ctx.spec))


async def backend_up(ctx: DeployContext, host: str, d: Daemon) -> None:
    """Every haproxy shows `host` up again as a backend of `d`'s API (its checks passed `rise` times)."""
    if d.endpoint is None:
        return
    proxies = {f"{d.endpoint}-{v.name}" for v in ctx.spec.vips}

    async def up_everywhere() -> bool | None:
        views = await ctx.gather([probe(ctx.h(n.name), haproxy.STATS) for n in ctx.spec.haproxy_nodes()])
        return True if all(s.status.startswith("UP") for servers in views for s in servers
                           if s.proxy in proxies and s.server == host) else None

    await wait_for(up_everywhere, API_WAIT_S, f"every haproxy to send {d.unit} requests to {host} again")


async def ensure_catalog(ctx: DeployContext, host: str) -> None:
    """keystone bootstrapped (once) and its catalog made, through the VIP from `host`."""
    want = catalog_want(ctx.spec, ctx.secrets)
    result = await _catalog(ctx, host, want)
    if result.get("bootstrap"):
        ctx.progress(f"openstack: keystone bootstrap on {host}")
        await _bootstrap(ctx, host)
        ctx.report.changed(host, "bootstrapped keystone (admin user, project, role, region, identity endpoints)")
        result = await _catalog(ctx, host, want)
        if result.get("bootstrap"):
            raise DeployError(f"keystone on {host}: the admin cannot log in even after bootstrap; "
                              "is keystone_admin_password the one keystone was bootstrapped with?")
    if "error" in result:
        raise DeployError(f"keystone catalog on {host}: {result['error']}")
    for change in list(result.get("changes") or []):  # type: ignore[call-overload]
        ctx.report.changed(host, f"keystone: {change}")


async def _catalog(ctx: DeployContext, host: str, want: dict[str, object]) -> dict[str, object]:
    return await _script(ctx, host, keystone_catalog, want, "keystone catalog")


async def _script(ctx: DeployContext, host: str, module: ModuleType, want: Mapping[str, object],
                  what: str) -> dict[str, object]:
    """`module` run on `host` (`python3 -c` with its source, `want` as JSON on stdin): its last line, one
    JSON object (its changes, or its error)."""
    res = await ctx.h(host).run(["python3", "-c", inspect.getsource(module)], check=False,
                                input=json.dumps(want) + "\n", timeout=300)
    lines = res.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        # The script's own source is the command: not worth repeating; its last words are.
        last = "\n".join(res.stderr.strip().splitlines()[-3:])
        path = module.__name__.removeprefix("hastack.").replace(".", "/")
        raise DeployError(f"{what} on {host} ({path}.py) exited {res.rc}: {last}")
    out: dict[str, object] = json.loads(lines[-1])
    return out


async def _bootstrap(ctx: DeployContext, host: str) -> None:
    spec = ctx.spec
    url = public_url(spec, "keystone")
    # The password through stdin into the environment: never on a command line.
    argv = ("sh", "-c", 'read -r OS_BOOTSTRAP_PASSWORD && export OS_BOOTSTRAP_PASSWORD && exec "$@"', "bootstrap",
            *SCHEMAS["keystone"].as_user(("keystone-manage", "bootstrap", "--bootstrap-username", ADMIN,
                                          "--bootstrap-project-name", ADMIN, "--bootstrap-role-name", "admin",
                                          "--bootstrap-service-name", "keystone",
                                          "--bootstrap-region-id", spec.openstack.region,
                                          "--bootstrap-admin-url", url, "--bootstrap-internal-url", url,
                                          "--bootstrap-public-url", url)))
    res = await ctx.h(host).run(argv, check=False, input=ctx.secrets["keystone_admin_password"] + "\n", timeout=300)
    if res.rc != 0:
        raise DeployError(f"keystone on {host}: `keystone-manage bootstrap` exited {res.rc}; last lines:\n"
                          + "\n".join((res.stderr + res.stdout).strip().splitlines()[-10:]))

"""Probe every host in parallel over SSH and collect the facts the verdicts judge."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncssh

from hastack.components import corosync, haproxy, network, rabbitmq
from hastack.components.galera import STATUS_CMD, TIMED_OUT, GaleraState, parse_status_result
from hastack.components.mongodb import parse_replset_status
from hastack.components.pacemaker import CRM_MON, parse_crm_mon
from hastack.credentials.model import Secrets
from hastack.deploy.run import MONGO_ADMIN
from hastack.hosts.fleet import Access, reachable
from hastack.hosts.ssh import HostError, SshHost
from hastack.spec.model import Spec
from hastack.status.model import Facts

T = TypeVar("T")
PROBE_TIMEOUT = 10.0
# A host that has not answered SSH in this long is reported unreachable, not waited for.
CONNECT_TIMEOUT = 3.0


async def _first(hosts: list[SshHost], probe: Callable[[SshHost], Awaitable[T | None]]) -> T | None:
    """The answer of the first host (in spec order) that gives one.

    One host at a time: a cluster-wide view needs one answer, and the CLIs
    (rabbitmqctl boots an Erlang VM) are too heavy to run everywhere at once.
    """
    for h in hosts:
        with contextlib.suppress(HostError, asyncssh.Error, OSError):
            r = await probe(h)
            if r is not None:
                return r
    return None


class _Silent(Exception):
    """mariadbd took the connection and answered nothing (timeout(1) ended the client)."""


async def _galera(h: SshHost) -> GaleraState | None:
    res = await h.run(STATUS_CMD, check=False, timeout=PROBE_TIMEOUT + 5)
    if res.rc == TIMED_OUT:
        raise _Silent(h.name)
    return parse_status_result(res.rc, res.stdout)


@contextlib.asynccontextmanager
async def mongo_admin(h: SshHost, password: str, timeout_ms: int = 2000) -> AsyncIterator[Any]:
    """pymongo, as hastack's admin user, to mongod on `h`'s loopback through its SSH connection."""
    import pymongo

    listener = await h.conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", 27017)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        "127.0.0.1", listener.get_port(), directConnection=True, username=MONGO_ADMIN, password=password,
        authSource="admin", serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms)
    try:
        yield client
    finally:
        # Off the event loop: close() waits on pymongo's monitor, whose socket is this loop's SSH tunnel.
        await asyncio.to_thread(client.close)
        listener.close()


async def replset(h: SshHost, password: str) -> Any:
    async with mongo_admin(h, password) as client:
        return parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))


async def gather(spec: Spec, secrets: Secrets, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Facts:
    up = {n: h for n, h in hosts.items() if n not in unreachable}

    def on(names: list[str]) -> list[SshHost]:
        return [up[n] for n in names if n in up]

    async def out(h: SshHost, cmd: str) -> str | None:
        res = await h.run(cmd, check=False, timeout=PROBE_TIMEOUT)
        return res.stdout if res.rc == 0 else None

    cor = on([n.name for n in spec.corosync_nodes()]) if spec.vip_manager.runs_pacemaker else []
    gal = on([n.name for n in spec.galera_nodes()]) if spec.galera.enabled else []
    rab = on([n.name for n in spec.rabbit_nodes()]) if spec.rabbitmq.enabled else []
    mon = on([n.name for _, n in spec.mongo_members()]) if spec.mongodb.enabled else []
    hap = on([n.name for n in spec.haproxy_nodes()])
    errors: dict[str, str] = {}

    async def quorum() -> corosync.Quorum | None:
        text = await _first(cor, lambda h: out(h, corosync.QUORUM_CMD))
        return corosync.parse_quorum(text) if text else None

    async def links() -> dict[str, tuple[corosync.LinkState, ...]]:
        texts = await asyncio.gather(*(out(h, corosync.LINKS_CMD) for h in cor))
        return {h.name: corosync.parse_links(t) for h, t in zip(cor, texts, strict=True) if t}

    async def pacemaker() -> Any:
        text = await _first(cor, lambda h: out(h, " ".join(CRM_MON)))
        return parse_crm_mon(text) if text else None

    silent: set[str] = set()

    async def galera() -> dict[str, GaleraState | None]:
        states = await asyncio.gather(*(_galera(h) for h in gal), return_exceptions=True)
        silent.update(h.name for h, s in zip(gal, states, strict=True) if isinstance(s, _Silent))
        return {h.name: (s if isinstance(s, GaleraState) else None) for h, s in zip(gal, states, strict=True)}

    async def rabbit() -> Any:
        text = await _first(rab, lambda h: out(h, rabbitmq.CLUSTER_CMD))
        return rabbitmq.parse_cluster_status(text) if text else None

    async def queues() -> tuple[rabbitmq.QuorumQueue, ...] | None:
        text = await _first(rab, lambda h: out(h, rabbitmq.QUEUES_CMD))
        return rabbitmq.parse_quorum_queues(text) if text is not None else None

    async def mongo() -> Any:
        for h in mon:  # any member's view will do; the first that answers
            try:
                return await replset(h, secrets["mongodb_admin_password"])
            except Exception as exc:
                errors["mongodb"] = f"{h.name}: {exc}"
        return None

    async def stats() -> dict[str, tuple[haproxy.ServerState, ...]]:
        texts = await asyncio.gather(*(out(h, haproxy.STAT_CMD) for h in hap))
        return {h.name: haproxy.parse_show_stat(t) for h, t in zip(hap, texts, strict=True) if t}

    async def addresses() -> dict[str, Any]:
        texts = await asyncio.gather(*(out(h, network.ADDR_CMD) for h in up.values()))
        return {n: network.parse_addresses(t) for n, t in zip(up, texts, strict=True) if t}

    names = ("quorum", "links", "pacemaker", "galera", "rabbit", "rabbit_queues", "mongo", "haproxy", "addresses")
    results = await asyncio.gather(quorum(), links(), pacemaker(), galera(), rabbit(), queues(), mongo(), stats(),
                                   addresses(), return_exceptions=True)
    values: dict[str, Any] = {}
    for name, r in zip(names, results, strict=True):
        if isinstance(r, (HostError, asyncssh.Error, OSError, ValueError, KeyError)):
            errors[name] = str(r)
        elif isinstance(r, BaseException):
            raise r
        elif r is not None:
            values[name] = r
    return Facts(unreachable=unreachable, errors=errors, galera_silent=frozenset(silent), **values)


async def probe(spec: Spec, secrets: Secrets, access: Access) -> Facts:
    """Connect to every host at once and gather; a host that does not answer is a fact, not an error."""
    async with reachable(spec, access, timeout=CONNECT_TIMEOUT) as (hosts, unreachable):
        return await gather(spec, secrets, hosts, unreachable)

"""Probe every host in parallel over SSH and collect the facts the verdicts judge."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncssh

from hastack.components import corosync, haproxy, network, rabbitmq
from hastack.components.galera import STATUS_CMD, TIMED_OUT, GaleraState, parse_status_result
from hastack.components.pacemaker import CRM_MON, parse_crm_mon
from hastack.credentials.model import Secrets
from hastack.hosts.fleet import Access, reachable
from hastack.hosts.mongo import replset
from hastack.hosts.ssh import HostError, SshHost
from hastack.spec.model import Spec
from hastack.status.model import Facts

T = TypeVar("T")
PROBE_TIMEOUT = 10.0
# A host that has not answered SSH in this long is reported unreachable, not waited for.
CONNECT_TIMEOUT = 3.0


# The component whose verdict reads each fact: a probe's error is filed under it, so the verdict
# can say what went wrong instead of "no node answered".
COMPONENT_OF = {"quorum": "corosync", "links": "corosync", "pacemaker": "pacemaker", "galera": "galera",
                "rabbit": "rabbitmq", "rabbit_queues": "rabbitmq", "mongo": "mongodb", "haproxy": "haproxy",
                "addresses": "vip"}


async def _first(hosts: list[SshHost], probe: Callable[[SshHost], Awaitable[T | None]],
                 errors: dict[str, str], component: str) -> T | None:
    """The answer of the first host (in spec order) that gives one; each failure is kept in `errors`.

    One host at a time: a cluster-wide view needs one answer, and the CLIs
    (rabbitmqctl boots an Erlang VM) are too heavy to run everywhere at once.
    """
    for h in hosts:
        try:
            r = await probe(h)
        except (HostError, asyncssh.Error, OSError) as exc:
            lines = (str(exc) or type(exc).__name__).strip().splitlines()
            head = lines[0] if isinstance(exc, HostError) else f"{h.name}: {lines[0]}"
            # The command and its last words: enough to act on, short enough for a table cell.
            errors[component] = head if len(lines) == 1 else f"{head}: {lines[-1].strip()}"
            continue
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


async def gather(spec: Spec, secrets: Secrets, hosts: dict[str, SshHost], unreachable: dict[str, str]) -> Facts:
    up = {n: h for n, h in hosts.items() if n not in unreachable}

    def on(names: list[str]) -> list[SshHost]:
        return [up[n] for n in names if n in up]

    async def out(h: SshHost, cmd: str) -> str | None:
        res = await h.run(cmd, check=False, timeout=PROBE_TIMEOUT)
        return res.stdout if res.rc == 0 else None

    async def answer(h: SshHost, cmd: str) -> str:
        """`cmd`'s output; a failure is an error naming the host and the command's last words."""
        res = await h.run(cmd, check=False, timeout=PROBE_TIMEOUT)
        if res.rc != 0:
            raise HostError(h.name, cmd, res)
        return res.stdout

    cor = on([n.name for n in spec.corosync_nodes()]) if spec.vip_manager.runs_pacemaker else []
    gal = on([n.name for n in spec.galera_nodes()]) if spec.galera.enabled else []
    rab = on([n.name for n in spec.rabbit_nodes()]) if spec.rabbitmq.enabled else []
    mon = on([n.name for _, n in spec.mongo_members()]) if spec.mongodb.enabled else []
    hap = on([n.name for n in spec.haproxy_nodes()])
    errors: dict[str, str] = {}

    async def quorum() -> corosync.Quorum | None:
        text = await _first(cor, lambda h: answer(h, corosync.QUORUM_CMD), errors, "corosync")
        return corosync.parse_quorum(text) if text else None

    async def links() -> dict[str, tuple[corosync.LinkState, ...]]:
        texts = await asyncio.gather(*(out(h, corosync.LINKS_CMD) for h in cor))
        return {h.name: corosync.parse_links(t) for h, t in zip(cor, texts, strict=True) if t}

    async def pacemaker() -> Any:
        text = await _first(cor, lambda h: answer(h, " ".join(CRM_MON)), errors, "pacemaker")
        return parse_crm_mon(text) if text else None

    silent: set[str] = set()

    async def galera() -> dict[str, GaleraState | None]:
        states = await asyncio.gather(*(_galera(h) for h in gal), return_exceptions=True)
        silent.update(h.name for h, s in zip(gal, states, strict=True) if isinstance(s, _Silent))
        return {h.name: (s if isinstance(s, GaleraState) else None) for h, s in zip(gal, states, strict=True)}

    async def rabbit() -> Any:
        text = await _first(rab, lambda h: answer(h, rabbitmq.CLUSTER_CMD), errors, "rabbitmq")
        return rabbitmq.parse_cluster_status(text) if text else None

    async def queues() -> tuple[rabbitmq.QuorumQueue, ...] | None:
        text = await _first(rab, lambda h: answer(h, rabbitmq.QUEUES_CMD), errors, "rabbit_queues")
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
            errors.setdefault(COMPONENT_OF[name], f"{name}: {r}")
        elif isinstance(r, BaseException):
            raise r
        elif r is not None:
            values[name] = r
    return Facts(unreachable=unreachable, errors=errors, galera_silent=frozenset(silent), **values)


async def probe(spec: Spec, secrets: Secrets, access: Access) -> Facts:
    """Connect to every host at once and gather; a host that does not answer is a fact, not an error."""
    async with reachable(spec, access, timeout=CONNECT_TIMEOUT) as (hosts, unreachable):
        return await gather(spec, secrets, hosts, unreachable)

"""The mongodb phase: members started, the set initiated once, settings and members reconciled."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pymongo
import pymongo.errors

from hastack.agent import mongo_watch
from hastack.components.mongo_config import MembershipError, next_reconfig_step
from hastack.components.mongodb import MONGO_ADMIN, ReplSet, member_name, parse_replset_status, set_hosts
from hastack.deploy.context import (
    REPLSET_PATH,
    DeployContext,
    DeployError,
    wait_for,
)
from hastack.deploy.plan import Phase
from hastack.hosts.mongo import MongoLogin, mongo_client
from hastack.render.mongodb import RESTART_ON, WATCH, WATCH_UNIT


def mongo(ctx: DeployContext, host: str, admin: bool = False) -> contextlib.AbstractAsyncContextManager[
        pymongo.MongoClient[dict[str, Any]]]:
    """A client to mongod on `host` through its SSH connection (unauthenticated: the localhost exception)."""
    login = MongoLogin.of(ctx.spec, ctx.secrets)
    return mongo_client(ctx.h(host), login if admin else login.anonymous())


async def apply(ctx: DeployContext, phase: Phase) -> None:
    members = [n.name for _, n in ctx.spec.mongo_members()]
    await ctx.gather([ctx.ensure_running(h, "mongod", restart_if=ctx.file_changed(h, *RESTART_ON))
                      for h in phase.hosts])

    async def answers(host: str) -> None:
        async with mongo(ctx, host) as client:
            await wait_for(lambda: asyncio.to_thread(client.admin.command, "ping"), 60, f"mongod on {host}")

    async def setup_state(host: str) -> str:
        async with mongo(ctx, host) as client:
            return await asyncio.to_thread(_mongo_setup_state, client)

    # replSetInitiate checks that every member answers: wait for all first.
    await ctx.gather([answers(h) for h in phase.hosts])
    # A new member (one added or replacing a dead one) is uninitiated too: the set is set up
    # through a member that already belongs to it, never initiated a second time.
    states = dict(zip(members, await ctx.gather([setup_state(h) for h in members]), strict=True))
    first = next((h for h in members if states[h] != "uninitiated"), members[0])
    async with mongo(ctx, first) as client:
        cmd = client.admin.command
        state = await asyncio.to_thread(_mongo_setup_state, client)
        if state == "uninitiated":
            config = json.loads(ctx.tree[first][REPLSET_PATH].content)
            ctx.progress(f"mongodb: replSetInitiate on {first}")
            await asyncio.to_thread(cmd, "replSetInitiate", config)
            ctx.report.changed(first, "initiated the replica set")
        if state in ("uninitiated", "no-users"):
            async def writable() -> bool | None:
                hello = await asyncio.to_thread(cmd, "hello")
                return True if hello.get("isWritablePrimary") else None

            await wait_for(writable, 120, f"{first} to become the mongo primary")
            await asyncio.to_thread(cmd, "createUser", MONGO_ADMIN, pwd=ctx.secrets["mongodb_admin_password"],
                                    roles=[{"role": "root", "db": "admin"}])
            ctx.report.changed(first, f"created mongo user {MONGO_ADMIN}")
    await wait_for(lambda: mongo_primary(ctx, first), 180, "a mongo primary")
    removed = await mongo_converge(ctx, first, json.loads(ctx.tree[first][REPLSET_PATH].content))
    rs = await wait_for(lambda: mongo_healthy(ctx, first), 300, "every mongo member healthy")
    ctx.progress(f"mongodb: primary {rs.primary}")
    by_address = {member_name(n): n.name for n in ctx.spec.nodes}  # removed members too
    for host in sorted(by_address[a] for a in removed if a in by_address):
        # Out of the set, its mongod would only log that it was removed: stopped, data kept.
        await ctx.h(host).run(["systemctl", "disable", "--now", "--quiet", "mongod"], timeout=300)
        ctx.report.changed(host, "stopped mongod: removed from the replica set")
    # The watch once the set is whole: it reads the set's state, and stands only for a member in it.
    await ctx.gather([ctx.ensure_running(h, WATCH, restart_if=h in ctx.agent_installed or ctx.file_changed(
        h, mongo_watch.PATH)) for h in phase.hosts if WATCH_UNIT in ctx.tree[h]])


async def mongo_primary(ctx: DeployContext, host: str) -> ReplSet | None:
    async with mongo(ctx, host, admin=True) as client:
        rs = parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))
    return rs if rs.primary else None


async def mongo_converge(ctx: DeployContext, first: str, document: dict[str, Any]) -> set[str]:
    """Settings and members the spec changed reach the running set, through its primary:
    one replSetReconfig per step (at most one voting member added or removed at a time).
    Returns the members (host:port) removed."""
    by_address = {name: host for host, name in set_hosts(ctx.spec).items()}
    removed: set[str] = set()
    said = [""]

    async def step() -> bool | None:
        rs = await wait_for(lambda: mongo_primary(ctx, first), 120, "a mongo primary")
        if str(rs.primary) not in by_address:
            raise DeployError(f"the mongo primary {rs.primary} is not a member in the spec: give it priority 0 "
                              "(`hastack mongo priority`) so another member takes over, then deploy again")
        async with mongo(ctx, by_address[str(rs.primary)], admin=True) as client:
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
                ctx.progress(f"mongodb: {what}")
                said.append(what)
            if new is None:
                return None
            # Refused while the previous change is not yet on a majority: wait_for tries again.
            await asyncio.to_thread(client.admin.command, "replSetReconfig", new)
            removed.update({m["host"] for m in live["members"]} - {m["host"] for m in new["members"]})
            ctx.report.changed(by_address[str(rs.primary)], f"replica set: {what}")
            return None

    await wait_for(step, 300, "the replica set to have the spec's settings and members")
    return removed


async def mongo_healthy(ctx: DeployContext, host: str) -> ReplSet | None:
    async with mongo(ctx, host, admin=True) as client:
        rs = parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))
    want = len(ctx.spec.mongo_members()) + (1 if ctx.spec.mongodb.arbiter else 0)
    return rs if rs.healthy() and len(rs.members) == want else None


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

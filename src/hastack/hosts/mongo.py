"""pymongo to a host's mongod, through that host's SSH connection.

Over SSH, so hastack needs no route to the database port, and to loopback
there, so the first user can be made under the localhost exception. Deploy,
status and recovery all reach MongoDB this way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pymongo

from hastack.components.mongodb import MONGO_ADMIN, ReplSet, parse_replset_status
from hastack.components.mongodb import PORT as MONGO_PORT
from hastack.hosts.ssh import SshHost


@contextlib.asynccontextmanager
async def mongo_client(h: SshHost, *, password: str | None = None, timeout_ms: int = 3000,
                       ) -> AsyncIterator[pymongo.MongoClient[dict[str, Any]]]:
    """A client to mongod on `h`'s loopback: as hastack's admin user when `password` is given,
    else unauthenticated (the localhost exception, before the first user exists)."""
    listener = await h.conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", MONGO_PORT)
    auth: dict[str, Any] = ({"username": MONGO_ADMIN, "password": password, "authSource": "admin"}
                            if password is not None else {})
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        "127.0.0.1", listener.get_port(), directConnection=True, serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms, **auth)
    try:
        yield client
    finally:
        # Off the event loop: close() waits on pymongo's monitor, whose socket is this loop's SSH tunnel.
        await asyncio.to_thread(client.close)
        listener.close()


async def replset(h: SshHost, password: str, timeout_ms: int = 2000) -> ReplSet:
    """The replica set as the member on `h` sees it (replSetGetStatus)."""
    async with mongo_client(h, password=password, timeout_ms=timeout_ms) as client:
        return parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))

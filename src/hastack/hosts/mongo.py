"""pymongo to a host's mongod, through that host's SSH connection.

Over SSH, so hastack needs no route to the database port, and to loopback
there, so the first user can be made under the localhost exception. Deploy,
status and recovery all reach MongoDB this way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import pymongo

from hastack.components.mongodb import MONGO_ADMIN, ReplSet, parse_replset_status
from hastack.components.mongodb import PORT as MONGO_PORT
from hastack.credentials.model import Secrets
from hastack.hosts.cafile import ca_file
from hastack.hosts.ssh import SshHost
from hastack.render.tls import authority
from hastack.spec.model import Spec


@dataclass(frozen=True)
class MongoLogin:
    """How hastack logs in to a member: its admin password (None: unauthenticated, the localhost
    exception before the first user exists) and the CA to check it against when mongod wants TLS."""

    password: str | None = field(repr=False)
    ca: bytes | None = None

    @classmethod
    def of(cls, spec: Spec, secrets: Secrets) -> MongoLogin:
        ca = authority(spec, secrets)
        return cls(secrets["mongodb_admin_password"], ca.cert if ca else None)

    def anonymous(self) -> MongoLogin:
        return replace(self, password=None)

    def kwargs(self) -> dict[str, Any]:
        """pymongo's options for this login."""
        auth: dict[str, Any] = ({"username": MONGO_ADMIN, "password": self.password, "authSource": "admin"}
                                if self.password is not None else {})
        return auth | tls_kwargs(self.ca)


def tls_kwargs(ca: bytes | None) -> dict[str, Any]:
    """pymongo's TLS options: the server's certificate checked against the cluster's CA."""
    return {"tls": True, "tlsCAFile": ca_file(ca)} if ca else {}


@contextlib.asynccontextmanager
async def mongo_client(h: SshHost, login: MongoLogin, *, timeout_ms: int = 3000,
                       ) -> AsyncIterator[pymongo.MongoClient[dict[str, Any]]]:
    """A client to mongod on `h`'s loopback (its certificate names 127.0.0.1)."""
    listener = await h.conn.forward_local_port("127.0.0.1", 0, "127.0.0.1", MONGO_PORT)
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        "127.0.0.1", listener.get_port(), directConnection=True, serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms, **login.kwargs())
    try:
        yield client
    finally:
        # Off the event loop: close() waits on pymongo's monitor, whose socket is this loop's SSH tunnel.
        await asyncio.to_thread(client.close)
        listener.close()


async def replset(h: SshHost, login: MongoLogin, timeout_ms: int = 2000) -> ReplSet:
    """The replica set as the member on `h` sees it (replSetGetStatus)."""
    async with mongo_client(h, login, timeout_ms=timeout_ms) as client:
        return parse_replset_status(await asyncio.to_thread(client.admin.command, "replSetGetStatus"))

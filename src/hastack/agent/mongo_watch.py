"""The mongo watch: a secondary stands for election as soon as the primary's host stops answering.

A replica set elects a new primary once its members have heard nothing from the primary for
`electionTimeoutMillis` (10 s by default). When the primary's host lost its management network, or
died, that wait is most of the write gap: mgmt-loss measured 10.5 s with no writable primary on the
default profile, 12.5 s of majority-write gap. The VIP left that host after ~3 s (the ping rule);
the primary did not.

This process runs beside every electable member. Each second it asks its own mongod who is primary
and tries a TCP connect to every other member's mongod. When the primary's host is lost (silent two
looks in a row while another member's host answered: agent/silence.py), the one secondary that
should take over (highest priority, then name, among healthy secondaries whose hosts answer) asks
its own mongod to stand (`replSetStepUp`). Nothing here decides who is primary: the member still
needs a majority of votes and an oplog as recent as theirs, so a wrong guess costs one failed
election, never a write. A bounded catch-up (timing.mongo_catchup_timeout_ms) lets the new primary
take writes before the lost one's heartbeat times out.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from hastack.agent.config import read_config
from hastack.agent.sd_notify import notify
from hastack.agent.silence import Silence, silent_hosts

PATH = "/etc/hastack/mongo-watch.yaml"
LAUNCHER = "/usr/local/bin/hastack-mongo-watch"
EVERY_S = 1.0
# After a stand, the next only once an election has had time to finish (or fail) and be seen.
BACKOFF_S = 10.0
MONGO_TIMEOUT_MS = 2000
log = logging.getLogger("hastack.mongo_watch")


class WatchConfig(BaseModel):
    """Rendered per member (0600, owned by mongodb: it holds the admin password)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    port: int = Field(default=27017, ge=1, le=65535)
    user: str
    password: str = Field(repr=False)
    ca_file: str | None = None  # the cluster's CA when mongod wants TLS


def load(path: str | Path) -> WatchConfig:
    return WatchConfig.model_validate(yaml.safe_load(Path(path).read_text()))


@dataclass(frozen=True)
class Member:
    name: str  # host:port, as the set knows it
    state: str  # replSetGetStatus's stateStr
    healthy: bool
    priority: float
    me: bool = False

    @property
    def host(self) -> str:
        return self.name.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Look:
    """One look: the set as this member sees it, and which other members' hosts did not answer at all."""

    members: tuple[Member, ...]
    silent: frozenset[str]


@dataclass(frozen=True)
class Watch:
    """Between looks: the peers' silence, and when this member last stood."""

    silence: Silence = field(default_factory=Silence)
    stood: float | None = None

    def after(self, now: float, look: Look, backoff: float = BACKOFF_S) -> tuple[Watch, str]:
        """The next state, and why this member stands now ("": not now)."""
        silence = self.silence.after((m.host for m in look.members if not m.me), look.silent)
        watch = replace(self, silence=silence)
        # Right after an election this member may still list the lost primary beside the new one.
        primaries = [m for m in look.members if m.state == "PRIMARY"]
        if not primaries or not all(not m.me and silence.lost(m.host) for m in primaries):
            return watch, ""
        primary = primaries[0]
        ready = sorted((m for m in look.members if m.state == "SECONDARY" and m.healthy and m.priority > 0
                        and (m.me or m.host in silence.answering)), key=lambda m: (-m.priority, m.name))
        if not ready or not ready[0].me or (self.stood is not None and now - self.stood < backoff):
            return watch, ""
        return replace(watch, stood=now), (f"the primary {primary.name} has not answered for "
                                           f"{silence.misses[primary.host]} looks while other members' hosts "
                                           "did: standing for election")


def members_of(status: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[Member, ...]:
    """replSetGetStatus's members with replSetGetConfig's priorities (an arbiter's is 0)."""
    priority = {str(m["host"]): float(m.get("priority", 1)) for m in config.get("members", [])}
    return tuple(Member(str(m["name"]), str(m.get("stateStr", "")), m.get("health", 0) == 1,
                        priority.get(str(m["name"]), 0.0), bool(m.get("self", False)))
                 for m in status.get("members", []))


def _client(cfg: WatchConfig) -> Any:
    import pymongo  # the bundle's; imported here so the pure parts load without it

    tls: dict[str, Any] = {"tls": True, "tlsCAFile": cfg.ca_file} if cfg.ca_file else {}
    return pymongo.MongoClient("127.0.0.1", cfg.port, directConnection=True, username=cfg.user,
                               password=cfg.password, authSource="admin", serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
                               connectTimeoutMS=MONGO_TIMEOUT_MS, socketTimeoutMS=MONGO_TIMEOUT_MS, **tls)


async def look(client: Any, port: int) -> Look | None:
    """None while this mongod does not answer (starting, or not yet in a set)."""
    try:
        status = await asyncio.to_thread(client.admin.command, "replSetGetStatus")
        config = (await asyncio.to_thread(client.admin.command, "replSetGetConfig"))["config"]
    except Exception as exc:  # pymongo's errors, and a set not initiated: nothing to decide
        log.debug("mongod did not answer: %s", exc)
        return None
    members = members_of(status, config)
    return Look(members, await silent_hosts((m.host for m in members if not m.me), port))


async def run(cfg: WatchConfig) -> None:
    client = _client(cfg)
    watch = Watch()
    notify("READY=1")
    while True:
        started = time.monotonic()
        seen = await look(client, cfg.port)
        if seen is not None:
            watch, why = watch.after(time.monotonic(), seen)
            if why:
                log.warning("%s", why)
                try:
                    await asyncio.to_thread(client.admin.command, "replSetStepUp")
                    log.warning("replSetStepUp: this member won the election")
                except Exception as exc:  # lost or refused: the set keeps its own course
                    log.warning("replSetStepUp: %s", exc)
        notify("WATCHDOG=1")
        await asyncio.sleep(max(0.0, EVERY_S - (time.monotonic() - started)))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="hastack-mongo-watch", description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--config", default=PATH, help=f"the watch's config (default {PATH})")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = read_config("hastack-mongo-watch", args.config, load)
    if cfg is None:
        return 2
    asyncio.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())

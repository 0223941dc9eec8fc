"""Galera state from `SHOW GLOBAL STATUS LIKE 'wsrep_%'`, and what haproxy should do with it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hastack.components.fact import Fact, any_exit

STATUS_SQL = "SHOW GLOBAL STATUS LIKE 'wsrep_%'"
# The host ends the client itself: a wedged server accepts a connection and then never
# answers, and a probe stuck on it would stall every look after it (seen after a power cut).
STATUS_ARGV = ("timeout", "10", "mariadb", "-N", "-B", "--connect-timeout=5", "-e", STATUS_SQL)
TIMED_OUT = 124  # timeout(1)'s exit status: the server answered nothing
# A joiner's state-transfer connections (SST 4444, IST 4568: galera's defaults, which hastack
# keeps): the bytes they received show whether a silent joiner is still being fed.


@dataclass(frozen=True)
class GaleraState:
    cluster_size: int
    cluster_status: str  # Primary / non-Primary / Disconnected
    local_state: str  # Synced, Donor/Desynced, Joining, Joined, Initialized
    ready: bool
    connected: bool
    cluster_state_uuid: str
    last_committed: int
    # Client addresses (ip:port) of the component's data nodes, garbd excluded.
    incoming: tuple[str, ...] = ()

    @property
    def primary(self) -> bool:
        return self.cluster_status == "Primary"


def parse_wsrep_status(rows: Iterable[tuple[str, str]] | Mapping[str, str]) -> GaleraState:
    v = dict(rows.items() if isinstance(rows, Mapping) else rows)

    def num(key: str) -> int:
        try:
            return int(v.get(key, "0") or 0)
        except ValueError:
            return 0

    return GaleraState(
        cluster_size=num("wsrep_cluster_size"),
        cluster_status=v.get("wsrep_cluster_status", "Disconnected"),
        local_state=v.get("wsrep_local_state_comment", ""),
        ready=v.get("wsrep_ready") == "ON",
        connected=v.get("wsrep_connected") == "ON",
        cluster_state_uuid=v.get("wsrep_cluster_state_uuid", ""),
        last_committed=num("wsrep_last_committed"),
        incoming=tuple(a.strip() for a in v.get("wsrep_incoming_addresses", "").split(",")
                       if a.strip() and a.strip() != "AUTO"),
    )


def parse_wsrep_text(text: str) -> GaleraState:
    """STATUS_SQL's rows as `mariadb -N -B` prints them: name, a tab, value."""
    return parse_wsrep_status([(k, v) for k, _, v in (line.partition("\t") for line in text.splitlines()) if _])


@dataclass(frozen=True)
class Health:
    serve: bool
    reason: str


def writer_health(state: GaleraState, donor_serves: bool = False) -> Health:
    """Whether haproxy may send queries to this node (HTTP 200) or not (503).

    A TCP check sees an open port; this sees galera: only a node in the
    primary component, ready and synced gets traffic. A donor may serve when
    asked (mariabackup keeps it consistent) so a two-node cluster does not
    lose its only reader during an SST.
    """
    if not state.connected:
        return Health(False, "not connected to the group")
    if not state.primary:
        return Health(False, f"not in the primary component ({state.cluster_status})")
    if not state.ready:
        return Health(False, "wsrep not ready")
    if state.local_state == "Synced":
        return Health(True, f"synced, cluster size {state.cluster_size}")
    if state.local_state.startswith("Donor") and donor_serves:
        return Health(True, "donor, serving by choice")
    return Health(False, f"state {state.local_state or 'unknown'}")


def leavers(incoming: Iterable[str], addresses: Mapping[str, str], members: Iterable[str]) -> tuple[
        tuple[str, ...], tuple[str, ...]]:
    """Nodes in the running component that the spec no longer lists as galera nodes.

    `addresses` maps each spec host's address to its name. Returns the leavers
    the spec names (hastack stops them) and addresses it does not know at all.
    """
    keep = set(members)
    named, unknown = [], []
    for a in incoming:
        host = addresses.get(a.rsplit(":", 1)[0])
        if host is None:
            unknown.append(a)
        elif host not in keep:
            named.append(host)
    return tuple(sorted(named)), tuple(sorted(unknown))


class Silent(Exception):
    """mariadbd took the connection and answered nothing within the bound: wedged, or receiving a snapshot."""


def parse_status_result(rc: int, stdout: str) -> GaleraState | None:
    """What the status query gave: the state, None when the client failed (no server, refused), or
    Silent when timeout(1) had to end it."""
    if rc == TIMED_OUT:
        raise Silent
    return parse_wsrep_text(stdout) if rc == 0 else None


def parse_transfer_bytes(text: str) -> int | None:
    """Bytes received so far on the state-transfer connections; None when there are none."""
    counts = [int(word.split(":", 1)[1]) for word in text.split() if word.startswith("bytes_received:")]
    return sum(counts) if counts else None


NO_UUID = "00000000-0000-0000-0000-000000000000"
RECOVERED = re.compile(r"--wsrep[-_]start[-_]position=([0-9a-f-]{36}):(-?\d+)")


@dataclass(frozen=True)
class GraState:
    """/var/lib/mysql/grastate.dat: the position a clean stop wrote, or seqno -1 after a crash."""

    uuid: str
    seqno: int
    safe_to_bootstrap: bool

    @property
    def has_history(self) -> bool:
        return self.uuid.strip("0-") != ""


def parse_grastate(text: str) -> GraState | None:
    """None when the file is missing or empty (a node never started)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.lstrip().startswith("#"):
            values[key.strip()] = value.strip()
    if "uuid" not in values:
        return None
    try:
        seqno = int(values.get("seqno", "-1"))
    except ValueError:
        seqno = -1
    return GraState(values["uuid"], seqno, values.get("safe_to_bootstrap", "0") == "1")


@dataclass(frozen=True)
class Position:
    uuid: str
    seqno: int


def parse_recovered(text: str) -> Position | None:
    """`galera_recovery` prints --wsrep_start_position=UUID:SEQNO (the last commit InnoDB holds)."""
    m = RECOVERED.search(text)
    return Position(m.group(1), int(m.group(2))) if m else None

STATUS = Fact("galera status", STATUS_ARGV, parse_status_result, timeout=25)
TRANSFER = Fact("state transfer bytes", ("ss", "-Htin", "state", "established", "( sport = :4444 or sport = :4568 )"),
                any_exit(parse_transfer_bytes))
GRASTATE_PATH = "/var/lib/mysql/grastate.dat"
GRASTATE = Fact("galera grastate.dat", ("cat", GRASTATE_PATH), any_exit(parse_grastate))
# mariadbd has a process (it may answer nothing yet).
RUNNING = Fact("mariadbd running", ("pidof", "mariadbd"), lambda rc, stdout: rc == 0)

"""Galera state from `SHOW GLOBAL STATUS LIKE 'wsrep_%'`, and what haproxy should do with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

STATUS_SQL = "SHOW GLOBAL STATUS LIKE 'wsrep_%'"
# The host ends the client itself: a wedged server accepts a connection and then never
# answers, and a probe stuck on it would stall every look after it (seen after a power cut).
STATUS_CMD = ("timeout", "10", "mariadb", "-N", "-B", "--connect-timeout=5", "-e", STATUS_SQL)
TIMED_OUT = 124  # timeout(1)'s exit status: the server answered nothing
# A joiner's state-transfer connections (SST 4444, IST 4568: galera's defaults, which hastack
# keeps): the bytes they received show whether a silent joiner is still being fed.
TRANSFER_CMD = "ss -Htin state established '( sport = :4444 or sport = :4568 )'"


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


def parse_status_result(rc: int, stdout: str) -> GaleraState | None:
    """What STATUS_CMD gave: the state, or None when the client failed (no server, refused, TIMED_OUT)."""
    return parse_wsrep_text(stdout) if rc == 0 else None


def parse_transfer_bytes(text: str) -> int | None:
    """Bytes received so far on the state-transfer connections; None when there are none."""
    counts = [int(word.split(":", 1)[1]) for word in text.split() if word.startswith("bytes_received:")]
    return sum(counts) if counts else None

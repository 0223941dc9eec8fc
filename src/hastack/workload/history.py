"""What a chaos run records: every operation of the workload, every VIP, galera
and mongo sample, and what was read back at the end. Plain data, JSON both ways:
the workload writes it on the client host, the checker judges it here.

Times are CLOCK_MONOTONIC seconds, one clock for the whole machine (the
client host is a network namespace, not a time namespace), so the fault's
time taken outside and the operations' times taken inside compare directly.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The workload's streams, in report order.
DB, AMQP, MONGO, VIP = "db", "amqp", "mongo", "vip"
STREAMS = (DB, AMQP, MONGO, VIP)
# Not a stream of writes: when some mongo member answered as the writable primary (the server's view).
MONGO_PRIMARY = "mongo-primary"
# The OpenStack APIs, one stream each: `api-token` (a password login to keystone) and `api-NAME` (an
# authenticated read of that API), all through the VIP.
API_PREFIX = "api-"
API_TOKEN = "api-token"
API_SERVERS = "api-servers"  # servers created through nova's API: each must be ACTIVE at the end
# Not a stream: instance HA scenarios' pinned servers (their readback: the evacuations nova recorded).
INSTANCES = "instances"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Op(_Frozen):
    """One attempt: a database commit, a confirmed publish, a majority write or a VIP connect."""

    stream: str
    key: str = ""  # what was written: the row id, message id or document id
    t0: float
    t1: float
    ok: bool  # acknowledged: commit returned, broker confirmed, majority acked, port answered
    error: str = ""


class VipSample(_Frozen):
    """Who answered an ARP request for the VIP (one MAC per holder)."""

    t: float
    macs: tuple[str, ...]


class GaleraSample(_Frozen):
    """One node's view: is it in a primary component, and with whom."""

    t: float
    node: str
    primary: bool
    members: tuple[str, ...] = ()  # wsrep_incoming_addresses of its component


class MongoSample(_Frozen):
    """One member's answer to `hello`: is it the primary, able to take writes."""

    t: float
    node: str
    writable: bool


class Stall(_Frozen):
    """The workload itself did not run from t0 to t1: its heartbeat, due at t0, woke at t1.

    The client host stands for the users' machines, yet it shares the lab's two cores: while a fenced
    host boots again, a process in the client's CPU group (and one outside every lab group alike) went
    unscheduled for up to 1.7 s at a time. Every stream's wait then grows by time no user elsewhere
    would have waited, so the checker leaves it out of the gaps and reports it apart."""

    t0: float
    t1: float


class Readback(_Frozen):
    """Everything found at the end, read after the cluster healed."""

    keys: frozenset[str] = frozenset()
    complete: bool = False  # the read itself succeeded
    error: str = ""
    # What became of keys found but not as wanted (a server in ERROR: nova's fault message).
    states: dict[str, str] = {}


class InstanceSample(_Frozen):
    """Where nova said one of the run's pinned servers was, and in what state (instance HA scenarios)."""

    t: float
    server: str  # its name
    host: str  # OS-EXT-SRV-ATTR:host ("" while nova names none)
    status: str
    task: str = ""  # OS-EXT-STS:task_state ("rebuilding" while an evacuation runs)


class Evacuation(_Frozen):
    """nova's record of one evacuation (GET os-migrations): asked at `t` (nova's created_at, to the
    second, on the run's monotonic clock)."""

    server: str  # the server's name
    t: float
    dest: str = ""
    status: str = ""


class History(_Frozen):
    ops: tuple[Op, ...] = ()
    vip: tuple[VipSample, ...] = ()
    galera: tuple[GaleraSample, ...] = ()
    mongo: tuple[MongoSample, ...] = ()
    readback: dict[str, Readback] = {}
    # Instance HA scenarios: the servers pinned on the target compute before the fault, sampled
    # through the run, and every evacuation nova recorded off that compute.
    instance_host: str = ""
    instance_names: tuple[str, ...] = ()
    instances: tuple[InstanceSample, ...] = ()
    evacuations: tuple[Evacuation, ...] = ()
    stalls: tuple[Stall, ...] = ()
    started: float = 0.0
    ended: float = 0.0
    # Streams with no success between the fault and the end of the load, even after the settle.
    unanswered: tuple[str, ...] = ()

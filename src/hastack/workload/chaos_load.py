"""The chaos workload, run on the client host while a fault is injected.

The streams below, each op recorded with its start, end and outcome:
- db: one row per commit through the VIP (haproxy -> the galera writer);
- amqp: one message per publish with confirms to a quorum queue, connecting
  as oslo.messaging does (every transport_url node in turn);
- mongo: one document per insert with majority write concern;
- vip: every 50 ms an ARP request for the VIP (who holds it: one MAC per
  holder) and a TCP connect to it (does it answer);
- api (when hastack runs OpenStack): a password login to keystone every
  2 s (api-token), and an authenticated read of each API every 0.5 s
  through the VIP, one stream per API (api-keystone, api-glance, ...), in
  process with keystoneauth as an OpenStack client works; with nova, a
  server created every 5 s (api-servers: acknowledged when nova answers
  202), each of which must be ACTIVE at the end. These calls are started
  on their schedule whether or not the last one was answered (an open
  loop), so a stream's gap is the API's, not one stuck call's timeout.
And a galera sampler per node: is it in a primary component, with whom.

Protocol: the target (smoke.Target plus this run's fields) as one JSON line
on stdin; `{"ready": ...}` on stdout once every stream has succeeded; then
"stop [T]" on stdin ends the load (with T, the fault's monotonic time: once
every stream has succeeded after T, or SETTLE_S have passed, so that a stream
slower than the clusters' heal still shows its recovery); every acknowledged
key is read back and the whole history is printed as one JSON line. Every loop is bounded by
`max_seconds` even if "stop" never comes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from hastack.components.mongodb import PORT as MONGO_PORT
from hastack.render.galera import PROBE_DB, PROBE_USER
from hastack.render.openstack_run import FLAVOR, IMAGE
from hastack.spec.catalog import PROJECT_ID
from hastack.workload import instances
from hastack.workload.history import (
    AMQP,
    API_PREFIX,
    API_SERVERS,
    API_TOKEN,
    DB,
    INSTANCES,
    MONGO,
    VIP,
    Evacuation,
    GaleraSample,
    History,
    InstanceSample,
    MongoSample,
    Op,
    Readback,
    Stall,
    VipSample,
)
from hastack.workload.smoke import SMOKE_QUEUE, Target

PACE_S = 0.02  # one op per stream every 20 ms at most: enough resolution, little load on 2 cores
API_EVERY_S = 0.5  # each API read every 0.5 s, each in its own thread
LOGIN_TIMEOUT_S = 5.0  # a keystone password login, and any call given no timeout of its own
TOKEN_EVERY_S = 2.0  # a password login costs keystone ~0.3 s of CPU: not more often
VIP_EVERY_S = 0.05
GALERA_EVERY_S = 0.25
MONGO_EVERY_S = 0.1  # a primary's arrival to within 0.1 s: the fast profile elects in ~1 s
SERVER_EVERY_S = 5.0  # a server create: nova's API, conductor, scheduler, placement, a compute
# The client's own heartbeat: a wake-up later than STALL_S is the client not running (see Stall).
HEARTBEAT_S = 0.01
STALL_S = 0.1
HEARTBEAT = "heartbeat"  # its thread: not a stream
READBACK_S = 90.0  # after "stop": how long the final reads may retry while the cluster settles
# How long the read-back waits for the run's servers still building: a normal build takes ~5 s; one
# whose scheduler call died with a controller stays in BUILD until the conductor's RPC timeout (60 s)
# puts it in ERROR, and the checker excuses a build the fault interrupted either way.
SERVERS_SETTLE_S = 30.0
CLEANUP_S = 60.0  # the delete of a run's rows and documents: thousands after a long run
# After "stop T": how long the load goes on for streams with no success since the fault. Status
# calls the clusters healthy a probe round before a server create or a restarted API answers again.
SETTLE_S = 60.0


class ChaosTarget(Target):
    run: str  # this run's id: table rows, the queue and documents carry it
    # API name -> an authenticated read through the VIP (when hastack runs OpenStack).
    api_reads: dict[str, str] = Field(default_factory=dict)
    # With nova: where servers are made (the compute API) and deploy's image is found (glance).
    compute_url: str = ""
    image_url: str = ""
    client_address: str
    interface: str = "eth0"
    max_seconds: float = 600.0
    # Latency the run adds to the VIP holder's links, one way: the VIP probe's waits grow by
    # its round trip, or a slow answer would count as none.
    link_delay_s: float = 0.0
    # Instance HA scenarios: this many servers pinned on this compute before the fault, sampled through the run.
    instance_host: str = ""
    instance_count: int = 0
    server_stream: bool = True  # a server created every SERVER_EVERY_S (api-servers)

    @property
    def pinned(self) -> instances.Pinned:
        return instances.Pinned(self.compute_url, self.run, self.instance_host, self.instance_count)


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ops: list[Op] = []
        self.vip: list[VipSample] = []
        self.galera: list[GaleraSample] = []
        self.mongo: list[MongoSample] = []
        self.instances: list[InstanceSample] = []
        self.stalls: list[Stall] = []
        self.last_ok: dict[str, float] = {}  # stream -> when it last succeeded

    def op(self, stream: str, key: str, t0: float, ok: bool, error: str = "") -> None:
        with self.lock:
            t1 = time.monotonic()
            self.ops.append(Op(stream=stream, key=key, t0=t0, t1=t1, ok=ok, error=error[:200]))
            if ok:
                self.last_ok[stream] = t1

    def woke(self, due: float, woke: float) -> None:
        """The heartbeat due at `due` ran at `woke`: a stall of the client's own if that late."""
        if woke - due > STALL_S:
            with self.lock:
                self.stalls.append(Stall(t0=due, t1=woke))

    @property
    def succeeded(self) -> set[str]:
        """The streams that have succeeded at least once."""
        with self.lock:
            return set(self.last_ok)

    def unanswered(self, streams: set[str], since: float) -> tuple[str, ...]:
        """The streams with no success after `since`."""
        with self.lock:
            return tuple(sorted(s for s in streams if self.last_ok.get(s, -math.inf) <= since))


def stop_after(line: str) -> float | None:
    """The fault's time in a "stop T" line; None for a bare "stop" (or anything else)."""
    parts = line.split()
    try:
        return float(parts[1]) if len(parts) == 2 and parts[0] == "stop" else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Load:
    """What every stream's thread shares: the target, the record, and when to stop."""

    t: ChaosTarget
    rec: Recorder
    stop: threading.Event
    deadline: float

    def loop(self, every: float, body: Callable[[], None]) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            t0 = time.monotonic()
            body()
            self.stop.wait(max(0.0, every - (time.monotonic() - t0)))

    def paced(self, every: float, timeout: float, body: Callable[[], None]) -> None:
        """Start `body` every `every` seconds whether or not the earlier calls have returned (an open loop).

        A closed loop sends nothing while one call waits on a connection the crashed VIP holder took with
        it; the kernel retries a lost SYN only 1, 3, 7 s after it, so that call ends at the client's
        timeout (10 s by default) and the stream's gap was that timeout plus one call, whatever the
        service did (coordinated omission). Started on a schedule, a call sent once the VIP is back is
        answered at once, and the gap is the service's. A call ends within 2 x `timeout` (requests
        bounds the connect and each read apart): the pool never runs short."""
        with ThreadPoolExecutor(max_workers=math.ceil(2 * timeout / every) + 2) as pool:
            next_at = time.monotonic()
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                pool.submit(body)
                # A starved machine skips the starts it missed instead of sending them in a burst.
                next_at = max(next_at + every, time.monotonic())
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def keyed(self, stream: str, write: Callable[[str], None], reset: Callable[[], None]) -> None:
        """One write per op, each with its own key; `write` returns once acknowledged and raises otherwise,
        after which `reset` drops the connection (the next op reconnects)."""
        seq = 0

        def once() -> None:
            nonlocal seq
            seq += 1
            key = f"{self.t.run}-{seq}"
            t0 = time.monotonic()
            try:
                write(key)
                self.rec.op(stream, key, t0, True)
            except Exception as exc:  # any failure is an unacknowledged op
                self.rec.op(stream, key, t0, False, f"{type(exc).__name__}: {exc}")
                reset()

        self.loop(PACE_S, once)


# -- db ----------------------------------------------------------------------

def _mysql(t: ChaosTarget, host: str, timeout: float | None = None) -> Any:
    import pymysql

    timeout = timeout or t.client_timeout_s
    return pymysql.connect(host=host, port=3306, user=PROBE_USER, password=t.galera_password, database=PROBE_DB,
                           connect_timeout=timeout, read_timeout=timeout, write_timeout=timeout, autocommit=True,
                           ssl=t.mysql_ssl())


def db_writer(load: Load) -> None:
    t = load.t
    conn: list[Any] = [None]

    def write(key: str) -> None:
        if conn[0] is None:
            conn[0] = _mysql(t, t.vip)
        with conn[0].cursor() as cur:  # autocommit: returns once the cluster committed
            cur.execute("INSERT INTO chaos (run, k) VALUES (%s, %s)", (t.run, key))

    def reset() -> None:
        _close(conn[0])
        conn[0] = None

    load.keyed(DB, write, reset)
    reset()


def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):  # closing a dead connection: nothing to report
            conn.close()


def db_setup(t: ChaosTarget) -> None:
    conn = _mysql(t, t.vip, 5)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS chaos (id BIGINT AUTO_INCREMENT PRIMARY KEY, run CHAR(16) NOT NULL,"
                    " k VARCHAR(40) NOT NULL, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), KEY (run))")


def db_readback(t: ChaosTarget) -> Readback:
    def read() -> frozenset[str]:
        conn = _mysql(t, t.vip, 5)
        with conn, conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait = 1")  # causal: every commit the cluster acknowledged
            cur.execute("SELECT k FROM chaos WHERE run = %s", (t.run,))
            return frozenset(r[0] for r in cur.fetchall())

    def clean() -> None:
        conn = _mysql(t, t.vip, CLEANUP_S)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM chaos WHERE run = %s", (t.run,))

    return _retrying(read, clean)


def galera_sampler(load: Load, name: str, address: str) -> None:
    t, rec = load.t, load.rec
    conn: list[Any] = [None]

    def once() -> None:
        try:
            if conn[0] is None:
                conn[0] = _mysql(t, address, 0.5)
            with conn[0].cursor() as cur:
                cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN "
                            "('wsrep_cluster_status', 'wsrep_incoming_addresses')")
                status = dict(cur.fetchall())
            members = tuple(sorted(a for a in status.get("wsrep_incoming_addresses", "").split(",") if a))
            sample = GaleraSample(t=time.monotonic(), node=name, primary=status.get("wsrep_cluster_status") ==
                                  "Primary", members=members)
            with rec.lock:
                rec.galera.append(sample)
        except Exception:  # a node that does not answer has no view to record
            _close(conn[0])
            conn[0] = None

    load.loop(GALERA_EVERY_S, once)
    _close(conn[0])


# -- amqp --------------------------------------------------------------------

def _queue(t: ChaosTarget) -> str:
    """The lab's long-lived probe queue, not one per run: a quorum queue declared seconds before a
    power loss of every node came back with no leader and an empty log (RabbitMQ 3.10, measured
    twice; rabbitmq-server#15725 shows the same state), a RabbitMQ fault unrelated to what a run
    measures. Each run's messages carry its id; the read-back drains the rest."""
    return SMOKE_QUEUE


def amqp_connect(t: ChaosTarget, start: int) -> tuple[Any, int]:
    """A connection to the first node that accepts, from `start` on, as oslo.messaging rotates."""
    import pika  # type: ignore[import-untyped]

    last: Exception | None = None
    for i in range(len(t.rabbit_hosts)):
        n = (start + i) % len(t.rabbit_hosts)
        try:
            # A publish to a host that vanished is never acknowledged by its kernel: TCP_USER_TIMEOUT
            # gives the connection up after the client timeout, as the database clients' read timeout
            # does (oslo.messaging sets it too, to its heartbeat threshold). Without it pika noticed only
            # at its heartbeat check, `heartbeat + 5` s: 7-14 s of the fast profile's 8.7 s mgmt-loss gap.
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                **t.amqp(t.rabbit_hosts[n]), virtual_host=t.rabbit_vhost,
                credentials=pika.PlainCredentials(t.rabbit_user, t.rabbit_password), heartbeat=2,
                socket_timeout=1, blocked_connection_timeout=5, connection_attempts=1,
                tcp_options={"TCP_USER_TIMEOUT": int(t.client_timeout_s * 1000)}))
            return conn, n
        except Exception as exc:  # next node
            last = exc
    raise ConnectionError(f"no rabbit node accepted a connection: {last!r}")


def amqp_publisher(load: Load) -> None:
    import pika

    t = load.t
    state: dict[str, Any] = {"conn": None, "ch": None, "node": 0}  # Any: pika has no type hints

    def write(key: str) -> None:
        if state["ch"] is None:
            state["conn"], state["node"] = amqp_connect(t, state["node"])
            ch = state["conn"].channel()
            ch.confirm_delivery()
            state["ch"] = ch
        # Returns once the broker confirmed (a majority of the quorum queue's members); raises otherwise.
        state["ch"].basic_publish("", _queue(t), key.encode(), pika.BasicProperties(delivery_mode=2), mandatory=True)

    def reset() -> None:  # the next publish tries the next node, as oslo.messaging rotates
        _close(state["conn"])
        state.update(conn=None, ch=None, node=state["node"] + 1)

    load.keyed(AMQP, write, reset)
    _close(state["conn"])


def amqp_setup(t: ChaosTarget) -> None:
    conn, _ = amqp_connect(t, 0)
    with conn:
        conn.channel().queue_declare(_queue(t), durable=True, arguments={"x-queue-type": "quorum"})


def amqp_readback(t: ChaosTarget) -> Readback:
    def read() -> frozenset[str]:
        conn, _ = amqp_connect(t, 0)
        keys: set[str] = set()
        mine = f"{t.run}-"
        with conn:
            ch = conn.channel()
            last = None
            while True:
                # Acknowledged only once all is read: a read cut short leaves every message queued for the retry.
                method, _, body = ch.basic_get(_queue(t), auto_ack=False)
                if method is None:
                    break
                last = method.delivery_tag
                if body.decode().startswith(mine):
                    keys.add(body.decode())
            if last is not None:
                ch.basic_ack(last, multiple=True)
        return frozenset(keys)

    return _retrying(read)


# -- mongo -------------------------------------------------------------------

def _mongo(t: ChaosTarget, timeout: float | None = None) -> Any:
    import pymongo

    hosts = ",".join(f"{a}:{MONGO_PORT}" for a in t.mongo_members.values())
    return pymongo.MongoClient(f"mongodb://{hosts}/?replicaSet={t.mongo_replset}", username=t.mongo_user,
                               password=t.mongo_password, authSource="admin", serverSelectionTimeoutMS=2000,
                               socketTimeoutMS=int((timeout or t.client_timeout_s) * 1000), connectTimeoutMS=1000,
                               retryWrites=False, **t.mongo_tls())


def mongo_writer(load: Load) -> None:
    from pymongo.write_concern import WriteConcern

    client = _mongo(load.t)
    coll = client["hastack"].get_collection("chaos", write_concern=WriteConcern(w="majority",
                                                                         wtimeout=int(load.t.client_timeout_s * 1000)))
    try:  # the driver finds the new primary itself: nothing to reset
        load.keyed(MONGO, lambda key: coll.insert_one({"_id": key, "run": load.t.run}), lambda: None)
    finally:
        client.close()


def mongo_sampler(load: Load, name: str, address: str) -> None:
    """One member's own answer, every 0.1 s: is it the writable primary (`hello` needs no login)."""
    import pymongo

    rec = load.rec
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        address, MONGO_PORT, directConnection=True, serverSelectionTimeoutMS=500, socketTimeoutMS=500,
        connectTimeoutMS=500, **load.t.mongo_tls())

    def once() -> None:
        try:
            hello = client.admin.command("hello")
        except Exception:  # a member that does not answer says nothing about who is primary
            return
        with rec.lock:
            rec.mongo.append(MongoSample(t=time.monotonic(), node=name, writable=bool(hello.get("isWritablePrimary"))))

    try:
        load.loop(MONGO_EVERY_S, once)
    finally:
        client.close()


def mongo_readback(t: ChaosTarget) -> Readback:
    from pymongo.read_concern import ReadConcern

    def read() -> frozenset[str]:
        client = _mongo(t)
        with client:
            coll = client["hastack"].get_collection("chaos", read_concern=ReadConcern("majority"))
            return frozenset(d["_id"] for d in coll.find({"run": t.run}, {"_id": 1}))

    def clean() -> None:
        with _mongo(t, CLEANUP_S) as client:
            client["hastack"]["chaos"].delete_many({"run": t.run})

    return _retrying(read, clean)


# -- api ---------------------------------------------------------------------

def _admin_auth(t: ChaosTarget) -> Any:
    """A fresh password login as the cloud's admin (each one issues a new token)."""
    from keystoneauth1.identity import v3

    return v3.Password(auth_url=t.os_auth_url, username="admin", password=t.os_password, project_name="admin",
                       user_domain_id="default", project_domain_id="default")


def _api_session(t: ChaosTarget) -> tuple[Any, Callable[[], str]]:
    """A keystoneauth session, and a login that issues a new token each time it is called."""
    from keystoneauth1 import session

    # Bounded like every other call (a login that went to a host just cut off hung 61 s on the
    # session's default, no timeout); a password login on a busy lab takes over 1 s.
    sess = session.Session(timeout=LOGIN_TIMEOUT_S, verify=t.http_verify())

    def login() -> str:
        return str(_admin_auth(t).get_token(sess))

    return sess, login


def api_tokens(load: Load, token: list[str]) -> None:
    """api-token: a password login every TOKEN_EVERY_S; the readers use the newest token."""
    _, login = _api_session(load.t)

    def once() -> None:
        t0 = time.monotonic()
        try:
            token[0] = login()
            load.rec.op(API_TOKEN, "", t0, True)
        except Exception as exc:
            load.rec.op(API_TOKEN, "", t0, False, f"{type(exc).__name__}: {exc}")

    load.paced(TOKEN_EVERY_S, LOGIN_TIMEOUT_S, once)


def api_reads(t: ChaosTarget) -> dict[str, str]:
    """The reads, with the admin project's id where a URL holds keystone's `%(project_id)s` (asked once)."""
    if not any(PROJECT_ID in url for url in t.api_reads.values()):
        return dict(t.api_reads)
    sess, _ = _api_session(t)
    project = str(_admin_auth(t).get_project_id(sess))
    return {name: url.replace(PROJECT_ID, project) for name, url in t.api_reads.items()}


def api_reader(load: Load, token: list[str], name: str, url: str) -> None:
    """api-NAME: one API read every API_EVERY_S with the newest token (any keystone validates any Fernet
    token), started on that schedule whether or not the last one was answered (`Load.paced`); each API has
    its own calls, so one stuck API holds no other's reads back."""
    sess, _ = _api_session(load.t)

    def once() -> None:
        if not token[0]:
            return
        t0 = time.monotonic()
        try:
            resp = sess.get(url, headers={"X-Auth-Token": token[0]}, authenticated=False,
                            raise_exc=False, timeout=load.t.api_timeout_s)
            ok = 200 <= resp.status_code < 300
            load.rec.op(API_PREFIX + name, "", t0, ok, "" if ok else f"HTTP {resp.status_code}")
        except Exception as exc:
            load.rec.op(API_PREFIX + name, "", t0, False, f"{type(exc).__name__}: {exc}")

    load.paced(API_EVERY_S, load.t.api_timeout_s, once)


def _headers(token: str) -> dict[str, str]:
    # 2.37: a server may be made with no network (`"networks": "none"`).
    return {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.37"}


def server_image(t: ChaosTarget) -> str:
    """The id of deploy's image (servers are made from it with deploy's flavor, whose id is its name)."""
    sess, login = _api_session(t)
    resp = sess.get(f"{t.image_url}/v2/images?name={IMAGE}", headers=_headers(login()), authenticated=False)
    images = resp.json()["images"]
    if not images:
        raise LookupError(f"no image {IMAGE} in glance: deploy makes it")
    return str(images[0]["id"])


def server_creator(load: Load, token: list[str], image: str) -> None:
    """api-servers: a server every SERVER_EVERY_S, acknowledged when nova answers 202 (the create is recorded)."""
    sess, _ = _api_session(load.t)
    seq = itertools.count(1)  # calls overlap (paced): next() is atomic, `+= 1` is not

    def once() -> None:
        if not token[0]:
            return
        key = f"{load.t.run}-s{next(seq)}"
        body = {"server": {"name": key, "flavorRef": FLAVOR, "imageRef": image, "networks": "none"}}
        t0 = time.monotonic()
        try:
            resp = sess.post(f"{load.t.compute_url}/servers", json=body, headers=_headers(token[0]),
                             authenticated=False, raise_exc=False, timeout=load.t.api_timeout_s)
            ok = resp.status_code == 202
            load.rec.op(API_SERVERS, key, t0, ok, "" if ok else f"HTTP {resp.status_code}")
        except Exception as exc:
            load.rec.op(API_SERVERS, key, t0, False, f"{type(exc).__name__}: {exc}")

    load.paced(SERVER_EVERY_S, load.t.api_timeout_s, once)


def servers_readback(t: ChaosTarget) -> Readback:
    """The run's servers that are ACTIVE once none is still building (bounded); then all deleted."""
    sess, login = _api_session(t)
    url = f"{t.compute_url}/servers/detail?name=^{t.run}-s"

    def listed(token: str) -> list[dict[str, Any]]:
        resp = sess.get(url, headers=_headers(token), authenticated=False, timeout=10)
        return list(resp.json()["servers"])

    states: dict[str, str] = {}

    def read() -> frozenset[str]:
        token = login()
        settle_by = time.monotonic() + SERVERS_SETTLE_S
        while True:
            servers = listed(token)
            if all(s["status"] in ("ACTIVE", "ERROR") for s in servers) or time.monotonic() > settle_by:
                states.update({s["name"]: f"{s['status']} {(s.get('fault') or {}).get('message', '')}".strip()[:160]
                               for s in servers if s["status"] != "ACTIVE"})
                return frozenset(s["name"] for s in servers if s["status"] == "ACTIVE")
            time.sleep(2)

    def clean() -> None:
        token = login()
        for server in listed(token):
            sess.delete(f"{t.compute_url}/servers/{server['id']}", headers=_headers(token), authenticated=False,
                        raise_exc=False, timeout=10)

    back = _retrying(read, clean)
    return back.model_copy(update={"states": states})


def instance_sampler(load: Load) -> None:
    """Where nova says each pinned server is, every second (its own login: a sample must not wait on
    the token stream, and one token lasts the run)."""
    sess, login = _api_session(load.t)
    token = [""]

    def once() -> None:
        try:
            token[0] = token[0] or login()
            got = instances.listed(sess, token[0], load.t.pinned)
        except Exception:  # nova or keystone away meanwhile: no sample, a new login next time
            token[0] = ""
            return
        with load.rec.lock:
            load.rec.instances += instances.sample(got, time.monotonic())

    load.loop(instances.SAMPLE_EVERY_S, once)


def instances_readback(t: ChaosTarget) -> tuple[Readback, tuple[Evacuation, ...]]:
    """nova's record of the pinned servers' evacuations (bounded retries), then the servers deleted."""
    sess, login = _api_session(t)
    found: list[tuple[Evacuation, ...]] = []

    def read() -> frozenset[str]:
        found[:] = [instances.evacuations(sess, login(), t.pinned)]
        return frozenset(e.server for e in found[0])

    back = _retrying(read, lambda: instances.delete(sess, login(), t.pinned))
    return back, found[0] if found else ()


# -- vip ---------------------------------------------------------------------

def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    """An Ethernet broadcast ARP who-has for target_ip."""
    eth = b"\xff" * 6 + src_mac + struct.pack("!H", 0x0806)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(src_ip), b"\x00" * 6,
                      socket.inet_aton(target_ip))
    return eth + arp


def arp_reply_from(frame: bytes, target_ip: str) -> str | None:
    """The sender MAC of an ARP reply saying it holds target_ip; None for any other frame."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op = struct.unpack("!H", frame[20:22])[0]
    sender_mac, sender_ip = frame[22:28], frame[28:32]
    if op != 2 or sender_ip != socket.inet_aton(target_ip):
        return None
    return sender_mac.hex(":")


def vip_prober(load: Load) -> None:
    t, rec = load.t, load.rec
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.bind((t.interface, 0))
    sock.settimeout(0.01)
    with open(f"/sys/class/net/{t.interface}/address") as fh:
        mac = bytes.fromhex(fh.read().strip().replace(":", ""))
    request = arp_request(mac, t.client_address, t.vip)

    extra = 2 * t.link_delay_s

    def once() -> None:
        t0 = time.monotonic()
        sock.send(request)
        holders: set[str] = set()
        # Replies on a bridge come within a millisecond; two holders both answer.
        until = t0 + 0.03 + extra
        while time.monotonic() < until:
            try:
                frame = sock.recv(128)
            except TimeoutError:
                continue
            who = arp_reply_from(frame, t.vip)
            if who:
                holders.add(who)
        with rec.lock:
            rec.vip.append(VipSample(t=t0, macs=tuple(sorted(holders))))
        c0 = time.monotonic()
        try:
            with socket.create_connection((t.vip, 3306), timeout=0.2 + extra):
                rec.op(VIP, "", c0, True)
        except OSError as exc:
            rec.op(VIP, "", c0, False, str(exc))

    try:
        load.loop(VIP_EVERY_S, once)
    finally:
        sock.close()


# -- the client itself --------------------------------------------------------

def heartbeat(load: Load) -> None:
    """Beat every HEARTBEAT_S; note each beat that came late (the client not running)."""
    due = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        load.rec.woke(due[0], now)
        due[0] = now + HEARTBEAT_S  # Load.loop waits that long before the next beat

    load.loop(HEARTBEAT_S, beat)


# -- the run -----------------------------------------------------------------

def _retrying(read: Callable[[], frozenset[str]], clean: Callable[[], None] | None = None) -> Readback:
    """Read until it works (bounded), then clean up once, apart: a delete that ran but whose answer
    timed out must not make the retry read an empty table (it did: 8479 mongo writes "lost" in CI)."""
    deadline = time.monotonic() + READBACK_S
    while True:
        try:
            back = Readback(keys=read(), complete=True)
            break
        except Exception as exc:
            if time.monotonic() > deadline:
                return Readback(complete=False, error=f"{type(exc).__name__}: {exc}"[:300])
            time.sleep(1)
    if clean is not None:
        with contextlib.suppress(Exception):  # leftovers are tagged with the run: harmless, never evidence
            clean()
    return back


Worker = tuple[str, Callable[..., None], tuple[Any, ...]]


def _workers(t: ChaosTarget) -> list[Worker]:
    """Each stream's thread (name, body, arguments), its tables and queue made first."""
    workers: list[Worker] = [(HEARTBEAT, heartbeat, ()), (VIP, vip_prober, ())]
    if t.galera_nodes:
        db_setup(t)
        workers.append((DB, db_writer, ()))
        workers += [(f"galera-{n}", galera_sampler, (n, a)) for n, a in t.galera_nodes.items()]
    if t.rabbit_hosts:
        amqp_setup(t)
        workers.append((AMQP, amqp_publisher, ()))
    if t.mongo_members:
        workers.append((MONGO, mongo_writer, ()))
        workers += [(f"mongo-{n}", mongo_sampler, (n, a)) for n, a in t.mongo_members.items()]
    if t.api_reads:
        token = [""]
        workers.append((API_TOKEN, api_tokens, (token,)))
        workers += [(API_PREFIX + name, api_reader, (token, name, url)) for name, url in sorted(api_reads(t).items())]
        if t.compute_url and t.server_stream:
            workers.append((API_SERVERS, server_creator, (token, server_image(t))))
    if t.instance_host:
        workers.append((INSTANCES, instance_sampler, ()))
    return workers


def _pin(t: ChaosTarget) -> str:
    """The instance HA scenario's servers booted on their host before anything starts: why not, or ""."""
    sess, login = _api_session(t)
    try:
        instances.boot(sess, login, t.pinned, server_image(t))
    except Exception as exc:
        with contextlib.suppress(Exception):
            instances.delete(sess, login(), t.pinned)
        return str(exc)[:500]
    return ""


def _final_reads(t: ChaosTarget) -> tuple[dict[str, Readback], tuple[Evacuation, ...]]:
    readback: dict[str, Readback] = {}
    evacuations: tuple[Evacuation, ...] = ()
    if t.galera_nodes:
        readback[DB] = db_readback(t)
    if t.rabbit_hosts:
        readback[AMQP] = amqp_readback(t)
    if t.mongo_members:
        readback[MONGO] = mongo_readback(t)
    if t.compute_url and t.server_stream:
        readback[API_SERVERS] = servers_readback(t)
    if t.instance_host:
        readback[INSTANCES], evacuations = instances_readback(t)
    return readback, evacuations


def main() -> int:
    t = ChaosTarget.model_validate_json(sys.stdin.readline())
    if t.instance_host and (why := _pin(t)):
        print(json.dumps({"ready": False, "streams": [], "failing": {INSTANCES: why}}), flush=True)
        return 1
    started = time.monotonic()
    deadline = started + t.max_seconds
    rec, stop = Recorder(), threading.Event()
    workers = _workers(t)
    load = Load(t, rec, stop, deadline)
    threads = [threading.Thread(target=fn, args=(load, *args), name=name, daemon=True) for name, fn, args in workers]
    for th in threads:
        th.start()
    wanted = {name for name, _, _ in workers if not name.startswith(("galera-", "mongo-", INSTANCES, HEARTBEAT))}
    ready_by = time.monotonic() + 60
    while rec.succeeded < wanted and time.monotonic() < ready_by:
        time.sleep(0.05)
    succeeded = rec.succeeded  # outside the lock: the property takes it
    with rec.lock:  # a stream that never succeeded: its last error, for the operator
        failing = {o.stream: o.error for o in rec.ops if o.stream in wanted - succeeded and not o.ok}
    print(json.dumps({"ready": succeeded >= wanted, "streams": sorted(succeeded),
                      "failing": {k: failing.get(k, "no answer yet") for k in sorted(wanted - succeeded)}}),
          flush=True)
    # Runs until told to stop (stdin) or the bound: a reader thread, so the bound holds without input.
    fault: list[float] = []

    def wait_for_stop() -> None:
        if (after := stop_after(sys.stdin.readline())) is not None:
            fault.append(after)
            settle_by = min(deadline, time.monotonic() + SETTLE_S)
            while rec.unanswered(wanted, after) and time.monotonic() < settle_by:
                time.sleep(0.1)
        stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    stop.wait(max(0.0, deadline - time.monotonic()))
    stop.set()
    for th in threads:
        th.join(10)
    readback, evacuations = _final_reads(t)
    unanswered = rec.unanswered(wanted, fault[0]) if fault else ()  # before the lock: it takes it
    with rec.lock:
        history = History(ops=tuple(rec.ops), vip=tuple(rec.vip), galera=tuple(rec.galera), mongo=tuple(rec.mongo),
                          readback=readback, started=started, ended=time.monotonic(), instance_host=t.instance_host,
                          instance_names=t.pinned.names if t.instance_host else (), instances=tuple(rec.instances),
                          evacuations=evacuations, stalls=tuple(rec.stalls),
                          unanswered=unanswered)
    print(history.model_dump_json(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

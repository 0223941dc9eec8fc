"""The end-to-end smoke test, run on the client host: through the VIP, as a user would.

- galera: a row written through haproxy (VIP:3306) is read back on every node;
- rabbitmq: a message published with confirms to a quorum queue through the
  VIP is consumed;
- mongodb: a document written with majority write concern is read from each
  secondary;
- openstack: a token issued through the VIP, an image uploaded to glance and
  downloaded again, byte for byte (openstacksdk, as a user's client works), a
  server booted to ACTIVE and deleted;
- horizon: its login page opened through the VIP in headless Chromium (Debian's),
  the admin logged in, and the page after it kept as a screenshot.

`python -m hastack.workload.smoke` reads its target (addresses, credentials)
as JSON on stdin, so no secret is ever on a command line, and prints one JSON
result per check. Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from hastack.common.errors import first_line
from hastack.common.poll import until
from hastack.components.mongodb import PORT as MONGO_PORT
from hastack.render import tls as tls_files
from hastack.render.galera import PROBE_DB, PROBE_USER
from hastack.render.openstack_run import ADMIN, FLAVOR, HORIZON_LOGIN, IMAGE, auth_url, vip_url
from hastack.render.rabbitmq import amqp_port
from hastack.spec.catalog import RUN
from hastack.spec.model import Spec

SMOKE_QUEUE = "hastack.smoke"
READ_TIMEOUT = 15.0
SERVER_WAIT_S = 120  # a fake-driver boot takes seconds; scheduling waits on placement and the bus
HORIZON_WAIT_S = 60  # a page, or the login: horizon asks keystone, then nova and others for the overview


class Target(BaseModel):
    """Where the checks go and with which credentials (built by `target`, sent on stdin)."""

    model_config = ConfigDict(frozen=True)

    vip: str
    galera_nodes: dict[str, str] = {}  # name -> address
    galera_password: str = ""
    # As oslo.messaging connects: the VIP when the spec routes AMQP through
    # haproxy, else every node of transport_url in turn.
    rabbit_hosts: tuple[str, ...] = ()
    rabbit_user: str = ""
    rabbit_password: str = ""
    rabbit_vhost: str = "/"
    rabbit_port: int = 5672
    mongo_members: dict[str, str] = {}
    mongo_replset: str = ""
    mongo_user: str = ""
    mongo_password: str = ""
    tls_ca: str = ""  # the cluster's CA (PEM) when its links speak TLS: mongod and the broker require it
    client_timeout_s: float = 3.0  # one database or mongo operation (timing.client_timeout_ms)
    api_timeout_s: float = 10.0  # one OpenStack API call of the chaos workload (timing.api_timeout_ms)
    os_auth_url: str = ""  # keystone through the VIP; empty: hastack runs no OpenStack here
    os_password: str = ""
    os_region: str = ""
    os_image: bool = False  # glance runs: upload and download an image
    os_server: bool = False  # nova runs: boot a server from deploy's flavor and image, then delete it
    horizon_url: str = ""  # horizon runs: its login page through the VIP
    # With TLS, the public keys of the certificates haproxy presents (one per haproxy node): the
    # browser trusts those and nothing else (it takes no CA file; the system's store is left alone).
    horizon_pins: tuple[str, ...] = ()
    screenshot: str = ""  # where the page after horizon's login is kept (PNG)

    def amqp(self, host: str) -> dict[str, Any]:
        """pika's connection options for one node: its port, and TLS checked against the CA when on."""
        if not self.tls_ca:
            return {"host": host, "port": self.rabbit_port}
        import ssl

        import pika  # type: ignore[import-untyped]

        ctx = ssl.create_default_context(cadata=self.tls_ca)
        return {"host": host, "port": self.rabbit_port, "ssl_options": pika.SSLOptions(ctx, server_hostname=host)}

    def _ca_path(self) -> str | None:
        """The cluster's CA as a file on this machine (clients that take only a path), None without TLS."""
        from hastack.hosts.cafile import ca_file

        return ca_file(self.tls_ca.encode()) if self.tls_ca else None

    def mysql_ssl(self) -> dict[str, str] | None:
        """PyMySQL's TLS for this cluster: required and checked against the CA (the name too) when on."""
        return {"ca": path} if (path := self._ca_path()) else None

    def http_verify(self) -> str | bool:
        """What HTTP clients of the VIP check its certificate against: the cluster's CA (a file) when the
        APIs speak HTTPS, the system's store otherwise (they speak plain HTTP, and nothing is checked)."""
        return self._ca_path() or True

    def mongo_tls(self) -> dict[str, Any]:
        """pymongo's TLS options for this cluster (none without TLS)."""
        from hastack.hosts.mongo import tls_kwargs

        return tls_kwargs(self.tls_ca.encode() or None)


def target(spec: Spec, secrets: dict[str, str] | Any, mongo_user: str) -> Target:
    vip = str(spec.vips[0].address)
    kw: dict[str, Any] = {"vip": vip, "client_timeout_s": spec.timing.client_timeout_ms / 1000,
                          "api_timeout_s": spec.timing.api_timeout_ms / 1000}
    if spec.galera.enabled and spec.galera_nodes():
        kw |= {"galera_nodes": {n.name: str(n.address) for n in spec.galera_nodes()},
               "galera_password": secrets["galera_probe_password"]}
    if spec.rabbitmq.enabled and spec.rabbit_nodes():
        hosts = (vip,) if spec.rabbitmq.via_haproxy else tuple(str(n.address) for n in spec.rabbit_nodes())
        kw |= {"rabbit_hosts": hosts, "rabbit_user": spec.rabbitmq.user, "rabbit_port": amqp_port(spec),
               "rabbit_password": secrets["rabbitmq_password"], "rabbit_vhost": spec.rabbitmq.vhost}
    if spec.mongodb.enabled and spec.mongo_members():
        kw |= {"mongo_members": {n.name: str(n.address) for _, n in spec.mongo_members()},
               "mongo_replset": spec.mongodb.replica_set, "mongo_user": mongo_user,
               "mongo_password": secrets["mongodb_admin_password"]}
    if (ca := tls_files.authority(spec, secrets)) is not None:  # None without TLS
        kw["tls_ca"] = ca.cert.decode()
    if "keystone" in spec.openstack.services and "keystone" in RUN:
        kw |= {"os_auth_url": auth_url(spec) + "/v3", "os_password": secrets["keystone_admin_password"],
               "os_region": spec.openstack.region, "os_image": "glance" in spec.openstack.services,
               "os_server": {"nova", "glance", "neutron"} <= set(spec.openstack.services)}
        if "horizon" in spec.openstack.services:
            kw["horizon_url"] = vip_url(spec, "horizon") + HORIZON_LOGIN
            kw["horizon_pins"] = tuple(tls.issued.spki_sha256 for n in spec.haproxy_nodes()
                                       if (tls := tls_files.for_node(spec, secrets, n)) is not None)
    return Target(**kw)


@dataclass
class Check:
    name: str
    ok: bool = False
    detail: str = ""
    seconds: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)


def _until(probe: Callable[[], bool], timeout: float) -> bool:
    """Poll a read until it sees the write; bounded (replication is not instant everywhere)."""
    return until(probe, timeout) is not None


def galera(t: Target) -> Check:
    import pymysql

    c = Check("galera")
    token = uuid.uuid4().hex
    conn = pymysql.connect(host=t.vip, port=3306, user=PROBE_USER, password=t.galera_password, database=PROBE_DB,
                           connect_timeout=5, read_timeout=10, write_timeout=10, autocommit=True, ssl=t.mysql_ssl())
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS smoke (id BIGINT AUTO_INCREMENT PRIMARY KEY, token CHAR(32) NOT NULL,"
                    " at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6))")
        cur.execute("INSERT INTO smoke (token) VALUES (%s)", (token,))
        cur.execute("SELECT @@hostname")
        row = cur.fetchone()
        c.evidence["writer"] = row[0] if row else None
    seen: dict[str, bool] = {}
    for name, address in t.galera_nodes.items():
        node = pymysql.connect(host=address, port=3306, user=PROBE_USER, password=t.galera_password,
                               database=PROBE_DB, connect_timeout=5, read_timeout=10, autocommit=True,
                               ssl=t.mysql_ssl())
        with node, node.cursor() as cur:
            # Causal read: the node applies what the cluster committed before answering.
            cur.execute("SET SESSION wsrep_sync_wait = 1")

            def found(cur: Any = cur) -> bool:
                return bool(cur.execute("SELECT 1 FROM smoke WHERE token = %s", (token,)))

            seen[name] = _until(found, READ_TIMEOUT)
    c.evidence["read_back"] = seen
    c.ok = bool(seen) and all(seen.values())
    missing = [n for n, ok in seen.items() if not ok]
    c.detail = (f"row written through the VIP (writer {c.evidence['writer']}) read back on "
                f"{len(seen) - len(missing)}/{len(seen)} nodes")
    if missing:
        c.detail += f"; missing on {', '.join(missing)}"
    return c


def rabbitmq(t: Target) -> Check:
    import pika

    c = Check("rabbitmq")
    body = uuid.uuid4().hex.encode()
    conn, refused = None, []
    for host in t.rabbit_hosts:  # in transport_url order, as oslo.messaging fails over
        try:
            conn = pika.BlockingConnection(pika.ConnectionParameters(
                **t.amqp(host), virtual_host=t.rabbit_vhost,
                credentials=pika.PlainCredentials(t.rabbit_user, t.rabbit_password),
                socket_timeout=5, blocked_connection_timeout=10, connection_attempts=1))
            c.evidence["connected_to"] = host
            break
        except pika.exceptions.AMQPConnectionError as exc:
            refused.append(f"{host}: {exc!r}")
    if conn is None:
        raise ConnectionError("no rabbit node accepted a connection: " + "; ".join(refused))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        q = ch.queue_declare(SMOKE_QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
        c.evidence["queue_type"] = "quorum"
        c.evidence["depth_before"] = q.method.message_count
        # With confirms on, basic_publish returns only once the broker confirmed
        # (for a quorum queue: a majority of its members wrote it); it raises otherwise.
        ch.basic_publish("", SMOKE_QUEUE, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
        c.evidence["confirmed"] = True
        got = None
        deadline = time.monotonic() + READ_TIMEOUT
        while got != body and time.monotonic() < deadline:
            method, _, payload = ch.basic_get(SMOKE_QUEUE, auto_ack=False)
            if method is None:
                conn.sleep(0.1)
                continue
            ch.basic_ack(method.delivery_tag)
            got = payload
        c.ok = got == body
        c.detail = (f"published with a confirm to quorum queue {SMOKE_QUEUE} (via {c.evidence['connected_to']}) "
                    "and consumed" if c.ok else "confirmed message was not consumed within the bound")
    finally:
        conn.close()
    return c


def mongodb(t: Target) -> Check:
    import pymongo
    from pymongo.write_concern import WriteConcern

    c = Check("mongodb")
    hosts = ",".join(f"{a}:{MONGO_PORT}" for a in t.mongo_members.values())
    uri = f"mongodb://{hosts}/?replicaSet={t.mongo_replset}"
    token = uuid.uuid4().hex
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, username=t.mongo_user, password=t.mongo_password, authSource="admin", serverSelectionTimeoutMS=10000,
        **t.mongo_tls())
    with client:
        coll = client["hastack"].get_collection("smoke", write_concern=WriteConcern(w="majority", wtimeout=10000))
        coll.insert_one({"token": token, "at": time.time()})
        c.evidence["acknowledged_by"] = "majority"
        hello = client.admin.command("hello")
        primary = hello.get("primary", "")
        secondaries = {n: a for n, a in t.mongo_members.items() if f"{a}:{MONGO_PORT}" != primary}
    seen: dict[str, bool] = {}
    for name, address in secondaries.items():
        direct: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            address, MONGO_PORT, directConnection=True, username=t.mongo_user, password=t.mongo_password,
            authSource="admin", readPreference="secondaryPreferred", serverSelectionTimeoutMS=5000, **t.mongo_tls())
        with direct:
            sec = direct["hastack"]["smoke"]

            def found(sec: Any = sec) -> bool:
                return sec.find_one({"token": token}) is not None

            seen[name] = _until(found, READ_TIMEOUT)
    c.evidence["primary"] = primary
    c.evidence["read_on_secondaries"] = seen
    c.ok = bool(seen) and all(seen.values())
    by_address = {f"{a}:{MONGO_PORT}": n for n, a in t.mongo_members.items()}
    c.detail = (f"majority write (primary {by_address.get(primary, primary)}) read on "
                f"{sum(seen.values())}/{len(seen)} secondaries")
    return c


def openstack_cloud(t: Target) -> Any:
    """A connection as the admin through the VIP's public endpoints (openstacksdk, from the lab extras)."""
    import openstack

    return openstack.connect(auth_url=t.os_auth_url, username=ADMIN, password=t.os_password, project_name=ADMIN,
                             user_domain_name="Default", project_domain_name="Default", region_name=t.os_region,
                             interface="public", identity_api_version="3", api_timeout=30,
                             verify=t.http_verify())


def openstack_check(t: Target) -> Check:
    c = Check("openstack")
    cloud = openstack_cloud(t)
    t0 = time.monotonic()
    cloud.authorize()
    c.evidence["token_s"] = round(time.monotonic() - t0, 3)
    c.detail = f"token issued through the VIP in {c.evidence['token_s']:.2f} s"
    c.ok = True
    if t.os_image:
        data = uuid.uuid4().bytes * 65536  # 1 MiB, different every run
        image = cloud.image.create_image(name=f"hastack-smoke-{uuid.uuid4().hex[:8]}", data=data, disk_format="raw",
                                         container_format="bare", use_import=False, allow_duplicates=True)
        try:
            back = cloud.image.download_image(image, stream=False)
            got = back.content if hasattr(back, "content") else bytes(back)
            c.evidence |= {"image": image.id, "uploaded": len(data), "downloaded": len(got),
                           "sha256": hashlib.sha256(data).hexdigest()}
            c.ok = got == data
            c.detail += ("; a 1 MiB image uploaded and downloaded again, byte for byte" if c.ok
                         else f"; the image came back different ({len(got)} of {len(data)} bytes)")
        finally:
            cloud.image.delete_image(image, ignore_missing=True)
    if t.os_server:
        server_lifecycle(cloud, c)
    return c


def server_lifecycle(cloud: Any, c: Check) -> None:
    """A server booted (nova's fake driver on a compute) to ACTIVE, then deleted and gone."""
    flavor = cloud.compute.find_flavor(FLAVOR, ignore_missing=False)
    image = cloud.image.find_image(IMAGE, ignore_missing=False)
    t0 = time.monotonic()
    # No network: the server's life is nova's (API, conductor, scheduler, placement, compute).
    server = cloud.compute.create_server(name=f"hastack-smoke-{uuid.uuid4().hex[:8]}", flavor_id=flavor.id,
                                         image_id=image.id, networks="none")
    try:
        server = cloud.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=SERVER_WAIT_S)
        c.evidence |= {"server": server.id, "compute": server.compute_host,
                       "active_s": round(time.monotonic() - t0, 2)}
    finally:
        t1 = time.monotonic()
        cloud.compute.delete_server(server, ignore_missing=True)
        cloud.compute.wait_for_delete(server, wait=SERVER_WAIT_S)
        c.evidence["deleted_s"] = round(time.monotonic() - t1, 2)
    c.detail += (f"; server {server.id[:8]} ACTIVE on {server.compute_host} in {c.evidence['active_s']:.1f} s "
                 f"and deleted in {c.evidence['deleted_s']:.1f} s")


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"  # Debian's chromium-driver: Selenium fetches no driver of its own


def horizon_check(t: Target) -> Check:
    """horizon's login page through the VIP in headless Chromium; the admin logs in; the next page is kept."""
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    c = Check("horizon")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # As root in a namespace: no sandbox; no /dev/shm assumptions; a window big enough to read.
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900"):
        opts.add_argument(arg)
    if t.horizon_pins:
        opts.add_argument(f"--ignore-certificate-errors-spki-list={','.join(t.horizon_pins)}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    step, t0 = "the login page", time.monotonic()
    try:
        driver.set_page_load_timeout(HORIZON_WAIT_S)
        driver.get(t.horizon_url)
        wait = WebDriverWait(driver, HORIZON_WAIT_S)
        wait.until(ec.presence_of_element_located((By.ID, "id_username")))
        c.evidence["login_page_s"] = round(time.monotonic() - t0, 2)
        driver.find_element(By.ID, "id_username").send_keys(ADMIN)
        driver.find_element(By.ID, "id_password").send_keys(t.os_password)
        step, t1 = "the login", time.monotonic()
        driver.find_element(By.ID, "loginBtn").click()
        # Logged in: the page has a logout link (a failed login stays on the form with an error).
        wait.until(lambda d: "/auth/login" not in d.current_url
                   and d.find_elements(By.CSS_SELECTOR, "a[href$='/auth/logout/']"))
        c.evidence |= {"logged_in_s": round(time.monotonic() - t1, 2), "url": driver.current_url,
                       "title": driver.title}
        if t.screenshot:
            driver.save_screenshot(t.screenshot)
            c.evidence["screenshot"] = t.screenshot
        c.ok = True
        c.detail = (f"login page in {c.evidence['login_page_s']:.1f} s; admin logged in ({driver.title!r}, "
                    f"{c.evidence['logged_in_s']:.1f} s)" + (f"; screenshot {t.screenshot}" if t.screenshot else ""))
    except WebDriverException as exc:
        # Which step failed and when, not Chromium's stack of addresses; what was done before it stays.
        c.evidence["failed_step"] = step
        said = first_line(exc.msg or "") or "no message"
        c.detail = (f"{step}: {type(exc).__name__}: {said} "
                    f"({time.monotonic() - t0:.1f} s after the first request)")
    finally:
        driver.quit()
    return c


CHECKS: dict[str, Callable[[Target], Check]] = {"galera": galera, "rabbitmq": rabbitmq, "mongodb": mongodb,
                                                "openstack": openstack_check, "horizon": horizon_check}


def run(t: Target) -> list[Check]:
    wanted = [("galera", bool(t.galera_nodes)), ("rabbitmq", bool(t.rabbit_hosts)), ("mongodb", bool(t.mongo_members)),
              ("openstack", bool(t.os_auth_url)), ("horizon", bool(t.horizon_url))]
    out = []
    for name, enabled in wanted:
        if not enabled:
            continue
        t0 = time.monotonic()
        try:
            c = CHECKS[name](t)
        except Exception as exc:  # each check reports its own failure; the others still run
            c = Check(name, False, f"{type(exc).__name__}: {exc}")
        c.seconds = round(time.monotonic() - t0, 3)
        out.append(c)
    return out


def main() -> int:
    t = Target.model_validate_json(sys.stdin.read())
    checks = run(t)
    print(json.dumps([asdict(c) for c in checks]))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

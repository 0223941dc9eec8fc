"""OpenStack on the controllers, without a lab: what is rendered, what restarts, and keystone's catalog made
over an in-memory keystone that answers as keystone's v3 API does."""

from __future__ import annotations

import asyncio
import configparser
import itertools
import re
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import pytest

from hastack.components import starters
from hastack.components.keystone_catalog import Service, Want, ensure
from hastack.components.openstack import SCHEMAS
from hastack.credentials.model import FERNET_KEYS, complete
from hastack.deploy.context import DeployContext, DeployError
from hastack.deploy.phases.openstack import ORDER, catalog_want, plan_daemons, sync_schemas
from hastack.hosts.ssh import Result, SshHost
from hastack.render import render_all
from hastack.render.openstack import fragment_path
from hastack.render.openstack_run import FERNET_DIR, FLAVOR, IMAGE, unit_path, uwsgi_path
from hastack.spec.catalog import daemons_for
from hastack.spec.model import EVERY_SERVICE
from tests.helpers import variant
from tests.unit.fake_cluster import FakeHost

SPEC = variant(openstack={"services": list(EVERY_SERVICE)})
SECRETS = complete(SPEC, {})[0]


class FakeKeystone:
    """keystone v3 as far as the catalog needs it: lists with filters, creates, grants, password logins."""

    def __init__(self) -> None:
        ids = itertools.count(1)
        self.new_id = lambda: f"id{next(ids)}"
        self.rows: dict[str, list[dict[str, Any]]] = {
            "regions": [{"id": "regionone"}], "projects": [{"id": "p0", "name": "admin", "domain_id": "default"}],
            "roles": [{"id": "r0", "name": "admin"}], "users": [], "services": [], "endpoints": []}
        self.grants: set[str] = set()
        self.passwords: dict[str, str] = {}
        self.writes: list[str] = []

    def login(self, user: str, password: str) -> bool:
        return self.passwords.get(user) == password

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        url = urlsplit(path)
        parts = url.path.strip("/").split("/")[1:]  # after v3
        if method not in {"GET", "HEAD"}:
            self.writes.append(f"{method} {url.path}")
        if parts[0] == "projects" and len(parts) == 6:  # a grant
            key = "/".join(parts)
            if method == "HEAD":
                return (204 if key in self.grants else 404), None
            self.grants.add(key)
            return 204, None
        kind = parts[0]
        if method == "GET" and len(parts) == 2:
            row = next((r for r in self.rows[kind] if r["id"] == parts[1]), None)
            return (200, {kind[:-1]: row}) if row else (404, {"error": "not found"})
        if method == "GET":
            query = dict(parse_qsl(url.query))
            return 200, {kind: [r for r in self.rows[kind] if all(r.get(k) == v for k, v in query.items())]}
        assert body is not None
        item = dict(next(iter(body.values())))
        if method == "POST":
            item.setdefault("id", self.new_id())
            if kind == "users":
                self.passwords[item["name"]] = item.pop("password")
            self.rows[kind].append(item)
            return 201, {kind[:-1]: item}
        row = next(r for r in self.rows[kind] if r["id"] == parts[1])  # PATCH
        if kind == "users":
            self.passwords[row["name"]] = item.pop("password")
        row.update(item)
        return 200, {kind[:-1]: row}


def want() -> Want:
    data = catalog_want(SPEC, SECRETS)
    return Want.from_json(data)


def test_the_catalog_is_made_once_and_a_second_run_changes_nothing() -> None:
    ks = FakeKeystone()
    changes = ensure(ks, want())
    assert "project service" in changes
    assert {"user glance", "user placement"} <= set(changes)
    assert "user keystone" not in changes  # keystone's own entry has no user
    urls = {(e["interface"], e["url"]) for e in ks.rows["endpoints"]}
    vip = SPEC.vips[0].address
    # https: the examples have TLS, haproxy ends it on the VIP.
    assert ("public", f"https://{vip}:9292") in urls and ("internal", f"https://{vip}:5000/v3") in urls
    # keystone, placement, glance, neutron, nova, cinder (as volumev3 and block-storage), heat and its CFN
    # API; three interfaces each.
    assert len(ks.rows["endpoints"]) == 9 * 3
    assert ("public", f"https://{vip}:8004/v1/%(project_id)s") in urls
    assert len(ks.grants) == 6  # the six service users (not keystone, not heat-cfn), admin on the service project
    writes = len(ks.writes)
    assert ensure(ks, want()) == [] and len(ks.writes) == writes


def test_a_moved_endpoint_and_a_lost_password_are_put_right() -> None:
    ks = FakeKeystone()
    ensure(ks, want())
    ks.passwords["glance"] = "something-else"
    placement = next(e for e in ks.rows["endpoints"] if e["url"].endswith(":8778") and e["interface"] == "admin")
    placement["url"] = "http://192.0.2.1:8778"
    changes = ensure(ks, want())
    assert changes == [f"endpoint placement admin: http://192.0.2.1:8778 -> https://{SPEC.vips[0].address}:8778",
                       "user glance: password set"]
    assert ks.login("glance", SECRETS["os_glance_password"])


def test_a_keystone_without_the_admin_role_is_an_error_not_a_guess() -> None:
    ks = FakeKeystone()
    ks.rows["roles"] = []
    try:
        ensure(ks, Want("regionone", (Service("glance", "image", "http://x:9292", "pw"),)))
    except Exception as exc:
        assert "bootstrap creates it" in str(exc)
    else:
        raise AssertionError("no error")


def test_a_daemon_restarts_only_where_a_file_it_reads_changed() -> None:
    daemons = daemons_for(SPEC.openstack.services)
    hosts = ("ctl1", "ctl2", "ctl3")
    keystone = next(d for d in daemons if d.project == "keystone")
    glance = next(d for d in daemons if d.project == "glance")
    todo = plan_daemons(daemons, hosts, {"ctl2": {fragment_path("glance")}, "ctl3": {f"{FERNET_DIR}/1"},
                                         "ctl1": {uwsgi_path(keystone)}})
    restarts = {(r.unit, r.host) for r in todo if r.restart}
    assert restarts == {("glance-api", "ctl2"), ("keystone", "ctl3"), ("keystone", "ctl1")}
    assert len(todo) == len(daemons) * len(hosts)
    assert not [r for r in plan_daemons(daemons, hosts, {"ctl1": {unit_path(glance).replace("glance", "x")}})
                if r.restart]


def test_each_controller_binds_its_own_address_with_the_spec_s_workers_and_shares_keystone_s_keys() -> None:
    tree = render_all(SPEC, SECRETS)
    controllers = ("ctl1", "ctl2", "ctl3")
    for host in controllers:
        address = str(SPEC.node(host).address)
        ini = tree[host]["/etc/hastack/uwsgi/keystone.ini"].content.decode()
        assert f"http-socket = {address}:5000" in ini and "plugins = python3\n" in ini
        assert "apparmor-profile" not in ini
        assert f"processes = {SPEC.openstack.api_workers}" in ini
        assert "harakiri = 60\n" in ini  # a wedged worker is killed and respawned
        glance = configparser.ConfigParser(interpolation=None)
        glance.read_string(tree[host][fragment_path("glance")].content.decode())
        assert glance["DEFAULT"]["bind_host"] == address
        assert glance["keystone_authtoken"]["password"] == SECRETS["os_glance_password"]
        placement = tree[host][fragment_path("placement")].content.decode()
        assert "[placement_database]" in placement and "[database]" not in placement
        keystone = configparser.ConfigParser(interpolation=None)
        keystone.read_string(tree[host][fragment_path("keystone")].content.decode())
        assert keystone["identity"]["password_hash_rounds"] == str(SPEC.openstack.password_hash_rounds)
    keys = {tree[h][f"{FERNET_DIR}/1"].content for h in controllers}
    assert len(keys) == 1 and keys == {SECRETS[FERNET_KEYS[1]].encode()}
    assert tree["ctl1"][f"{FERNET_DIR}/1"].mode == 0o600 and tree["ctl1"][f"{FERNET_DIR}/1"].owner == "keystone"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", SECRETS[FERNET_KEYS[0]])
    assert "/etc/systemd/system/keystone.service" not in tree["compute1"]


def test_nova_runs_its_services_on_the_controllers_and_the_fake_driver_on_the_computes() -> None:
    tree = render_all(SPEC, SECRETS)
    ctl = configparser.ConfigParser(interpolation=None)
    ctl.read_string(tree["ctl2"][fragment_path("nova")].content.decode())
    address = str(SPEC.node("ctl2").address)
    assert ctl["vnc"]["novncproxy_host"] == address and ctl["DEFAULT"]["my_ip"] == address
    assert ctl["vnc"]["novncproxy_base_url"].startswith(f"http://{SPEC.vips[0].address}:6080/")
    assert ctl["placement"]["username"] == "nova" and ctl["placement"]["password"] == SECRETS["os_nova_password"]
    assert ctl["neutron"]["password"] == SECRETS["os_nova_password"]
    assert ctl["conductor"]["workers"] == str(SPEC.openstack.api_workers)
    assert "compute_driver" not in ctl["DEFAULT"]
    ini = tree["ctl2"]["/etc/hastack/uwsgi/nova-api.ini"].content.decode()
    assert "http-socket = " + address + ":8774" in ini
    # eventlet-patched applications deadlock under uwsgi threads: single-threaded processes.
    uwsgi = {name: tree["ctl2"][f"/etc/hastack/uwsgi/{name}.ini"].content.decode()
             for name in ("neutron-api", "keystone")}
    assert "threads = 1\n" in ini and "threads = 1\n" in uwsgi["neutron-api"]
    assert f"threads = {SPEC.openstack.api_threads}\n" in uwsgi["keystone"]
    compute = configparser.ConfigParser(interpolation=None)
    compute.read_string(tree["compute1"][fragment_path("nova")].content.decode())
    assert compute["DEFAULT"]["compute_driver"] == "fake.FakeDriver" and compute["DEFAULT"]["host"] == "compute1"
    assert "database" not in compute and compute["placement"]["region_name"] == SPEC.openstack.region
    unit = tree["compute1"]["/etc/systemd/system/nova-compute.service"].content.decode()
    assert "from nova.cmd.compute import main" in unit and "--log-file /var/log/nova/nova-compute.log" in unit
    assert "/etc/systemd/system/nova-compute.service" not in tree["ctl1"]
    assert "/etc/systemd/system/nova-conductor.service" not in tree["compute1"]
    # A daemon that exits, even with status 0 (an oslo service whose first database call failed as it
    # started), is started again: every OpenStack unit, API or not.
    units = {f"{host}:{path}": f.content.decode() for host, files in tree.items() for path, f in files.items()
             if "/etc/systemd/system/" in path and "OpenStack" in f.content.decode()}
    assert {"ctl1:/etc/systemd/system/nova-scheduler.service", "compute1:/etc/systemd/system/nova-compute.service",
            "ctl2:/etc/systemd/system/keystone.service"} <= set(units)
    assert all("\nRestart=always\n" in u for u in units.values()), [k for k, u in units.items()
                                                                    if "\nRestart=always\n" not in u]


def test_neutron_server_is_ml2_and_tells_nova_as_its_own_user() -> None:
    tree = render_all(SPEC, SECRETS)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(tree["ctl1"][fragment_path("neutron")].content.decode())
    assert cp["DEFAULT"]["core_plugin"] == "ml2" and cp["ml2"]["tenant_network_types"] == "vxlan"
    assert cp["nova"]["username"] == "neutron" and cp["nova"]["password"] == SECRETS["os_neutron_password"]
    assert cp["keystone_authtoken"]["username"] == "neutron"
    assert urlsplit(cp["database"]["connection"]).path == "/neutron"
    assert "neutron-api.ini" in tree["ctl1"]["/etc/systemd/system/neutron-api.service"].content.decode()


class SchemaHost(FakeHost):
    """A controller whose schemas are all due until synced here; a sync takes a while, `broken` ones fail."""

    def __init__(self, name: str, journal: list[str], synced: set[str], broken: set[str]) -> None:
        super().__init__(name, {}, {})
        self.journal, self.synced, self.broken = journal, synced, broken

    async def run(self, argv: Any, check: bool = True, timeout: float = 300, input: Any = None) -> Result:
        argv = tuple(argv)
        for project, schema in SCHEMAS.items():
            if argv == schema.as_user(schema.check):
                return Result(0 if project in self.synced else schema.due[0], "", "")
            if argv == schema.as_user(schema.sync):
                self.journal.append(f"start {project} on {self.name}")
                await asyncio.sleep(0.05)
                self.journal.append(f"end {project}")
                if project in self.broken:
                    return Result(1, "", f"{project}: Deadlock found when trying to get lock")
                self.synced.add(project)
                return Result(0, "", "")
        return Result(0, "", "")  # the log tail asked for after a failure


def test_schemas_sync_at_once_each_once_and_a_failure_lets_the_others_finish() -> None:
    journal: list[str] = []
    synced: set[str] = set()
    hosts = {h: SchemaHost(h, journal, synced, broken={"neutron"}) for h in ("ctl1", "ctl2", "ctl3")}
    ctx = DeployContext(SPEC, SECRETS, {}, cast(dict[str, SshHost], hosts), lambda _: None)
    projects = [p for p in ORDER if p in SCHEMAS]
    with pytest.raises(DeployError) as failed:
        asyncio.run(sync_schemas(ctx, tuple(hosts), projects))
    starts = [j for j in journal if j.startswith("start")]
    # Every project once, spread over the three controllers, all started before the first ended.
    assert sorted(s.split()[1] for s in starts) == sorted(projects)
    assert {s.split()[-1] for s in starts} == set(hosts)
    assert journal[:len(projects)] == starts
    # neutron's migration failed; every other one ran to its end and is current.
    assert synced == set(projects) - {"neutron"} and len(journal) == 2 * len(projects)
    assert "neutron on ctl" in str(failed.value) and "Deadlock found" in str(failed.value)
    # A second deploy syncs only what is still due.
    journal.clear()
    for h in hosts.values():
        h.broken.clear()
    asyncio.run(sync_schemas(ctx, tuple(hosts), projects))
    assert [j.split()[1] for j in journal if j.startswith("start")] == ["neutron"]


class MemoryCloud:
    """nova's flavors and quotas and glance's images, as far as the starters go."""

    def __init__(self, images: dict[str, str] | None = None) -> None:
        self.flavors: set[str] = set()
        self.quota = 10
        self.images = dict(images or {})
        self.calls: list[str] = []

    def flavor(self, name: str) -> bool:
        return name in self.flavors

    def make_flavor(self, name: str) -> None:
        self.calls.append(f"flavor {name}")
        self.flavors.add(name)

    def instances_quota(self, project: str) -> int:
        return self.quota

    def unlimit(self, project: str) -> None:
        self.calls.append(f"unlimit {project}")
        self.quota = -1

    def image_status(self, name: str) -> str | None:
        return self.images.get(name)

    def delete_image(self, name: str) -> None:
        self.calls.append(f"delete {name}")
        del self.images[name]

    def upload_image(self, name: str) -> None:
        self.calls.append(f"upload {name}")
        self.images[name] = "active"


def test_the_starters_are_made_once_and_a_half_uploaded_image_again() -> None:
    cloud = MemoryCloud()
    made = starters.ensure(cloud, FLAVOR, IMAGE, "admin")
    assert made == [f"nova: made flavor {FLAVOR}",
                    "nova: the admin project's instances, cores and RAM unlimited (smoke and chaos servers)",
                    f"glance: uploaded image {IMAGE} (1 MiB, raw)"]
    assert starters.ensure(cloud, FLAVOR, IMAGE, "admin") == [] and len(cloud.calls) == 3
    # An upload cut off (a controller fenced under it) left the image queued: deleted, uploaded again.
    cloud = MemoryCloud(images={IMAGE: "queued"})
    cloud.flavors.add(FLAVOR)
    cloud.quota = -1
    assert starters.ensure(cloud, FLAVOR, IMAGE, "admin") == [f"glance: uploaded image {IMAGE} (1 MiB, raw)"]
    assert cloud.calls == [f"delete {IMAGE}", f"upload {IMAGE}"]

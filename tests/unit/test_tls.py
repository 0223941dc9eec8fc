"""hastack's CA: certificates derived from one secret, the files that carry them, deploy's refusal."""

from __future__ import annotations

import configparser
import datetime as dt
import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from hastack.agent.evacuator import CONFIG as EVACUATOR_CONFIG
from hastack.credentials.model import Secrets, complete, malformed
from hastack.credentials.pki import CA_SECRET, Authority, Issued, new_ca_secret
from hastack.deploy.phases.files import live_ca, tls_clashes, tls_members
from hastack.deploy.phases.openstack import catalog_want
from hastack.hosts.cafile import ca_file
from hastack.hosts.mongo import MongoLogin
from hastack.render import render_all
from hastack.render.files import Tree
from hastack.render.galera import GARBD, GARBD_TLS_DIR, TLS_DIR
from hastack.render.haproxy import CONF as HAPROXY_CONF
from hastack.render.haproxy import TLS_BUNDLE
from hastack.render.mongodb import TLS_DIR as MONGO_TLS_DIR
from hastack.render.openstack import fragment_path
from hastack.render.openstack_run import CLOUD, CLOUDS, HORIZON_SETTINGS
from hastack.render.rabbitmq import CONF as RABBIT_CONF
from hastack.render.rabbitmq import TLS_DIR as RABBIT_TLS_DIR
from hastack.render.tls import CA_PATH
from hastack.spec.catalog import endpoints_for
from hastack.spec.model import Spec
from hastack.status.gather import api_ask
from hastack.workload.smoke import target
from tests.helpers import SEED, secrets_for, variant

GALERA_CNF = "/etc/mysql/mariadb.conf.d/60-galera.cnf"


def tls_spec(on: bool = True) -> Spec:
    return variant(SEED, tls={"enabled": on})


def leaf(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def test_the_same_secret_gives_the_same_certificates_and_another_gives_others() -> None:
    secret = new_ca_secret(dt.date(2026, 12, 1))
    a, b = Authority("lab", secret), Authority("lab", secret)
    assert a.cert == b.cert
    assert a.issue("ctl1", ips=("10.0.0.1",)) == b.issue("ctl1", ips=("10.0.0.1",))
    other = Authority("lab", new_ca_secret(dt.date(2026, 12, 1)))
    assert other.cert != a.cert
    assert a.issue("ctl1").key != a.issue("ctl2").key


def test_a_node_certificate_is_signed_by_the_ca_for_its_names_and_addresses() -> None:
    ca = Authority("lab", new_ca_secret(dt.date(2026, 12, 1)))
    issued = ca.issue("ctl1", ("localhost",), ("10.77.0.11", "127.0.0.1"))
    cert, root = leaf(issued.cert), leaf(ca.cert)
    cert.verify_directly_issued_by(root)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ctl1", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.77.0.11"),
                                                        ipaddress.ip_address("127.0.0.1")]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    key = load_pem_private_key(issued.key, None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    # Valid from the day before the secret was made (a clock a little behind), for ten years.
    assert cert.not_valid_before_utc == dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=3650)


def test_the_ca_secret_is_generated_only_with_tls_and_checked_when_read_back() -> None:
    assert CA_SECRET not in secrets_for(tls_spec(False))
    spec = tls_spec()
    secrets = secrets_for(spec)
    assert CA_SECRET in secrets and malformed(spec, secrets) == ()
    assert malformed(spec, {**secrets, CA_SECRET: "20261201-short"}) == (CA_SECRET,)
    with pytest.raises(ValueError, match="shape"):
        _ = Authority("x", "garbage").cert
    # A value read back is kept, never replaced.
    again, added = complete(spec, dict(secrets))
    assert again[CA_SECRET] == secrets[CA_SECRET] and added == ()


def _tree(on: bool) -> Tree:
    spec = tls_spec(on)
    return render_all(spec, secrets_for(spec))


def test_galera_replicates_and_transfers_state_over_tls() -> None:
    tree = _tree(True)
    for node in ("ctl1", "ctl2"):
        files = tree[node]
        cnf = files[GALERA_CNF].content.decode()
        for opt in (f"socket.ssl_key={TLS_DIR}/key.pem", f"socket.ssl_cert={TLS_DIR}/cert.pem",
                    f"socket.ssl_ca={TLS_DIR}/ca.pem"):
            assert opt in cnf
        assert f"ssl_cert = {TLS_DIR}/cert.pem" in cnf and "[sst]\nssl-mode = VERIFY_CA" in cnf
        key = files[f"{TLS_DIR}/key.pem"]
        assert (key.owner, key.mode) == ("mysql", 0o600) and key.secret
        assert not files[f"{TLS_DIR}/cert.pem"].secret
        cert = leaf(files[f"{TLS_DIR}/cert.pem"].content)
        cert.verify_directly_issued_by(leaf(files[f"{TLS_DIR}/ca.pem"].content))
    arb = tree["arb1"]
    assert f"socket.ssl_ca={GARBD_TLS_DIR}/ca.pem" in arb[GARBD].content.decode()
    key = arb[f"{GARBD_TLS_DIR}/key.pem"]
    assert (key.owner, key.group, key.mode) == ("root", "nogroup", 0o640)  # garbd runs as nobody
    # Every member trusts the same CA.
    assert len({tree[n][f"{TLS_DIR}/ca.pem"].content for n in ("ctl1", "ctl2")} |
               {arb[f"{GARBD_TLS_DIR}/ca.pem"].content}) == 1


def test_the_stats_page_is_served_over_tls() -> None:
    tree = _tree(True)
    cfg = tree["ctl1"][HAPROXY_CONF].content.decode()
    assert f"\n    bind 10.77.0.11:1993 ssl crt {TLS_BUNDLE}\n    mode http\n" in cfg
    bundle = tree["ctl1"][TLS_BUNDLE]
    assert bundle.mode == 0o600 and b"PRIVATE KEY" in bundle.content and b"CERTIFICATE" in bundle.content


def test_without_tls_nothing_of_it_is_rendered() -> None:
    # Two renders with independent generated secrets: "ssl" in both is configuration, while a random key
    # that happens to spell it (CI: a keystone credential key holding "ssL") is not in the other one.
    tree, again = _tree(False), _tree(False)
    assert "\n    bind 10.77.0.11:1993\n    mode http\n" in tree["ctl1"][HAPROXY_CONF].content.decode()
    for host, files in tree.items():
        for path, f in files.items():
            assert "/tls/" not in path
            said = [b"ssl" in t.content.lower().replace(b"pcmk", b"") for t in (f, again[host][path])]
            assert not all(said), path


def test_deploy_refuses_a_running_galera_with_other_tls() -> None:
    assert tls_clashes({"ctl1": None, "ctl2": None}, None) == {}
    assert tls_clashes({"ctl1": "CA"}, "CA") == {}
    assert tls_clashes({"ctl1": None, "arb1": None}, "CA") == {"arb1": "without TLS", "ctl1": "without TLS"}
    assert tls_clashes({"ctl1": "CA"}, None) == {"ctl1": "with TLS"}
    assert tls_clashes({"ctl1": "OLD", "ctl2": "CA"}, "CA") == {"ctl1": "with another CA"}


def test_mongod_requires_tls_of_members_and_clients() -> None:
    tree = _tree(True)
    for node in ("ctl1", "ctl2", "arb1"):
        conf = yaml.safe_load(tree[node]["/etc/mongod.conf"].content)
        assert conf["net"]["tls"] == {"mode": "requireTLS", "certificateKeyFile": f"{MONGO_TLS_DIR}/bundle.pem",
                                      "CAFile": f"{MONGO_TLS_DIR}/ca.pem", "allowConnectionsWithoutCertificates": True}
        bundle = tree[node][f"{MONGO_TLS_DIR}/bundle.pem"]
        assert (bundle.owner, bundle.mode) == ("mongodb", 0o600)
    assert "tls" not in yaml.safe_load(_tree(False)["ctl1"]["/etc/mongod.conf"].content)["net"]


def test_hastack_logs_in_to_mongod_over_tls_when_the_spec_has_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = tls_spec()
    secrets = secrets_for(spec)
    login = MongoLogin.of(spec, secrets)
    assert secrets["mongodb_admin_password"] not in repr(login)
    kw = login.kwargs()
    assert kw["tls"] is True and kw["username"] == "hastack_admin"
    assert Path(kw["tlsCAFile"]).read_bytes() == Authority(spec.cluster, secrets[CA_SECRET]).cert
    assert "username" not in login.anonymous().kwargs() and login.anonymous().kwargs()["tls"] is True
    plain = MongoLogin.of(tls_spec(False), secrets_for(tls_spec(False)))
    assert "tls" not in plain.kwargs()


def test_the_ca_file_is_written_once_per_ca(tmp_path: Path) -> None:
    a = ca_file(b"CA one", tmp_path)
    assert ca_file(b"CA one", tmp_path) == a and Path(a).read_bytes() == b"CA one"
    b = ca_file(b"CA two", tmp_path)
    assert b != a and Path(b).read_bytes() == b"CA two"
    Path(a).write_bytes(b"tampered")
    assert Path(ca_file(b"CA one", tmp_path)).read_bytes() == b"CA one"


def test_tls_members_are_every_galera_and_mongodb_member() -> None:
    members = tls_members(tls_spec())
    assert set(members["galera"]) == {"ctl1", "ctl2", "arb1"} and members["galera"]["arb1"].unit == "garb"
    assert set(members["mongodb"]) == {"ctl1", "ctl2", "arb1"}
    assert {m.unit for m in members["mongodb"].values()} == {"mongod"}
    # What marks a member's configuration as speaking TLS is in the rendered file with TLS, not without.
    on, off = _tree(True), _tree(False)
    for cluster in members.values():
        for host, m in cluster.items():
            assert m.marker in on[host][m.conf].content.decode() and m.ca in on[host]
            assert m.marker not in off[host][m.conf].content.decode()
            conf_on, conf_off = on[host][m.conf].content.decode(), off[host][m.conf].content.decode()
            assert live_ca(m, {m.conf: conf_on, m.ca: "CA"}) == "CA" and live_ca(m, {m.conf: conf_on}) == "(missing)"
            assert live_ca(m, {m.conf: conf_off, m.ca: "CA left behind"}) is None and live_ca(m, {}) is None


def test_amqp_is_served_and_used_over_tls_only() -> None:
    spec = variant(SEED, tls={"enabled": True}, rabbitmq={"via_haproxy": True})  # HA307 warns; rendered all the same
    tree = render_all(spec, secrets_for(spec))
    conf = tree["ctl1"][RABBIT_CONF].content.decode()
    assert "listeners.ssl.1 = 10.77.0.11:5671" in conf and "listeners.tcp = none" in conf
    assert "listeners.tcp.1" not in conf and "management.ssl.port = 15671" in conf
    key = tree["ctl1"][f"{RABBIT_TLS_DIR}/key.pem"]
    assert (key.owner, key.mode) == ("rabbitmq", 0o600)
    assert "bind 10.77.0.10:5671" in tree["ctl1"][HAPROXY_CONF].content.decode()
    # Every OpenStack service (nova-compute on a compute too) reaches the broker over TLS with the CA.
    for host in ("ctl1", "compute1"):
        nova = configparser.ConfigParser(interpolation=None)
        nova.read_string(tree[host][fragment_path("nova")].content.decode())
        assert ":5671" in nova["DEFAULT"]["transport_url"] and ":5672" not in nova["DEFAULT"]["transport_url"]
        assert dict(nova["oslo_messaging_rabbit"]) | {"ssl": "true", "ssl_ca_file": CA_PATH} == dict(
            nova["oslo_messaging_rabbit"])
        assert tree[host][CA_PATH].content == tree["ctl1"][f"{RABBIT_TLS_DIR}/ca.pem"].content
    # haproxy passes AMQP through to a node: its certificate names the VIP.
    cert = leaf(tree["ctl1"][f"{RABBIT_TLS_DIR}/cert.pem"].content)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.77.0.10") in san.get_values_for_type(x509.IPAddress)


def test_the_workload_speaks_tls_to_the_broker_when_the_spec_has_it() -> None:
    spec = tls_spec()
    t = target(spec, secrets_for(spec), "hastack_admin")
    opts = t.amqp("10.77.0.11")
    assert opts["port"] == 5671 and opts["ssl_options"].server_hostname == "10.77.0.11"
    plain = tls_spec(False)
    assert target(plain, secrets_for(plain), "hastack_admin").amqp("10.77.0.11") == {"host": "10.77.0.11",
                                                                                     "port": 5672}


ALL_APIS = ["keystone", "glance", "nova", "placement", "neutron", "cinder", "heat", "horizon"]


def _apis_tree(on: bool) -> tuple[Spec, Secrets, Tree]:
    spec = variant(tls={"enabled": on}, instance_ha={"enabled": True}, openstack={"services": ALL_APIS})
    secrets = secrets_for(spec)
    return spec, secrets, render_all(spec, secrets)


def test_every_api_frontend_on_the_vip_speaks_https_but_nova_metadata() -> None:
    _, _, tree = _apis_tree(True)
    cfg = tree["ctl1"][HAPROXY_CONF].content.decode()
    for ep in endpoints_for(ALL_APIS):
        block = cfg.split(f"\nlisten {ep.name}-internal\n")[1].split("\nlisten ")[0]
        tls = ep.http and ep.name != "nova-metadata"
        port = 443 if ep.name == "horizon" else ep.port
        assert (f"bind 10.77.0.10:{port} ssl crt {TLS_BUNDLE}\n" in block) is tls, ep.name
        if ep.http:
            header = "set-header X-Forwarded-Proto https" if tls else "del-header X-Forwarded-Proto"
            assert f"http-request {header}\n" in block, ep.name
    assert "    bind 10.77.0.10:80\n    http-request redirect scheme https unless { ssl_fc }\n" in cfg
    _, _, plain = _apis_tree(False)
    assert "ssl crt" not in plain["ctl1"][HAPROXY_CONF].content.decode()


def test_every_openstack_client_of_the_vip_uses_https_and_checks_the_ca() -> None:
    """Each section of every project's fragment that names a URL on the VIP names the CA beside it:
    a section left out would fail with a certificate error the first time that path is used."""
    spec, secrets, tree = _apis_tree(True)
    sections = 0
    for host, files in tree.items():
        for path, f in files.items():
            if not path.endswith("/50-hastack-ha.conf"):
                continue
            ini = configparser.ConfigParser(interpolation=None)
            ini.read_string(f.content.decode())
            for name in ini.sections():
                urls = [v for k, v in ini[name].items() if k.endswith(("_url", "_uri")) and "10.77.0.10" in v
                        and "novncproxy" not in k]
                assert all(u.startswith("https://") for u in urls), (host, path, name, urls)
                # keystoneauth logs in there: it needs the CA (heat's trustee logs in on the session of
                # [clients_keystone], which has it).
                if [u for u in urls if ":5000" in u] and (path, name) != (fragment_path("heat"), "trustee"):
                    sections += 1
                    assert CA_PATH in (ini[name].get("cafile"), ini[name].get("ca_file")), (host, path, name)
            if ini.has_section("keystone_authtoken"):
                assert ini["oslo_middleware"]["enable_proxy_headers_parsing"] == "true", (host, path)
            assert CA_PATH in files
    assert sections >= 10
    nova = configparser.ConfigParser(interpolation=None)
    nova.read_string(tree["compute1"][fragment_path("nova")].content.decode())
    assert {nova[s]["cafile"] for s in ("glance", "cinder", "keystone", "placement", "neutron")} == {CA_PATH}
    want = catalog_want(spec, secrets)
    assert isinstance(want["services"], list) and all(s["url"].startswith("https://") for s in want["services"])
    clouds = yaml.safe_load(tree["ctl1"][CLOUDS].content)["clouds"][CLOUD]
    assert clouds["cacert"] == CA_PATH and clouds["auth"]["auth_url"] == "https://10.77.0.10:5000/v3"
    horizon = tree["ctl1"][HORIZON_SETTINGS].content.decode()
    assert f"OPENSTACK_SSL_CACERT = '{CA_PATH}'" in horizon
    assert "SECURE_PROXY_SSL_HEADER = ('HTTP_X_FORWARDED_PROTO', 'https')" in horizon
    evacuator = yaml.safe_load(tree["ctl1"][EVACUATOR_CONFIG].content)
    assert evacuator["cafile"] == CA_PATH and evacuator["auth_url"].startswith("https://")
    _, _, plain = _apis_tree(False)
    assert "cafile" not in yaml.safe_load(plain["ctl1"][EVACUATOR_CONFIG].content)


def test_hastack_s_own_clients_check_the_vip_against_the_ca(tmp_path: Path) -> None:
    spec, secrets, tree = _apis_tree(True)
    t = target(spec, secrets, "hastack_admin")
    assert t.os_auth_url == "https://10.77.0.10:5000/v3" and t.horizon_url == "https://10.77.0.10:443/auth/login/"
    verify = t.http_verify()
    assert isinstance(verify, str) and Path(verify).read_bytes() == tree["ctl1"][CA_PATH].content
    # Chromium trusts exactly the certificates haproxy presents, one per haproxy node.
    served = {Issued(tree[n][TLS_BUNDLE].content.split(b"-----BEGIN PRIVATE KEY")[0], b"").spki_sha256
              for n in spec.haproxy.nodes}
    assert set(t.horizon_pins) == served and len(served) == len(spec.haproxy.nodes)
    assert api_ask(spec, secrets)["cafile"] == CA_PATH
    assert t.mysql_ssl() == {"ca": verify}  # smoke's and chaos's database clients: TLS, checked
    plain = variant(openstack={"services": ALL_APIS}, tls={"enabled": False})
    pt = target(plain, secrets_for(plain), "hastack_admin")
    assert pt.http_verify() is True and pt.horizon_pins == () and pt.horizon_url.startswith("http://")
    assert pt.mysql_ssl() is None
    assert api_ask(plain, secrets_for(plain))["cafile"] is None


def test_openstack_reaches_its_databases_over_tls_checked_against_the_ca() -> None:
    for on in (True, False):
        _, _, tree = _apis_tree(on)
        urls = [v for files in tree.values() for path, f in files.items() if path.endswith("/50-hastack-ha.conf")
                for line in f.content.decode().splitlines() if line.startswith("connection = ")
                for v in [line.split(" = ", 1)[1]]]
        assert len(urls) >= 8  # every project's database, nova's API database too
        # SQLAlchemy hands ssl_ca to PyMySQL, which then requires TLS and checks the name (the VIP).
        assert all(u.endswith(f"?ssl_ca={CA_PATH}") is on and "@10.77.0.10/" in u for u in urls), urls

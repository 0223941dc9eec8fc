"""haproxy -c and keepalived -t accept the rendered files and reject what the checks reject."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from hastack.agent.vrrp_gate import DIR as GATE_DIR
from hastack.lab.netns import Netns, netns
from hastack.render import keepalived, render_all
from hastack.render.haproxy import CONF as HAPROXY_CONF
from hastack.render.haproxy import TLS_BUNDLE
from hastack.render.tls import CA_PATH
from hastack.spec.catalog import BY_NAME
from tests.helpers import secrets_for, variant
from tests.integration.conftest import Daemons, Rendered, render_to, require, wait_until


def _haproxy_check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_haproxy_accepts_every_node_config(rendered: Rendered) -> None:
    for node in rendered.spec.haproxy.nodes:
        res = _haproxy_check(rendered.relocated(node, "/etc/haproxy/haproxy.cfg"))
        assert res.returncode == 0, f"{node}: {res.stdout}{res.stderr}"
        assert "Configuration file is valid" in res.stdout


def test_haproxy_accepts_the_fast_profile_s_config(tmp_path: Path) -> None:
    # Its own connect timeout and on-error action (sudden-death) are in no other rendered file.
    r = render_to(variant(timing={"profile": "fast"}), tmp_path / "out")
    cfg = r.relocated("ctl1", "/etc/haproxy/haproxy.cfg")
    assert "on-error sudden-death" in cfg.read_text()
    res = _haproxy_check(cfg)
    assert res.returncode == 0 and "Configuration file is valid" in res.stdout, res.stdout + res.stderr


def test_haproxy_rejects_the_guide_keywords_that_HA501_flags(tmp_path: Path) -> None:
    spec = variant(haproxy={"defaults": {"extra": ["contimeout 50000"]}},
                   waivers=[{"code": "HA501", "reason": "prove haproxy refuses this keyword"}])
    r = render_to(spec, tmp_path / "out")
    res = _haproxy_check(r.relocated("ctl1", "/etc/haproxy/haproxy.cfg"))
    assert res.returncode != 0 and "contimeout" in res.stdout + res.stderr


def test_haproxy_accepts_modern_extra_defaults(tmp_path: Path) -> None:
    r = render_to(variant(haproxy={"defaults": {"extra": ["timeout queue 30s"]}}), tmp_path / "out")
    assert _haproxy_check(r.relocated("ctl1", "/etc/haproxy/haproxy.cfg")).returncode == 0


def test_keepalived_accepts_every_node_config(tmp_path: Path) -> None:
    keepalived = require("keepalived")
    for manager in ("keepalived", "keepalived-quorum"):
        for profile in ("default", "fast"):
            spec = variant(vip_manager=manager, timing={"profile": profile},
                           waivers=[{"code": "HA120", "reason": "keepalived chosen on purpose"}])
            tree = render_all(spec, secrets_for(spec))
            for node in spec.haproxy.nodes:
                conf = tmp_path / f"{manager}-{profile}-{node}.conf"
                conf.write_bytes(tree[node]["/etc/keepalived/keepalived.conf"].content)
                res = subprocess.run([keepalived, "-t", "-f", str(conf)], capture_output=True, text=True,
                                     timeout=60, check=False)
                assert res.returncode == 0, f"{manager}/{profile}/{node}: {res.stdout}{res.stderr}"


def test_keepalived_test_mode_really_checks(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("vrrp_instance x {\n    interface eth0\n    virtual_router_id 300\n}\n")
    res = subprocess.run([require("keepalived"), "-t", "-f", str(conf)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode != 0


# A stand-in API on a node: answers every GET with the X-Forwarded-Proto it was sent.
ECHO_API = """
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"proto": self.headers.get("X-Forwarded-Proto"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""

# One GET, redirects not followed, HTTPS checked against the CA; a client that claims HTTPS itself.
GET = """
import json, ssl, sys, urllib.error, urllib.request
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
tls = urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=sys.argv[2]))
req = urllib.request.Request(sys.argv[1], headers={"X-Forwarded-Proto": "claimed"})
try:
    with urllib.request.build_opener(Stay, tls).open(req, timeout=3) as r:
        print(json.dumps({"status": r.status, **json.loads(r.read())}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "location": e.headers.get("Location")}))
except Exception as e:
    print(json.dumps({"status": 0, "error": str(e)}))
"""


def test_api_frontends_end_tls_on_the_vip_and_say_so_to_the_api(tmp_path: Path, daemons: Daemons) -> None:
    """With TLS the rendered haproxy serves each API over HTTPS only, with the node certificate (checked
    against the CA for the VIP's address), tells the API so in X-Forwarded-Proto whatever the client
    claimed, sends horizon's plain port to HTTPS, and leaves nova's metadata API plain."""
    spec = variant(tls={"enabled": True}, openstack={"services": ["keystone", "glance", "nova", "placement",
                                                                  "neutron", "horizon"]})
    r = render_to(spec, tmp_path / "out")
    ctl1, vip = str(spec.node("ctl1").address), str(spec.vips[0].address)
    cfg = r.path("ctl1", HAPROXY_CONF).read_text()
    for runtime, here in (("/run/haproxy/admin.sock", tmp_path / "haproxy.sock"),
                          ("/run/haproxy.pid", tmp_path / "haproxy.pid"), (TLS_BUNDLE, r.path("ctl1", TLS_BUNDLE))):
        cfg = cfg.replace(runtime, str(here))
    (tmp_path / "haproxy.cfg").write_text(cfg)
    ca = str(r.path("ctl1", CA_PATH))
    with netns("haproxy-tls", [ctl1, vip]) as ns:
        for port in (BY_NAME["keystone"].port, BY_NAME["horizon"].port, BY_NAME["nova-metadata"].port):
            daemons.spawn(ns.argv([sys.executable, "-c", ECHO_API, ctl1, str(port)]))
        daemons.spawn(ns.argv([require("haproxy"), "-db", "-f", str(tmp_path / "haproxy.cfg")]),
                      tmp_path / "haproxy.log")

        def get(url: str) -> dict[str, object]:
            out: dict[str, object] = json.loads(ns.run([sys.executable, "-c", GET, url, ca]).stdout)
            return out

        keystone = f"https://{vip}:5000/v3"
        wait_until(lambda: get(keystone)["status"] == 200, 30, f"haproxy to serve {keystone} (ctl1 up)")
        assert get(keystone)["proto"] == "https"  # set by haproxy, not the client's "claimed"
        assert get(f"http://{vip}:5000/v3")["status"] == 0  # no plain HTTP on an API's port
        moved = get(f"http://{vip}/auth/login/")
        assert (moved["status"], moved["location"]) == (302, f"https://{vip}/auth/login/")
        wait_until(lambda: get(f"https://{vip}/auth/login/")["status"] == 200, 30, "horizon over HTTPS on 443")
        metadata = f"http://{vip}:8775/"
        wait_until(lambda: get(metadata)["status"] == 200, 30, "the metadata API, plain")
        assert get(metadata)["proto"] is None  # what the client claimed is dropped


def test_keepalived_gives_the_vip_up_when_the_gate_fails_haproxy_and_takes_it_back(
        tmp_path: Path, daemons: Daemons) -> None:
    """The rendered keepalived.conf with the real gate beside it: the VIP is held while haproxy runs,
    left (FAULT) when it stops, and taken back once it runs again; keepalived never runs a script."""
    spec = variant(vip_manager="keepalived", timing={"profile": "fast"},
                   waivers=[{"code": "HA120", "reason": "keepalived chosen on purpose"}])
    tree = render_all(spec, secrets_for(spec))
    node = spec.node("ctl1")
    gate_dir = tmp_path / "gate"
    conf = tmp_path / "keepalived.conf"
    conf.write_text(tree["ctl1"][keepalived.CONF].content.decode().replace(GATE_DIR, str(gate_dir)))
    # A stand-in haproxy with a name no other process on this machine has (a lab may run haproxy).
    fake = tmp_path / "hst-haproxy"
    fake.symlink_to(require("sleep"))
    vips = [str(v.address) for v in spec.vips]
    prefix = spec.networks.management.prefixlen
    with netns("vrrp-gate") as ns:
        # A veth pair inside the namespace (no dummy module here): eth0 for keepalived, its peer silent.
        for args in (("link", "add", "eth0", "type", "veth", "peer", "name", "eth0-peer"),
                     ("addr", "add", f"{node.address}/{prefix}", "dev", "eth0"),
                     ("link", "set", "eth0-peer", "up"), ("link", "set", "eth0", "up")):
            subprocess.run(["ip", "-n", ns.name, *args], check=True, timeout=30)

        def held() -> set[str]:
            return _held(ns, vips)

        haproxy = daemons.spawn([str(fake), "600"])
        daemons.spawn(ns.argv([sys.executable, "-m", "hastack.agent.vrrp_gate", "--dir", str(gate_dir),
                               "--process", fake.name, "--ping-every", "1", "--ping", str(node.address),
                               "--device", "eth0", "--vip", *(f"{v}/{prefix}" for v in vips)]),
                      tmp_path / "gate.log")
        wait_until(lambda: all((gate_dir / n).exists() for n in ("haproxy", "mgmt")), 30, "the gate's verdicts")
        daemons.spawn(ns.argv([require("keepalived"), "--dont-fork", "--vrrp", "--log-console", "--log-detail",
                               "-f", str(conf), "-p", str(tmp_path / "k.pid"), "-r", str(tmp_path / "v.pid")]),
                      tmp_path / "keepalived.log")
        wait_until(lambda: held() == set(vips), 30, "keepalived to take every VIP (no peer answers)")
        haproxy.kill()
        haproxy.wait(timeout=30)
        wait_until(lambda: not held(), 30, "the VIPs to leave a node whose haproxy stopped")
        assert (gate_dir / "haproxy").read_text() == "1\n"
        daemons.spawn([str(fake), "600"])
        wait_until(lambda: held() == set(vips), 30, "the VIPs back once haproxy runs again")
        log = (tmp_path / "keepalived.log").read_text()
        assert "Script" not in log and "FAULT" in log, log[-3000:]
        # The gate deleted the addresses before its verdict put keepalived in FAULT: keepalived's own
        # way sends the priority-0 advert (a backup takes the VIP) before it removes them.
        assert log.index(f"{vips[0]} removed from eth0") < log.index("Entering FAULT STATE"), log[-3000:]
        assert "withdrew" in (tmp_path / "gate.log").read_text()


def _held(ns: Netns, vips: Iterable[str]) -> set[str]:
    """Which of `vips` the namespace's eth0 holds."""
    out = ns.run(["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    return {v for v in vips if f" {v}/" in out}


def _counters(ns: Netns) -> dict[str, tuple[int, int]]:
    """(packets, bytes) of each counted rule of the test's nftables chain, by the rule's comment."""
    out = ns.run(["nft", "-j", "list", "chain", "ip", "hst", "in"]).stdout
    found: dict[str, tuple[int, int]] = {}
    for item in json.loads(out or '{"nftables": []}')["nftables"]:
        rule = item.get("rule", {})
        for expr in rule.get("expr", ()):
            if "counter" in expr:
                found[rule.get("comment", "")] = (expr["counter"]["packets"], expr["counter"]["bytes"])
    return found


def test_a_backup_stays_one_while_a_few_adverts_are_lost_in_a_row(tmp_path: Path, daemons: Daemons) -> None:
    """Two real keepalived with the fast profile's rendered configs, the backup's received adverts dropped
    by nftables a set number at a time: four lost in a row (a lossy link) leave it a backup, where VRRP's
    own rule of three made it a second holder beside the live one (the fast keepalived lab's link-loss);
    ten lost (a holder gone) hand it the VIP, which it gives back once the holder's adverts return."""
    spec = variant(vip_manager="keepalived", timing={"profile": "fast"},
                   waivers=[{"code": "HA120", "reason": "keepalived chosen on purpose"}])
    assert spec.timing.keepalived_down_adverts == 6
    tree = render_all(spec, secrets_for(spec))
    vips = {str(v.address) for v in spec.vips}
    prefix = spec.networks.management.prefixlen
    with netns("vrrp-a") as a, netns("vrrp-b") as b:

        def held(ns: Netns) -> set[str]:
            return _held(ns, vips)

        def nft(*args: str) -> None:
            res = b.run(["nft", *args])
            assert res.returncode == 0, f"nft {' '.join(args)}: {res.stderr}"

        subprocess.run(["ip", "-n", a.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                        "netns", b.name], check=True, timeout=30)
        nft("add", "table", "ip", "hst")
        nft("add", "chain", "ip", "hst", "in", "{ type filter hook input priority 0 ; }")
        nft("add", "rule", "ip", "hst", "in", "ip", "protocol", "vrrp", "counter", "comment", "passed")
        logs: dict[str, Path] = {}
        for ns, name in ((a, "ctl1"), (b, "ctl2")):  # both ends up first: a veth has carrier only then
            for args in (("addr", "add", f"{spec.node(name).address}/{prefix}", "dev", "eth0"),
                         ("link", "set", "eth0", "up")):
                subprocess.run(["ip", "-n", ns.name, *args], check=True, timeout=30)
        for ns, name in ((a, "ctl1"), (b, "ctl2")):
            gate = tmp_path / name / "gate"
            gate.mkdir(parents=True)
            for check in ("haproxy", "mgmt"):  # the gate's verdicts: every check passes
                (gate / check).write_text("0\n")
            conf = tmp_path / name / "keepalived.conf"
            conf.write_text(tree[name][keepalived.CONF].content.decode().replace(GATE_DIR, str(gate)))
            logs[name] = tmp_path / name / "keepalived.log"
            daemons.spawn(ns.argv([require("keepalived"), "--dont-fork", "--vrrp", "--log-console", "--log-detail",
                                   "-f", str(conf), "-p", str(tmp_path / name / "k.pid"),
                                   "-r", str(tmp_path / name / "v.pid")]), logs[name])
            if name == "ctl1":  # the holder first: alone, it takes the VIP
                wait_until(lambda: held(a) == vips, 30, "ctl1 to take the VIP")
        wait_until(lambda: _counters(b)["passed"][0] >= 5, 30, "ctl1's adverts to reach ctl2")
        packets, size = _counters(b)["passed"]
        size //= packets  # every advert is the same size

        def masters() -> int:
            return logs["ctl2"].read_text().count("Entering MASTER STATE")

        def lose(count: int) -> None:
            """The next `count` adverts reaching ctl2 are dropped; wait until three more have passed."""
            nft("flush", "chain", "ip", "hst", "in")
            # A quota stops matching once what it counted is over it: half an advert past `count`.
            nft("add", "rule", "ip", "hst", "in", "ip", "protocol", "vrrp", "quota", "until",
                str(count * size + size // 2), "bytes", "counter", "drop", "comment", "dropped")
            nft("add", "rule", "ip", "hst", "in", "ip", "protocol", "vrrp", "counter", "comment", "passed")
            wait_until(lambda: _counters(b)["passed"][0] >= 3, 30, f"{count} adverts dropped, then 3 passing")
            assert _counters(b)["dropped"][0] == count

        assert masters() == 0 and not held(b), logs["ctl2"].read_text()[-2000:]
        lose(4)
        assert masters() == 0 and not held(b) and held(a) == vips, logs["ctl2"].read_text()[-2000:]
        lose(10)
        assert masters() == 1, logs["ctl2"].read_text()[-2000:]
        wait_until(lambda: not held(b) and held(a) == vips, 30, "ctl2 to give the VIP back to the live holder")

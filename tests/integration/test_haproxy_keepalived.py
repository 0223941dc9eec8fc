"""haproxy -c and keepalived -t accept the rendered files and reject what the checks reject."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hastack.render import render_all
from tests.helpers import secrets_for, variant
from tests.integration.conftest import Rendered, render_to, require


def _haproxy_check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("haproxy"), "-c", "-f", str(cfg)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_haproxy_accepts_every_node_config(rendered: Rendered) -> None:
    for node in rendered.spec.haproxy.nodes:
        res = _haproxy_check(rendered.path(node, "/etc/haproxy/haproxy.cfg"))
        assert res.returncode == 0, f"{node}: {res.stdout}{res.stderr}"
        assert "Configuration file is valid" in res.stdout


def test_haproxy_rejects_the_guide_keywords_that_HA501_flags(tmp_path: Path) -> None:
    spec = variant(haproxy={"defaults": {"extra": ["contimeout 50000"]}},
                   waivers=[{"code": "HA501", "reason": "prove haproxy refuses this keyword"}])
    r = render_to(spec, tmp_path / "out")
    res = _haproxy_check(r.path("ctl1", "/etc/haproxy/haproxy.cfg"))
    assert res.returncode != 0 and "contimeout" in res.stdout + res.stderr


def test_haproxy_accepts_modern_extra_defaults(tmp_path: Path) -> None:
    r = render_to(variant(haproxy={"defaults": {"extra": ["timeout queue 30s"]}}), tmp_path / "out")
    assert _haproxy_check(r.path("ctl1", "/etc/haproxy/haproxy.cfg")).returncode == 0


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

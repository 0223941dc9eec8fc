"""The health agent says what haproxy needs and nothing more: no password in its errors, no server text."""

from __future__ import annotations

import re
import socket
import struct
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from hastack.agent.__main__ import main
from hastack.agent.config import AgentConfig
from hastack.agent.server import GaleraProbe, make_server
from hastack.components.galera import Health
from hastack.credentials.model import AGENT_TOKEN
from hastack.render import render_all
from hastack.render.agent import USER, render_agent
from hastack.spec.load import load_spec
from tests.helpers import THREE, secrets_for

TOKEN = "t0ken-of-the-agent-32-characters"


def test_a_config_error_names_the_field_never_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"listen": "10.0.0.1", "mysql_password": "s3cr3t-value", "port": "not-a-port"}))
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "port" in err and "s3cr3t-value" not in err and "not-a-port" not in err


def test_a_server_that_does_not_answer_is_reported_by_code_only(tmp_path: Path) -> None:
    probe = GaleraProbe(AgentConfig(listen="127.0.0.1", mysql_password="x", token=TOKEN,
                                    mysql_socket=str(tmp_path / "none.sock")))
    health, state = probe.check()
    assert not health.serve and state is None
    assert re.fullmatch(r"mariadb did not answer \(error \w+\)", health.reason), health.reason
    assert str(tmp_path) not in health.reason


def test_the_agent_runs_as_its_own_user_with_no_privilege() -> None:
    spec = load_spec(THREE)
    files = {f.path: f for f in render_agent(spec, secrets_for(spec))["ctl1"]}
    unit = files["/etc/systemd/system/hastack-agent.service"].content.decode()
    assert f"User={USER}" in unit and "NoNewPrivileges=yes" in unit and "CapabilityBoundingSet=\n" in unit
    cfg = files["/etc/hastack/agent.yaml"]
    assert (cfg.owner, cfg.mode) == (USER, 0o600)  # readable by the agent alone: it holds the monitor password


def _config(tmp_path: Path) -> AgentConfig:
    with socket.socket() as s:  # a free port on loopback
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return AgentConfig(listen="127.0.0.1", port=port, mysql_password="x", token=TOKEN,
                       mysql_socket=str(tmp_path / "none.sock"))


def test_the_agent_answers_only_a_request_that_shows_its_token(tmp_path: Path) -> None:
    server = make_server(_config(tmp_path))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/galera"

        def status(headers: dict[str, str]) -> int:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status({}) == 401
        assert status({"Authorization": "Bearer not-the-token-of-this-agent"}) == 401
        assert status({"Authorization": TOKEN}) == 401  # the scheme is part of what is compared
        assert status({"Authorization": f"Bearer {TOKEN}"}) == 503  # shown: the (absent) server's verdict
    finally:
        server.shutdown()
        server.server_close()


def test_haproxy_s_check_shows_the_agent_its_token() -> None:
    spec = load_spec(THREE)
    secrets = secrets_for(spec)
    tree = render_all(spec, secrets)
    agent = yaml.safe_load(tree["ctl1"]["/etc/hastack/agent.yaml"].content)
    cfg = tree["ctl1"]["/etc/haproxy/haproxy.cfg"].content.decode()
    assert agent["token"] == secrets[AGENT_TOKEN]
    assert f'http-check send meth GET uri /galera hdr Authorization "Bearer {agent["token"]}"\n' in cfg


def test_a_check_that_resets_before_its_answer_is_written_leaves_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """haproxy closes a check's connection with a reset (it never lingers); in the lab that often came
    before the agent had written its answer, and each time socketserver printed a traceback."""
    left, done = threading.Event(), threading.Event()

    def check(self: GaleraProbe) -> tuple[Health, None]:
        assert left.wait(5)  # answer only once the client has gone: the order the lab saw, every time
        return Health(False, "test"), None

    monkeypatch.setattr(GaleraProbe, "check", check)
    cfg = _config(tmp_path)
    server = make_server(cfg)
    errors: list[object] = []
    monkeypatch.setattr(server, "handle_error", lambda request, address: errors.append(sys.exc_info()[1]))
    shutdown_request = server.shutdown_request

    def finished(request: socket.socket) -> None:
        shutdown_request(request)
        done.set()

    monkeypatch.setattr(server, "shutdown_request", finished)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection((cfg.listen, cfg.port), timeout=5) as c:
            c.sendall(f"GET /galera HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        left.set()
        assert done.wait(5)
        assert errors == []
    finally:
        server.shutdown()
        server.server_close()

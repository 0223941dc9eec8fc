"""The health agent says what haproxy needs and nothing more: no password in its errors, no server text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hastack.agent.__main__ import main
from hastack.agent.config import AgentConfig
from hastack.agent.server import GaleraProbe
from hastack.render.agent import USER, render_agent
from hastack.spec.load import load_spec
from tests.helpers import THREE, secrets_for


def test_a_config_error_names_the_field_never_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(yaml.safe_dump({"listen": "10.0.0.1", "mysql_password": "s3cr3t-value", "port": "not-a-port"}))
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "port" in err and "s3cr3t-value" not in err and "not-a-port" not in err


def test_a_server_that_does_not_answer_is_reported_by_code_only(tmp_path: Path) -> None:
    probe = GaleraProbe(AgentConfig(listen="127.0.0.1", mysql_password="x", mysql_socket=str(tmp_path / "none.sock")))
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

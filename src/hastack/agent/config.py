"""The agent's config file (rendered per node, 0600: it holds the monitor password)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

PATH = "/etc/hastack/agent.yaml"


class AgentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str  # address to bind: the node's management address
    port: int = Field(default=9200, ge=1, le=65535)
    mysql_socket: str = "/run/mysqld/mysqld.sock"
    mysql_user: str = "hastack_monitor"
    mysql_password: str
    # A donor stays in rotation (mariabackup keeps it consistent); off by default.
    donor_serves: bool = False
    # Cache one probe this long: haproxy on every node polls every node.
    cache_ms: int = Field(default=100, ge=0, le=5000)


def load(path: str | Path) -> AgentConfig:
    return AgentConfig.model_validate(yaml.safe_load(Path(path).read_text()))

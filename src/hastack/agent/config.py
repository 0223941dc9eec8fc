"""The agent's config file (rendered per node, 0600: it holds the monitor password and its token)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

T = TypeVar("T")

PATH = "/etc/hastack/agent.yaml"


class AgentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str  # address to bind: the node's management address
    port: int = Field(default=9200, ge=1, le=65535)
    mysql_socket: str = "/run/mysqld/mysqld.sock"
    mysql_user: str = "hastack_monitor"
    mysql_password: str
    token: str = Field(min_length=16)  # every request must show it: `Authorization: Bearer TOKEN`
    # A donor stays in rotation (mariabackup keeps it consistent); off by default.
    donor_serves: bool = False
    # Cache one probe this long: haproxy on every node polls every node.
    cache_ms: int = Field(default=100, ge=0, le=5000)


def load(path: str | Path) -> AgentConfig:
    return AgentConfig.model_validate(yaml.safe_load(Path(path).read_text()))


def read_config(prog: str, path: str, loader: Callable[[str], T]) -> T | None:
    """The config, or None after one line on stderr: the file and each wrong field, never a value
    (these files hold passwords)."""
    try:
        return loader(path)
    except OSError as exc:
        print(f"{prog}: cannot read {path}: {exc.strerror}", file=sys.stderr)
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'the file'}: {e['msg']}"
                          for e in exc.errors(include_input=False))
        print(f"{prog}: cannot use {path}: {wrong}", file=sys.stderr)
    return None

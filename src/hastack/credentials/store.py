"""The secrets file beside the spec: created 0600, refused if readable by others."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

from hastack.credentials.model import Secrets, complete
from hastack.spec.model import Spec

HEADER = (
    "# hastack secrets for {spec}: generated once, keep private (mode 0600).\n"
    "# Losing this file means new passwords on the next render; back it up.\n"
)


class SecretsError(Exception):
    pass


def secrets_path(spec_path: Path) -> Path:
    return spec_path.with_name(spec_path.stem + ".secrets.yaml")


def _read(path: Path) -> dict[str, str]:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SecretsError(
            f"{path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}"
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretsError(f"{path} is not a mapping of names to strings; restore it from backup")
    return {str(k): v for k, v in data.items()}


def _write(path: Path, secrets: Secrets, spec_name: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    body = HEADER.format(spec=spec_name) + yaml.safe_dump(dict(secrets.data), sort_keys=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create(spec: Spec, spec_path: Path) -> tuple[Secrets, tuple[str, ...], Path]:
    """Load the spec's secrets, generating (and saving) any that are missing."""
    path = secrets_path(spec_path)
    existing = _read(path) if path.exists() else {}
    full, added = complete(spec, existing)
    if added:
        _write(path, full, spec_path.name)
    return full, added, path

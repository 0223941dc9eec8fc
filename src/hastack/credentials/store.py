"""The secrets file beside the spec: created 0600, refused if readable by others."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from secrets import token_hex as secrets_token

import yaml

from hastack.credentials.model import Secrets, complete, malformed
from hastack.spec.model import Spec

HEADER = (
    "# hastack secrets for {spec}: generated once, keep private (mode 0600).\n"
    "# Losing this file means new passwords on the next render; back it up.\n"
)


class SecretsError(Exception):
    pass


def secrets_path(spec_path: Path) -> Path:
    return spec_path.with_name(spec_path.stem + ".secrets.yaml")


# A secrets file is a few KiB; anything larger is not one, and is not read whole.
MAX_BYTES = 1 << 20


def _read(path: Path) -> dict[str, str]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretsError(f"{path}: cannot open it ({exc.strerror}); it must be a regular file, not a link") from exc
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SecretsError(f"{path} is not a regular file; restore the secrets file from backup")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SecretsError(f"{path} is readable by other users (mode {mode:04o}); run: chmod 600 {path}")
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise SecretsError(f"{path} is larger than {MAX_BYTES >> 20} MiB: not a hastack secrets file")
    try:
        data = yaml.safe_load(raw.decode("utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise SecretsError(f"{path} is not valid YAML{at}; restore it from backup") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SecretsError(f"{path} is not a mapping of names to strings; restore it from backup")
    return {str(k): v for k, v in data.items()}


def _write(path: Path, secrets: Secrets, spec_name: str) -> None:
    # A random name created exclusively: a link planted at a predictable name receives nothing.
    tmp = path.with_name(f".{path.name}.{secrets_token()}.tmp")
    printable = "".join(c if c.isprintable() else "?" for c in spec_name)
    body = HEADER.format(spec=printable) + yaml.safe_dump(dict(secrets.data), sort_keys=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.write(fd, body.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_or_create(spec: Spec, spec_path: Path) -> tuple[Secrets, tuple[str, ...], Path]:
    """Load the spec's secrets, generating (and saving) any that are missing."""
    path = secrets_path(spec_path)
    existing = _read(path) if os.path.lexists(path) else {}
    bad = malformed(spec, existing)
    if bad:
        raise SecretsError(f"{path}: {', '.join(bad)} hold characters their generator never makes (a newline or "
                           "a quote would reach a config file); restore the file from backup")
    full, added = complete(spec, existing)
    if added:
        _write(path, full, spec_path.name)
    return full, added, path

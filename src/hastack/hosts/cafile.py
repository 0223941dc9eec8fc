"""The cluster's CA certificate as a file, for clients that take only a path (pymongo, PyMySQL)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def ca_file(pem: bytes, home: Path | None = None) -> str:
    """A file under the user's cache holding `pem` (public: a CA certificate), named by its digest
    so that two clusters' CAs never share one; written once, atomically."""
    folder = (home or Path.home()) / ".cache" / "hastack" / "ca"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{hashlib.sha256(pem).hexdigest()[:24]}.pem"
    if not path.is_file() or path.read_bytes() != pem:
        tmp = folder / f".{path.name}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.replace(tmp, path)
    return str(path)

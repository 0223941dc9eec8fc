"""Files inside a lab host's tree, written by this machine's root without following a link.

A lab host's root owns its whole tree (the overlay's upper directory), and the
lab writes into that tree from outside at every boot: authorized_keys, the
fence agent's token, the network units. A link planted there (`authorized_keys
-> /etc/shadow`, or `/root/.ssh -> /etc`) would be resolved on this machine
and make the lab overwrite or chmod a file of the machine. So every path is
walked one component at a time from the tree's top, never through a link
(O_NOFOLLOW on every directory and on the file), and a file is replaced by a
new one renamed over it, never written through.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class Refused(Exception):
    """A path inside the tree goes through a link or something that is not a directory."""


def _parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise Refused(f"{path!r} is not a plain path")
    return parts


def open_dir(root: Path, path: str, create: bool = True) -> int:
    """A descriptor of the directory ROOT/PATH, reached without following a link below ROOT."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    for d in _parts(path) if path.strip("/") else []:
        try:
            try:
                nfd = os.open(d, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(d, 0o755, dir_fd=fd)
                nfd = os.open(d, flags, dir_fd=fd)
        except FileNotFoundError:
            os.close(fd)
            raise
        except OSError as exc:  # ELOOP (a link) or ENOTDIR
            os.close(fd)
            raise Refused(f"{root}/{path.lstrip('/')}: {d} is a link or not a directory ({exc.strerror})") from exc
        os.close(fd)
        fd = nfd
    return fd


def write(root: Path, path: str, body: str, mode: int) -> None:
    """Put BODY at ROOT/PATH with MODE: a new file renamed over whatever had that name."""
    *dirs, name = _parts(path)
    fd = open_dir(root, "/".join(dirs))
    try:
        tmp = f".{name}.hastack-{os.urandom(6).hex()}"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
        try:
            with os.fdopen(out, "w") as fh:
                fh.write(body)
                os.fchmod(fh.fileno(), mode)
            os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            os.unlink(tmp, dir_fd=fd)
            raise
    finally:
        os.close(fd)


def chmod_dir(root: Path, path: str, mode: int) -> None:
    fd = open_dir(root, path)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def read_files(root: Path, path: str, suffix: str) -> dict[str, str]:
    """The regular files named *SUFFIX in the directory ROOT/PATH, by name; a link there is skipped."""
    fd = open_dir(root, path, create=False)
    try:
        out = {}
        for name in sorted(os.listdir(fd)):
            if not name.endswith(suffix):
                continue
            try:
                ffd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            except OSError:  # a link, or gone
                continue
            with os.fdopen(ffd) as fh:
                st = os.fstat(ffd)
                if stat.S_ISREG(st.st_mode) and st.st_size < 65536:
                    out[name] = fh.read()
        return out
    finally:
        os.close(fd)

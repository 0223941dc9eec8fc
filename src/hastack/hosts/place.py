"""Placing a file on a host without following a link that someone other than root could plant.

Deploy writes into directories that service users own (/etc/rabbitmq,
/var/lib/rabbitmq). Writing `PATH.tmp`, then chown and chmod by name, follows
a symlink that user planted there and hands them a root-owned file of their
choice. So the file is placed by one small program run on the host, over file
descriptors only:

- the directories are opened one by one from /; a link is followed only where
  the directory holding it can be changed by root alone (a link such as
  /var/run -> /run is safe, one inside /etc/rabbitmq is refused);
- the content goes into a new file with a random name, created exclusively
  (O_EXCL and O_NOFOLLOW: an existing name or a link there fails);
- owner and mode are set on the open file (fchown, fchmod), never by name;
- it is renamed over the old name inside the directory held open, which
  replaces a link there rather than writing through it.

The program reads the content on stdin and runs with the host's python3 (the
agent needs it too). It exits 3 with one line on stderr when it refuses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hastack.hosts.files import Change, diff, file_fact
from hastack.hosts.probe import probe
from hastack.hosts.ssh import HostError, SshHost
from hastack.render.files import RenderedFile

REFUSED = 3

PLACE_PROGRAM = r"""
import grp, os, pwd, sys
path, owner, group, mode = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4], 8)
uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
*dirs, name = [p for p in path.split("/") if p]
if not path.startswith("/") or not name or ".." in dirs or name in (".", ".."):
    sys.exit(f"refused: {path!r} is not a plain absolute path")
fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
for d in dirs:
    st = os.fstat(fd)
    trusted = st.st_uid == 0 and not st.st_mode & 0o022
    flags = os.O_RDONLY | os.O_DIRECTORY | (0 if trusted else os.O_NOFOLLOW)
    try:
        nfd = os.open(d, flags, dir_fd=fd)
    except FileNotFoundError:
        os.mkdir(d, 0o755, dir_fd=fd)
        nfd = os.open(d, flags | os.O_NOFOLLOW, dir_fd=fd)
    except OSError as exc:
        print(f"refused: {path}: {d} is a link, or not a directory, in a directory that "
              f"uid {st.st_uid} can change ({exc.strerror})", file=sys.stderr)
        sys.exit(3)
    os.close(fd)
    fd = nfd
tmp = f".{name}.hastack-{os.urandom(6).hex()}"
out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
try:
    view = memoryview(sys.stdin.buffer.read())
    while view:
        view = view[os.write(out, view):]
    os.fchown(out, uid, gid)
    os.fchmod(out, mode)
    os.fsync(out)
    os.close(out)
    os.rename(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
except BaseException:
    os.unlink(tmp, dir_fd=fd)
    raise
"""


def place_argv(f: RenderedFile, python: str = "python3") -> list[str]:
    """The command that places `f` (its content goes on the command's stdin)."""
    return [python, "-c", PLACE_PROGRAM, f.path, f.owner, f.group, f"{f.mode:o}"]


async def put(host: SshHost, f: RenderedFile,
              before_write: Callable[[], Awaitable[None]] | None = None) -> Change:
    """Place one file with its owner and mode; do nothing when it is already so. `before_write` runs
    once a write is needed, before it (deploy records there what it still owes the file)."""
    change = diff(f, await probe(host, file_fact(f.path)))
    if change is Change.NONE:
        return change
    if before_write is not None:
        await before_write()
    res = await host.run(place_argv(f), check=False, timeout=120, input=f.content)
    if res.rc != 0:
        raise HostError(host.name, f"place {f.path} ({f.owner}:{f.group} {f.mode:o})", res)
    return change

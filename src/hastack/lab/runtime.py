"""The lab on this machine: systemd-nspawn hosts on bridges, plus a client namespace.

Every host boots systemd from an overlay of the cached image (a few MiB of
its own), so `lab down` removes a host by unmounting one directory. What
`lab up` starts is recorded in state.json (nspawn PIDs, mounts); `lab down`
ends exactly those, then removes the links the layout names.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hastack.lab.image import CACHE, Image
from hastack.lab.layout import LabHost, Layout, boot_files
from hastack.lab.netns import end_processes

Progress = Callable[[str], None]


class LabError(Exception):
    pass


@dataclass(frozen=True)
class LabDirs:
    root: Path

    @classmethod
    def of(cls, cluster: str, cache: Path = CACHE) -> LabDirs:
        return cls(cache / "lab" / cluster)

    @property
    def key(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    def host(self, name: str) -> Path:
        return self.root / "hosts" / name

    def rootfs(self, name: str) -> Path:
        return self.host(name) / "root"

    def console(self, name: str) -> Path:
        return self.host(name) / "console.log"


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` exited {res.returncode}: {(res.stderr or res.stdout).strip()}")
    return res


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/mounts") as fh:
        return any(line.split()[1] == target for line in fh)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"systemd-nspawn")


def load_state(dirs: LabDirs) -> dict[str, dict[str, int]]:
    if not dirs.state.exists():
        return {"hosts": {}}
    data: dict[str, dict[str, int]] = json.loads(dirs.state.read_text())
    return data


def save_state(dirs: LabDirs, state: dict[str, dict[str, int]]) -> None:
    tmp = dirs.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(dirs.state)


def ensure_key(dirs: LabDirs) -> str:
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.root.chmod(0o700)
    if not dirs.key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hastack-lab-{dirs.root.name}", "-f", str(dirs.key))
    return dirs.key.with_suffix(".pub").read_text()


def ensure_bridges(lay: Layout) -> None:
    for link in lay.links:
        if not _link_exists(link.bridge):
            sh("ip", "link", "add", link.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{link.gateway}/{link.network.prefixlen}", "dev", link.bridge)
        sh("ip", "link", "set", link.bridge, "up")


def ensure_client(lay: Layout) -> None:
    """The client host: a namespace with one leg on the management bridge."""
    ns = lay.client_netns
    if Path("/run/netns", ns).exists():
        return
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", lay.client_veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "link", "set", lay.client_veth, "master", lay.management.bridge, "up")
    sh("ip", "-n", ns, "addr", "add", f"{lay.client_address}/{lay.management.network.prefixlen}", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def _prepare_root(dirs: LabDirs, img: Image, lay: Layout, host: LabHost, pubkey: str) -> Path:
    base = dirs.host(host.name)
    root = dirs.rootfs(host.name)
    for d in ("upper", "work", "root"):
        (base / d).mkdir(parents=True, exist_ok=True)
    if not _mounted(root):
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={img.path},upperdir={base / 'upper'},workdir={base / 'work'}", str(root))
    for path, body in boot_files(lay, host, pubkey).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    (root / "root/.ssh").chmod(0o700)
    (root / "root/.ssh/authorized_keys").chmod(0o600)
    if not any((root / "etc/ssh").glob("ssh_host_*_key")):
        sh("ssh-keygen", "-A", "-f", str(root))  # each host its own host keys
    return root


def boot(dirs: LabDirs, img: Image, lay: Layout, host: LabHost, pubkey: str) -> int:
    """Boot one host; returns the nspawn PID once its links are on their bridges."""
    root = _prepare_root(dirs, img, lay, host, pubkey)
    argv = ["systemd-nspawn", "--register=no", "--keep-unit", "--boot", "--quiet", "-D", str(root), "-M", host.name,
            # mongod locks its key pages (as a non-root user, through AmbientCapabilities).
            "--capability=CAP_IPC_LOCK",
            *(f"--network-veth-extra={i.outside}:{i.inside}" for i in host.interfaces)]
    console = dirs.console(host.name).open("ab")
    # stdin from /dev/null and its own session: the container outlives this command.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                            start_new_session=True)
    console.close()
    deadline = time.monotonic() + 30
    pending = list(host.interfaces)
    while pending:
        if proc.poll() is not None:
            tail = dirs.console(host.name).read_text(errors="replace").splitlines()[-15:]
            raise LabError(f"{host.name}: systemd-nspawn exited {proc.returncode}:\n" + "\n".join(tail))
        if time.monotonic() > deadline:
            raise LabError(f"{host.name}: its links did not appear within 30 s")
        for hif in list(pending):
            if _link_exists(hif.outside):
                sh("ip", "link", "set", hif.outside, "master", lay.links[hif.link].bridge, "up")
                pending.remove(hif)
        time.sleep(0.05)
    return proc.pid


def wait_port(address: str, port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return True
        time.sleep(0.1)
    return False


def stop_host(pid: int, grace: float = 20) -> None:
    """SIGTERM asks nspawn for a clean shutdown of the container; SIGKILL if it hangs."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if not _alive(pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kill_host(pid: int) -> None:
    """The whole host at once, as a power cut: no shutdown, no goodbye."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def up(lay: Layout, img: Image, progress: Progress, cache: Path = CACHE) -> dict[str, int]:
    dirs = LabDirs.of(lay.cluster, cache)
    pubkey = ensure_key(dirs)
    state = load_state(dirs)
    ensure_bridges(lay)
    ensure_client(lay)
    for host in lay.hosts:
        pid = state["hosts"].get(host.name)
        if pid and _alive(pid):
            progress(f"{host.name}: already running (pid {pid})")
            continue
        progress(f"{host.name}: booting at {host.address}")
        state["hosts"][host.name] = boot(dirs, img, lay, host, pubkey)
        save_state(dirs, state)
    for host in lay.hosts:
        if not wait_port(str(host.address), 22, 90):
            tail = dirs.console(host.name).read_text(errors="replace").splitlines()[-15:]
            raise LabError(f"{host.name}: sshd at {host.address}:22 did not answer within 90 s; console:\n"
                           + "\n".join(tail))
    progress(f"{len(lay.hosts)} hosts answer SSH; client namespace {lay.client_netns} at {lay.client_address}")
    return state["hosts"]


def down(lay: Layout, progress: Progress, cache: Path = CACHE) -> list[str]:
    """Remove everything `up` made; returns what was left that could not be removed."""
    dirs = LabDirs.of(lay.cluster, cache)
    state = load_state(dirs)
    for name, pid in state["hosts"].items():
        if _alive(pid):
            progress(f"{name}: shutting down (pid {pid})")
            stop_host(pid)
    leftovers: list[str] = []
    for host in lay.hosts:
        root = dirs.rootfs(host.name)
        if _mounted(root) and sh("umount", str(root), check=False).returncode != 0:
            sh("umount", "-l", str(root), check=False)
        for hif in host.interfaces:
            if _link_exists(hif.outside):
                sh("ip", "link", "del", hif.outside, check=False)
    if Path("/run/netns", lay.client_netns).exists():
        end_processes(lay.client_netns)
        sh("ip", "netns", "del", lay.client_netns, check=False)
    if _link_exists(lay.client_veth):
        sh("ip", "link", "del", lay.client_veth, check=False)
    for link in lay.links:
        if _link_exists(link.bridge):
            sh("ip", "link", "del", link.bridge, check=False)
    if dirs.root.exists():
        shutil.rmtree(dirs.root, ignore_errors=True)
    leftovers += [h.name for h in lay.hosts if _mounted(dirs.rootfs(h.name))]
    leftovers += [n for n in (lay.client_veth, *(link.bridge for link in lay.links)) if _link_exists(n)]
    if Path("/run/netns", lay.client_netns).exists():
        leftovers.append(lay.client_netns)
    return leftovers

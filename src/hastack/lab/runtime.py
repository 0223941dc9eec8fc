"""The lab on this machine: systemd-nspawn hosts on bridges, plus a client namespace.

Every host boots systemd from an overlay of the cached image (a few MiB of
its own), so `lab down` removes a host by unmounting one directory. What
`lab up` starts is recorded in state.json (nspawn PIDs, mounts); `lab down`
ends exactly those, then removes the links the layout names.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hastack.common.poll import until
from hastack.common.progress import Progress
from hastack.lab import inside
from hastack.lab.cpu import CpuGroups
from hastack.lab.image import CACHE, Image
from hastack.lab.layout import POWER_PORT, LabHost, Layout, boot_files, fencers, host_token
from hastack.lab.netns import end_processes


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
    def power_token(self) -> Path:
        return self.root / "power.token"

    @property
    def power_log(self) -> Path:
        return self.root / "power.log"

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def known_hosts(self) -> Path:
        """The host keys of the lab's hosts, recorded as each is created (nothing to trust by hand)."""
        return self.root / "known_hosts"

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


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int, prefix: bytes = b"systemd-nspawn") -> bool:
    """Is this PID still the process we started (not a reused PID)?"""
    return _cmdline(pid).startswith(prefix)


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            for line in status.read_text().splitlines():
                if line.startswith("PPid:"):
                    if int(line.split()[1]) == pid:
                        out.append(int(status.parent.name))
                    break
    return out


FENCES_KEPT = 32


@dataclass
class LabState:
    """What `lab up` started, so that `lab down` and the power switch end exactly that."""

    hosts: dict[str, int] = field(default_factory=dict)  # host -> nspawn PID
    power: int | None = None  # the power switch's PID
    image: str | None = None  # the image the hosts boot from
    # host -> its latest cuts by the power switch, oldest first: a chaos run judges against the first
    # cut after its fault.
    fences: dict[str, list[float]] = field(default_factory=dict)

    @property
    def fenced(self) -> dict[str, float]:
        """host -> when the power switch last cut it."""
        return {h: ts[-1] for h, ts in self.fences.items() if ts}

    def record_fence(self, host: str, at: float) -> None:
        self.fences[host] = [*self.fences.get(host, []), at][-FENCES_KEPT:]

    def as_json(self) -> str:
        return json.dumps({"hosts": self.hosts, "power": self.power, "image": self.image, "fences": self.fences},
                          indent=2) + "\n"


def load_state(dirs: LabDirs) -> LabState:
    if not dirs.state.exists():
        return LabState()
    data = json.loads(dirs.state.read_text())
    return LabState(hosts=dict(data.get("hosts", {})), power=data.get("power"), image=data.get("image"),
                    # A state written before the cuts were kept holds only the last one per host.
                    fences={h: list(ts) for h, ts in data.get("fences", {}).items()}
                    or {h: [t] for h, t in data.get("fenced", {}).items()})


@contextlib.contextmanager
def locked_state(dirs: LabDirs) -> Iterator[LabState]:
    """Read, change and write state.json under a lock: the CLI and the power switch both write it."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    with open(dirs.root / "state.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load_state(dirs)
        yield state
        tmp = dirs.state.with_suffix(".tmp")
        tmp.write_text(state.as_json())
        tmp.replace(dirs.state)


def ensure_access(dirs: LabDirs) -> None:
    """The lab's SSH key and power switch token: generated once, 0600, never printed."""
    dirs.root.mkdir(parents=True, exist_ok=True)
    dirs.root.chmod(0o700)
    if not dirs.key.exists():
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"hastack-lab-{dirs.root.name}", "-f", str(dirs.key))
    if not dirs.power_token.exists():
        fd = os.open(dirs.power_token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")


def ensure_bridges(lay: Layout) -> None:
    for link in lay.links:
        if not _link_exists(link.bridge):
            sh("ip", "link", "add", link.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{link.gateway}/{link.network.prefixlen}", "dev", link.bridge)
        # Set on every `lab up`: an explicitly set MAC stays when ports come and go.
        sh("ip", "link", "set", link.bridge, "address", link.mac, "up")


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


def _prepare_root(dirs: LabDirs, image: Path, lay: Layout, host: LabHost) -> Path:
    base = dirs.host(host.name)
    root = dirs.rootfs(host.name)
    for d in ("upper", "work", "root"):
        (base / d).mkdir(parents=True, exist_ok=True)
    if not _mounted(root):
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={image},upperdir={base / 'upper'},workdir={base / 'work'}", str(root))
    agent = (resources.files("hastack.lab") / "fence_hastack_lab").read_text()
    token = host_token(dirs.power_token.read_text().strip(), host.name) if host.name in fencers(lay) else None
    files = boot_files(lay, host, dirs.key.with_suffix(".pub").read_text(), token, agent)
    try:  # the host's root owns its tree: nothing there is written or read through a link
        for path, f in files.items():
            inside.write(root, path, f.body, f.mode)
        inside.chmod_dir(root, "root/.ssh", 0o700)
        keys = inside.read_files(root, "etc/ssh", ".pub")
        if not any(k.startswith("ssh_host_") for k in keys):
            _host_keys(root)
            keys = inside.read_files(root, "etc/ssh", ".pub")
    except inside.Refused as exc:
        raise LabError(f"{host.name}: refusing to boot it: {exc}") from exc
    pin_host_keys(dirs, str(host.address), [v for k, v in keys.items() if k.startswith("ssh_host_")])
    return root


def _host_keys(root: Path) -> None:
    """Each host its own SSH host keys: made in a directory of this machine, then placed inside."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "etc/ssh").mkdir(parents=True)
        sh("ssh-keygen", "-A", "-f", tmp)
        for key in sorted((Path(tmp) / "etc/ssh").iterdir()):
            inside.write(root, f"etc/ssh/{key.name}", key.read_text(), 0o644 if key.suffix == ".pub" else 0o600)


def pin_host_keys(dirs: LabDirs, address: str, public_keys: list[str]) -> None:
    """Record `address`'s keys in the lab's known_hosts, replacing what an earlier host there had.

    Callers hold the state lock (every boot does), so two boots never rewrite it at once.
    """
    keep = [ln for ln in (dirs.known_hosts.read_text().splitlines() if dirs.known_hosts.exists() else [])
            if ln.split(" ", 1)[0] != address]
    pinned = [f"{address} {' '.join(k.split()[:2])}" for k in public_keys]
    tmp = dirs.known_hosts.with_name(f".known_hosts.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("".join(f"{ln}\n" for ln in [*keep, *pinned]))
    tmp.replace(dirs.known_hosts)


def _shared(dirs: LabDirs, image: Path, name: str, path: str) -> Path:
    """The machine's directory behind a shared path, owned as the image owns `path` (the same
    user id in every host: all boot the same image)."""
    where = dirs.root / "shared" / name
    if not where.exists():
        where.mkdir(parents=True, mode=0o750)
        inside = image / path.lstrip("/")
        if inside.exists():
            st = inside.stat()
            os.chown(where, st.st_uid, st.st_gid)
    return where


def boot(dirs: LabDirs, image: Path, lay: Layout, host: LabHost) -> int:
    """Boot one host; returns the nspawn PID once its links are on their bridges."""
    root = _prepare_root(dirs, image, lay, host)
    for hif in host.interfaces:  # a dead host's leftover links would be taken for the new host's
        if _link_exists(hif.outside):
            sh("ip", "link", "del", hif.outside, check=False)
    argv = ["systemd-nspawn", "--register=no", "--keep-unit", "--boot", "--quiet", "-D", str(root), "-M", host.name,
            # mongod locks its key pages (as a non-root user, through AmbientCapabilities).
            "--capability=CAP_IPC_LOCK",
            *(f"--bind={_shared(dirs, image, name, path)}:{path}" for name, path in host.shared),
            *(f"--network-veth-extra={i.outside}:{i.inside}" for i in host.interfaces)]
    if (groups := CpuGroups.of(lay.cluster)) is not None:
        groups.prepare([h.name for h in lay.hosts])
        argv = groups.wrap(groups.host(host.name), argv)
    console = dirs.console(host.name).open("ab")
    # stdin from /dev/null and its own session: the container outlives this command.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                            start_new_session=True)
    console.close()
    pending = list(host.interfaces)

    def attached() -> bool:
        """Each of the host's links onto its bridge as it appears; True once all are."""
        if proc.poll() is not None:
            tail = dirs.console(host.name).read_text(errors="replace").splitlines()[-15:]
            raise LabError(f"{host.name}: systemd-nspawn exited {proc.returncode}:\n" + "\n".join(tail))
        for hif in [h for h in pending if _link_exists(h.outside)]:
            sh("ip", "link", "set", hif.outside, "master", lay.links[hif.link].bridge, "up")
            pending.remove(hif)
        return not pending

    if not until(attached, 30, every=0.05):
        raise LabError(f"{host.name}: its links did not appear within 30 s")
    return proc.pid


def wait_port(address: str, port: int, timeout: float) -> bool:
    def answers() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return True
        return False

    return until(answers, timeout) is not None


def stop_hosts(pids: list[int], grace: float = 20) -> None:
    """SIGTERM asks nspawn for a clean shutdown of each container, all at
    once (one by one, a lab took a minute to go down); SIGKILL for any that hang."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    until(lambda: not any(alive(pid) for pid in pids), grace)
    for pid in pids:
        if alive(pid):
            kill_host(pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def kill_host(pid: int, timeout: float = 10) -> bool:
    """The whole host at once, as a power cut: no shutdown, no goodbye.

    SIGKILL to nspawn alone leaves the container running (measured: its
    processes outlive it), so the container's init is killed first: the
    kernel then kills every process of its PID namespace. True once gone.
    """
    for child in _children(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    def gone() -> bool:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return not alive(pid)

    return until(gone, timeout, every=0.02) is not None



def power_cut(pid: int | None, host: LabHost) -> None:
    """The host off, network included: every cable out, every process killed.

    The cables go first. Killing a loaded host's processes takes a while (seen: 0.6 s), and meanwhile
    its kernel still answered ARP for the VIP beside the backup that had already taken it (chaos
    `host-crash`: two holders); a real power cut silences the NIC at the instant the CPU stops. A
    network namespace can also outlive its processes, answering ARP for the addresses it held (a fenced
    VIP holder was seen beside the new holder, chaos `isolation`): deleting the host-side veths takes
    the namespace's end with them.
    """
    try:
        _links_down([i.outside for i in host.interfaces])
    except LabError as exc:  # the kill and the veths' deletion below still cut it off: only the order is lost
        print(f"{host.name}: {exc}; cutting the power anyway", file=sys.stderr, flush=True)
    if pid and not kill_host(pid):
        raise LabError(f"{host.name}: still running 10 s after SIGKILL")
    until(lambda: not any(_link_exists(i.outside) for i in host.interfaces), 2, every=0.02)
    for i in host.interfaces:
        if _link_exists(i.outside):
            sh("ip", "link", "del", i.outside, check=False)
    left = [i.outside for i in host.interfaces if _link_exists(i.outside)]
    if left:
        raise LabError(f"{host.name}: links {', '.join(left)} could not be removed")


def _links_down(names: list[str]) -> None:
    """These host-side links down in one `ip -batch`: all dark at the same instant."""
    lines = [f"link set dev {n} down" for n in names if _link_exists(n)]
    if lines:
        res = subprocess.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True,
                             text=True, timeout=30, check=False)
        if res.returncode != 0:
            raise LabError(f"taking the links down failed: {(res.stderr or res.stdout).strip()}")


def cables_out(lay: Layout, names: list[str]) -> None:
    """Every link of these hosts down at once: the network goes dark for all of them at the same
    instant, as in a room losing power. Killing the hosts one by one takes ~1 s, and meanwhile
    the survivors would fail the VIP over among themselves (seen with keepalived: two holders)."""
    _links_down([i.outside for n in names for i in lay.host(n).interfaces])


def power_off(dirs: LabDirs, lay: Layout, name: str) -> None:
    """Cut one host's power (see power_cut): the power switch's "off"."""
    power_cut(load_state(dirs).hosts.get(name), lay.host(name))


def power_on(dirs: LabDirs, lay: Layout, name: str) -> int:
    """Boot one host if it is off; its nspawn PID either way: the power switch's "on"."""
    with locked_state(dirs) as state:
        pid = state.hosts.get(name)
        if pid and alive(pid):
            return pid
        if state.image is None:
            raise LabError("the lab state names no image")
        state.hosts[name] = boot(dirs, Path(state.image), lay, lay.host(name))
        return state.hosts[name]


def restart(dirs: LabDirs, lay: Layout, name: str, grace: float = 90) -> int:
    """A clean reboot of one host, as an operator's `reboot`: systemd stops every service in order
    (SIGTERM to nspawn asks for that), then the host boots again. Returns the new nspawn PID."""
    pid = load_state(dirs).hosts.get(name)
    if pid and alive(pid):
        stop_hosts([pid], grace=grace)
    now = load_state(dirs).hosts.get(name)
    if now and now != pid and alive(now):
        return now  # booted meanwhile: the cluster fenced it (a reboot); its links are the new host's
    power_cut(None, lay.host(name))  # links left behind, if any
    return power_on(dirs, lay, name)


def up(lay: Layout, img: Image, spec_path: Path, progress: Progress, cache: Path = CACHE) -> dict[str, int]:
    dirs = LabDirs.of(lay.cluster, cache)
    ensure_access(dirs)
    ensure_bridges(lay)
    ensure_client(lay)
    start_power(dirs, lay, spec_path, progress)
    groups = CpuGroups.of(lay.cluster)
    progress(f"CPU shared per host ({groups.top})" if groups is not None else
             "CPU shared per process: this machine mounts no cgroup v1 cpu controller")
    for host in lay.hosts:
        with locked_state(dirs) as state:
            state.image = str(img.path)
            pid = state.hosts.get(host.name)
            if pid and alive(pid):
                progress(f"{host.name}: already running (pid {pid})")
                continue
            progress(f"{host.name}: booting at {host.address}")
            state.hosts[host.name] = boot(dirs, img.path, lay, host)
    for host in lay.hosts:
        if not wait_port(str(host.address), 22, 90):
            tail = dirs.console(host.name).read_text(errors="replace").splitlines()[-15:]
            raise LabError(f"{host.name}: sshd at {host.address}:22 did not answer within 90 s; console:\n"
                           + "\n".join(tail))
    progress(f"{len(lay.hosts)} hosts answer SSH; client namespace {lay.client_netns} at {lay.client_address}")
    return load_state(dirs).hosts


def wipe(lay: Layout, name: str, progress: Progress, fence_wait: float = 0, cache: Path = CACHE) -> int:
    """A host replaced: power cut, its disk discarded, booted blank from the image. Returns the new PID.

    A cluster fences a member that vanished; a blank host booted before that
    would be the one fenced. With `fence_wait`, the host stays off until the
    power switch has been asked to fence it (or the wait ends), as a
    replacement server is racked after its predecessor was fenced.
    """
    dirs = LabDirs.of(lay.cluster, cache)
    host = lay.host(name)
    with locked_state(dirs) as state:
        if state.image is None:
            raise LabError(f"no lab is up for {lay.cluster}")
        image = Path(state.image)
        pid = state.hosts.get(name)
        cut = time.time()
        power_cut(pid, host)
        root = dirs.rootfs(name)
        if _mounted(root):
            sh("umount", str(root))
        for d in ("upper", "work"):
            shutil.rmtree(dirs.host(name) / d, ignore_errors=True)
        progress(f"{name}: powered off, disk wiped")
    if fence_wait:
        progress(f"{name}: waiting up to {fence_wait:.0f} s for the cluster to fence it")
        until(lambda: load_state(dirs).fenced.get(name, 0) >= cut, fence_wait, every=0.2)
    with locked_state(dirs) as state:
        pid = state.hosts.get(name)
        if not (pid and alive(pid)):  # a fence "reboot" may have powered it on already
            progress(f"{name}: booting blank from the image")
            state.hosts[name] = boot(dirs, image, lay, host)
    if not wait_port(str(host.address), 22, 90):
        raise LabError(f"{name}: sshd did not answer within 90 s after the wipe")
    return load_state(dirs).hosts[name]


POWER_MODULE = "hastack.lab.power"


def _power_alive(pid: int | None) -> bool:
    return pid is not None and POWER_MODULE.encode() in _cmdline(pid)


def start_power(dirs: LabDirs, lay: Layout, spec_path: Path, progress: Progress) -> None:
    """The lab power switch: what the hosts' fence agent calls to cut a host's power."""

    with locked_state(dirs) as state:
        if _power_alive(state.power):
            return
        log = dirs.power_log.open("ab")
        proc = subprocess.Popen([sys.executable, "-m", POWER_MODULE, str(spec_path.resolve()), str(dirs.root.parent)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        state.power = proc.pid
    address = str(lay.management.gateway)
    if not wait_port(address, POWER_PORT, 15):
        tail = dirs.power_log.read_text(errors="replace").splitlines()[-10:]
        raise LabError(f"the lab power switch did not answer on {address}:{POWER_PORT} within 15 s:\n"
                       + "\n".join(tail))
    progress(f"power switch (fencing for lab hosts) on {address}:{POWER_PORT}")


def stop_power(dirs: LabDirs) -> None:
    state = load_state(dirs)
    if _power_alive(state.power):
        assert state.power is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.power, signal.SIGTERM)
        until(lambda: not _power_alive(state.power), 10, every=0.05)


def down(lay: Layout, progress: Progress, cache: Path = CACHE) -> list[str]:
    """Remove everything `up` made; returns what was left that could not be removed."""
    dirs = LabDirs.of(lay.cluster, cache)
    stop_power(dirs)  # first: nothing may power a host back on while the lab goes down
    running = {name: pid for name, pid in load_state(dirs).hosts.items() if alive(pid)}
    if running:
        progress("shutting down " + ", ".join(f"{name} (pid {pid})" for name, pid in running.items()))
        stop_hosts(list(running.values()))
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
    if (groups := CpuGroups.of(lay.cluster)) is not None:
        leftovers += groups.remove()
    if dirs.root.exists():
        shutil.rmtree(dirs.root, ignore_errors=True)
    leftovers += [h.name for h in lay.hosts if _mounted(dirs.rootfs(h.name))]
    leftovers += [n for n in (lay.client_veth, *(link.bridge for link in lay.links)) if _link_exists(n)]
    if Path("/run/netns", lay.client_netns).exists():
        leftovers.append(lay.client_netns)
    return leftovers

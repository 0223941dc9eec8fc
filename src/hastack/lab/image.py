"""The lab image: a Debian bookworm rootfs with every component baked in, cached.

Built once with debootstrap from this machine's own mirror, then reused: a
lab host is a throwaway copy of it. The cache key is the package list and the
builder version, so a change to either builds a new image.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hastack.common.progress import Progress
from hastack.lab.aptsources import machine_mirror

BUILDER_VERSION = "5"
SUITE = "bookworm"
CACHE = Path(os.environ.get("HASTACK_CACHE", "/var/lib/hastack"))

# debootstrap itself: enough to boot systemd and accept SSH.
BASE = ("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "iputils-ping", "ca-certificates",
        "python3", "python3-venv", "libcurl4", "procps", "psmisc", "socat", "chrony", "nftables", "iptables")
# Then, inside the chroot: the components (services stay disabled until deploy).
COMPONENTS = ("corosync", "pacemaker", "pacemaker-cli-utils", "resource-agents", "crmsh", "haproxy",
              "keepalived", "fping", "mariadb-server", "mariadb-backup", "galera-4", "galera-arbitrator-4",
              "rabbitmq-server", "memcached", "rsyslog",
              # OpenStack, from Debian's own packages (bookworm: Zed), and the client for operators on a host.
              "keystone", "glance-api", "placement-api", "nova-api", "nova-conductor", "nova-scheduler",
              "nova-consoleproxy", "neutron-server", "cinder-api", "cinder-scheduler", "heat-api", "heat-api-cfn",
              "heat-engine", "openstack-dashboard", "uwsgi-plugin-python3", "python3-openstackclient")
# (nova-compute runs from python3-nova's code: its package would pull a hypervisor in.)
SERVICES_OFF = ("mariadb", "rabbitmq-server", "haproxy", "keepalived", "corosync", "pacemaker", "memcached",
                "garb", "chrony", "keystone", "glance-api", "placement-api", "nova-api", "nova-api-metadata",
                "nova-conductor", "nova-scheduler", "nova-novncproxy", "nova-spicehtml5proxy", "nova-serialproxy",
                "neutron-api", "neutron-rpc-server", "cinder-api", "cinder-scheduler", "heat-api", "heat-api-cfn",
                "heat-engine")


class ImageError(Exception):
    pass


@dataclass(frozen=True)
class Image:
    path: Path
    key: str

    @property
    def ready(self) -> bool:
        return (self.path / ".hastack-image-ready").exists()


def image_key() -> str:
    return hashlib.sha256(" ".join((BUILDER_VERSION, SUITE, *BASE, *COMPONENTS)).encode()).hexdigest()[:12]


def image(cache: Path = CACHE) -> Image:
    key = image_key()
    return Image(cache / "images" / f"{SUITE}-{key}", key)




def _run(argv: list[str], log: Path, step: str, timeout: float) -> None:
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        res = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False)
    if res.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-25:]
        raise ImageError(f"{step} failed (exit {res.returncode}); last lines of {log}:\n" + "\n".join(tail))


def _lab_tweaks(root: Path) -> None:
    """What a container host needs that a real server does not."""
    # chronyd may not set the clock of a container (it is the machine's clock):
    # run it with -x so the time-sync resource still runs and serves.
    (root / "etc/default/chrony").write_text('DAEMON_OPTS="-F 1 -x"\n')
    dropin = root / "etc/systemd/system/chrony.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "hastack-lab.conf").write_text("[Unit]\n# lab: chronyd -x needs no CAP_SYS_TIME\nConditionCapability=\n")
    # Each host makes its own host keys when the lab boots it.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def build(mongod: Path | None, progress: Progress = print, cache: Path = CACHE) -> Image:
    """Build the image unless the cached one is ready. mongod: the binary to bake in."""
    img = image(cache)
    if img.ready:
        progress(f"image {img.path} is cached")
        return img
    mirror = machine_mirror(SUITE)
    if mirror is None:
        raise ImageError(f"no apt source on this machine serves {SUITE} main; the image needs one")
    work = img.path.with_name(img.path.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log = img.path.with_name(img.path.name + ".log")
    log.write_text("")
    t0 = time.monotonic()
    progress(f"debootstrap {SUITE} (log: {log})")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE)}", SUITE, str(work), mirror],
         log, "debootstrap", 1800)
    policy = work / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # no service starts inside the chroot
    policy.chmod(0o755)
    progress(f"installing {len(COMPONENTS)} component packages")
    # Some maintainer scripts (nova-common's) read /proc and resolve the host's own name: install in
    # a namespace of our own with /proc mounted (gone when it ends) and a name the image resolves.
    (work / "etc/hosts").write_text("127.0.0.1 localhost\n127.0.1.1 lab\n")
    # dpkg without its fsync per file (--force-unsafe-io): one sync at the end instead, before the
    # image is called ready, so a crash mid-build costs a rebuild, never a bad image.
    install = ('root=$1; shift; hostname lab && mount -t proc proc "$root/proc" && '
               'exec chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends '
               '-o Dpkg::Options::=--force-unsafe-io "$@"')
    _run(["unshare", "--uts", "--mount", "--fork", "sh", "-c", install, "install", str(work), *COMPONENTS],
         log, "component install", 1800)
    # pacemaker_remoted, for computes watched by pacemaker (instance HA). Its package conflicts with
    # pacemaker, which members run from this same image: its files (no path in common with pacemaker's,
    # the same 2.1.5 libraries) are unpacked beside them, and only a compute's deploy starts it.
    # Unpacked aside and copied: `dpkg -x` into / would replace the merged-/usr links (/lib) with
    # directories of their own.
    _run(["chroot", str(work), "sh", "-c",
          "cd /tmp && apt-get download -q pacemaker-remote && dpkg -x pacemaker-remote_*.deb /tmp/pr && "
          "install -m 0755 /tmp/pr/usr/sbin/pacemaker-remoted /usr/sbin/ && "
          "ln -sf pacemaker-remoted /usr/sbin/pacemaker_remoted && "
          "install -m 0644 /tmp/pr/lib/systemd/system/pacemaker_remote.service /usr/lib/systemd/system/ && "
          "rm -rf /tmp/pr pacemaker-remote_*.deb"], log, "pacemaker-remoted", 600)
    _run(["chroot", str(work), "systemctl", "disable", *SERVICES_OFF], log, "disabling services", 300)
    _run(["chroot", str(work), "systemctl", "enable", "systemd-networkd"], log, "enabling networkd", 300)
    _run(["chroot", str(work), "apt-get", "clean"], log, "apt-get clean", 300)
    _lab_tweaks(work)
    policy.unlink()
    if mongod is not None:
        shutil.copy2(mongod, work / "usr/local/bin/mongod")
    (work / "etc/hostname").write_text("lab\n")
    os.sync()  # dpkg wrote without fsync: every file on disk before the image is called ready
    (work / ".hastack-image-ready").write_text(img.key + "\n")
    shutil.rmtree(img.path, ignore_errors=True)
    work.rename(img.path)
    progress(f"image ready in {time.monotonic() - t0:.0f} s: {img.path}")
    return img

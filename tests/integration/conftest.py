"""Fixtures for tests that run the components' own binaries on rendered files."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hastack.credentials.model import Secrets, complete
from hastack.render import render_all
from hastack.render.files import Tree
from hastack.render.write import write_tree
from hastack.spec.load import load_spec
from hastack.spec.model import Spec
from tests.helpers import SEED, THREE

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Rendered:
    spec: Spec
    secrets: Secrets
    tree: Tree
    out: Path

    def path(self, host: str, path: str) -> Path:
        return self.out / host / path.lstrip("/")

    def relocated(self, host: str, path: str) -> Path:
        """A copy of the rendered file `path` whose every mention of another file rendered for `host`
        (certificates, keys, the CA) names that file's rendered copy: what a daemon started here reads."""
        text = self.path(host, path).read_text()
        for other in sorted(self.tree[host], key=len, reverse=True):  # /a/b/key.pem before /a/b
            text = text.replace(other, str(self.path(host, other)))
        copy = self.out / f"{host}.relocated" / path.lstrip("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(text)
        return copy


def render_to(spec: Spec, out: Path) -> Rendered:
    secrets = complete(spec, {})[0]
    tree = render_all(spec, secrets)
    write_tree(tree, out)
    return Rendered(spec, secrets, tree, out)


@pytest.fixture(params=[THREE, SEED], ids=["three-controller", "seed-two-node"])
def rendered(request: pytest.FixtureRequest, tmp_path: Path) -> Rendered:
    return render_to(load_spec(request.param), tmp_path / "out")


class Daemons:
    """Processes a test starts; reaped at teardown (the namespace ends them)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, argv: Sequence[str], log: Path | None = None, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = log.open("ab") if log else subprocess.DEVNULL
        proc = subprocess.Popen(list(argv), stdout=out, stderr=out, env=env, cwd=cwd)
        self.procs.append(proc)
        return proc

    def reap(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # only if the namespace teardown did not end it already
            proc.wait(timeout=30)


@pytest.fixture
def daemons() -> Iterator[Daemons]:
    d = Daemons()
    try:
        yield d
    finally:
        d.reap()


def require(binary: str) -> str:
    """The path of a component binary; a missing one fails (CI installs them all)."""
    path = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/lib/rabbitmq/bin") / binary) if p.exists()), None
    )
    if path is None:
        pytest.fail(f"{binary} is not installed: run .ci/run (it installs every component)")
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    """Poll real state until it holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)

"""The lab power switch: what a BMC is to a real server, for lab hosts.

`hastack lab up` runs it on the machine, listening on the management bridge's
gateway address only. The hosts' fence agent (fence_hastack_lab) calls it with
its host's own token (only hosts on the heartbeat rings have one) to cut a
host's power (the container's whole PID namespace killed at once), restore it
(boot again), or report it. Every action is logged with its caller and time,
in the lab directory's power.log: fencing is evidence, and this is where it
is kept. At most WORKERS requests are served at once, each for at most
REQUEST_TIMEOUT_S of silence.

    GET  /hosts              -> {"hosts": [...]}
    GET  /hosts/NAME         -> {"host": NAME, "power": "on"|"off"}
    POST /hosts/NAME/ACTION  -> ACTION in on, off, reboot
"""

from __future__ import annotations

import hmac
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hastack.lab.layout import POWER_PORT, Layout, fencers, host_token, layout
from hastack.lab.runtime import LabDirs, alive, load_state, locked_state, power_off, power_on
from hastack.spec.load import load_spec

PORT = POWER_PORT
ACTIONS = ("on", "off", "reboot")
# A reboot's "on" comes this long after the power cut, as a server's firmware
# takes time before the OS boots. A lab host boots in about a second: back in
# the cluster before the fencer has announced its result, pacemaker on it
# would learn it was "just fenced" and stay down (measured here).
POST_SECONDS = 10.0
REQUEST_TIMEOUT_S = 10.0
WORKERS = 16


def caller(given: str, master: str, allowed: frozenset[str]) -> str | None:
    """The fencing host whose token this is; None for anything else."""
    return next((h for h in sorted(allowed) if hmac.compare_digest(given.encode(), host_token(master, h).encode())),
                None)


@dataclass(frozen=True)
class Route:
    action: str  # list, status, on, off, reboot
    host: str | None = None


def route(method: str, path: str, hosts: tuple[str, ...]) -> Route | None:
    """Which action a request asks for; None for anything else (404)."""
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if method == "GET" and parts == ["hosts"]:
        return Route("list")
    if len(parts) < 2 or parts[0] != "hosts" or parts[1] not in hosts:
        return None
    if method == "GET" and len(parts) == 2:
        return Route("status", parts[1])
    if method == "POST" and len(parts) == 3 and parts[2] in ACTIONS:
        return Route(parts[2], parts[1])
    return None


class Switch:
    def __init__(self, lay: Layout, dirs: LabDirs) -> None:
        self.lay, self.dirs = lay, dirs
        self._lock = threading.Lock()  # one power action at a time
        # A reboot's pending "on", per host: a later action replaces it, or
        # an "off" asked by the fencer would be undone seconds later.
        self._pending: dict[str, threading.Timer] = {}

    def power(self, host: str) -> str:
        pid = load_state(self.dirs).hosts.get(host)
        return "on" if pid and alive(pid) else "off"

    def off(self, host: str) -> None:
        power_off(self.dirs, self.lay, host)

    def on(self, host: str) -> None:
        power_on(self.dirs, self.lay, host)

    def act(self, r: Route) -> dict[str, object]:
        if r.action == "list":
            return {"hosts": [h.name for h in self.lay.hosts]}
        assert r.host is not None
        host = r.host
        with self._lock:
            if (pending := self._pending.pop(host, None)) is not None:
                pending.cancel()
            if r.action in ("off", "reboot"):
                self.off(host)
                with locked_state(self.dirs) as state:
                    state.record_fence(host, time.time())
            if r.action == "on":
                self.on(host)
            if r.action == "reboot":
                timer = threading.Timer(POST_SECONDS, self._boot_later, args=(host,))
                timer.daemon = True
                self._pending[host] = timer
                timer.start()
                return {"host": host, "power": self.power(host), "on_in_seconds": POST_SECONDS}
            return {"host": host, "power": self.power(host)}

    def _boot_later(self, host: str) -> None:
        with self._lock:
            if self._pending.get(host) is not threading.current_thread():
                return  # cancelled, or replaced by a later action
            del self._pending[host]
            try:
                self.on(host)
            except Exception as exc:  # a thread: nowhere to raise to but the log
                print(f"{time.strftime('%F %T')} {host}: power on after reboot failed: {exc}", file=sys.stderr,
                      flush=True)
                return
        print(f"{time.strftime('%F %T')} {host}: powered on after reboot", file=sys.stderr, flush=True)


def _handler(switch: Switch, master: str) -> type[BaseHTTPRequestHandler]:
    names = tuple(h.name for h in switch.lay.hosts)
    allowed = fencers(switch.lay)

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a caller that connects and says nothing is dropped

        def _serve(self, method: str) -> None:
            given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            who = caller(given, master, allowed)
            if who is None:
                self._reply(401, {"error": "bad or missing token, or a host that may not fence"})
                return
            r = route(method, self.path, names)
            if r is None:
                self._reply(404, {"error": f"no such request: {method} {self.path}"})
                return
            try:
                body = switch.act(r)
            except Exception as exc:  # the caller (a fence agent) must hear why
                self._reply(500, {"error": str(exc)})
                return
            if r.action in ACTIONS:
                self.log_message("%s %s by %s (%s): power %s", r.action, r.host, who, self.client_address[0],
                                 body["power"])
            self._reply(200, body)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def _reply(self, code: int, body: dict[str, object]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            if code != 200:  # monitors poll often: log actions and refusals, not every status
                super().log_request(code, size)

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """A thread per request, at most WORKERS at once: idle or flooding callers cannot hold every thread."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int = WORKERS
                 ) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(workers)
        self._count = threading.Lock()
        self.active = 0  # requests being served now

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: this caller retries, as a fence agent does
            return
        with self._count:
            self.active += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count:
                self.active -= 1
            self._slots.release()


def main(argv: list[str]) -> int:
    spec_path, cache = Path(argv[0]), Path(argv[1])
    lay = layout(load_spec(spec_path))
    dirs = LabDirs(cache / lay.cluster)
    master = dirs.power_token.read_text().strip()
    server = BoundedServer((str(lay.management.gateway), PORT), _handler(Switch(lay, dirs), master))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"{time.strftime('%F %T')} power switch for {lay.cluster} on {lay.management.gateway}:{PORT}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

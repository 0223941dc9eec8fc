"""HTTP health endpoints for haproxy: GET /galera answers 200 or 503 with the reason, to a request
that shows the agent's token (401 to any other).

The decision is `components.galera.writer_health` (pure); this module only
probes MariaDB over its local socket and serves the answer.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pymysql

from hastack.agent.config import AgentConfig
from hastack.components.galera import STATUS_SQL, GaleraState, Health, parse_wsrep_status, writer_health

log = logging.getLogger("hastack.agent")
REQUEST_TIMEOUT_S = 5.0


class GaleraProbe:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self._cached: tuple[float, Health, GaleraState | None] | None = None
        # One connection kept across probes: haproxy on every node polls every few hundred ms,
        # and a login per probe cost the agent ~15% of a core in the fast-profile lab.
        self._conn: pymysql.connections.Connection[pymysql.cursors.Cursor] | None = None

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a dead server's socket: nothing to report
                self._conn.close()
            self._conn = None

    def _ask(self) -> GaleraState:
        if self._conn is None:
            self._conn = pymysql.connect(unix_socket=self.cfg.mysql_socket, user=self.cfg.mysql_user,
                                         password=self.cfg.mysql_password, connect_timeout=1, read_timeout=2)
        with self._conn.cursor() as cur:
            cur.execute(STATUS_SQL)
            return parse_wsrep_status(cur.fetchall())

    def _probe(self) -> tuple[Health, GaleraState | None]:
        kept = self._conn is not None
        try:
            try:
                state = self._ask()
            except pymysql.MySQLError:
                self._close()
                if not kept:
                    raise
                state = self._ask()  # the kept connection died with a restarted server: one fresh login
        except pymysql.MySQLError as exc:
            self._close()
            # The server's own words stay in this node's journal; whoever polls gets the error code only.
            log.warning("mariadb did not answer: %s", exc)
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else type(exc).__name__
            return Health(False, f"mariadb did not answer (error {code})"), None
        return writer_health(state, self.cfg.donor_serves), state

    def check(self) -> tuple[Health, GaleraState | None]:
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._cached[0] < self.cfg.cache_ms / 1000:
                return self._cached[1], self._cached[2]
            health, state = self._probe()
            self._cached = (time.monotonic(), health, state)
            return health, state


def make_server(cfg: AgentConfig) -> ThreadingHTTPServer:
    probe = GaleraProbe(cfg)
    expected = f"Bearer {cfg.token}".encode()

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a client that connects and says nothing is dropped, not kept

        def handle(self) -> None:
            # haproxy's check closes with a reset once it has read the status (checks never linger), at
            # times before the answer was all written: a traceback per check in the journal (274 in 20 min
            # on a fast-profile controller). A client gone has nothing left to be told.
            try:
                super().handle()
            except ConnectionError as exc:
                log.debug("%s left before its answer was written: %s", self.client_address[0], exc)

        def do_GET(self) -> None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), expected):
                self._send(401, {"error": "a token is needed"})
            elif self.path.rstrip("/") == "/galera":
                health, state = probe.check()
                body = {"serve": health.serve, "reason": health.reason,
                        "state": asdict(state) if state else None}
                self._send(200 if health.serve else 503, body)
            elif self.path.rstrip("/") in ("", "/health"):
                self._send(200, {"agent": "ok"})
            else:
                self._send(404, {"error": f"no endpoint {self.path}"})

        def _send(self, code: int, body: dict[str, object]) -> None:
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    server = ThreadingHTTPServer((cfg.listen, cfg.port), Handler)
    server.daemon_threads = True
    return server

"""The smoke's horizon check in Debian's real headless Chromium, against a small web server on
loopback standing in for horizon: a login that works, a login page that never comes, a login that
never ends. A failed check names the step that failed and keeps what the steps before it measured."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hastack.workload import smoke

FORM = (b'<html><body><form method="post" action="{action}"><input id="id_username" name="username">'
        b'<input id="id_password" name="password" type="password"><button id="loginBtn" type="submit">'
        b'Sign In</button></form></body></html>')
HOME = b'<html><head><title>Overview</title></head><body><a href="/auth/logout/">Sign Out</a></body></html>'
WAIT_S = 3.0


class Horizon(BaseHTTPRequestHandler):
    """/auth/login/ posts to /home/ (logged in); /slow/auth/login/ posts to /hang/; /hang/ never answers."""

    released = threading.Event()

    def _page(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> None:
        if self.path.startswith("/hang"):
            self.released.wait(30)  # bounded: the fixture releases it at the test's end
            return
        if self.path == "/auth/login/":
            self._page(FORM.replace(b"{action}", b"/home/"))
        elif self.path == "/slow/auth/login/":
            self._page(FORM.replace(b"{action}", b"/hang/"))
        elif self.path == "/home/":
            self._page(HOME)
        else:
            self.send_error(404)

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._route()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def horizon(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(smoke, "HORIZON_WAIT_S", WAIT_S)
    Horizon.released.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Horizon)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        Horizon.released.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def target(url: str, screenshot: str = "") -> smoke.Target:
    return smoke.Target(vip="127.0.0.1", os_password="not-a-real-password", horizon_url=url, screenshot=screenshot)


def test_a_login_that_works_is_kept_as_a_screenshot(horizon: str, tmp_path: Path) -> None:
    shot = tmp_path / "horizon.png"
    c = smoke.horizon_check(target(f"{horizon}/auth/login/", str(shot)))
    assert c.ok, c.detail
    assert c.evidence["title"] == "Overview" and c.evidence["url"].endswith("/home/")
    assert shot.read_bytes().startswith(b"\x89PNG")


def test_a_login_page_that_never_comes_names_its_step(horizon: str) -> None:
    c = smoke.horizon_check(target(f"{horizon}/hang/auth/login/"))
    assert not c.ok
    assert c.evidence == {"failed_step": "the login page"}
    assert c.detail.startswith("the login page: TimeoutException: ") and "Stacktrace" not in c.detail, c.detail


def test_a_login_that_never_ends_keeps_the_login_page_s_time(horizon: str) -> None:
    c = smoke.horizon_check(target(f"{horizon}/slow/auth/login/"))
    assert not c.ok
    assert c.evidence["failed_step"] == "the login" and c.evidence["login_page_s"] < WAIT_S, c.evidence
    assert c.detail.startswith("the login: "), c.detail

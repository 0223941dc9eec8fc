"""One authenticated read per API through the VIP, as a client sees the cloud.

Runs on a controller (`python3 -c` with this module's source; what to ask,
the password included, as JSON on stdin) with the standard library only.
Logs in once (a password login costs keystone ~0.3 s of CPU: one per look),
then reads each API with that token, and, with nova, its compute services
(`os-services`: is each nova-compute reporting in). Prints one JSON line:
`{"token_ms": ..., "apis": {name: {"status": int, "ms": float}},
"computes": {host: "up" | "down"}}`, or `{"error": ...}` when no token could
be had.
"""

from __future__ import annotations

import concurrent.futures
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

SERVICES = " os-services"  # nova's compute services, asked beside the reads (no API has this name)


def _request(url: str, timeout: float, body: dict[str, Any] | None = None, token: str | None = None,
             context: ssl.SSLContext | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, method="POST" if body is not None else "GET",
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json", "Accept": "application/json",
                                          **({"X-Auth-Token": token} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, b""
    except OSError:
        return 0, {}, b""


def computes(body: bytes) -> dict[str, str]:
    """nova-compute's state per host, as nova's os-services says (heartbeats within service_down_time)."""
    return {s["host"]: s["state"] for s in json.loads(body)["services"] if s["binary"] == "nova-compute"}


def main() -> int:
    ask = json.loads(sys.stdin.readline())
    timeout = float(ask.get("timeout", 3.0))
    # HTTPS on the VIP: every API's certificate checked against the cluster's CA.
    context = ssl.create_default_context(cafile=ask["cafile"]) if ask.get("cafile") else None
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": ask["user"], "domain": {"id": "default"}, "password": ask["password"]}}},
        "scope": {"project": {"name": ask["user"], "domain": {"id": "default"}}}}}
    t0 = time.monotonic()
    status, headers, body = _request(ask["auth_url"].rstrip("/") + "/v3/auth/tokens", timeout, body=auth,
                                     context=context)
    token_ms = round((time.monotonic() - t0) * 1000, 1)
    if status != 201:
        print(json.dumps({"error": f"no token: HTTP {status}" if status else "no token: keystone did not answer",
                          "token_ms": token_ms}))
        return 0
    token = headers["X-Subject-Token"]
    project = json.loads(body)["token"]["project"]["id"]

    def read(url: str) -> tuple[int, bytes, float]:
        t = time.monotonic()
        # Catalog-style URLs name the caller's project as keystone's template does.
        code, _, data = _request(url.replace("%(project_id)s", project), timeout, token=token, context=context)
        return code, data, round((time.monotonic() - t) * 1000, 1)

    # Every read at once: the look takes as long as the slowest API, not the sum of them.
    urls = dict(ask["apis"]) | ({SERVICES: ask["services"]} if ask.get("services") else {})
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(urls) or 1) as pool:
        seen = dict(zip(urls, pool.map(read, urls.values()), strict=True))
    out: dict[str, Any] = {"token_ms": token_ms, "apis": {name: {"status": code, "ms": ms}
                                                          for name, (code, _, ms) in seen.items() if name != SERVICES}}
    if SERVICES in seen:
        code, data, _ = seen[SERVICES]
        out["computes"] = computes(data) if code == 200 else {}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

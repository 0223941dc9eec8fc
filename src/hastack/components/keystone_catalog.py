"""keystone's catalog as the spec wants it: the service project, each service's user and role, services, endpoints.

Runs on a controller (`python3 -c` with this module's source; the wanted
state as JSON on stdin, passwords included, never on a command line) and
talks to keystone through the VIP with the standard library only: no
client library has to match on the host. Prints one JSON line: the changes
made, or `{"bootstrap": true}` when the admin cannot log in yet (keystone
not bootstrapped). Idempotent: a second run changes nothing.

`ensure` is the logic, over any `Api`; the tests drive it with an in-memory keystone.
"""

from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Protocol

INTERFACES = ("public", "internal", "admin")


class Api(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]: ...

    def login(self, user: str, password: str) -> bool: ...


@dataclass(frozen=True)
class Service:
    name: str  # keystone's service name (glance) and, unless `user` is empty, its user's name
    type: str  # image
    url: str  # every interface: one haproxy frontend on the VIP
    password: str = ""  # the service user's; empty: no user (keystone itself)
    description: str = ""


@dataclass(frozen=True)
class Want:
    region: str
    services: tuple[Service, ...]
    project: str = "service"
    role: str = "admin"

    @staticmethod
    def from_json(data: dict[str, Any]) -> Want:
        return Want(data["region"], tuple(Service(**s) for s in data["services"]))


class KeystoneError(Exception):
    pass


@dataclass
class _Run:
    api: Api
    changes: list[str] = field(default_factory=list)

    def one(self, path: str, key: str, **query: str) -> dict[str, Any] | None:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        items = self.ok("GET", f"{path}?{qs}" if qs else path)[key]
        return items[0] if items else None

    def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        status, data = self.api.call(method, path, body)
        if status >= 300:
            raise KeystoneError(f"{method} {path}: HTTP {status}: {str(data)[:300]}")
        return data


def ensure(api: Api, want: Want) -> list[str]:
    """Make keystone hold what `want` says; returns what changed (nothing on a second run)."""
    run = _Run(api)
    if api.call("GET", f"/v3/regions/{want.region}")[0] == 404:
        run.ok("POST", "/v3/regions", {"region": {"id": want.region}})
        run.changes.append(f"region {want.region}")
    project = run.one("/v3/projects", "projects", name=want.project, domain_id="default")
    if project is None:
        project = run.ok("POST", "/v3/projects", {"project": {
            "name": want.project, "domain_id": "default", "description": "OpenStack services' own users"}})["project"]
        run.changes.append(f"project {want.project}")
    role = run.one("/v3/roles", "roles", name=want.role)
    if role is None:
        raise KeystoneError(f"keystone has no role {want.role!r}: bootstrap creates it")
    for s in want.services:
        if s.password:
            _user(run, s, project["id"], role["id"])
        _service(run, s, want.region)
    return run.changes


def _user(run: _Run, s: Service, project_id: str, role_id: str) -> None:
    user = run.one("/v3/users", "users", name=s.name, domain_id="default")
    if user is None:
        user = run.ok("POST", "/v3/users", {"user": {"name": s.name, "domain_id": "default", "enabled": True,
                                                      "password": s.password}})["user"]
        run.changes.append(f"user {s.name}")
    elif not run.api.login(s.name, s.password):  # a password the secrets store no longer has
        run.ok("PATCH", f"/v3/users/{user['id']}", {"user": {"password": s.password}})
        run.changes.append(f"user {s.name}: password set")
    grant = f"/v3/projects/{project_id}/users/{user['id']}/roles/{role_id}"
    if run.api.call("HEAD", grant)[0] == 404:
        run.ok("PUT", grant)
        run.changes.append(f"user {s.name}: role on the service project")


def _service(run: _Run, s: Service, region: str) -> None:
    service = run.one("/v3/services", "services", type=s.type)
    if service is None:
        service = run.ok("POST", "/v3/services", {"service": {"type": s.type, "name": s.name,
                                                              "description": s.description}})["service"]
        run.changes.append(f"service {s.name} ({s.type})")
    endpoints = run.ok("GET", f"/v3/endpoints?service_id={service['id']}")["endpoints"]
    for interface in INTERFACES:
        have = [e for e in endpoints if e["interface"] == interface and e.get("region_id") == region]
        if not have:
            run.ok("POST", "/v3/endpoints", {"endpoint": {"service_id": service["id"], "interface": interface,
                                                          "region_id": region, "url": s.url}})
            run.changes.append(f"endpoint {s.name} {interface} {s.url}")
        elif (old := have[0]["url"]) != s.url:
            run.ok("PATCH", f"/v3/endpoints/{have[0]['id']}", {"endpoint": {"url": s.url}})
            run.changes.append(f"endpoint {s.name} {interface}: {old} -> {s.url}")


# -- the remote side: keystone over HTTP with the standard library ------------------------------------

class HttpApi:
    def __init__(self, auth_url: str, admin_password: str, timeout: float = 30, cafile: str | None = None) -> None:
        self.base, self.timeout = auth_url.rstrip("/"), timeout
        # HTTPS on the VIP: keystone's certificate checked against the cluster's CA.
        self.context = ssl.create_default_context(cafile=cafile) if cafile else None
        self.token = self._token("admin", admin_password, scoped=True)

    def _request(self, method: str, path: str, body: dict[str, Any] | None, token: str | None
                 ) -> tuple[int, Any, Any]:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json", "Accept": "application/json",
                                              **({"X-Auth-Token": token} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                raw = resp.read()
                return resp.status, (json.loads(raw) if raw else {}), resp.headers
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw), exc.headers
            except ValueError:
                return exc.code, raw.decode(errors="replace"), exc.headers

    def _token(self, user: str, password: str, scoped: bool) -> str | None:
        auth: dict[str, Any] = {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}}
        if scoped:
            auth["scope"] = {"project": {"name": "admin", "domain": {"id": "default"}}}
        status, data, headers = self._request("POST", "/v3/auth/tokens", {"auth": auth}, None)
        if status == 401:
            return None
        if status != 201:
            raise KeystoneError(f"POST /v3/auth/tokens: HTTP {status}: {str(data)[:300]}")
        return str(headers["X-Subject-Token"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        status, data, _ = self._request(method, path, body, self.token)
        return status, data

    def login(self, user: str, password: str) -> bool:
        return self._token(user, password, scoped=False) is not None


def main() -> int:
    data = json.loads(sys.stdin.readline())
    api = HttpApi(data["auth_url"], data["admin_password"], cafile=data.get("cafile"))
    if api.token is None:
        print(json.dumps({"bootstrap": True}))
        return 0
    try:
        print(json.dumps({"changes": ensure(api, Want.from_json(data))}))
    except KeystoneError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

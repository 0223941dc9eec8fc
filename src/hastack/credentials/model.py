"""Which secrets a spec needs, and how each is generated.

Secrets are generated once and kept; rendering only reads them. A repr that
hides values keeps them out of logs and tracebacks.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets as _random
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from hastack.credentials.pki import CA_SECRET, SHAPE, new_ca_secret
from hastack.spec.catalog import RUN, USERS, databases
from hastack.spec.model import Spec

_ALNUM = string.ascii_letters + string.digits


def _password() -> str:
    # Letters and digits only: safe inside URLs, ini files, SQL and YAML unquoted.
    return "".join(_random.choice(_ALNUM) for _ in range(32))


def _erlang_cookie() -> str:
    return "".join(_random.choice(string.ascii_uppercase) for _ in range(32))


def _corosync_authkey() -> str:
    # corosync-keygen writes 256 random bytes by default (corosync 3).
    return base64.b64encode(_random.token_bytes(256)).decode()


def _mongo_keyfile() -> str:
    # mongod accepts 6..1024 base64 characters.
    return base64.b64encode(_random.token_bytes(576)).decode()


def _fernet_key() -> str:
    # A Fernet key: 32 random bytes, url-safe base64 (as keystone-manage fernet_setup writes).
    return base64.urlsafe_b64encode(_random.token_bytes(32)).decode()


# What each generator makes: a value read back must look the same, or it is refused
# (a newline in a password injected a `listen` block into haproxy.cfg).
_SHAPES: dict[Callable[[], str], re.Pattern[str]] = {
    _password: re.compile(r"[A-Za-z0-9]{16,256}"),
    _erlang_cookie: re.compile(r"[A-Za-z0-9]{16,255}"),
    _corosync_authkey: re.compile(r"[A-Za-z0-9+/]{40,4096}={0,2}"),
    _mongo_keyfile: re.compile(r"[A-Za-z0-9+/]{8,1024}={0,2}"),
    _fernet_key: re.compile(r"[A-Za-z0-9_-]{43}="),
    new_ca_secret: SHAPE,
}


def service_password_key(project: str) -> str:
    """The password of a project's service user in keystone."""
    return f"os_{project}_password"


# keystone's Fernet token and credential keys: the same on every controller (a token issued by
# one is read by the others, behind round robin). Index 0 is the staged key, 1 the primary.
FERNET_KEYS = ("keystone_fernet_0", "keystone_fernet_1")
CREDENTIAL_KEYS = ("keystone_credential_0", "keystone_credential_1")


# What the health agent asks of every request (haproxy's check sends it): wsrep state is not for anyone
# on the management network to read, nor the agent's database probe for anyone to drive.
AGENT_TOKEN = "galera_agent_token"


def db_password_key(service: str) -> str:
    return f"db_{service.replace('-', '_')}_password"


def required(spec: Spec) -> dict[str, Callable[[], str]]:
    """Every secret key the spec needs, with its generator."""
    need: dict[str, Callable[[], str]] = {
        "corosync_authkey": _corosync_authkey,
        "haproxy_stats_password": _password,
    }
    if spec.tls.enabled:
        # The CA: the day it was made and 32 random bytes, every key and certificate derived from it.
        need[CA_SECRET] = new_ca_secret
    if spec.remote_nodes():
        # pacemaker_remote's TLS pre-shared key, the same on every member and remote node (pacemaker
        # takes any bytes; 256, as corosync's).
        need["pacemaker_authkey"] = _corosync_authkey
    if spec.galera.enabled:
        need["galera_sst_password"] = _password
        need["galera_monitor_password"] = _password
        need[AGENT_TOKEN] = _password  # haproxy's check shows it to the health agent
        need["galera_probe_password"] = _password
    if spec.rabbitmq.enabled:
        need["rabbitmq_erlang_cookie"] = _erlang_cookie
        need["rabbitmq_password"] = _password
        need["rabbitmq_admin_password"] = _password
    if spec.mongodb.enabled:
        need["mongodb_keyfile"] = _mongo_keyfile
        need["mongodb_admin_password"] = _password
    if spec.galera.enabled:
        for service in spec.openstack.services:
            if databases(service):
                need[db_password_key(service)] = _password
    run = [s for s in spec.openstack.services if s in RUN]
    if "keystone" in run:
        need["keystone_admin_password"] = _password
        need |= dict.fromkeys((*FERNET_KEYS, *CREDENTIAL_KEYS), _fernet_key)
    for project in run:
        if project in USERS:
            need[service_password_key(project)] = _password
    if "horizon" in run:
        # Django's signing key, the same on every controller: sessions are signed cookies any of them reads.
        need["horizon_secret_key"] = _password
    return need


@dataclass(frozen=True)
class Secrets(Mapping[str, str]):
    data: Mapping[str, str]

    def __getitem__(self, key: str) -> str:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"Secrets({sorted(self.data)} values hidden)"

    __str__ = __repr__


def malformed(spec: Spec, existing: Mapping[str, str]) -> tuple[str, ...]:
    """The names of stored secrets whose value is not of their generator's shape (values never shown)."""
    need = required(spec)
    return tuple(sorted(k for k, v in existing.items()
                        if k in need and v and not _SHAPES[need[k]].fullmatch(v)))


def complete(spec: Spec, existing: Mapping[str, str]) -> tuple[Secrets, tuple[str, ...]]:
    """Existing secrets plus any the spec needs and does not have yet.

    Returns the full set and the names that were generated now. Existing
    values are never replaced: a rotated cookie or SST password would break a
    running cluster.
    """
    values = dict(existing)
    added = []
    for key, generate in required(spec).items():
        if not values.get(key):
            values[key] = generate()
            added.append(key)
    return Secrets(values), tuple(added)


# On every host, so a deploy can tell whether it holds the secrets the cluster runs with.
FINGERPRINTS_PATH = "/etc/hastack/secrets.fingerprints"


def fingerprints(secrets: Mapping[str, str]) -> dict[str, str]:
    """A short digest per secret: enough to tell two values apart, nothing to recover one
    from (every value is generated with at least 128 random bits)."""
    return {k: hashlib.sha256(f"hastack-fingerprint\0{k}\0{v}".encode()).hexdigest()[:16]
            for k, v in sorted(secrets.items())}


def fingerprints_text(secrets: Mapping[str, str]) -> str:
    head = "# Rendered by hastack: which secrets this host was deployed with (digests, not values).\n"
    return head + "".join(f"{k} {d}\n" for k, d in fingerprints(secrets).items())


def parse_fingerprints(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, _, digest = line.strip().partition(" ")
        if name and digest and not name.startswith("#"):
            out[name] = digest.strip()
    return out


def conflicting(live: Mapping[str, str], desired: Mapping[str, str]) -> tuple[str, ...]:
    """Secrets a host runs with that the deploy would replace by another value.

    A secret only one side has is no conflict: a new component adds one.
    """
    return tuple(sorted(k for k in live.keys() & desired.keys() if live[k] != desired[k]))

"""Secrets: generated once, kept, 0600, never shown."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hastack.credentials.model import (
    FINGERPRINTS_PATH,
    complete,
    conflicting,
    fingerprints,
    fingerprints_text,
    parse_fingerprints,
    required,
)
from hastack.credentials.store import SecretsError, load_or_create, secrets_path
from hastack.render import render_all
from hastack.spec.load import load_spec
from tests.helpers import THREE


def test_generated_values_are_strong_and_distinct() -> None:
    secrets, added = complete(load_spec(THREE), {})
    assert set(added) == set(secrets.data)
    passwords = [v for k, v in secrets.data.items() if k.endswith("password")]
    assert len(set(passwords)) == len(passwords)
    assert all(len(p) >= 32 and p.isalnum() for p in passwords)
    assert "guest" not in passwords and "admin" not in passwords
    cookie = secrets["rabbitmq_erlang_cookie"]
    assert len(cookie) == 32 and cookie.isupper()


def test_repr_hides_values() -> None:
    secrets, _ = complete(load_spec(THREE), {})
    shown = repr(secrets) + str(secrets)
    assert not any(v in shown for v in secrets.data.values())


def test_existing_values_are_never_replaced() -> None:
    spec = load_spec(THREE)
    first, _ = complete(spec, {})
    partial = dict(first.data)
    del partial["haproxy_stats_password"]
    second, added = complete(spec, partial)
    assert added == ("haproxy_stats_password",)
    assert all(second[k] == first[k] for k in partial)


def test_store_creates_0600_and_reuses(tmp_path: Path) -> None:
    spec_path = tmp_path / "c.yaml"
    spec_path.write_text(THREE.read_text())
    spec = load_spec(spec_path)
    s1, added1, path = load_or_create(spec, spec_path)
    assert path == secrets_path(spec_path) == tmp_path / "c.secrets.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert set(added1) == set(required(spec))
    before = path.read_bytes()
    s2, added2, _ = load_or_create(spec, spec_path)
    assert added2 == () and s2.data == s1.data and path.read_bytes() == before


def test_store_refuses_readable_file(tmp_path: Path) -> None:
    spec_path = tmp_path / "c.yaml"
    spec_path.write_text(THREE.read_text())
    spec = load_spec(spec_path)
    _, _, path = load_or_create(spec, spec_path)
    os.chmod(path, 0o644)
    with pytest.raises(SecretsError, match="chmod 600"):
        load_or_create(spec, spec_path)


def test_fingerprints_tell_secrets_apart_without_revealing_them() -> None:
    spec = load_spec(THREE)
    ours, _ = complete(spec, {})
    theirs, _ = complete(spec, {})  # the same spec deployed from a copy: every secret generated anew
    text = fingerprints_text(ours)
    assert all(v not in text for v in ours.values())
    assert parse_fingerprints(text) == fingerprints(ours) and set(fingerprints(ours)) == set(ours)
    assert conflicting(parse_fingerprints(text), fingerprints(ours)) == ()
    assert set(conflicting(fingerprints(theirs), fingerprints(ours))) == set(ours)
    # One secret more (a component added to the spec) is no conflict; one changed value is.
    grown = {**fingerprints(ours), "new_secret": "0123456789abcdef"}
    assert conflicting(fingerprints(ours), grown) == ()
    changed, regenerated = complete(spec, {**ours, "rabbitmq_erlang_cookie": ""})
    assert regenerated == ("rabbitmq_erlang_cookie",)
    assert conflicting(fingerprints(ours), fingerprints(changed)) == ("rabbitmq_erlang_cookie",)
    f = render_all(spec, ours)["compute1"][FINGERPRINTS_PATH]
    assert f.mode == 0o600 and f.content.decode() == text

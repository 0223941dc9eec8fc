from __future__ import annotations

import pytest
from pydantic import ValidationError

from hastack.spec.timing import PROFILES, Timing


def test_profiles_fill_every_field() -> None:
    for name in PROFILES:
        t = Timing(profile=name)
        assert t.corosync_token_ms == PROFILES[name]["corosync_token_ms"]


def test_override_wins_over_profile() -> None:
    t = Timing(profile="fast", corosync_token_ms=1500)
    assert t.corosync_token_ms == 1500
    assert t.haproxy_inter_ms == PROFILES["fast"]["haproxy_inter_ms"]


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Timing(profile="turbo")


def test_corosync_arithmetic() -> None:
    t = Timing()  # token 3000, coefficient 650
    assert t.effective_token_ms(2) == 3000
    assert t.effective_token_ms(3) == 3650
    assert t.consensus_ms(3) == 4380  # 1.2 x effective token
    assert t.corosync_failover_ms(3) == 3650 + 4380
    assert Timing(corosync_consensus_ms=9000).consensus_ms(3) == 9000


def test_haproxy_detection_is_one_interval_then_fastinter() -> None:
    assert Timing(profile="default").haproxy_detect_ms() == 1000 + 2 * 1000  # fastinter unset: inter
    assert Timing(profile="fast").haproxy_detect_ms() == 1000 + 1 * 200
    assert Timing(haproxy_inter_ms=2000, haproxy_fastinter_ms=500, haproxy_fall=4).haproxy_detect_ms() == 3500


def test_fast_is_faster_everywhere() -> None:
    d, f = Timing(profile="default"), Timing(profile="fast")
    assert f.corosync_failover_ms(3) < d.corosync_failover_ms(3)
    assert f.haproxy_detect_ms() < d.haproxy_detect_ms()
    assert f.galera_suspect_ms < d.galera_suspect_ms
    assert f.mongo_election_timeout_ms < d.mongo_election_timeout_ms
    assert f.keepalived_failover_ms() < d.keepalived_failover_ms()

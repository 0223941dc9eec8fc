"""The mongo watch's pure parts: when a member stands for election and which one, the members read
from replSetGetStatus and replSetGetConfig (fixtures: a lab member's own answers), the host probe,
and what deploy renders for it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Sequence
from pathlib import Path

import yaml

from hastack.agent.mongo_watch import BACKOFF_S, PATH, Look, Member, Watch, members_of
from hastack.agent.silence import MISSES, Silence, knock, silent_hosts
from hastack.render.mongodb import WATCH_UNIT, render_mongodb
from tests.helpers import SEED, secrets_for, variant

FIXTURES = Path(__file__).parent / "fixtures"
CTL1, CTL2, CTL3 = "10.77.0.11:27017", "10.77.0.12:27017", "10.77.0.13:27017"


def _set(me: str, primary: str = CTL1, priorities: Sequence[float] = (2, 1, 1)) -> tuple[Member, ...]:
    return tuple(Member(name, "PRIMARY" if name == primary else "SECONDARY", True, p, name == me)
                 for name, p in zip((CTL1, CTL2, CTL3), priorities, strict=True))


def _stands(looks: Sequence[tuple[float, Look]]) -> list[float]:
    """The times at which this member stands."""
    watch, out = Watch(), []
    for now, look in looks:
        watch, why = watch.after(now, look)
        if why:
            out.append(now)
    return out


def test_the_preferred_secondary_stands_once_the_primarys_host_missed_two_looks() -> None:
    cut = frozenset({"10.77.0.11"})
    # ctl2 and ctl3 have the same priority: the name decides, so exactly one of them stands.
    assert _stands([(t, Look(_set(CTL2), cut)) for t in range(5)]) == [MISSES - 1]
    assert _stands([(t, Look(_set(CTL3), cut)) for t in range(5)]) == []
    # A higher priority wins over the name.
    assert _stands([(t, Look(_set(CTL3, priorities=(2, 1, 5)), cut)) for t in range(5)]) == [MISSES - 1]


def test_a_stand_that_did_not_change_the_primary_is_tried_again_after_the_backoff() -> None:
    looks = [(float(t), Look(_set(CTL2), frozenset({"10.77.0.11"}))) for t in range(30)]
    assert _stands(looks) == [MISSES - 1, MISSES - 1 + BACKOFF_S, MISSES - 1 + 2 * BACKOFF_S]


def test_one_answer_in_between_starts_the_count_again() -> None:
    cut, back = frozenset({"10.77.0.11"}), frozenset[str]()
    looks = [(0.0, Look(_set(CTL2), cut)), (1.0, Look(_set(CTL2), back)), (2.0, Look(_set(CTL2), cut)),
             (3.0, Look(_set(CTL2), cut))]
    assert _stands(looks) == [3.0]


def test_what_does_not_make_a_member_stand() -> None:
    cut = frozenset({"10.77.0.11"})
    long = range(20)
    # The primary's host answers (refused counts as an answer: the host is there).
    assert _stands([(t, Look(_set(CTL2), frozenset())) for t in long]) == []
    # This member is the primary.
    assert _stands([(t, Look(_set(CTL1), frozenset({"10.77.0.12"}))) for t in long]) == []
    # ctl2 won already; ctl3's mongod still lists the lost ctl1 as primary too: ctl3 must not stand.
    both = tuple(Member(m.name, "PRIMARY" if m.name == CTL2 else m.state, m.healthy, m.priority, m.me)
                 for m in _set(CTL3))
    assert _stands([(t, Look(both, cut)) for t in long]) == []
    # Every other host is silent: this member is the one cut off, and would only churn terms.
    assert _stands([(t, Look(_set(CTL2), frozenset({"10.77.0.11", "10.77.0.13"}))) for t in long]) == []
    # No primary at all: the set is electing already.
    nobody = tuple(Member(m.name, "SECONDARY", m.healthy, m.priority, m.me) for m in _set(CTL2))
    assert _stands([(t, Look(nobody, cut)) for t in long]) == []
    # Priority 0: never electable (the guide's arbiter has none either).
    assert _stands([(t, Look(_set(CTL2, priorities=(2, 0, 0)), cut)) for t in long]) == []
    # A member that is not healthy or not a secondary (still in initial sync) is passed over.
    syncing = tuple(Member(m.name, "STARTUP2" if m.me else m.state, m.healthy, m.priority, m.me) for m in _set(CTL2))
    assert _stands([(t, Look(syncing, cut)) for t in long]) == []
    # The better candidate's host is silent too: this member stands in its place only if it is next.
    two = frozenset({"10.77.0.11", "10.77.0.12"})
    assert _stands([(t, Look(_set(CTL3), two)) for t in long]) == []


def test_the_reason_names_the_primary_and_the_misses() -> None:
    _, why = Watch(Silence({"10.77.0.11": 4})).after(9.0, Look(_set(CTL2), frozenset({"10.77.0.11"})))
    assert why.startswith(f"the primary {CTL1} has not answered for 5 looks")


def test_members_are_read_from_the_sets_own_answers() -> None:
    status = json.loads((FIXTURES / "mongo_replsetgetstatus.json").read_text())
    config = json.loads((FIXTURES / "mongo_replsetgetconfig.json").read_text())
    members = members_of(status, config["config"])
    assert [(m.name, m.state, m.healthy, m.priority, m.me) for m in members] == [
        (CTL1, "PRIMARY", True, 2.0, False), (CTL2, "SECONDARY", True, 1.0, True),
        (CTL3, "SECONDARY", True, 1.0, False)]
    assert members[0].host == "10.77.0.11"


def test_a_host_answers_when_it_accepts_or_refuses_and_is_silent_when_nothing_comes_back() -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        assert asyncio.run(knock("127.0.0.1", port)) == "accepted"
    # Nothing listens there any more: the kernel refuses, which is an answer (the host is there).
    assert asyncio.run(knock("127.0.0.1", port)) == "refused"
    assert asyncio.run(silent_hosts(["127.0.0.1"], port)) == frozenset()
    # A listener whose queue is full drops new SYNs: nothing comes back, as from a host cut off.
    with socket.socket() as srv, contextlib.ExitStack() as stack:
        srv.bind(("127.0.0.1", 0))
        srv.listen(0)
        for _ in range(3):
            c = stack.enter_context(socket.socket())
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(srv.getsockname())
        assert asyncio.run(knock("127.0.0.1", srv.getsockname()[1], timeout=0.3)) == "silent"


def test_deploy_renders_the_watch_beside_every_electable_member_only() -> None:
    three = variant()
    secrets = secrets_for(three)
    tree = render_mongodb(three, secrets)
    for node in ("ctl1", "ctl2", "ctl3"):
        files = {f.path: f for f in tree[node]}
        cfg = files[PATH]
        assert (cfg.mode, cfg.owner) == (0o600, "mongodb")
        body = yaml.safe_load(cfg.content)
        assert body["password"] == secrets["mongodb_admin_password"]
        assert body["ca_file"] == "/etc/mongodb/tls/ca.pem"  # the example has TLS on
        assert b"User=mongodb" in files[WATCH_UNIT].content
    # The seed's arbiter never stands; a member given priority 0 neither.
    seed_spec = variant(SEED)
    seed = render_mongodb(seed_spec, secrets_for(seed_spec))
    assert WATCH_UNIT in {f.path for f in seed["ctl1"]}
    assert WATCH_UNIT not in {f.path for f in seed["arb1"]}
    zero = variant(mongodb={"replica_set": "rs0", "members": [{"node": "ctl1", "priority": 2},
                                                              {"node": "ctl2", "priority": 1},
                                                              {"node": "ctl3", "priority": 0}]})
    assert WATCH_UNIT not in {f.path for f in render_mongodb(zero, secrets_for(zero))["ctl3"]}


def test_mongod_gives_up_a_silent_sync_source_after_the_profiles_buffer() -> None:
    for spec, buffer in ((variant(), 2), (variant(timing={"profile": "fast"}), 1)):
        conf = yaml.safe_load(next(f.content for f in render_mongodb(spec, secrets_for(spec))["ctl1"]
                                   if f.path == "/etc/mongod.conf"))
        assert conf["setParameter"] == {"oplogNetworkTimeoutBufferSeconds": buffer}

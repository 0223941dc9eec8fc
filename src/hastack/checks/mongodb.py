"""HA4xx: MongoDB replica set."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.model import Spec

E, W = Severity.ERROR, Severity.WARNING


def _voters(spec: Spec) -> int:
    m = spec.mongodb
    return sum(mm.votes for mm in m.members) + (1 if m.arbiter else 0)


@rule("HA401", E, "MongoDB arbiter on a data member's host",
      why="""The arbiter is meant as an independent vote; sharing a host with a data
      member, one host failure removes two of three votes and no primary can be
      elected.""",
      fix="Put mongodb.arbiter on a node that is not a member (the arbitrator node).")
def arbiter_colocated(spec: Spec) -> Iterator[Hit]:
    m = spec.mongodb
    if m.enabled and m.arbiter and m.arbiter in {mm.node for mm in m.members}:
        yield Hit(m.arbiter, f"arbiter and member both on {m.arbiter}")


@rule("HA402", W, "primary-secondary-arbiter replica set",
      why="""With an arbiter, losing one data member leaves a primary that can no longer
      acknowledge majority writes: writes with w:majority wait, and the cache
      pressure grows until the member is back.""",
      fix="Use three data members when possible; otherwise write with w:1 during the degraded window, knowingly.")
def psa(spec: Spec) -> Iterator[Hit]:
    if spec.mongodb.enabled and spec.mongodb.arbiter:
        yield Hit("mongodb", f"{len(spec.mongodb.members)} data members + arbiter")


@rule("HA403", W, "even number of MongoDB voters",
      why="An even number of voters can split evenly and elect no primary.",
      fix="Add an arbiter or a member, or set votes: 0 on one member.")
def even_mongo(spec: Spec) -> Iterator[Hit]:
    n = _voters(spec)
    if spec.mongodb.enabled and n % 2 == 0:
        yield Hit("mongodb", f"{n} voters")


@rule("HA404", E, "MongoDB cannot elect a primary after one failure",
      why="An election needs a majority of voters and at least two electable data members.",
      fix="Have at least two members with priority > 0 and three voters in all.")
def mongo_electable(spec: Spec) -> Iterator[Hit]:
    m = spec.mongodb
    if not m.enabled:
        return
    electable = [mm for mm in m.members if mm.priority > 0 and mm.votes]
    if len(electable) < 2 or _voters(spec) < 3:
        yield Hit("mongodb", f"{len(electable)} electable member(s), {_voters(spec)} voter(s)")


@rule("HA405", W, "MongoDB behind haproxy",
      why="""haproxy cannot tell a primary from a secondary: the guide's
      `listen mongodb-cluster` sends writes to whichever member answers TCP. The
      drivers follow elections themselves with a replica-set URI.""",
      fix="Set mongodb.via_haproxy: false and connect with mongodb://m1,m2/?replicaSet=NAME.")
def mongo_behind_vip(spec: Spec) -> Iterator[Hit]:
    if spec.mongodb.enabled and spec.mongodb.via_haproxy:
        yield Hit("mongodb", "clients reach MongoDB through the VIP")


# MongoDB's own limits on a replica set's configuration.
MAX_VOTING, MAX_MEMBERS = 7, 50


@rule("HA406", E, "replica set over MongoDB's limits",
      why=f"""A replica set has at most {MAX_VOTING} voting members and {MAX_MEMBERS} members in all;
      replSetInitiate refuses a larger configuration, so the deploy would fail halfway.""",
      fix="""List mongodb.members explicitly: up to seven voters; give the others votes: 0 and
      priority: 0, or leave them out.""")
def mongo_limits(spec: Spec) -> Iterator[Hit]:
    m = spec.mongodb
    if m.enabled and (_voters(spec) > MAX_VOTING or len(m.members) + bool(m.arbiter) > MAX_MEMBERS):
        yield Hit("mongodb", f"{len(m.members) + bool(m.arbiter)} members, {_voters(spec)} voting")

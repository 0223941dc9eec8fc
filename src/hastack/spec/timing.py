"""Timing profiles: every failure-detection knob of the stack in one place.

A profile is a named set of defaults; a spec may override single values.
Keeping them together is what lets the checks compare one layer's detection
time with another's (a health check slower than the failover it guards).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ProfileName = Literal["default", "fast"]

# Values and where they come from:
# - default: each component's own upstream default (corosync 3.1 token 3000,
#   galera evs 5 s/15 s, mongo electionTimeoutMillis 10000, rabbit ticktime 60,
#   keepalived advert_int 1, but 5 missed adverts, not 3). haproxy checks are 1 s x 3, not Kolla's 2 s x 5:
#   a check slower than galera's own 5 s failover would be the bottleneck. Not mongo's
#   catch-up (-1) and sync-source buffer (5 s): with either, a primary whose host lost its
#   network is replaced only after ~10 s, whoever stands for election sooner (mongo_watch).
# - fast: measured in the lab on 2 cores (bench/chaos.py): token 1000 + coefficient 0
#   gave ~3.3 s VIP failover, keepalived 0.1 s x 6 adverts ~0.7 s, evs suspect 1 s caused
#   false suspicion under CPU load 1 run in 5; 1.5 s did not in 21 chaos runs
#   and puts database writes back ~2 s after a host crash (under 10% packet
#   loss writes stalled 3.8 s, 1.3 s at 2 s: the price). mongo 1000/250 ms
#   elects in ~1.1 s, writable ~1 s later unless catch-up is skipped (0).
#   Clients give up on a silent socket after 1 s: a longer wait on a dead
#   host hides the whole failover behind it. haproxy checks a well server every 1 s and a
#   failing one every 200 ms: checking every API on every node from every haproxy each 200 ms
#   took 0.7-0.9 of the lab's 2 cores while it was idle (1.4-1.7 cores busy, 0.76 at 1 s).
#   A connection to a server is given 250 ms and a client's failed one counts as a failed check
#   (sudden-death): with 1 s and fastinter only, the new VIP holder's haproxy kept a crashed
#   controller's servers up ~3 s after the crash, every request sent there waited 1 s per hop,
#   and the APIs answered 3.1-4.0 s after the crash although the VIP had moved in 0.7 s.
PROFILES: dict[str, dict[str, Any]] = {
    "default": {
        "corosync_token_ms": 3000,
        "corosync_token_coefficient_ms": 650,
        "corosync_consensus_ms": None,
        "pacemaker_monitor_s": 5,
        "pacemaker_ping_s": 3,
        "haproxy_inter_ms": 1000,
        "haproxy_fastinter_ms": None,
        "haproxy_rise": 2,
        "haproxy_fall": 3,
        "haproxy_connect_ms": 2000,
        "haproxy_on_error": "fastinter",
        "galera_keepalive_ms": 1000,
        "galera_suspect_ms": 5000,
        "galera_inactive_ms": 15000,
        "mongo_election_timeout_ms": 10000,
        "mongo_heartbeat_ms": 2000,
        "mongo_catchup_timeout_ms": 2000,
        "mongo_sync_buffer_s": 2,
        "rabbit_net_ticktime_s": 60,
        "rabbit_heartbeat_s": 20,
        "keepalived_advert_ms": 1000,
        "keepalived_down_adverts": 5,
        "client_timeout_ms": 3000,
        "api_timeout_ms": 10000,
        "tcp_keepalive_s": 15,
    },
    "fast": {
        "corosync_token_ms": 1000,
        "corosync_token_coefficient_ms": 0,
        "corosync_consensus_ms": None,
        "pacemaker_monitor_s": 2,
        "pacemaker_ping_s": 1,
        "haproxy_inter_ms": 1000,
        "haproxy_fastinter_ms": 200,
        "haproxy_rise": 2,
        "haproxy_fall": 2,
        "haproxy_connect_ms": 250,
        "haproxy_on_error": "sudden-death",
        "galera_keepalive_ms": 400,
        "galera_suspect_ms": 1500,
        "galera_inactive_ms": 4000,
        "mongo_election_timeout_ms": 1000,
        "mongo_heartbeat_ms": 250,
        "mongo_catchup_timeout_ms": 0,
        "mongo_sync_buffer_s": 1,
        "rabbit_net_ticktime_s": 15,
        "rabbit_heartbeat_s": 10,
        "keepalived_advert_ms": 100,
        "keepalived_down_adverts": 6,
        "client_timeout_ms": 1000,
        "api_timeout_ms": 5000,
        "tcp_keepalive_s": 5,
    },
}


class Timing(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: ProfileName = "default"
    corosync_token_ms: int = Field(ge=200, le=60_000)
    corosync_token_coefficient_ms: int = Field(ge=0, le=10_000)
    # None: corosync's own rule, 1.2 x the effective token.
    corosync_consensus_ms: int | None = Field(ge=200, le=120_000)
    pacemaker_monitor_s: int = Field(ge=1, le=3600)
    # How often each VIP holder checks that it still reaches the management network (every other
    # node, the spec's ping targets; one try, answered within 1 s): a holder that lost its client
    # network while its rings are up is found by nothing else.
    pacemaker_ping_s: int = Field(ge=1, le=600)
    # Between two checks of a server that answers; once one check failed (or a client's connection
    # to it did: `observe layer4`), the next come every haproxy_fastinter_ms until it is marked down
    # or well again (None: inter, haproxy's own default). Every check of an API is a request its
    # Python workers serve, from every haproxy node: the steady interval is what it costs.
    haproxy_inter_ms: int = Field(ge=100, le=600_000)
    haproxy_fastinter_ms: int | None = Field(ge=100, le=600_000)
    haproxy_rise: int = Field(ge=1, le=100)
    haproxy_fall: int = Field(ge=1, le=100)
    # How long haproxy waits for a backend to accept a connection before it retries on another
    # (`option redispatch 1`). Until its checks mark a crashed backend down, every request sent
    # there waits this long: haproxy's customary 5 s would be most of an API's gap. A LAN connect
    # takes under a millisecond; a lost SYN is sent again after 1 s, by when another server has
    # answered (`retries 3`, each to another server). A check's connect waits at most this too.
    haproxy_connect_ms: int = Field(ge=100, le=60_000)
    # What a client's failed connection to a server does to it (haproxy's `on-error`, `observe
    # layer4`, error-limit 1): fastinter checks it sooner; fail-check counts as one failed check;
    # sudden-death leaves it one failed check from down; mark-down takes it out at once, with no
    # check to confirm (one lost SYN under load is enough).
    haproxy_on_error: Literal["fastinter", "fail-check", "sudden-death", "mark-down"]
    galera_keepalive_ms: int = Field(ge=100, le=60_000)
    galera_suspect_ms: int = Field(ge=500, le=600_000)
    galera_inactive_ms: int = Field(ge=1000, le=600_000)
    mongo_election_timeout_ms: int = Field(ge=500, le=600_000)
    mongo_heartbeat_ms: int = Field(ge=100, le=60_000)
    # How long a new primary waits to catch up with a member that may be ahead before it takes
    # writes (-1: until it knows, MongoDB's default; 0: not at all). After a crash it waits for the
    # dead member's heartbeat to time out: ~1 s of a 2 s failover with the fast profile (measured in
    # the lab's mongod logs), heartbeatTimeoutSecs (10 s) after the last answer with -1, however
    # early a member stood. Skipping it loses nothing majority-acknowledged (the elected member
    # has every majority-committed write); writes acknowledged by the old primary alone may roll back.
    mongo_catchup_timeout_ms: int = Field(ge=-1, le=600_000)
    # How long a secondary waits for its sync source beyond the getMore's own await (half the
    # election timeout) before it gives that source up (mongod's oplogNetworkTimeoutBufferSeconds,
    # 5 s). When the primary's host vanishes the other secondary is stuck on a getMore to it until
    # then, and majority writes with it, whoever was elected: the fast profile's mgmt-loss
    # measured 5.6 s of majority-write gap beside a 1.2 s election. A LAN answers in milliseconds.
    mongo_sync_buffer_s: int = Field(ge=1, le=600)
    rabbit_net_ticktime_s: int = Field(ge=1, le=3600)
    # AMQP heartbeats of the OpenStack services (oslo.messaging's heartbeat_timeout_threshold): how
    # long RabbitMQ keeps delivering RPC requests to a consumer whose host it can no longer reach
    # before it drops the connection and hands them to another. oslo's 60 s was a 50 s heat gap
    # after a host lost its management network (mgmt-loss); too low, and a starved process is
    # disconnected for nothing.
    rabbit_heartbeat_s: int = Field(ge=2, le=600)
    keepalived_advert_ms: int = Field(ge=10, le=255_000)
    # Adverts a backup misses in a row before it takes the VIP (keepalived's down_timer_adverts;
    # VRRP's own rule is 3). Each advert is lost on its own: with 10% of the holder's frames dropped
    # and 0.1 s adverts, the odds of three in a row missing at one of two backups are about once a
    # minute (0.1^3, ten adverts a second, two backups), and that backup held the VIP beside the live
    # holder until the next advert reached it (the fast keepalived lab's link-loss: 1 to 23 ARP
    # samples); with 1 s adverts, once in ~8 min. Six of 0.1 s (fast), five of 1 s (default): about
    # once in 14 h of such loss, for 0.3 s and 2 s more failover.
    keepalived_down_adverts: int = Field(ge=1, le=100)
    # How long a client waits on one database or mongo operation before it gives up and
    # reconnects (hastack's own workload and probes): a client stuck on a dead host's socket
    # sees none of the failover until this runs out.
    client_timeout_ms: int = Field(ge=100, le=600_000)
    # How long a client waits on one OpenStack API call (hastack's smoke test and chaos workload).
    # An API answers in tens of milliseconds to seconds (a server create crosses nova, placement and
    # the bus; on the lab's two loaded cores over 1 s): a read answered in 1.5 s is slow, not down.
    # With the database clients' 1 s the fast profile counted slow answers as a 20-45 s outage
    # (bench/README.md). A gap still includes every second a user waited.
    api_timeout_ms: int = Field(ge=500, le=600_000)
    # Idle seconds before the kernel probes a TCP connection that asked for keepalive (every host).
    # A service's database connection goes through the VIP; when the holder dies while a query is
    # out, nothing ever arrives and nothing is sent: the connection waits for the kernel's
    # keepalive, 2 h 11 min by default (PyMySQL asks for keepalive; checked in the lab). A probe
    # reaches the VIP's new holder, which resets it at once.
    tcp_keepalive_s: int = Field(ge=1, le=7200)

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            return data
        profile = data.get("profile", "default")
        base = PROFILES.get(profile) if isinstance(profile, str) else None
        if base is None:
            return data  # pydantic reports the bad profile name itself
        return {**base, **data}

    # Fields are filled from the profile by the validator above; this keeps
    # `Timing()` type-correct for mypy without repeating the default values.
    def __init__(self, **data: Any) -> None:
        super().__init__(**data)

    def effective_token_ms(self, voters: int) -> int:
        """Token timeout as corosync computes it for `voters` nodes."""
        extra = max(voters - 2, 0) * self.corosync_token_coefficient_ms
        return self.corosync_token_ms + extra

    def consensus_ms(self, voters: int) -> int:
        if self.corosync_consensus_ms is not None:
            return self.corosync_consensus_ms
        return int(self.effective_token_ms(voters) * 1.2)

    def corosync_failover_ms(self, voters: int) -> int:
        """Time for a new membership after a crash: token loss then consensus."""
        return self.effective_token_ms(voters) + self.consensus_ms(voters)

    def keepalive_probes(self) -> tuple[int, int]:
        """(interval s, count) of the probes after the idle time: a VIP with no holder at all
        answers none, and the connection is given up after about twice the idle time."""
        return max(1, self.tcp_keepalive_s // 3), 3

    def fastinter_ms(self) -> int:
        return self.haproxy_fastinter_ms if self.haproxy_fastinter_ms is not None else self.haproxy_inter_ms

    def haproxy_detect_ms(self) -> int:
        """The longest a dead server is checked before it is marked down (the checks' own wait aside):
        the first failing check at most `inter` away, the others `fastinter` apart."""
        return self.haproxy_inter_ms + (self.haproxy_fall - 1) * self.fastinter_ms()

    def keepalived_failover_ms(self) -> int:
        # VRRP master-down interval: the missed adverts plus skew (<1 advert).
        return self.keepalived_advert_ms * (self.keepalived_down_adverts + 1)

"""HA6xx: timing settings that contradict each other."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.model import Spec

E, W = Severity.ERROR, Severity.WARNING


@rule("HA601", E, "corosync consensus shorter than 1.2 x token",
      why="corosync refuses a consensus timeout below 1.2 times the token timeout.",
      fix="Raise timing.corosync_consensus_ms or leave it empty (corosync derives it).")
def consensus(spec: Spec) -> Iterator[Hit]:
    t = spec.timing
    n = len(spec.corosync.nodes)
    token = t.effective_token_ms(n)
    if t.corosync_consensus_ms is not None and t.corosync_consensus_ms < 1.2 * token:
        yield Hit("timing", f"consensus {t.corosync_consensus_ms} ms < 1.2 x token {token} ms")


@rule("HA602", W, "haproxy check slower than the galera failover it guards",
      why="""When the writer dies, galera re-forms its primary component after the
      suspect timeout; haproxy keeps sending writes to the dead node until its
      own check fails. The slower of the two is the write outage.""",
      fix="Lower timing.haproxy_inter_ms, haproxy_fastinter_ms or haproxy_fall so inter + (fall - 1) x fastinter "
          "is at most the galera suspect timeout.")
def haproxy_vs_galera(spec: Spec) -> Iterator[Hit]:
    t = spec.timing
    if spec.galera.enabled and t.haproxy_detect_ms() > t.galera_suspect_ms:
        yield Hit("timing", f"haproxy detects a dead writer after {t.haproxy_detect_ms()} ms "
                            f"(inter {t.haproxy_inter_ms} + {t.haproxy_fall - 1} x fastinter {t.fastinter_ms()}); "
                            f"galera after {t.galera_suspect_ms} ms")


@rule("HA603", W, "haproxy monitor slower than a node failover",
      why="""A dead haproxy on the VIP holder is only noticed at the next pacemaker
      monitor; if that is slower than corosync's whole-node failover, a crashed
      process costs more than a crashed host.""",
      fix="Lower timing.pacemaker_monitor_s below the corosync failover time.")
def monitor_vs_node(spec: Spec) -> Iterator[Hit]:
    t = spec.timing
    if not spec.vip_manager.runs_pacemaker:
        return
    failover = t.corosync_failover_ms(len(spec.corosync.nodes))
    if t.pacemaker_monitor_s * 1000 > failover:
        yield Hit("timing", f"monitor every {t.pacemaker_monitor_s} s; node failover ~{failover} ms")


@rule("HA604", E, "MongoDB heartbeat not below the election timeout",
      why="Members must exchange several heartbeats within one election timeout, or every hiccup starts an election.",
      fix="Keep timing.mongo_heartbeat_ms at most a quarter of mongo_election_timeout_ms.")
def mongo_heartbeat(spec: Spec) -> Iterator[Hit]:
    t = spec.timing
    if spec.mongodb.enabled and t.mongo_heartbeat_ms * 4 > t.mongo_election_timeout_ms:
        yield Hit("timing", f"heartbeat {t.mongo_heartbeat_ms} ms, election timeout "
                            f"{t.mongo_election_timeout_ms} ms")


@rule("HA605", W, "galera suspect timeout below 1.5 s",
      why="""Measured on a loaded 2-core lab: with evs.suspect_timeout 1 s, one run in
      five saw the two survivors suspect each other, go non-primary and stop
      writes for 45 s; 1.5 s (the fast profile) showed none in 21 chaos runs,
      but under 10% packet loss writes stalled 3.8 s (1.3 s at 2 s). Faster
      detection that causes false suspicion is worse than slow detection.""",
      fix="Keep timing.galera_suspect_ms at 1500 or more unless measured safe on your hardware.")
def galera_too_fast(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.timing.galera_suspect_ms < 1500:
        yield Hit("timing", f"suspect timeout {spec.timing.galera_suspect_ms} ms")


@rule("HA606", W, "haproxy marks a server down on one failed check",
      why="""With fall 1 a single lost or slow check moves traffic away and back:
      flapping that costs more than it protects, above all for the galera writer.""",
      fix="Keep timing.haproxy_fall at 2 or more; lower haproxy_inter_ms to detect faster instead.")
def haproxy_flap(spec: Spec) -> Iterator[Hit]:
    if spec.timing.haproxy_fall < 2:
        yield Hit("timing", "haproxy_fall 1: a single lost check marks a server down")

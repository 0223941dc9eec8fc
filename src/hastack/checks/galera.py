"""HA2xx: MariaDB Galera."""

from __future__ import annotations

from collections.abc import Iterator

from hastack.checks.finding import Hit, Severity, rule
from hastack.spec.model import Spec, SstMethod

E, W = Severity.ERROR, Severity.WARNING


def _votes(spec: Spec) -> int:
    return len(spec.galera.nodes) + (1 if spec.galera.arbitrator else 0)


@rule("HA201", E, "galera cannot keep quorum after one failure",
      why="""Galera needs a majority of votes to stay primary; with fewer than three
      votes the loss of any node (or a link) stops every write.""",
      fix="Run three data nodes, or two data nodes and a garbd arbitrator (galera.arbitrator).")
def galera_quorum(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and _votes(spec) < 3:
        yield Hit("galera", f"{_votes(spec)} vote(s): {len(spec.galera.nodes)} data node(s)"
                  + (" + garbd" if spec.galera.arbitrator else ""))


@rule("HA202", W, "only two copies of the data",
      why="""garbd votes but keeps no data. With two data nodes, one failure leaves a
      single copy, and bringing the second node back needs an SST from the node
      that is serving every write.""",
      fix="Add a third data node when the hardware allows; until then keep backups and watch SST times.")
def two_copies(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and len(spec.galera.nodes) == 2:
        yield Hit("galera", "2 data nodes")


@rule("HA203", E, "multi-writer galera",
      why="""Writes spread over several nodes (the guide's `balance source`) collide in
      certification: OpenStack services see deadlock errors they do not retry,
      and SELECT ... FOR UPDATE does not lock across nodes.""",
      fix="Use galera.writers: single; haproxy sends writes to one node and keeps the others as backups.")
def multi_writer(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.galera.writers == "all":
        yield Hit("galera", "every node takes writes")


@rule("HA204", E, "garbd on a galera data node",
      why="""The arbitrator exists to be an independent vote; on a data node's host both
      votes die together and the remaining node is left without a majority.""",
      fix="Run garbd on a separate small host (the arbitrator role).")
def garbd_colocated(spec: Spec) -> Iterator[Hit]:
    g = spec.galera
    if g.enabled and g.arbitrator and g.arbitrator in g.nodes:
        yield Hit(g.arbitrator, f"garbd and a data node both on {g.arbitrator}")


@rule("HA205", W, "galera health check is TCP only",
      why="""A TCP check sees an open port, not galera's state: a donor, a desynced
      node or a non-primary node keeps getting queries. Measured here: a crashed
      host sends no RST, so a TCP check `inter 2000 fall 5` took 20.3 s to
      move writes; the HTTP state check took 6.3 s.""",
      fix="Use galera.health_check: http (hastack's wsrep-aware endpoint).")
def tcp_check(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.galera.health_check == "tcp":
        yield Hit("galera", "haproxy checks galera with TCP")


@rule("HA206", E, "galera ignores split brain",
      why="pc.ignore_sb lets both halves of a partition accept writes: the data diverges and cannot be merged.",
      fix="Set galera.ignore_split_brain: false and use an arbitrator for two-node setups.")
def ignore_sb(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.galera.ignore_split_brain:
        yield Hit("galera", "pc.ignore_sb=TRUE")


@rule("HA207", E, "galera evs timeouts out of order",
      why="""Galera refuses to start unless keepalive_period < suspect_timeout / 3
      ("value PT2S is out of range [PT0.1S,PT1.66667S)" for a 5 s suspect
      timeout); a suspect timeout above the inactive timeout drops nodes before
      they are even suspected.""",
      fix="Adjust timing.galera_keepalive_ms, galera_suspect_ms and galera_inactive_ms.")
def evs_order(spec: Spec) -> Iterator[Hit]:
    t = spec.timing
    if not spec.galera.enabled:
        return
    if t.galera_keepalive_ms * 3 >= t.galera_suspect_ms:
        yield Hit("timing", f"keepalive {t.galera_keepalive_ms} ms is not below suspect "
                            f"{t.galera_suspect_ms} ms / 3")
    if t.galera_suspect_ms > t.galera_inactive_ms:
        yield Hit("timing", f"suspect {t.galera_suspect_ms} ms exceeds inactive {t.galera_inactive_ms} ms")


@rule("HA208", W, "even number of galera votes",
      why="Four votes tolerate one failure, like three; a 2/2 split stops writes on both sides.",
      fix="Add or remove one vote (garbd is a cheap extra vote).")
def galera_even(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and _votes(spec) > 3 and _votes(spec) % 2 == 0:
        yield Hit("galera", f"{_votes(spec)} votes")


@rule("HA209", E, "SST method not available",
      why="""xtrabackup (the guide's choice) does not support MariaDB 10.3 and later; a
      joiner would fail its state transfer.""",
      fix="Use galera.sst_method: mariabackup.")
def sst_missing(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.galera.sst_method is SstMethod.XTRABACKUP:
        yield Hit("galera", "wsrep_sst_method=xtrabackup")


@rule("HA210", W, "blocking SST method",
      why="""rsync and mysqldump block the donor for the whole transfer; with a single
      writer, that can be the node every client is using.""",
      fix="Use galera.sst_method: mariabackup, which keeps the donor serving.")
def sst_blocking(spec: Spec) -> Iterator[Hit]:
    if spec.galera.enabled and spec.galera.sst_method in (SstMethod.RSYNC, SstMethod.MYSQLDUMP):
        yield Hit("galera", f"wsrep_sst_method={spec.galera.sst_method.value}")


@rule("HA211", W, "the writer is the preferred SST donor",
      why="""The guide advises a dedicated donor that takes no client SQL; naming the
      writer as donor slows every write while a joiner copies the data.""",
      fix="Name a backup node as galera.donor, or leave it empty.")
def donor_is_writer(spec: Spec) -> Iterator[Hit]:
    g = spec.galera
    if g.enabled and g.donor and g.donor == spec.galera_writer().name:
        yield Hit(g.donor, f"{g.donor} is writer and donor")

"""What every recovery decider returns: an outcome, why, the steps, and the evidence it was made from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Generic, TypeVar

A = TypeVar("A")  # a decider's step
E = TypeVar("E")  # a decider's evidence row
S = TypeVar("S", bound=Enum)  # a cluster's kinds of step


class Component(StrEnum):
    """The clusters recovery repairs, in the order it takes them."""

    GALERA = "galera"
    RABBITMQ = "rabbitmq"
    MONGODB = "mongodb"
    PACEMAKER = "pacemaker"  # last: a failed start of haproxy is cleaned up once the databases are back


COMPONENTS = tuple(c.value for c in Component)


class Outcome(Enum):
    HEALTHY = "healthy"  # nothing to do (but any listed ensure-step)
    REJOIN = "rejoin"  # a working core exists: the rest join it
    BOOTSTRAP = "bootstrap"  # no working core: start one from the chosen node
    REPAIR = "repair"  # start, restart or force-boot the listed nodes
    READ = "read"  # facts cannot be read while these run: stop them first, then decide again
    WAIT = "wait"  # nodes are booting or joining on their own: look again shortly
    REFUSE = "refuse"  # acting would be a guess: the reason says what a person must decide


@dataclass(frozen=True)
class Action(Generic[S]):
    """One step on one node, as every decider says it: `join ctl2`, `forget rabbit@ctl3 (on ctl1)`."""

    step: S
    node: str
    on: str = ""  # where the command runs, when not on the node itself

    def __str__(self) -> str:
        return f"{self.step.value} {self.node}" + (f" (on {self.on})" if self.on else "")


@dataclass(frozen=True)
class Decision(Generic[A, E]):
    outcome: Outcome
    reason: str
    actions: tuple[A, ...] = ()
    evidence: tuple[E, ...] = ()
    chosen: str | None = None  # the node a bootstrap starts from

    @property
    def refused(self) -> bool:
        return self.outcome is Outcome.REFUSE

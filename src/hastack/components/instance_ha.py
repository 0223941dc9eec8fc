"""What instance HA's evacuator saw and did in its last round: the state file it writes, parsed."""

from __future__ import annotations

import json
from dataclasses import dataclass

from hastack.components.fact import Fact, on_success

STATE_PATH = "/run/hastack/evacuator.json"


@dataclass(frozen=True)
class HostView:
    state: str  # evacuation.State's value: healthy, waiting for fence, evacuating...
    reason: str


@dataclass(frozen=True)
class EvacuatorState:
    at: float  # when the round ended (epoch seconds)
    hosts: dict[str, HostView]
    refusal: str = ""
    done: tuple[str, ...] = ()
    # Why the last round could not finish (nova or keystone unreachable); hosts are then the last
    # round's that did. Written so status tells a stuck loop from a dead one.
    error: str = ""
    failed: tuple[str, ...] = ()  # actions of the last round nova refused, with its reason


def parse_state(text: str) -> EvacuatorState:
    d = json.loads(text)
    return EvacuatorState(float(d["at"]), {h: HostView(v["state"], v["reason"]) for h, v in d["hosts"].items()},
                          d.get("refusal", ""), tuple(d.get("done", ())), d.get("error", ""),
                          tuple(d.get("failed", ())))


STATE = Fact("evacuator state", ("cat", STATE_PATH), on_success(parse_state))

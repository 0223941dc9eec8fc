"""Units' states: how long since one last started (`systemctl show`: a start that never ends), and
whether each of a host's daemons runs (`systemctl is-active`: one that exited and stayed down)."""

from __future__ import annotations

from dataclasses import dataclass

from hastack.components.fact import Fact, any_exit, shell


@dataclass(frozen=True)
class UnitAge:
    state: str  # active, activating, inactive, failed, ...
    up_s: float | None  # since its start, when activating or active

    @property
    def starting_s(self) -> float | None:
        return self.up_s if self.state == "activating" else None


def parse_unit_age(text: str) -> UnitAge:
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    state = values.get("ActiveState", "").strip() or "unknown"
    try:
        # The monotonic stamp is in microseconds since boot, as /proc/uptime's seconds are.
        up = float(values["Now"]) - int(values["InactiveExitTimestampMonotonic"]) / 1e6
    except (KeyError, ValueError):
        return UnitAge(state, None)
    return UnitAge(state, round(up, 1) if state in ("active", "activating") and up >= 0 else None)


def unit_age(unit: str) -> Fact[UnitAge]:
    """ActiveState, then seconds since the unit left "inactive" (its start), both from the host's own clock."""
    return Fact(f"{unit} age", shell("systemctl show -p ActiveState -p InactiveExitTimestampMonotonic {unit}; "
                                     "echo Now=$(cut -d' ' -f1 /proc/uptime)", unit=unit), any_exit(parse_unit_age))


def parse_active(units: tuple[str, ...], text: str) -> dict[str, str]:
    """`systemctl is-active U...` prints one state per unit, in the order asked (a unit it does not
    know is "inactive"). Output that does not line up with the units is no fact."""
    states = [line.strip() for line in text.splitlines() if line.strip()]
    if len(states) != len(units):
        raise ValueError(f"systemctl is-active printed {len(states)} states for {len(units)} units")
    return dict(zip(units, states, strict=True))


def active(units: tuple[str, ...]) -> Fact[dict[str, str]]:
    """Each unit's ActiveState (active, activating, inactive, failed, ...). The exit status only says
    whether one of them is active, so it is not read."""
    return Fact(f"{' '.join(units)} active", ("systemctl", "is-active", *units),
                any_exit(lambda text: parse_active(units, text)))

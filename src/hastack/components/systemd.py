"""Units' states: how long since one last started or was queued to (`systemctl show`: a start that never ends), and
whether each of a host's daemons runs (`systemctl is-active`: one that exited and stayed down)."""

from __future__ import annotations

from dataclasses import dataclass

from hastack.components.fact import Fact, any_exit, shell


@dataclass(frozen=True)
class UnitAge:
    state: str  # active, activating, inactive, failed, ...
    up_s: float | None  # since its start, when activating or active
    # A start job waiting its turn (a booting host's unit, ActiveState still inactive): queued at most
    # this long ago, the host's uptime.
    queued_s: float | None = None

    @property
    def starting_s(self) -> float | None:
        """How long it has been on its way up: starting, or queued to start."""
        return self.up_s if self.state == "activating" else self.queued_s


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def parse_unit_age(text: str) -> UnitAge:
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    state = values.get("ActiveState", "").strip() or "unknown"
    now = _seconds(values.get("Now"))
    # A job on an inactive unit is a start waiting for the units before it (a stop would have finished).
    queued = now if state == "inactive" and values.get("Job", "").strip() else None
    since = _seconds(values.get("InactiveExitTimestampMonotonic"))
    if now is None or since is None or state not in ("active", "activating"):
        return UnitAge(state, None, queued)
    # The monotonic stamp is in microseconds since boot, as /proc/uptime's seconds are.
    up = now - since / 1e6
    return UnitAge(state, round(up, 1) if up >= 0 else None)


def unit_age(unit: str) -> Fact[UnitAge]:
    """ActiveState, seconds since the unit left "inactive" (its start), both from the host's own clock, and
    whether a job waits on it."""
    return Fact(f"{unit} age", shell("systemctl show -p ActiveState -p InactiveExitTimestampMonotonic -p Job {unit}; "
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

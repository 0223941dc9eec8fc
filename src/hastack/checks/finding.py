"""Coded findings (pcs-style reports): what, why it matters, how to fix."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from hastack.spec.model import Spec


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Hit:
    """One occurrence of a rule: the subject it is about and the specifics."""

    subject: str
    what: str
    fix: str = ""  # overrides the rule's generic fix when the specifics help


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    title: str
    why: str
    fix: str
    fn: Callable[[Spec], Iterable[Hit]]


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    subject: str
    what: str
    why: str
    fix: str
    waived: str | None = None  # the waiver's reason

    @property
    def blocking(self) -> bool:
        return self.severity is Severity.ERROR and self.waived is None

    def waive(self, reason: str) -> Finding:
        return replace(self, waived=reason)

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "subject": self.subject,
            "what": self.what,
            "why": self.why,
            "fix": self.fix,
            "waived": self.waived,
        }


RULES: dict[str, Rule] = {}


def rule(code: str, severity: Severity, title: str, why: str, fix: str,
         ) -> Callable[[Callable[[Spec], Iterable[Hit]]], Callable[[Spec], Iterable[Hit]]]:
    """Register a check. Codes: HA0xx spec, 1xx quorum/fencing/VIP, 2xx galera,
    3xx rabbitmq, 4xx mongodb, 5xx haproxy, 6xx timing, 7xx openstack."""

    def register(fn: Callable[[Spec], Iterable[Hit]]) -> Callable[[Spec], Iterable[Hit]]:
        if code in RULES:
            raise RuntimeError(f"check code {code} registered twice")
        RULES[code] = Rule(code, severity, title, " ".join(why.split()), " ".join(fix.split()), fn)
        return fn

    return register

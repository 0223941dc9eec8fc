"""Checks: coded HA findings over a Spec, with waivers. Pure."""

from __future__ import annotations

from hastack.checks import galera, haproxy, mongodb, openstack, quorum, rabbitmq, timing
from hastack.checks.finding import RULES, Finding, Hit, Rule, Severity
from hastack.spec.model import Spec

# Importing the rule modules registers them; the names keep linters honest.
_RULE_MODULES = (quorum, galera, rabbitmq, mongodb, haproxy, timing, openstack)

__all__ = ["RULES", "Finding", "Hit", "Rule", "Severity", "run_checks"]

_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


def _finding(r: Rule, hit: Hit) -> Finding:
    return Finding(r.code, r.severity, hit.subject, hit.what, r.why, hit.fix or r.fix)


def run_checks(spec: Spec) -> list[Finding]:
    """Every finding for the spec, waivers applied, errors first."""
    findings = [_finding(r, hit) for r in RULES.values() for hit in r.fn(spec)]
    used: set[int] = set()
    out: list[Finding] = []
    for found in findings:
        for i, w in enumerate(spec.waivers):
            if w.code == found.code and w.subject in (None, found.subject):
                found = found.waive(w.reason)  # noqa: PLW2901  (the waived copy replaces it)
                used.add(i)
                break
        out.append(found)
    for i, w in enumerate(spec.waivers):
        if w.code not in RULES:
            out.append(Finding("HA001", Severity.ERROR, f"waivers[{i}]", f"unknown check code {w.code}",
                               "A waiver for a code that does not exist waives nothing; it is probably a typo.",
                               "Use a code listed by `hastack check --list`."))
        elif i not in used:
            out.append(Finding("HA002", Severity.WARNING, f"waivers[{i}]",
                               f"waiver for {w.code} matches no finding",
                               "A stale waiver would silently hide the problem if it came back.",
                               "Remove the waiver."))
    return sorted(out, key=lambda f: (_ORDER[f.severity], f.code, f.subject))

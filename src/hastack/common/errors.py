"""Errors put into words for an operator."""

from __future__ import annotations


def described(exc: BaseException) -> str:
    """The error's own words, or at least its kind: an SSH connection dropped with no reason has none
    (a lab deploy once failed with "phase openstack on ...: " and nothing after it)."""
    return str(exc).strip() or f"{type(exc).__name__} (no message)"


def first_line(text: str) -> str:
    """A message's first line: what it says, without the stack trace or the output that follows it."""
    lines = text.strip().splitlines()
    return lines[0] if lines else ""

"""Errors put into words for an operator."""

from __future__ import annotations


def described(exc: BaseException) -> str:
    """The error's own words, or at least its kind: an SSH connection dropped with no reason has none
    (a lab deploy once failed with "phase openstack on ...: " and nothing after it)."""
    return str(exc).strip() or f"{type(exc).__name__} (no message)"

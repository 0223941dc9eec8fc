"""A fact about a host: the command that reads it, its bound, and the pure parser of what it printed.

pyinfra's model. Deploy, status, recovery and chaos read a cluster only through
facts (`hosts.probe.probe(host, FACT)`), so one component's state is fetched one
way everywhere, and a fixture that records a fact's command next to its output
fails when the command changes under it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class FactFailed(Exception):
    """The command exited with a status the fact cannot be read from."""

    def __init__(self, rc: int) -> None:
        self.rc = rc
        super().__init__(f"exit status {rc}")


@dataclass(frozen=True)
class Fact(Generic[T]):
    name: str
    argv: tuple[str, ...]
    parse: Callable[[int, str], T]  # (exit status, stdout) -> the fact; raises FactFailed
    timeout: float = 15.0

    @property
    def command(self) -> str:
        """The command as a shell would take it (for messages, and for `ssh HOST COMMAND`)."""
        return shlex.join(self.argv)


def on_success(parser: Callable[[str], T]) -> Callable[[int, str], T]:
    """A parser of stdout that needs the command to have succeeded."""

    def parse(rc: int, stdout: str) -> T:
        if rc != 0:
            raise FactFailed(rc)
        return parser(stdout)

    return parse


def any_exit(parser: Callable[[str], T]) -> Callable[[int, str], T]:
    """A parser of stdout whatever the exit status (the output says it all, or nothing)."""
    return lambda rc, stdout: parser(stdout)


def script(template: str, **values: str) -> str:
    """A shell line with every interpolated value quoted: `script("cat {path}", path=p)`.

    A line with no values is taken as it is (a shell group `{ a; b; }` is not a field); one with
    values writes a literal brace twice, as str.format wants."""
    return template.format(**{k: shlex.quote(v) for k, v in values.items()}) if values else template


def shell(template: str, **values: str) -> tuple[str, ...]:
    """A shell pipeline as argv (`sh -c`), every interpolated value quoted."""
    return ("sh", "-c", script(template, **values))

"""How long work reports what it is doing: one line at a time, to whoever called it."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str], None]

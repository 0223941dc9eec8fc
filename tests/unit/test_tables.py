"""Tables as operators read them: whole in a wide terminal, a block per row in an 80-column pipe."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from hastack.tables import print_table

NOTE = "cannot reach root@10.79.0.13 over SSH: [Errno 111] Connect call failed ('10.79.0.13', 22)"


def evidence() -> Table:
    t = Table("node", "reachable", "running", "state", "uuid", "seqno", "source", "safe_to_bootstrap", "note",
              title="galera at 0.2 s: bootstrap")
    t.add_row("ctl1", "yes", "no", "stopped", "4c0f8993", "257", "grastate.dat", "no", "-")
    t.add_row("ctl3", "no", "-", "-", "-", "-", "-", "-", NOTE.replace("[", "\\["))
    return t


def printed(width: int, table: Table) -> str:
    buf = io.StringIO()
    print_table(Console(file=buf, width=width, highlight=False, soft_wrap=True), table)
    return buf.getvalue()


def test_a_wide_terminal_keeps_the_table() -> None:
    text = printed(250, evidence())
    assert "┃ node" in text and NOTE in text


def test_an_80_column_pipe_gets_one_block_per_row_with_every_value_whole() -> None:
    text = printed(80, evidence())
    lines = text.splitlines()
    assert lines[0] == "galera at 0.2 s: bootstrap"
    assert "ctl3" in lines and f"  note: {NOTE}" in lines  # the note on one line, brackets and all
    assert "  safe_to_bootstrap: no" in lines and "…" not in text
    assert "  note: -" not in lines  # empty cells are left out


def test_a_narrow_table_stays_a_table() -> None:
    t = Table("check", "result")
    t.add_row("galera", "[green]ok[/]")
    text = printed(80, t)
    assert "┃ check" in text and "ok" in text and "[green]" not in text

"""How the CLI prints a table: as a table where it fits, one block per row where it does not.

Operators read output in 80-column pipes (CI logs, `| less`, ssh without a tty).
A table squeezed into that width cuts words to "pacemak…" or wraps a note over
a dozen lines; a block per row keeps every value whole and readable.
"""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


def fits(console: Console, table: Table) -> bool:
    """Whether the table's natural width (every cell on one line) fits the console."""
    unbounded = console.options.update_width(100_000)
    return Measurement.get(console, unbounded, table).maximum <= console.width


def print_table(console: Console, table: Table) -> None:
    """The table when its natural width fits the console, else each row as a block:
    the first column's value as a heading, then `column: value` per non-empty cell."""
    if fits(console, table):
        console.print(table)
        return
    if table.title:
        console.print(Text.assemble((str(table.title), "bold")))
    columns = table.columns
    names = [str(c.header) for c in columns]
    cells = [list(c.cells) for c in columns]
    for i in range(table.row_count):
        row = [cells[c][i] if i < len(cells[c]) else "" for c in range(len(columns))]
        console.print(row[0])
        for name, value in zip(names[1:], row[1:], strict=True):
            if str(value) not in ("", "-"):
                console.print(Text(f"  {name}:"), value)

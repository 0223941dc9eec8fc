"""Per-component facts: the command that reads them and a pure parser of its output."""

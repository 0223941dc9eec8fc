"""Spec input errors: each names the field it is about and what to do."""

from __future__ import annotations

from dataclasses import dataclass, replace

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecError:
    path: Path
    message: str
    hint: str = ""
    file: str = ""
    line: int = 0
    column: int = 0

    @property
    def field(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
        return out or "(document)"

    def located(self, file: str, line: int, column: int) -> SpecError:
        return replace(self, file=file, line=line, column=column)

    def render(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else (self.file or "<spec>")
        text = f"{where}: {self.field}: {self.message}"
        return f"{text}\n    fix: {self.hint}" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "hint": self.hint,
        }


class SpecLoadError(Exception):
    """The spec could not be loaded; carries every error found, in file order."""

    def __init__(self, errors: list[SpecError]) -> None:
        self.errors = sorted(errors, key=lambda e: (e.line, e.column))
        super().__init__("\n".join(e.render() for e in self.errors))

"""The file diff deploy uses to change nothing on a host that is already right."""

from __future__ import annotations

from hastack.hosts.files import Change, FileFact, diff, parse_file_fact
from hastack.render.files import RenderedFile

F = RenderedFile("/etc/x.conf", b"hello\n", 0o640, "root", "mysql")
SHA = F.sha256


def test_parse_real_fact_output() -> None:
    # What FACT_CMD prints on Debian 12 (stat -c '%U %G %a' then sha256sum | cut).
    assert parse_file_fact(f"root mysql 640\n{SHA}\n") == FileFact("root", "mysql", 0o640, SHA)
    assert parse_file_fact("MISSING\n") is None
    assert parse_file_fact("") is None


def test_diff() -> None:
    assert diff(F, None) is Change.CREATE
    assert diff(F, FileFact("root", "mysql", 0o640, SHA)) is Change.NONE
    assert diff(F, FileFact("root", "mysql", 0o640, "0" * 64)) is Change.CONTENT
    assert diff(F, FileFact("root", "root", 0o640, SHA)) is Change.METADATA
    assert diff(F, FileFact("root", "mysql", 0o644, SHA)) is Change.METADATA

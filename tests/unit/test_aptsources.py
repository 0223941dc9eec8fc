from pathlib import Path

from hastack.lab.aptsources import debian_mirror, machine_mirror, parse_deb822, parse_one_line

DEB822 = """\
Types: deb
# a comment inside the stanza
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://security.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://off.example.org/debian
Suites: bookworm
Components: main
"""

ONE_LINE = """\
# deb http://commented.example.org/debian bookworm main
deb [arch=amd64 signed-by=/k.gpg] http://mirror.example.org/debian bookworm main non-free
deb-src http://src.example.org/debian bookworm main
deb http://other.example.org/debian trixie main
"""


def test_deb822_keeps_binary_enabled_sources_only() -> None:
    uris = [s.uri for s in parse_deb822(DEB822)]
    assert uris == ["http://mirror.example.org/debian", "http://security.example.org/debian-security"]


def test_one_line_skips_options_comments_and_src() -> None:
    sources = parse_one_line(ONE_LINE)
    assert [(s.uri, s.suites, s.components) for s in sources] == [
        ("http://mirror.example.org/debian", ("bookworm",), ("main", "non-free")),
        ("http://other.example.org/debian", ("trixie",), ("main",)),
    ]


def test_mirror_must_serve_the_suite_with_main() -> None:
    sources = parse_deb822(DEB822)
    assert debian_mirror(sources, "bookworm") == "http://mirror.example.org/debian"
    assert debian_mirror(sources, "trixie") is None


def test_machine_mirror_reads_both_formats(tmp_path: Path) -> None:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    assert machine_mirror("bookworm", tmp_path) is None
    (tmp_path / "etc/apt/sources.list.d/debian.sources").write_text(DEB822)
    (tmp_path / "etc/apt/sources.list.d/x.list.disabled").write_text(ONE_LINE)
    assert machine_mirror("bookworm", tmp_path) == "http://mirror.example.org/debian"
    (tmp_path / "etc/apt/sources.list").write_text(ONE_LINE.replace("mirror.", "first."))
    assert machine_mirror("bookworm", tmp_path) == "http://first.example.org/debian"

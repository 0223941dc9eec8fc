"""Which Debian mirror this machine uses, read from its own apt sources.

hastack never names a mirror itself: the lab image comes from wherever this
machine's apt already fetches Debian. Pure parsers; `machine_mirror` reads
the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_deb822(text: str) -> list[Source]:
    """Parse a .sources file (deb822 stanzas separated by blank lines)."""
    out: list[Source] = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line[0] in " \t" and key:  # continuation line
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            out.append(Source(uri, tuple(fields.get("suites", "").split()),
                              tuple(fields.get("components", "").split())))
    return out


def parse_one_line(text: str) -> list[Source]:
    """Parse the classic sources.list format: `deb [opts] URI SUITE COMPONENT...`."""
    out: list[Source] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            out.append(Source(words[0], (words[1],), tuple(words[2:])))
    return out


def debian_mirror(sources: list[Source], suite: str) -> str | None:
    """The first source that serves `suite` with the main component."""
    for s in sources:
        if suite in s.suites and "main" in s.components:
            return s.uri
    return None


def machine_mirror(suite: str = "bookworm", root: Path = Path("/")) -> str | None:
    apt = root / "etc/apt"
    sources: list[Source] = []
    listing = apt / "sources.list"
    if listing.exists():
        sources += parse_one_line(listing.read_text())
    for f in sorted((apt / "sources.list.d").glob("*")):
        if f.suffix == ".sources":
            sources += parse_deb822(f.read_text())
        elif f.suffix == ".list":
            sources += parse_one_line(f.read_text())
    return debian_mirror(sources, suite)

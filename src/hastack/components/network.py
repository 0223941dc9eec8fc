"""Addresses a host holds, from `ip -o -4 addr show`: who holds a VIP."""

from __future__ import annotations

from ipaddress import IPv4Address

from hastack.components.fact import Fact, on_success


def parse_addresses(text: str) -> frozenset[IPv4Address]:
    out = set()
    for line in text.splitlines():
        words = line.split()
        if "inet" in words:
            out.add(IPv4Address(words[words.index("inet") + 1].split("/")[0]))
    return frozenset(out)


ADDRESSES = Fact("IPv4 addresses", ("ip", "-o", "-4", "addr", "show"), on_success(parse_addresses))

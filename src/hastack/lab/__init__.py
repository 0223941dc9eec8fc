"""The lab: real hosts on one machine (network namespaces, containers)."""

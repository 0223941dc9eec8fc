"""Fault injection, and the checker that judges what the workload recorded through it."""

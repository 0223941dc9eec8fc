"""Fault injection, the chaos workload history and its checker."""

"""Workloads run from the lab's client host: what users of the control plane would do."""

"""hastack: a highly available OpenStack control plane from a declarative spec."""

__version__ = "0.1.0"

"""Hosts: run commands and place files on a machine. The same path for lab and production."""

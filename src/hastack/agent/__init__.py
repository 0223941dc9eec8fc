"""The per-node agent: health endpoints that haproxy polls."""

"""Measurement helpers: real connections to the broker, registry, catalog, Prometheus and k2 subprocesses."""

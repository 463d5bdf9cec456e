"""Observability: Prometheus metric families of the stream and the memory sampler with its leak score."""

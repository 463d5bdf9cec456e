"""A local exchange for tests and benchmarks: a generic core (market, tape, server, connections, faults) and
one module per simulated venue (k2cli.simulator.venues)."""

"""`k2 consume`: Kafka -> Iceberg exactly once (decode, batch, engine)."""

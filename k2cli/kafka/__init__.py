"""Kafka edges: Confluent framing and Avro serde, the registry client, producer and consumer."""

"""The stream engine: exchange frames -> dedup -> Avro -> Kafka, with its dead-letter file and metrics."""

"""The local stack, natively (no containers): Kafka (KRaft), a Confluent-API Schema Registry
(Apicurio Registry behind nginx), PostgreSQL and Prometheus, all on loopback.

    from k2cli.stack.manager import Stack
    Stack.from_settings().up()
"""

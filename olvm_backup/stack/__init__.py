"""The embedded stack: a Kafka-compatible broker, an object store and the four services on one machine."""

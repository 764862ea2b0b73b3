"""The producer SDK for compute workers: UsageProducer, UsageReporter, the spool, the
encoder, UUIDv7."""

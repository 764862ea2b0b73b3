"""Kafka: the client helpers, the admin, the compat reaches and the local broker."""

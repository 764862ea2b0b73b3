"""meterstream: exact usage metering from Kafka to Stripe."""

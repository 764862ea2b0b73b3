"""Pure domain of meterstream: exact money, the event contract, windows and aggregation."""

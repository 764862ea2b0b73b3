"""Adapters: each wraps one third-party library behind a port of streams.ports."""

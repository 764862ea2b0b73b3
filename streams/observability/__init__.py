"""Prometheus instruments and logging set-up, shared by every process."""

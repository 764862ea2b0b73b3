"""The load generator (`meterstream loadgen`): Zipf customers, a target rate, and
the exact expected totals."""

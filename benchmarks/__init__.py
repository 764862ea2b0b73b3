"""meterstream benchmarks: drain throughput, alert latency, scale; see README.md."""

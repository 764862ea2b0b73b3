"""Runtime: the only package that imports faust. Wires the core to Kafka, timers and HTTP."""

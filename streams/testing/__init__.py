"""The test and benchmark harness; nothing in the application (the demo included)
imports it. The local broker itself is streams.kafka.local.

- ``cluster``: the broker the tests use (external, Docker, or the local broker).
- ``topics``: uniquely named topics per test (aiokafka admin).
- ``pipeline``: a pipeline's topics and settings, ``meterstream worker`` processes,
  producing, reading a topic back.
- ``chaos``, ``verdict``: the chaos suite's runs and its pass mark.
- ``hostile``, ``helm``, ``memory_state``: hostile input, the Helm chart, an in-memory
  state.

Submodules are imported explicitly: importing the package pulls in nothing.
"""

"""Test support that needs real infrastructure; nothing in the application imports it.

- ``kafka_local``: a real single-node Kafka broker from Maven Central jars (standard
  library only, so ``deploy/kafka-local/kafka-local`` runs with any Python 3.11+).
- ``distribution``: its jars (Maven Central), settings and ports.
- ``probe``: a wire-level "does this broker serve requests" check.
- ``cluster``: the broker the tests use (external, Docker, or local jars).
- ``topics``: uniquely named topics per test (aiokafka admin).

Submodules are imported explicitly so that the command line tool never pulls in aiokafka.
"""

"""A real single-node Apache Kafka broker from Maven Central jars, for development, the
demo, tests and CI; standard library only, so ``deploy/kafka-local/kafka-local`` runs
with any Python 3.11+.

- ``broker``: :class:`KafkaLocal`, one broker bound to one data dir (start, stop, restart).
- ``tls``: its SASL_SSL listener's throwaway CA, keystore and SCRAM user.
- ``properties``: its server.properties (``node_settings``, shared with the Docker broker
  of the tests) and JVM options.
- ``jars``: the pinned version and ``fetch`` (Maven Central).
- ``probe``: a wire-level "does this broker serve requests" check.
- ``process``: free ports, child processes and readiness waits, which the broker, the
  demo and the test harness (streams.testing) share.
- ``cli``: the ``kafka-local`` command.
"""

from streams.kafka.local.broker import KafkaLocal
from streams.kafka.local.jars import KafkaLocalError, default_home, fetch, pinned_version
from streams.kafka.local.process import free_ports

__all__ = ["KafkaLocal", "KafkaLocalError", "default_home", "fetch", "free_ports",
           "pinned_version"]

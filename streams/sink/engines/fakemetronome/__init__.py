"""A stateful fake of Metronome's usage APIs (ingest, usage, billable metrics, customers)
with an exact ledger, Metronome's limits and seeded fault injection. Used by tests
in-process and by the demo as a process
(``python -m streams.sink.engines.fakemetronome --port 12112``; ``--help`` lists the
options, docs/metronome.md the admin API).
"""

from streams.sink.engines.fakemetronome.app import FakeMetronome
from streams.sink.engines.fakemetronome.config import (
    BillableMetric,
    FakeCustomer,
    FakeMetronomeConfig,
    Faults,
    ManualClock,
)
from streams.sink.engines.fakemetronome.ledger import AcceptedEvent, MetronomeLedger

__all__ = [
    "AcceptedEvent",
    "BillableMetric",
    "FakeCustomer",
    "FakeMetronome",
    "FakeMetronomeConfig",
    "Faults",
    "ManualClock",
    "MetronomeLedger",
]

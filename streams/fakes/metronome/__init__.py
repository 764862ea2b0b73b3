"""A stateful fake of Metronome's usage APIs (ingest, usage, billable metrics, customers)
with an exact ledger, Metronome's limits and seeded fault injection. Used by tests
in-process and by the demo as a process
(``python -m streams.fakes.metronome --port 12112``; ``--help`` lists the
options, docs/metronome.md the admin API).
"""

from streams.fakes.faults import Faults, ManualClock
from streams.fakes.metronome.app import FakeMetronome
from streams.fakes.metronome.config import BillableMetric, FakeCustomer, FakeMetronomeConfig
from streams.fakes.metronome.ledger import AcceptedEvent, MetronomeLedger

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

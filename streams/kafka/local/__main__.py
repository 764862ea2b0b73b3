"""``python -m streams.kafka.local``: the kafka-local command (see cli.py)."""

import sys

from streams.kafka.local.cli import main

sys.exit(main())

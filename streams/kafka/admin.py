"""Topic administration with aiokafka's admin client: ``meterstream topics create``.

Creating is idempotent: a topic that exists is checked, not recreated. A topic with fewer
partitions than configured is reported (partitions can only grow, and growing a keyed
topic moves customers between partitions, so it is left to the operator).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config import Settings
from streams.kafka.client import connection_options

__all__ = ["CHANGELOG_DELETE_RETENTION_MS", "TopicPlan", "changelog_topic", "create_topics",
           "topic_plan"]

# How long the worker's changelog keeps a tombstone after compaction (and so how old a
# worker's local state may be and still be restored from the changelog's tail).
CHANGELOG_DELETE_RETENTION_MS = 7 * 86_400_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TopicPlan:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


def changelog_topic(settings: Settings) -> str:
    """The worker's state changelog: one partition per events partition, compacted."""
    return f"{settings.worker.app_id}-state-changelog"


def topic_plan(settings: Settings) -> list[TopicPlan]:
    """Every topic meterstream reads or writes, the worker's state changelog included."""
    t = settings.topics
    events = {"retention.ms": str(t.events_retention_ms), "cleanup.policy": "delete",
              "message.timestamp.type": "CreateTime"}
    outputs = {"retention.ms": str(t.outputs_retention_ms), "cleanup.policy": "delete"}
    compacted = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
    return [
        TopicPlan(t.events, t.partitions, t.replication_factor, events),
        TopicPlan(t.events_dlq, t.partitions, t.replication_factor, outputs),
        TopicPlan(t.summaries, t.partitions, t.replication_factor, outputs),
        TopicPlan(t.summaries_dlq, t.partitions, t.replication_factor, outputs),
        TopicPlan(t.alerts, t.partitions, t.replication_factor, outputs),
        TopicPlan(t.customers, t.partitions, t.replication_factor, compacted),
        TopicPlan(changelog_topic(settings), t.partitions, t.replication_factor,
                  {"cleanup.policy": "compact",
                   "delete.retention.ms": str(CHANGELOG_DELETE_RETENTION_MS)}),
    ]


async def create_topics(
    settings: Settings, only: set[str] | None = None
) -> dict[str, str]:
    """Create missing topics (of ``only``, when given); return
    ``{topic: "created" | "exists" | problem}``."""
    plans = [p for p in topic_plan(settings) if only is None or p.name in only]
    admin = AIOKafkaAdminClient(**connection_options(settings.kafka),
                                client_id=settings.kafka.client_id)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [p for p in plans if p.name not in existing]
        result: dict[str, str] = {p.name: "exists" for p in plans if p.name in existing}
        if missing:
            # A concurrent creator (another process) is fine: the topic exists either way.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([
                    NewTopic(p.name, p.partitions, p.replication_factor, topic_configs=p.config)
                    for p in missing
                ])
            for p in missing:
                result[p.name] = "created"
        described = await admin.describe_topics([p.name for p in plans])
        for plan, desc in zip(plans, _in_order(plans, described), strict=True):
            parts = desc.get("partitions") if desc else None
            n = len(parts) if isinstance(parts, list) else 0
            if n and n < plan.partitions:
                result[plan.name] = (
                    f"exists with {n} partitions (configured {plan.partitions}); "
                    "add partitions deliberately: it moves customers between partitions"
                )
        return result
    finally:
        await admin.close()


def _in_order(
    plans: list[TopicPlan], described: list[dict[str, object]]
) -> list[dict[str, object]]:
    by_name = {str(d.get("topic")): d for d in described}
    return [by_name.get(p.name, {}) for p in plans]

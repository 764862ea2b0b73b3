"""The worker group's partition assignor: sticky, balanced, and it tells every worker who owns
which partition, so a usage query can be forwarded to the owner.

Each member's subscription carries (as user data) its instance id, the URL of its HTTP API,
and the partitions it owns now. The group leader keeps every partition with its current
owner while that owner is under its fair share (fewer restores when a worker joins or
leaves), spreads the rest, and sends every member the full map partition -> URL.

Only this module subclasses an aiokafka assignor; its methods are aiokafka's public
``AbstractPartitionAssignor`` interface.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import orjson
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

__all__ = ["RoutingAssignor", "plan_assignment"]

log = logging.getLogger(__name__)


def plan_assignment(
    partitions: Iterable[int], members: Mapping[str, tuple[str, frozenset[int]]]
) -> dict[str, list[int]]:
    """Assign ``partitions`` to ``members`` (member -> (instance id, owned partitions)).

    Balanced (sizes differ by at most one) and sticky: a member keeps what it owns up to
    its share. Deterministic: members are ordered by instance id, then member id.
    """
    order = sorted(members, key=lambda m: (members[m][0], m))
    parts = sorted(set(partitions))
    if not order:
        return {}
    base, extra = divmod(len(parts), len(order))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}
    plan: dict[str, list[int]] = {m: [] for m in order}
    taken: set[int] = set()
    for m in order:
        for p in sorted(members[m][1]):
            if p in parts and p not in taken and len(plan[m]) < quota[m]:
                plan[m].append(p)
                taken.add(p)
    free = [p for p in parts if p not in taken]
    for m in order:
        while len(plan[m]) < quota[m] and free:
            plan[m].append(free.pop(0))
    for m in order:
        plan[m].sort()
    return plan


class RoutingAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
    """One instance per consumer: it knows this worker's id, URL and owned partitions."""

    name = "meterstream-routing"
    version = 0

    def __init__(self, instance_id: str, url: str) -> None:
        self.instance_id = instance_id
        self.url = url
        self.owned: frozenset[int] = frozenset()
        # partition -> URL of the owner's API, as of the last assignment
        self.routes: dict[int, str] = {}

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        user = orjson.dumps({"id": self.instance_id, "url": self.url,
                             "owned": sorted(self.owned)})
        return ConsumerProtocolMemberMetadata(self.version, list(topics), user)

    def assign(
        self,
        cluster: ClusterMetadata,
        members: Mapping[str, ConsumerProtocolMemberMetadata],
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        info: dict[str, tuple[str, frozenset[int], str]] = {}
        for member_id, meta in members.items():
            try:
                user = orjson.loads(meta.user_data or b"{}")
                info[member_id] = (str(user.get("id", member_id)),
                                   frozenset(int(p) for p in user.get("owned", ())),
                                   str(user.get("url", "")))
            except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
                info[member_id] = (member_id, frozenset(), "")
        result: dict[str, dict[str, list[int]]] = {m: {} for m in members}
        routes: dict[str, dict[int, str]] = {}
        for topic in topics:
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            subscribed = {m: (info[m][0], info[m][1]) for m, meta in members.items()
                          if topic in meta.subscription}
            plan = plan_assignment(partitions, subscribed)
            for m, parts in plan.items():
                result[m][topic] = parts
            routes[topic] = {p: info[m][2] for m, parts in plan.items() for p in parts}
        user_data = orjson.dumps({t: {str(p): url for p, url in r.items()}
                                  for t, r in routes.items()})
        return {m: ConsumerProtocolMemberAssignment(self.version, sorted(t.items()), user_data)
                for m, t in result.items()}

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.owned = frozenset(p for _topic, parts in assignment.assignment for p in parts)
        try:
            routes = orjson.loads(assignment.user_data or b"{}")
            self.routes = {int(p): url for by_topic in routes.values()
                           for p, url in by_topic.items()}
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
            log.warning("assignment carried no readable routes; usage queries for other "
                        "workers' partitions cannot be forwarded until the next one")
            self.routes = {}

"""An in-memory state for the pure aggregator: a dict behind the core's StateReader."""

from __future__ import annotations

__all__ = ["MemoryState"]


class MemoryState:
    """Reads like one partition's table; ``apply`` writes a batch's result in order."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k for k in self.data if k.startswith(prefix)]

    def items_with_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        return [(k, v) for k, v in self.data.items() if k.startswith(prefix)]

    def items_after(self, prefix: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        return sorted((k, v) for k, v in self.data.items()
                      if k.startswith(prefix) and k > after)[:limit]

    def apply(self, writes: list[tuple[str, bytes | None]]) -> None:
        """Apply writes in order; None deletes."""
        for key, value in writes:
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

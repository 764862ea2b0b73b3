"""The msgspec struct that :func:`streams.core.scan.scan_record`'s fast path decodes into.

Kept apart from scan.py because mypyc compiles scan.py and cannot compile a
``msgspec.Struct`` subclass; this module stays Python, and scan.py reads a struct's fields
with one C call (``msgspec.structs.astuple``) instead of an attribute lookup each.
"""

from __future__ import annotations

import msgspec

__all__ = ["DecodeFailed", "WireEvent", "decode_wire"]


class WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The five fields of an event without attributes, as msgspec decodes them (the field
    order is the order ``astuple`` gives them in)."""

    id: str
    customer: str
    meter: str
    value: str | int
    timestamp: str | int


decode_wire = msgspec.json.Decoder(WireEvent | list[WireEvent]).decode
"""One record: a :class:`WireEvent`, or a list of them; raises :data:`DecodeFailed` for
anything else (not JSON to msgspec, another shape, a sixth field, a field of another type)."""

DecodeFailed = msgspec.MsgspecError

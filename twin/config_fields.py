"""``knob``: a dataclass field with its documentation and allowed range in its metadata."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def knob(
    default: Any = dataclasses.MISSING,
    doc: str = "",
    *,
    lo=None,
    hi=None,
    choices=None,
    factory=None,
):
    meta = {"doc": doc, "lo": lo, "hi": hi, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)

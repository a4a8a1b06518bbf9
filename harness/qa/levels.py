"""One four-step scale of importance, shared by a task's priority and an issue's severity.

The spec defines ``Priority`` (progress tracker) and ``Severity`` (troubleshooting) as the same enum
twice; here they are one, so the data files (``tasks.toml``, ``knowledge_base.toml``) spell both the
same way (``low`` .. ``critical``) and one parser reads them.
"""

from __future__ import annotations

import enum


class Level(enum.IntEnum):
    """LOW < MEDIUM < HIGH < CRITICAL: for a task how much it matters, for an issue how badly it stops work."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: object) -> Level:
        """The level named ``text`` (case-insensitive); raises ValueError naming the allowed names."""
        try:
            return cls[str(text).upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not one of {[m.name.lower() for m in cls]}") from None

"""Held-out failures: captured after the knowledge base was frozen; no pattern is ever written from them.

See ``tests/qa/fixtures/README.md`` for the protocol.
"""

from __future__ import annotations

from failure_scenarios import Scenario

SCENARIOS: tuple[Scenario, ...] = ()

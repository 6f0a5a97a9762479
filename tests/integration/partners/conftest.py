"""Fixtures of the partners integration tests: the cashback tests' harness (same database)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "cashback"))

from cashback_harness import cashback_env, env  # noqa: F401 - fixtures

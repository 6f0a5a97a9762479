"""Fixtures of the operator's integration tests.

The broker is the session's shared ``rabbitmq`` fixture (tests/conftest.py: a real node on free
127.0.0.1 ports, stopped by PID); the operator's tests stop and start it to play an outage.
"""

from __future__ import annotations

import pytest

from newbank.runtime import RabbitMQ


@pytest.fixture
def operator_rabbitmq(rabbitmq: RabbitMQ) -> RabbitMQ:
    return rabbitmq

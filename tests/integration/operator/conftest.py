"""Fixtures of the operator's integration tests: a real RabbitMQ node of our own."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from op_rabbitmq_node import RabbitMQNode, available


@pytest.fixture(scope="session")
def operator_rabbitmq() -> Iterator[RabbitMQNode]:
    reason = available()
    if reason:
        pytest.skip(reason)
    node = RabbitMQNode(Path(tempfile.mkdtemp(prefix="newbank-op-rabbit-")))
    try:
        node.start()
        yield node
    finally:
        node.cleanup()

"""``python -m newbank_operator``: run the kopf operator for one namespace, with peering."""

from __future__ import annotations

import asyncio
import logging

import kopf

from newbank_operator import handlers  # noqa: F401 - registers the handlers
from newbank_operator.config import OperatorConfig


def main() -> None:
    config = OperatorConfig()
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(
        kopf.operator(
            namespaces=[config.namespace],
            clusterwide=False,
            standalone=not config.peering_enabled,
            peering_name=config.peering,
            priority=config.peering_priority,
            liveness_endpoint=config.liveness_endpoint or None,
        )
    )


if __name__ == "__main__":
    main()

"""``python -m newbank_operator``: run the kopf operator for one namespace, with peering."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets

import kopf

from newbank_operator import handlers  # noqa: F401 - registers the handlers
from newbank_operator.config import OperatorConfig


def main() -> None:
    # One active replica, the others standing by: a random priority per process unless one is given
    # (set in the environment so that the start-up handler reads the same value).
    os.environ.setdefault("NEWBANK_OPERATOR_PEERING_PRIORITY", str(secrets.randbelow(1_000_000) + 1))
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

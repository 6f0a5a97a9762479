"""Operator start-up: kopf's settings (peering, storage) from the environment."""

from __future__ import annotations

from typing import Any

import kopf

from newbank_operator.config import OperatorConfig, configure


@kopf.on.startup()
def configure_operator(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings, OperatorConfig())

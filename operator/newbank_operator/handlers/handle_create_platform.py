"""A new CashbackPlatform: say it was accepted, with its effective policy, before the first round."""

from __future__ import annotations

from typing import Any

import kopf

from newbank_operator.constants import GROUP, PLURAL, VERSION
from newbank_operator.spec import parse_spec


@kopf.on.create(GROUP, VERSION, PLURAL)
def accept_platform(spec: kopf.Spec, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    policy = parse_spec(spec)
    kopf.event(
        body,
        type="Normal",
        reason="Accepted",
        message=(
            f"scaling {policy.deployment} between {policy.scaling.min_replicas} and "
            f"{policy.scaling.max_replicas} replicas; recovery {'on' if policy.recovery.enabled else 'off'}"
        ),
    )
    patch.status["broker"] = "Unknown"
    patch.status["lastAction"] = "accepted"

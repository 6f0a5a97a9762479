"""The event envelope every message carries: ``{id, type, version, source, occurred_at, data}``."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: UUID
    type: str
    version: int
    source: str
    occurred_at: datetime
    data: dict[str, Any]


class MalformedEvent(ValueError):
    """The bytes are not an event envelope."""


def parse_event(body: bytes) -> Event:
    try:
        return Event.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError, TypeError) as exc:
        raise MalformedEvent(str(exc)) from exc
